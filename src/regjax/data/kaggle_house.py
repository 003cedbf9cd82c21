"""The Kaggle house-price data (D2L §5.7; Chinese edition §4.10): two CSVs, read with pandas, offline-safe.

Files: ``kaggle_house_pred_train.csv`` (1,460 rows, 81 columns: ``Id``, 79 features, ``SalePrice``) and
``kaggle_house_pred_test.csv`` (1,459 rows, 80 columns), as d2l names them; Kaggle's own ``train.csv`` /
``test.csv`` are accepted too. Sources, in order:

a. ``data_dir`` (or ``$REGJAX_KAGGLE_DIR``): the only source tried when given (a wrong folder is an error, not a
   silent download). Files whose SHA-1 differs from the one d2l's ``DATA_HUB`` registers are used with
   ``verified=False`` (the runner prints a one-line warning and results record it);
b. the cache (``<cache dir>/kaggle_house/``), holding verified files only;
c. a download from d2l's ``DATA_URL``, checked against the registered SHA-1s, with a short timeout: offline the
   call fails in seconds with one error that lists every way to provide the data.

A file that is not a house-price CSV -- unparsable, truncated (a row with fewer fields than the header), no
``Id``/``SalePrice``, non-positive prices, the test file's columns not the training file's minus ``SalePrice``
-- raises ``ValueError`` naming the file.
"""
from __future__ import annotations

import csv
import dataclasses
import http.client
import os
import time
import urllib.error
from pathlib import Path
from typing import Any, Optional

import numpy as np

from regjax.data.download import fetch_verified, file_digest
from regjax.data.fashion_mnist import DataUnavailableError, cache_dir

__all__ = ["HouseData", "load_kaggle_house", "read_house_csv", "find_house_files", "HOUSE_FILES", "DATA_URL"]

DATA_URL = "http://d2l-data.s3-accelerate.amazonaws.com/"
# split -> (d2l's file name, Kaggle's file name, the SHA-1 d2l's DATA_HUB registers)
HOUSE_FILES = {"train": ("kaggle_house_pred_train.csv", "train.csv", "585e9cc93e70b39160e7921475f9bcd7d31219ce"),
               "test": ("kaggle_house_pred_test.csv", "test.csv", "fa19780a7b011d9b009e8bff8e99922a8ee2eb90")}
ENV_VAR = "REGJAX_KAGGLE_DIR"
# Overridable (tests point it at a closed local port).
DOWNLOAD_BASE_URL: Optional[str] = None
CONNECT_TIMEOUT_S = 5.0


@dataclasses.dataclass(frozen=True)
class HouseData:
    """The two tables (pandas DataFrames) and where they came from: ``files[split]`` has the path, its SHA-1 and
    whether that is the registered one."""

    train: Any
    test: Any
    source: str
    files: dict

    @property
    def verified(self) -> bool:
        return all(f["sha1_verified"] for f in self.files.values())

    def summary(self) -> dict:
        return {"name": "kaggle_house" if self.verified else "house_csv", "source": self.source,
                "n_train": int(len(self.train)), "n_test": int(len(self.test)),
                "columns": int(self.train.shape[1]), "sha1_verified": self.verified,
                "csv_sha1": "+".join(self.files[s]["sha1"] for s in ("train", "test")),
                "files": {k: {"path": str(v["path"]), "sha1": v["sha1"], "sha1_verified": v["sha1_verified"]}
                          for k, v in self.files.items()}}


def find_house_files(root: Any) -> Optional[dict]:
    """``{'train': path, 'test': path}`` under ``root`` by d2l's names, else Kaggle's; ``None`` if absent."""
    root = Path(root)
    for index in (0, 1):
        paths = {split: root / names[index] for split, names in HOUSE_FILES.items()}
        if all(p.is_file() for p in paths.values()):
            return paths
    return None


