"""The house-price experiment's runner pieces (D2L §5.7): the CSVs with the runner's refusal policy (no data or
a corrupt file: one message, exit 2, nothing trained), the model and optimizer that ``--model`` /
``--optimizer`` name, and ``cross_validate_house``: features fitted per fold -> one checkpointed sweep over
folds × configurations × seeds, scored by Kaggle's log RMSE."""
from __future__ import annotations

import argparse
import functools
import sys
from typing import Any, Optional

import jax

from regjax.base import Model
from regjax.data.fashion_mnist import DataUnavailableError
from regjax.data.kaggle_house import HouseData, load_kaggle_house
from regjax.house import HouseFolds, house_folds, member_log_rmse
from regjax.runner.images import fail
from regjax.selection import CrossValidation, cross_validate

__all__ = ["load_house", "build_model", "build_optimizer", "axes_of", "cross_validate_house", "best_line"]


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


def build_model(args: argparse.Namespace, num_inputs: int) -> Model:
    """D2L's linear regression, or an MLP (ReLU, He init, one output) whose dropout rates the sweep may vary."""
    from regjax.models.adapters import scratch_linreg, scratch_mlp

    if args.model == "linear":
        return scratch_linreg(num_inputs)
    return scratch_mlp(num_inputs, tuple(args.hidden), 1, rates=(0.0,) * len(args.hidden), weight_init="he")


def build_optimizer(args: argparse.Namespace) -> Any:
    """Adam + L2 (``torch.optim.Adam(weight_decay=λ)``, the Chinese edition) or SGD with weight decay; both
    take ``lr`` and ``weight_decay`` as (sweepable) hyperparameters and decay the weights only."""
    from regjax.optim import adam_l2, decayed_sgd

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
    model = build_model(args, folds.data[0].shape[-1])
    seeds = list(range(args.seed, args.seed + args.seeds))
    cv: CrossValidation = cross_validate(
        model, build_optimizer(args), folds.data, axes, epochs=args.epochs, batch_size=args.batch_size,
        seeds=seeds, simplest="weight_decay", loss="squared", metric="log_rmse",
        score=lambda result: member_log_rmse(model, result, folds, target),
        train=functools.partial(run.sweep, name, progress_every=max(1, args.epochs // 5)))
    return cv, folds, model


def best_line(cv: CrossValidation) -> str:
    """'0.1521 ± 0.0312 (weight_decay 0.001, lr 0.01)': the best configuration's figure."""
    i = cv.best
    return f"{cv.mean[i]:.4f} ± {cv.std[i]:.4f} ({', '.join(f'{k} {v}' for k, v in cv.configs[i].items())})"
