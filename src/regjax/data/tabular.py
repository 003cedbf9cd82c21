"""Tabular features as a *fitted* transform (D2L §5.7, "Data Preprocessing"): statistics learnt from the
training rows only, then applied unchanged to validation and test rows.

d2l standardises and one-hot encodes the training and test rows *together* (``pd.concat`` then
``get_dummies``), so the test set leaks into the features, and every cross-validation fold's validation rows
leak into its training features. Here ``fit_tabular`` sees only the rows it is given; ``TabularTransform.apply``
maps any rows with those statistics:

* numeric columns (``select_dtypes(include='number')`` -- not d2l's ``dtypes != 'object'``, which breaks on
  pandas 3, where text columns have a string dtype): a missing value becomes the training mean, then
  ``(x − mean) / std`` (pandas' sample std, ddof=1, as d2l; a constant column is divided by 1). After
  standardisation the mean is 0: d2l's ``fillna(0)``. ``standardize=False`` keeps raw values (mean-imputed).
* ``missing='indicator'`` adds a 0/1 column ``<name>_missing`` for every numeric column with a missing value in
  the training rows (the alternative to mean imputation that D2L's exercise asks about).
* text columns: one-hot over the categories seen in the training rows plus a missing-value category
  ``<name>_nan`` (d2l's ``dummy_na=True``); a category never seen in training maps to all zeros, never an error.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional, Sequence, Tuple

import numpy as np

__all__ = ["TabularTransform", "fit_tabular", "MISSING_MODES"]

MISSING_MODES = ("mean", "indicator")
NAN_CATEGORY = "nan"


@dataclasses.dataclass(frozen=True)
class TabularTransform:
    """Statistics fitted on training rows: numeric means/stds, indicator columns, category vocabularies."""

    numeric: Tuple[str, ...]
    means: Tuple[float, ...]
    stds: Tuple[float, ...]
    indicators: Tuple[str, ...]
    categories: Tuple[Tuple[str, Tuple[str, ...]], ...]   # (column, its categories seen in training)
    standardize: bool = True

    @property
    def feature_names(self) -> list:
        """The output columns in order: numeric, missing indicators, then one-hot blocks (``<col>_<value>``,
        ``<col>_nan`` last in each block)."""
        names = list(self.numeric) + [f"{c}_missing" for c in self.indicators]
        for column, values in self.categories:
            names += [f"{column}_{v}" for v in values] + [f"{column}_{NAN_CATEGORY}"]
        return names

    def apply(self, frame: Any, layout: Optional[Sequence[str]] = None) -> np.ndarray:
        """float32 features ``(len(frame), len(layout))``. ``layout`` (default ``feature_names``) orders the
        columns; a name this transform does not produce is a zero column (another fold's category)."""
        import pandas as pd  # lazy: importing regjax.data stays free of pandas

        missing = [c for c in (*self.numeric, *(c for c, _ in self.categories)) if c not in frame.columns]
        if missing:
            raise ValueError(f"frame lacks the fitted columns {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        blocks = [self._numeric(frame)]
        blocks += [frame[c].isna().to_numpy(np.float32)[:, None] for c in self.indicators]
        for column, values in self.categories:
            codes = pd.Index(list(values), dtype="string").get_indexer(frame[column].astype("string"))
            onehot = np.zeros((len(frame), len(values) + 1), np.float32)
            seen = codes >= 0
            onehot[np.flatnonzero(seen), codes[seen]] = 1.0       # unseen categories stay all-zero
            onehot[:, -1] = frame[column].isna().to_numpy(np.float32)
            blocks.append(onehot)
        features = np.concatenate(blocks, axis=1) if blocks else np.zeros((len(frame), 0), np.float32)
        names = self.feature_names
        if layout is None or list(layout) == names:
            return features
        where = {name: i for i, name in enumerate(names)}
        out = np.zeros((len(frame), len(layout)), np.float32)
        for j, name in enumerate(layout):
            if name in where:
                out[:, j] = features[:, where[name]]
        return out

    def _numeric(self, frame: Any) -> np.ndarray:
        import pandas as pd

        columns = []
        for c in self.numeric:
            try:
                columns.append(pd.to_numeric(frame[c]).to_numpy(np.float64, na_value=np.nan))
            except (ValueError, TypeError) as err:
                raise ValueError(f"column {c!r} was numeric in the fitted rows but holds non-numbers here "
                                 f"({err})") from None
        values = np.stack(columns, axis=1) if columns else np.zeros((len(frame), 0))
        means = np.asarray(self.means)
        values = np.where(np.isnan(values), means, values)
        if self.standardize:
            values = (values - means) / np.asarray(self.stds)
        return values.astype(np.float32)


def fit_tabular(frame: Any, *, exclude: Sequence[str] = ("Id", "SalePrice"), standardize: bool = True,
                missing: str = "mean") -> TabularTransform:
    """Fit the transform on ``frame``'s rows (the training rows only, for a leak-free pipeline); ``exclude``
    names columns that are not features (the id and the target). See the module docstring for the rules."""
    if missing not in MISSING_MODES:
        raise ValueError(f"missing must be one of {MISSING_MODES}, got {missing!r}")
    if len(frame) < 2:
        raise ValueError(f"fitting needs at least 2 rows, got {len(frame)}")
    features = frame.drop(columns=[c for c in exclude if c in frame.columns])
    numeric = features.select_dtypes(include="number")
    means = numeric.mean()                        # NaNs skipped; an all-NaN column has mean NaN -> 0
    stds = numeric.std(ddof=1)
    means = means.fillna(0.0)
    stds = stds.where((stds > 0) & stds.notna(), 1.0)
    indicators = tuple(c for c in numeric.columns if missing == "indicator" and numeric[c].isna().any())
    text = features.drop(columns=numeric.columns)
    categories = tuple((c, tuple(sorted(text[c].dropna().astype(str).unique()))) for c in text.columns)
    return TabularTransform(tuple(numeric.columns), tuple(float(v) for v in means), tuple(float(v) for v in stds),
                            indicators, categories, standardize)