def _check_rows(path: Path) -> None:
    """Every row must have the header's number of fields: pandas would fill a truncated row with NaNs."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header:
            raise ValueError(f"{path}: empty file, not a house-price CSV")
        for row in reader:
            if row and len(row) != len(header):
                raise ValueError(f"{path}: line {reader.line_num} has {len(row)} fields, the header {len(header)} "
                                 f"(truncated or corrupt file)")


def read_house_csv(path: Any, split: str) -> Any:
    """One house-price CSV as a DataFrame (``split``: 'train' needs ``SalePrice``, 'test' must not have it);
    ``ValueError`` naming the file for anything that is not such a table."""
    import pandas as pd  # lazy: only the house-price study needs pandas

    path = Path(path)
    if split not in HOUSE_FILES:
        raise ValueError(f"split must be one of {tuple(HOUSE_FILES)}, got {split!r}")
    try:
        _check_rows(path)
        frame = pd.read_csv(path)
    except (UnicodeDecodeError, csv.Error, pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise ValueError(f"{path}: not a readable CSV ({type(err).__name__}: {str(err).splitlines()[0]})") from None
    need = {"Id"} | ({"SalePrice"} if split == "train" else set())
    if not need <= set(frame.columns) or len(frame) < 2:
        raise ValueError(f"{path}: a house-price {split} CSV needs the columns {sorted(need)} and at least 2 rows; "
                         f"got {len(frame)} rows with columns {list(frame.columns)[:5]}...")
    if split == "test" and "SalePrice" in frame.columns:
        raise ValueError(f"{path}: the test file must not hold SalePrice (is it the training file?)")
    if frame["Id"].isna().any() or frame["Id"].duplicated().any():
        raise ValueError(f"{path}: Id must be present and unique in every row")
    if split == "train":
        price = pd.to_numeric(frame["SalePrice"], errors="coerce").to_numpy(np.float64)
        if not (np.isfinite(price) & (price > 0)).all():
            raise ValueError(f"{path}: SalePrice must be a positive number in every row (log prices)")
    return frame


def _guide(reasons: list) -> str:
    names = " and ".join(n[0] for n in HOUSE_FILES.values())
    return ("The Kaggle house-price data is not available. Tried:\n  - " + "\n  - ".join(reasons) + "\n"
            "Provide it in one of two ways:\n"
            f"  1. download {names} (d2l's copies; or train.csv and test.csv from\n"
            "     https://www.kaggle.com/c/house-prices-advanced-regression-techniques/data) into a folder and\n"
            f"     pass it as --data-dir (or ${ENV_VAR});\n"
            f"  2. run once with network access: the files are fetched from {DATA_URL}, checked against d2l's\n"
            "     SHA-1s and cached.")


def _record(paths: dict) -> dict:
    out = {}
    for split, path in paths.items():
        sha1 = file_digest(path, "sha1")
        out[split] = {"path": path, "sha1": sha1, "sha1_verified": sha1 == HOUSE_FILES[split][2]}
    return out


def _download(cache: Path, timeout: float) -> dict:
    base = (DOWNLOAD_BASE_URL or DATA_URL).rstrip("/") + "/"
    return {split: fetch_verified(base + name, cache / name, algorithm="sha1", digest=sha1, timeout=timeout)
            for split, (name, _, sha1) in HOUSE_FILES.items()}


def load_kaggle_house(data_dir: Any = None, *, download: bool = True, cache: Any = None,
                      timeout: Optional[float] = None) -> HouseData:
    """Load the two house-price CSVs (sources and checks: the module docstring).

    Raises ``FileNotFoundError`` when ``data_dir`` lacks the files, ``ValueError`` for a corrupt file (named) or
    a download that fails its checksum, and ``DataUnavailableError`` (with the ways to provide the data) when no
    source worked."""
    data_dir = data_dir if data_dir is not None else os.environ.get(ENV_VAR) or None
    cache = (Path(cache) if cache is not None else cache_dir()) / "kaggle_house"
    records = None
    if data_dir is not None:
        paths = find_house_files(Path(data_dir).expanduser())
        if paths is None:
            d2l, kaggle = ([n[i] for n in HOUSE_FILES.values()] for i in (0, 1))
            raise FileNotFoundError(f"data_dir {data_dir} holds neither {' + '.join(d2l)} nor {' + '.join(kaggle)}")
        source = f"dir:{data_dir}"
    else:
        paths = find_house_files(cache)
        source = f"cache:{cache}"
        records = None if paths is None else _record(paths)
        if records is None or not all(r["sha1_verified"] for r in records.values()):
            records = None
            reasons = [f"no data_dir given and ${ENV_VAR} unset; no verified files in {cache}"]
            if not download:
                raise DataUnavailableError(_guide(reasons + ["download=False"]))
            start = time.monotonic()
            try:
                paths, source = _download(cache, CONNECT_TIMEOUT_S if timeout is None else timeout), "download"
            except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as err:
                reasons.append(f"download failed after {time.monotonic() - start:.1f}s: {err}")
                raise DataUnavailableError(_guide(reasons)) from None
    train, test = (read_house_csv(paths[s], s) for s in ("train", "test"))
    expected = [c for c in train.columns if c != "SalePrice"]
    if list(test.columns) != expected:
        raise ValueError(f"{paths['test']}: its columns are not those of {paths['train']} without SalePrice")
    return HouseData(train, test, source, records or _record(paths))
