import gzip
import socket
import time

import numpy as np
import pytest

from regjax.data import DataUnavailableError, load_fashion_mnist, read_idx, write_idx
from regjax.data import fashion_mnist as fm
from regjax.data.idx import IMAGES_MAGIC, LABELS_MAGIC

RNG = np.random.default_rng(0)


def _fake_fashion(n_train=30, n_test=12):
    return {
        "x_train": RNG.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "y_train": RNG.integers(0, 10, (n_train,), dtype=np.uint8),
        "x_test": RNG.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "y_test": RNG.integers(0, 10, (n_test,), dtype=np.uint8),
    }


def _write_set(folder, arrays, gz=True):
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in fm.FILES.items():
        write_idx(folder / (stem + (".gz" if gz else "")), arrays[key])


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("layout", [".", "FashionMNIST/raw", "data/fashion"])
def test_roundtrip_layouts(tmp_path, gz, layout):
    arrays = _fake_fashion()
    _write_set(tmp_path / "data" / layout, arrays, gz)
    ds = load_fashion_mnist(tmp_path / "data", cache=tmp_path / "cache")
    for key in fm.FILES:
        np.testing.assert_array_equal(getattr(ds, key), arrays[key])
    assert ds.x_train.dtype == np.uint8 and ds.source.startswith("idx:")
    assert ds.class_names[0] == "T-shirt/top" and ds.num_classes == 10


def test_magic_numbers_written_and_read(tmp_path):
    write_idx(tmp_path / "l", np.arange(5, dtype=np.uint8))
    write_idx(tmp_path / "i", np.zeros((2, 3, 4), np.uint8))
    assert int.from_bytes((tmp_path / "l").read_bytes()[:4], "big") == LABELS_MAGIC
    assert int.from_bytes((tmp_path / "i").read_bytes()[:4], "big") == IMAGES_MAGIC
    np.testing.assert_array_equal(read_idx(tmp_path / "l", "labels"), np.arange(5))
    f = write_idx(tmp_path / "f.gz", np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(read_idx(f), np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3))


def _corrupt(tmp_path, name, payload):
    p = tmp_path / name
    p.write_bytes(payload)
    return p


def test_corruption_cases_raise_named_errors(tmp_path):
    good = tmp_path / "good"
    write_idx(good, np.zeros((3, 4, 4), np.uint8))
    raw = good.read_bytes()
    cases = {
        "truncated.idx": (raw[:-5], "truncated payload"),
        "trailing.idx": (raw + b"xx", "trailing bytes"),
        "header.idx": (raw[:6], "truncated IDX header"),
        "tiny.idx": (raw[:2], "truncated IDX header"),
        "notidx.idx": (b"\x12\x34" + raw[2:], "not an IDX file"),
        "broken.gz": (gzip.compress(raw)[:-20], "gzip"),
        # dimensions whose product overflows int64 (2**32 cubed): named, not an unnamed reshape error
        "overflow.idx": (raw[:4] + (2 ** 32 - 1).to_bytes(4, "big") * 3 + raw[16:], "truncated payload"),
    }
    for name, (payload, message) in cases.items():
        p = _corrupt(tmp_path, name, payload)
        with pytest.raises(ValueError, match=message) as err:
            read_idx(p)
        assert name in str(err.value)
    with pytest.raises(ValueError, match="wrong magic number 0x00000803 for labels"):
        read_idx(good, expect="labels")


def test_empty_sets_and_test_images_of_another_size_are_refused_at_load(tmp_path):
    arrays = _fake_fashion()
    arrays["x_test"] = np.zeros((12, 14, 14), np.uint8)
    _write_set(tmp_path / "d", arrays)
    with pytest.raises(ValueError, match=r"t10k-images.*\(14, 14\), the training images .* \(28, 28\)"):
        load_fashion_mnist(tmp_path / "d", cache=tmp_path / "cache")
    arrays = _fake_fashion()
    arrays["x_train"], arrays["y_train"] = arrays["x_train"][:0], arrays["y_train"][:0]
    _write_set(tmp_path / "e", arrays)
    with pytest.raises(ValueError, match="train-images.*holds no images"):
        load_fashion_mnist(tmp_path / "e", cache=tmp_path / "cache")


def test_count_mismatch_names_both_files(tmp_path):
    arrays = _fake_fashion()
    arrays["y_test"] = arrays["y_test"][:-1]
    _write_set(tmp_path / "d", arrays)
    with pytest.raises(ValueError, match="t10k-images.*12 images.*t10k-labels.*11 labels"):
        load_fashion_mnist(tmp_path / "d", cache=tmp_path / "cache")


def test_explicit_data_dir_without_files_is_an_error_not_a_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not hold the four Fashion-MNIST IDX files"):
        load_fashion_mnist(tmp_path, cache=tmp_path / "cache")


