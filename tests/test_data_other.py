import jax
import jax.numpy as jnp
import numpy as np
import pytest

from regjax.data import (
    batch_mean,
    epoch_batches,
    flatten_images,
    images_to_float,
    images_to_float_on_device,
    kfold_splits,
    load_diabetes,
    load_digits,
    num_batches,
    polynomial_data,
    synthetic_linear,
    to_nhwc,
)


def test_digits_shapes_split_stratification_determinism():
    ds = load_digits()
    assert ds.x_train.shape == (1347, 8, 8) and ds.x_test.shape == (450, 8, 8)
    assert ds.x_train.dtype == np.float32 and 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.num_classes == 10 and ds.source == "sklearn"
    train_frac = np.bincount(ds.y_train, minlength=10) / len(ds.y_train)
    test_frac = np.bincount(ds.y_test, minlength=10) / len(ds.y_test)
    np.testing.assert_allclose(train_frac, test_frac, atol=0.01)  # stratified
    again = load_digits()
    np.testing.assert_array_equal(ds.y_test, again.y_test)
    np.testing.assert_array_equal(ds.x_train, again.x_train)
    assert not np.array_equal(load_digits(seed=1).y_test, ds.y_test)


def test_diabetes_shapes_and_standardization():
    ds = load_diabetes()
    assert ds.x_train.shape == (353, 10) and ds.x_test.shape == (89, 10)
    np.testing.assert_allclose(ds.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(ds.y_train.std(), 1, atol=1e-5)
    raw = load_diabetes(standardize=False)
    np.testing.assert_allclose(ds.y_test * ds.meta["y_std"] + ds.meta["y_mean"], raw.y_test, rtol=1e-4)
    with pytest.raises(ValueError, match="test_fraction"):
        load_diabetes(test_fraction=1.5)


def test_synthetic_linear_noise_independent_and_least_squares_recovers():
    w, b = jnp.array([2.0, -3.4]), 4.2
    x, y = synthetic_linear(jax.random.key(0), w, b, 20_000, noise=0.01)
    noise = y - x @ w - b
    assert abs(float(jnp.std(noise)) - 0.01) < 0.001
    # d2l JAX reuses the key: its noise is 0.01 * X[:, 0]. Ours is uncorrelated with every column of X.
    for j in range(2):
        assert abs(float(jnp.corrcoef(noise, x[:, j])[0, 1])) < 0.05
    design = jnp.concatenate([x, jnp.ones((x.shape[0], 1))], axis=1)
    coef = np.linalg.lstsq(np.asarray(design), np.asarray(y), rcond=None)[0]
    np.testing.assert_allclose(coef, [2.0, -3.4, 4.2], atol=1e-3)
    with pytest.raises(ValueError, match="w must be"):
        synthetic_linear(jax.random.key(0), jnp.ones((2, 2)), 0.0, 5)


def test_polynomial_features():
    d = polynomial_data(jax.random.key(0), 100, 100)
    assert d.x_train.shape == (100, 20) and d.y_test.shape == (100,)
    np.testing.assert_allclose(d.x_train[:, 0], 1.0)
    np.testing.assert_allclose(d.x_train[:, 3], d.raw_train ** 3 / 6, rtol=1e-5)
    np.testing.assert_allclose(d.true_w[:4], [5, 1.2, -3.4, 5.6])
    assert abs(float(jnp.std(d.y_train - d.x_train @ d.true_w)) - 0.1) < 0.03


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_batching_every_example_once_with_right_weight(drop_remainder):
    n, bs = 103, 10
    x = jnp.arange(n, dtype=jnp.float32)[:, None] * jnp.ones((1, 3))
    y = jnp.arange(n)
    f = jax.jit(lambda k: epoch_batches(k, x, y, bs, drop_remainder=drop_remainder), )
    b = f(jax.random.key(0))
    nb = num_batches(n, bs, drop_remainder)
    assert b.x.shape == (nb, bs, 3) and b.y.shape == (nb, bs) and b.weight.shape == (nb, bs)
    real = np.asarray(b.y)[np.asarray(b.weight) == 1]
    if drop_remainder:
        assert nb == 10 and len(real) == 100 and len(set(real.tolist())) == 100
    else:
        assert nb == 11 and sorted(real.tolist()) == list(range(n))  # each exactly once
        assert float(b.weight[-1].sum()) == 3.0  # last partial batch: 3 real rows
        # batch_mean over the partial batch averages over its 3 real examples, not 10
        vals = b.y[-1].astype(jnp.float32)
        expected = np.asarray(vals)[np.asarray(b.weight[-1]) == 1].mean()
        assert float(batch_mean(vals, b.weight[-1])) == pytest.approx(expected)
    np.testing.assert_array_equal(b.x[..., 0], b.y)  # rows stay paired


def test_batching_permutation_differs_across_epochs_and_errors():
    x, y = jnp.zeros((50, 2)), jnp.arange(50)
    a = epoch_batches(jax.random.fold_in(jax.random.key(0), 0), x, y, 10)
    b = epoch_batches(jax.random.fold_in(jax.random.key(0), 1), x, y, 10)
    assert not np.array_equal(a.y, b.y)
    assert set(np.asarray(a.y[0]).tolist()) != set(np.asarray(b.y[0]).tolist())  # membership changes too
    with pytest.raises(ValueError, match="batch_size"):
        epoch_batches(jax.random.key(0), x, y, 51)
    with pytest.raises(ValueError, match="at least one example"):
        epoch_batches(jax.random.key(0), x[:0], y[:0], 1)
    with pytest.raises(ValueError, match="same number"):
        epoch_batches(jax.random.key(0), x, y[:3], 2)


def test_kfold_every_example_validated_once():
    splits = kfold_splits(23, 5, jax.random.key(0))
    val = np.concatenate([v for _, v in splits])
    assert sorted(val.tolist()) == list(range(23))
    for tr, v in splits:
        assert len(np.intersect1d(tr, v)) == 0 and len(tr) + len(v) == 23
    assert {len(v) for _, v in splits} <= {4, 5}
    with pytest.raises(ValueError, match="k must"):
        kfold_splits(5, 6, jax.random.key(0))


def test_preprocessing_helpers():
    img = np.array([[[0, 255], [51, 102]]], np.uint8)
    f = images_to_float(img)
    assert f.dtype == np.float32 and f.max() == 1.0 and f[0, 1, 0] == pytest.approx(0.2)
    assert flatten_images(f).shape == (1, 4)
    assert to_nhwc(f).shape == (1, 2, 2, 1) and to_nhwc(to_nhwc(f)).shape == (1, 2, 2, 1)
    with pytest.raises(ValueError, match="NHWC"):
        to_nhwc(np.zeros((2, 3)))
    with pytest.raises(TypeError, match="uint8"):
        images_to_float(np.zeros((1, 2), np.int64))


def test_images_to_float_on_device_has_the_host_conversions_bits_for_every_pixel_value():
    every = np.arange(256, dtype=np.uint8).reshape(4, 8, 8)
    on_device = images_to_float_on_device(every)
    assert isinstance(on_device, jax.Array) and on_device.dtype == jnp.float32 and on_device.shape == (4, 8, 8)
    reference = every.astype(np.float32) / 255.0  # the conversion every earlier figure was computed with
    np.testing.assert_array_equal(np.asarray(on_device).view(np.uint32), reference.view(np.uint32))
    np.testing.assert_array_equal(images_to_float(every).view(np.uint32), reference.view(np.uint32))
    floats = np.linspace(0, 1, 6, dtype=np.float64).reshape(2, 3)  # float images: float32, unchanged values
    np.testing.assert_array_equal(np.asarray(images_to_float_on_device(floats)), floats.astype(np.float32))
    with pytest.raises(TypeError, match="uint8"):
        images_to_float_on_device(np.zeros((1, 2), np.int64))
