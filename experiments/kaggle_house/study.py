"""The Kaggle house-price study (D2L §5.7; Chinese edition §4.10), with d2l's bugs fixed: what ``main.py`` and
``answers.py`` compute. The library parts it stands on -- the checksummed CSVs (``regjax.data.kaggle_house``), the
fitted tabular transform (``regjax.data.tabular``), k-fold splits (``regjax.data.kfold``) and cross-validation
with the closed-form ridge (``regjax.selection``) -- are general; what is the study's own is here.

* Features come from a transform *fitted per fold on that fold's training rows* (``regjax.data.tabular``), then
  applied to its validation rows and to the test rows; folds are stacked in one column layout (the union of
  their features; a column a fold never saw is zero in all of that fold's rows, exactly as if absent), so
  folds × configurations × seeds train as ONE sweep. ``leaky=True`` reproduces d2l: one transform fitted on
  every training *and* test row.
* The score is Kaggle's: log RMSE = sqrt(mean((log clip(ŷ, 1) − log y)²)) on prices, with d2l's clip. Beside it,
  ``half_mse_log`` is the number d2l-en's JAX/MXNet code prints as "log mse" (the mean ½·squared error of log
  prices, i.e. log RMSE² / 2 when nothing is clipped; the PyTorch tab's ``MSELoss`` prints the full MSE).
* ``target='log'`` trains on log prices (the English edition); ``'raw'`` on prices with MSE (the Chinese
  edition's code, which only evaluates in log space).
* Each fold's *own* parameters predict the test set (d2l-en's JAX tab applies the last fold's
  ``trainer.state.params`` for every fold's model, so its "ensemble" is one model five times); the ensemble
  price is the mean of the members' prices (exp of their log predictions).
* The run: the CSVs with the runner's refusal policy (no data or a corrupt file: one message, exit 2, nothing
  trained), the model and optimizer that ``--model`` / ``--optimizer`` name, and ``cross_validate_house``:
  features fitted per fold -> one checkpointed sweep over folds × configurations × seeds.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from regjax.base import Model, PRNGKey
from regjax.data import DataUnavailableError, HouseData, load_kaggle_house
from regjax.data.kfold import equal_folds
from regjax.data.tabular import fit_tabular
from regjax.models.adapters import scratch_linreg, scratch_mlp
from regjax.optim import adam_l2, decayed_sgd
from regjax.report import write_bytes_atomic
from regjax.runner import fail
from regjax.selection import CrossValidation, cross_validate, ridge_closed_form

__all__ = ["TARGETS", "log_rmse", "output_log_rmse", "half_mse_log", "HouseFolds", "house_folds", "all_rows",
           "targets", "to_prices", "predict_prices", "member_log_rmse", "fold_ensemble", "write_submission", "ridge_cv",
           "missing_not_at_random", "load_house", "house_model", "house_optimizer", "axes_of", "cross_validate_house",
           "best_line"]

TARGETS = ("log", "raw")


def log_rmse(predicted: Any, price: Any) -> Any:
    """Kaggle's score: ``sqrt(mean((log max(ŷ, 1) − log y)²))`` over the last axis (predictions below 1 are
    clipped to 1, as d2l does, so a negative prediction costs ``log y`` instead of a NaN)."""
    predicted, price = jnp.asarray(predicted), jnp.asarray(price)
    return jnp.sqrt(jnp.mean(jnp.square(jnp.log(jnp.maximum(predicted, 1.0)) - jnp.log(price)), axis=-1))


def half_mse_log(predicted: Any, price: Any) -> Any:
    """The mean ½·squared error of log prices (clipped like ``log_rmse``): what d2l-en prints as "log mse"."""
    return 0.5 * jnp.square(log_rmse(predicted, price))


def targets(price: Any, target: str) -> np.ndarray:
    """float32 training targets: log prices (``'log'``) or prices (``'raw'``)."""
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    price = np.asarray(price, np.float64)
    return (np.log(price) if target == "log" else price).astype(np.float32)


def output_log_rmse(outputs: Any, price: Any, target: str) -> Any:
    """``log_rmse`` of model outputs: for log targets computed in log space (``log max(exp(o), 1) = max(o, 0)``),
    so a wild model scores a large finite number instead of overflowing ``exp`` to an infinite price."""
    if target == "raw":
        return log_rmse(outputs, price)
    price = jnp.asarray(price)
    return jnp.sqrt(jnp.mean(jnp.square(jnp.maximum(outputs, 0.0) - jnp.log(price)), axis=-1))


def to_prices(outputs: Any, target: str) -> Any:
    """Model outputs back to prices: ``exp`` for log targets."""
    return jnp.exp(outputs) if target == "log" else outputs


@dataclasses.dataclass(frozen=True)
class HouseFolds:
    """k folds of the training table, each with features fitted on its own training rows: ``data`` =
    ``(x_train, y_train, x_val, y_val)`` stacked per fold (for ``regjax.selection.cross_validate``),
    ``x_test`` (k, n_test, d) the test rows through each fold's transform, ``price_val`` (k, n_val) the
    validation prices, ``folds`` (k, n // k) the validation row indices."""

    data: tuple
    x_test: np.ndarray
    price_val: np.ndarray
    folds: np.ndarray
    feature_names: list


def _fit_rows(train: Any, test: Any, rows: Any, leaky: bool) -> Any:
    import pandas as pd

    return pd.concat([train.drop(columns="SalePrice"), test]) if leaky else rows


def house_folds(train: Any, test: Any, k: int, key: PRNGKey, *, leaky: bool = False, standardize: bool = True,
                missing: str = "mean", target: str = "log") -> HouseFolds:
    """Cut the training rows into k equal folds (``regjax.data.kfold.equal_folds``; the ``n mod k`` rows left
    over take no part) and build every fold's features (module docstring)."""
    folds = equal_folds(len(train), k, key)
    price = train["SalePrice"].to_numpy(np.float64)
    parts, names = [], {}
    for i, val in enumerate(folds):
        rows = train.iloc[np.sort(np.concatenate([f for j, f in enumerate(folds) if j != i]))]  # as fold_data
        transform = fit_tabular(_fit_rows(train, test, rows, leaky), standardize=standardize, missing=missing)
        parts.append((transform, rows, train.iloc[val]))
        names.update(dict.fromkeys(transform.feature_names))     # the union, in first-seen order
    names = list(names)
    x_tr = np.stack([t.apply(rows, names) for t, rows, _ in parts])
    x_val = np.stack([t.apply(val_rows, names) for t, _, val_rows in parts])
    x_test = np.stack([t.apply(test, names) for t, _, _ in parts])
    y_tr = np.stack([targets(rows["SalePrice"], target) for _, rows, _ in parts])
    data = (x_tr, y_tr, x_val, targets(price[folds], target))
    return HouseFolds(data, x_test, price[folds], folds, names)


def all_rows(train: Any, test: Any, *, leaky: bool = False, standardize: bool = True, missing: str = "mean",
             target: str = "log") -> tuple:
    """``(x, y, x_test, feature_names)``: every training row, the transform fitted on them (or, ``leaky``, on
    them and the test rows) -- the Chinese edition's final model trains on this."""
    transform = fit_tabular(_fit_rows(train, test, train, leaky), standardize=standardize, missing=missing)
    return (transform.apply(train), targets(train["SalePrice"], target), transform.apply(test),
            transform.feature_names)


def predict_prices(model: Model, params: Any, x: Any, target: str, model_state: Any = None) -> np.ndarray:
    """Prices predicted by one model (eval mode) for rows ``x`` (n, d) -> (n,)."""
    out, _ = model.apply(params, {} if model_state is None else model_state, jnp.asarray(x), train=False)
    return np.asarray(to_prices(jnp.reshape(out, (-1,)), target), np.float64)


def member_log_rmse(model: Model, result: Any, folds: HouseFolds, target: str) -> np.ndarray:
    """(N,) each sweep member's log RMSE on its own fold's validation rows with its own final parameters (NaN for
    a diverged member)."""
    index = np.asarray(result.members.data_index)

    def one(params, ms, x, price):
        out, _ = model.apply(params, ms, x, train=False)
        return output_log_rmse(jnp.reshape(out, (-1,)), price, target)

    x_val, price = jnp.asarray(folds.data[2])[index], jnp.asarray(folds.price_val)[index]
    scores = np.asarray(jax.jit(jax.vmap(one))(result.state.params, result.state.model_state, x_val, price))
    dead = np.asarray([s != "completed" for s in result.history.member_status()])
    return np.where(dead, np.nan, scores.astype(np.float64))


def fold_ensemble(model: Model, cv: Any, folds: HouseFolds, config: int, target: str) -> dict:
    """The fold ensemble at configuration ``config`` of a ``regjax.selection.CrossValidation``: each fold's own
    models (k × seeds members) predict the test rows through *their fold's* features; ``mean_prices`` is the
    mean of their prices. ``prices`` (models, n_test) holds each model's; ``distinct_parameter_sets`` counts the
    different parameter sets used (k × seeds, not d2l-en JAX's one)."""
    members = cv.members_of(config).reshape(-1)
    fold_of = np.asarray(cv.result.members.data_index)
    state = cv.result.state
    take = lambda tree, m: jax.tree_util.tree_map(lambda a: a[m], tree)  # noqa: E731
    prices = np.stack([predict_prices(model, take(state.params, m), folds.x_test[fold_of[m]], target,
                                      take(state.model_state, m)) for m in members])
    distinct = {b"".join(np.asarray(leaf).tobytes() for leaf in jax.tree_util.tree_leaves(take(state.params, m)))
                for m in members}
    return {"prices": prices, "mean_prices": prices.mean(axis=0), "models": len(members),
            "distinct_parameter_sets": len(distinct), "members": members.tolist(),
            "folds": fold_of[members].tolist()}


def write_submission(path: Any, ids: Sequence[int], prices: Any) -> Path:
    """``Id,SalePrice`` for every test row, written atomically; refuses non-finite or non-positive prices."""
    prices = np.asarray(prices, np.float64)
    if prices.shape != (len(ids),) or not (np.isfinite(prices) & (prices > 0)).all():
        raise ValueError(f"a submission needs one positive finite price per test row ({len(ids)}); got "
                         f"shape {prices.shape} with {int((~np.isfinite(prices)).sum())} non-finite values")
    text = io.StringIO()
    text.write("Id,SalePrice\n")
    for i, p in zip(ids, prices):
        text.write(f"{int(i)},{p:.6f}\n")
    return write_bytes_atomic(path, text.getvalue().encode())


def ridge_cv(folds: HouseFolds, lambdas: Sequence[float], target: str = "log") -> np.ndarray:
    """(k, L) validation log RMSE of the closed-form ridge (``regjax.selection.ridge_closed_form``: the exact
    minimizer of the objective the linear model trains with ``weight_decay`` λ, bias unpenalized) per fold.
    λ = 0 gives NaN: the one-hot blocks are collinear, so unregularized least squares has no unique solution."""
    x_tr, y_tr, x_val, _ = folds.data
    out = np.full((len(x_tr), len(lambdas)), np.nan)
    for i in range(len(x_tr)):
        for j, lam in enumerate(lambdas):
            if lam <= 0:
                continue
            w, b = ridge_closed_form(x_tr[i], y_tr[i], float(lam))
            out[i, j] = float(output_log_rmse(jnp.asarray(x_val[i] @ w + b), folds.price_val[i], target))
    return out


def missing_not_at_random(frame: Any, column: str, fraction: float, key: PRNGKey, *, at_random: bool = False) -> Any:
    """A copy of ``frame`` with ``fraction`` of ``column``'s values removed: the largest ones (missing *not* at
    random: the value decides whether it is missing) or, ``at_random``, a uniformly drawn subset of the same
    size (missing completely at random) -- D2L §5.7 exercise 2."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must lie in (0, 1), got {fraction}")
    values = frame[column].to_numpy(np.float64)
    n = int(round(fraction * len(values)))
    order = (np.asarray(jax.random.permutation(key, len(values))) if at_random
             else np.argsort(-np.nan_to_num(values, nan=-np.inf), kind="stable"))
    out = frame.copy()
    out.loc[out.index[order[:n]], column] = np.nan
    return out


def load_house(run: Any) -> HouseData:
    """The two CSVs for ``run`` (``--data-dir`` / ``$REGJAX_KAGGLE_DIR`` / cache / download), recorded as the
    run's dataset; files that are not the registered ones get a one-line warning and ``sha1_verified: false``."""
    try:
        data = load_kaggle_house(run.args.data_dir)
    except (DataUnavailableError, FileNotFoundError, ValueError) as err:
        fail(2, f"error: {err}")
    if not data.verified:
        differ = [s for s, f in data.files.items() if not f["sha1_verified"]]
        print(f"WARNING: the {' and '.join(differ)} CSV in {data.source.split(':', 1)[1]} differ from d2l's registered "
              f"SHA-1s; results name the data 'house_csv' and record it as unverified", file=sys.stderr, flush=True)
    k = run.args.k
    if k > len(data.train) // 2:
        run.error(f"--k {k} leaves fewer than 2 rows per fold of the {len(data.train)} training rows")
    summary = data.summary()
    run.set_dataset(summary, n_train=(len(data.train) // k) * (k - 1))
    return data


def house_model(args: argparse.Namespace, num_inputs: int) -> Model:
    """D2L's linear regression, or an MLP (ReLU, He init, one output) whose dropout rates the sweep may vary."""
    if args.model == "linear":
        return scratch_linreg(num_inputs)
    return scratch_mlp(num_inputs, tuple(args.hidden), 1, rates=(0.0,) * len(args.hidden), weight_init="he")


def house_optimizer(args: argparse.Namespace) -> Any:
    """Adam + L2 (``torch.optim.Adam(weight_decay=λ)``, the Chinese edition) or SGD with weight decay; both
    take ``lr`` and ``weight_decay`` as (sweepable) hyperparameters and decay the weights only."""
    return (adam_l2 if args.optimizer == "adam" else decayed_sgd)(args.lrs[0], 0.0)


def axes_of(args: argparse.Namespace, lrs: Optional[list] = None, weight_decays: Optional[list] = None) -> dict:
    """The grid to cross-validate: weight decay × learning rate (× dropout rate for the MLP)."""
    axes = {"weight_decay": [float(v) for v in (args.weight_decays if weight_decays is None else weight_decays)],
            "lr": [float(v) for v in (args.lrs if lrs is None else lrs)]}
    if args.model == "mlp":
        axes["rates"] = [[float(r)] * len(args.hidden) for r in args.dropouts]
    return axes


def cross_validate_house(run: Any, name: str, train: Any, test: Any, axes: dict, *, model_args: Any = None,
                         leaky: bool = False, standardize: bool = True, missing: str = "mean",
                         target: str = "log") -> tuple:
    """``(CrossValidation, HouseFolds, model)``: the features of every fold (fitted on its training rows), then
    folds × ``axes`` × ``--seeds`` as the checkpointed sweep ``name``, each member scored by its own fold's
    validation log RMSE."""
    args = model_args or run.args
    folds: HouseFolds = house_folds(train, test, args.k, jax.random.key(args.seed), leaky=leaky,
                                    standardize=standardize, missing=missing, target=target)
    model = house_model(args, folds.data[0].shape[-1])
    seeds = list(range(args.seed, args.seed + args.seeds))
    cv: CrossValidation = cross_validate(
        model, house_optimizer(args), folds.data, axes, epochs=args.epochs, batch_size=args.batch_size,
        seeds=seeds, simplest="weight_decay", loss="squared", metric="log_rmse",
        score=lambda result: member_log_rmse(model, result, folds, target),
        train=functools.partial(run.sweep, name, progress_every=max(1, args.epochs // 5)))
    return cv, folds, model


def best_line(cv: CrossValidation) -> str:
    """'0.1521 ± 0.0312 (weight_decay 0.001, lr 0.01)': the best configuration's figure."""
    i = cv.best
    return f"{cv.mean[i]:.4f} ± {cv.std[i]:.4f} ({', '.join(f'{k} {v}' for k, v in cv.configs[i].items())})"
