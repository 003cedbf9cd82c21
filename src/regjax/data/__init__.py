"""Data: Fashion-MNIST (IDX / TFDS / checksummed download, no TensorFlow), the Kaggle house-price CSVs and their
fitted transform, bundled real sets, synthetic data, device-resident batching, k-fold splits and image
preprocessing."""
from regjax.data.batching import Batches, batch_mean, epoch_batches, num_batches
from regjax.data.dataset import Dataset
from regjax.data.fashion_mnist import DataUnavailableError, find_idx_files, load_fashion_mnist
from regjax.data.idx import read_idx, write_idx
from regjax.data.images import IMAGE_DATASETS, load_images, prepare_images
from regjax.data.kaggle_house import HouseData, load_kaggle_house
from regjax.data.kfold import equal_folds, fold_data, fold_indices, kfold_splits
from regjax.data.preprocess import flatten_images, images_to_float, images_to_float_on_device, to_nhwc
from regjax.data.sklearn_sets import load_diabetes, load_digits
from regjax.data.synthetic import PolynomialData, polynomial_data, seed_keys, synthetic_linear, weight_decay_data
from regjax.data.tabular import TabularTransform, fit_tabular

__all__ = [
    "Dataset", "DataUnavailableError", "load_images", "prepare_images", "IMAGE_DATASETS", "load_fashion_mnist", "find_idx_files", "read_idx", "write_idx",
    "load_digits", "load_diabetes", "seed_keys", "synthetic_linear", "weight_decay_data", "polynomial_data", "PolynomialData",
    "Batches", "num_batches", "epoch_batches", "batch_mean", "fold_indices", "kfold_splits", "equal_folds", "fold_data",
    "images_to_float", "images_to_float_on_device", "flatten_images", "to_nhwc", "load_kaggle_house", "HouseData", "fit_tabular",
    "TabularTransform",
]