def test_env_var_data_dir_and_cache_hit(tmp_path, monkeypatch):
    arrays = _fake_fashion()
    _write_set(tmp_path / "d", arrays)
    monkeypatch.setenv("REGJAX_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("REGJAX_CACHE_DIR", str(tmp_path / "cache"))
    first = load_fashion_mnist()
    assert len(list((tmp_path / "cache").glob("fashion_mnist-idx-*.npz"))) == 1

    def no_parse(_files):
        raise AssertionError("second load should come from the .npz cache")

    monkeypatch.setattr(fm, "_parse", no_parse)
    start = time.perf_counter()
    second = load_fashion_mnist()
    assert time.perf_counter() - start < 1.0
    np.testing.assert_array_equal(first.x_train, second.x_train)


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_download_fails_fast_with_guiding_message(tmp_path, monkeypatch):
    monkeypatch.delenv("REGJAX_DATA_DIR", raising=False)
    monkeypatch.setattr(fm, "DOWNLOAD_BASE_URL", f"http://127.0.0.1:{_closed_port()}/")
    start = time.perf_counter()
    with pytest.raises(DataUnavailableError) as err:
        load_fashion_mnist(cache=tmp_path / "cache", tfds_data_dir=tmp_path / "no_tfds")
    assert time.perf_counter() - start < 15
    message = str(err.value)
    for needle in ("data_dir", "REGJAX_DATA_DIR", "TFDS", "network", "--dataset digits", "download failed"):
        assert needle in message, needle


def test_download_verifies_registered_checksums(tmp_path, monkeypatch):
    # Serve wrong bytes from a local directory through a file:// base URL: the checksum check must refuse them.
    served = tmp_path / "served"
    _write_set(served, _fake_fashion())
    monkeypatch.setattr(fm, "DOWNLOAD_BASE_URL", served.as_uri())
    with pytest.raises(ValueError, match="checksum mismatch"):
        load_fashion_mnist(cache=tmp_path / "cache", tfds_data_dir=tmp_path / "no_tfds")
    assert not (tmp_path / "cache" / "fashion_mnist.npz").exists()
    sums = fm._registered_checksums()
    assert set(sums) == {f"{s}.gz" for s in fm.FILES.values()}
    assert sums["train-images-idx3-ubyte.gz"][1] == 26421880


def test_download_false_without_sources_raises(tmp_path):
    with pytest.raises(DataUnavailableError, match="download=False"):
        load_fashion_mnist(cache=tmp_path / "cache", tfds_data_dir=tmp_path / "no_tfds", download=False)


def test_tfds_route_with_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=7):
        ds = load_fashion_mnist(cache=tmp_path / "cache", download=False)
    assert ds.source == "tfds"
    assert ds.x_train.shape == (7, 28, 28) and ds.x_train.dtype == np.uint8
    assert ds.y_test.shape == (7,) and int(ds.y_test.max()) < 10
    # the parsed arrays are cached: the next load needs neither TFDS nor the network
    again = load_fashion_mnist(cache=tmp_path / "cache", download=False)
    assert again.source.startswith("cache:")
    np.testing.assert_array_equal(again.x_train, ds.x_train)


def test_data_dir_files_are_named_by_their_checksums(tmp_path, monkeypatch):
    import hashlib

    arrays = _fake_fashion()
    _write_set(tmp_path / "gz", arrays, gz=True)
    _write_set(tmp_path / "raw", arrays, gz=False)
    # files that are not the registered Fashion-MNIST are not called fashion_mnist
    ds = load_fashion_mnist(tmp_path / "gz", cache=tmp_path / "cache")
    assert ds.name == "idx" and ds.meta["sha256_verified"] is False and ds.summary()["sha256_verified"] is False
    # files whose SHA-256s are the registered ones are (here the registry is pointed at our files)
    registered = {f"{stem}.gz": ("url", 0, hashlib.sha256((tmp_path / "gz" / f"{stem}.gz").read_bytes()).hexdigest())
                  for stem in fm.FILES.values()}
    monkeypatch.setattr(fm, "_registered_checksums", lambda: registered)
    ds = load_fashion_mnist(tmp_path / "gz", cache=tmp_path / "cache")
    assert ds.name == "fashion_mnist" and ds.meta["sha256_verified"] is True
    # raw files cannot be checked (TFDS registers the .gz only): unverified
    assert load_fashion_mnist(tmp_path / "raw", cache=tmp_path / "cache").name == "idx"


def test_dataset_refuses_labels_outside_its_classes():
    from regjax.data.dataset import Dataset

    x = np.zeros((3, 2))
    with pytest.raises(ValueError, match="train label 3 is outside \\[0, 3\\)"):
        Dataset("d", x, np.array([0, 1, 3]), x, np.array([0, 1, 2]), class_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="test label -1"):
        Dataset("d", x, np.array([0, 1, 2]), x, np.array([0, -1, 2]), class_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="3 train inputs but 2 train labels"):
        Dataset("d", x, np.array([0, 1]), x, np.array([0, 1, 2]))


def test_cache_is_keyed_by_content_and_written_with_the_umask(tmp_path):
    import os
    import stat

    arrays = _fake_fashion()
    _write_set(tmp_path / "d", arrays, gz=False)                            # raw IDX: size fixed by the shape
    first = load_fashion_mnist(tmp_path / "d", cache=tmp_path / "cache")
    labels = tmp_path / "d" / "train-labels-idx1-ubyte"
    before = labels.stat()
    changed = dict(arrays, y_train=(arrays["y_train"] + 1) % 10)          # same shapes, so the same file size
    _write_set(tmp_path / "d", changed, gz=False)
    os.utime(labels, ns=(before.st_atime_ns, before.st_mtime_ns))          # and the old mtime
    assert labels.stat().st_size == before.st_size
    second = load_fashion_mnist(tmp_path / "d", cache=tmp_path / "cache")
    np.testing.assert_array_equal(second.y_train, changed["y_train"])      # not the cached old labels
    assert not np.array_equal(second.y_train, first.y_train)
    cached = list((tmp_path / "cache").glob("*"))
    assert len(cached) == 2 and not [p for p in cached if p.name.endswith(".tmp")]
    mask = os.umask(0)
    os.umask(mask)
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o666 & ~mask for p in cached)
