"""What several test modules share: loading an experiment as a module, and the environment of child processes."""
import importlib.util
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_experiment(name):
    """``experiments/<name>.py`` as a module (``load_experiment('dropout_mlp').main(argv)``,
    ``load_experiment('kaggle_house/main')``)."""
    spec = importlib.util.spec_from_file_location(f"exp_{name.replace('/', '_')}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def child_env(tmp_path, devices=None, **extra):
    """A minimal, offline environment for a child Python: CPU only, unbuffered output, its own regjax cache, the
    session's JAX compilation cache (see conftest), this checkout's package and its tests and benchmarks importable, and ``devices`` virtual CPU
    devices when given."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "JAX_PLATFORMS": "cpu", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)]), "REGJAX_CACHE_DIR": str(tmp_path / "cache")}
    for name in ("JAX_COMPILATION_CACHE_DIR", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"):
        if name in os.environ:
            env[name] = os.environ[name]
    if devices is not None:
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={devices}"
    return {**env, **extra}


# The Kaggle house-price files' real header (81 columns) and which of them are text.
HOUSE_HEADER = (
    "Id,MSSubClass,MSZoning,LotFrontage,LotArea,Street,Alley,LotShape,LandContour,Utilities,LotConfig,LandSlope,"
    "Neighborhood,Condition1,Condition2,BldgType,HouseStyle,OverallQual,OverallCond,YearBuilt,YearRemodAdd,RoofStyle,"
    "RoofMatl,Exterior1st,Exterior2nd,MasVnrType,MasVnrArea,ExterQual,ExterCond,Foundation,BsmtQual,BsmtCond,"
    "BsmtExposure,BsmtFinType1,BsmtFinSF1,BsmtFinType2,BsmtFinSF2,BsmtUnfSF,TotalBsmtSF,Heating,HeatingQC,CentralAir,"
    "Electrical,1stFlrSF,2ndFlrSF,LowQualFinSF,GrLivArea,BsmtFullBath,BsmtHalfBath,FullBath,HalfBath,BedroomAbvGr,"
    "KitchenAbvGr,KitchenQual,TotRmsAbvGrd,Functional,Fireplaces,FireplaceQu,GarageType,GarageYrBlt,GarageFinish,"
    "GarageCars,GarageArea,GarageQual,GarageCond,PavedDrive,WoodDeckSF,OpenPorchSF,EnclosedPorch,3SsnPorch,"
    "ScreenPorch,PoolArea,PoolQC,Fence,MiscFeature,MiscVal,MoSold,YrSold,SaleType,SaleCondition,SalePrice"
).split(",")
HOUSE_TEXT = set(
    "MSZoning Street Alley LotShape LandContour Utilities LotConfig LandSlope Neighborhood Condition1 Condition2 "
    "BldgType HouseStyle RoofStyle RoofMatl Exterior1st Exterior2nd MasVnrType ExterQual ExterCond Foundation "
    "BsmtQual BsmtCond BsmtExposure BsmtFinType1 BsmtFinType2 Heating HeatingQC CentralAir Electrical KitchenQual "
    "Functional FireplaceQu GarageType GarageFinish GarageQual GarageCond PavedDrive PoolQC Fence MiscFeature "
    "SaleType SaleCondition".split())


def house_frames(n_train=60, n_test=40, seed=0):
    """Two DataFrames with the real layout: numeric and text columns, NaNs in both, a category ('Mars') that only
    the test rows have, Ids 1.. and 1461-style test Ids, SalePrice = exp(a linear function of a few features)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_train + n_test
    columns = {}
    for name in HOUSE_HEADER[1:-1]:
        if name in HOUSE_TEXT:
            values = rng.choice(["A", "B", "C"], n).astype(object)
        else:
            values = rng.integers(0, 100, n).astype(float)
        values[rng.random(n) < 0.05] = np.nan
        columns[name] = values
    columns["MSZoning"][0], columns["LotFrontage"][1] = np.nan, np.nan    # NaNs in training rows, always
    columns["GrLivArea"] = rng.uniform(500, 3000, n).round()
    columns["Neighborhood"] = rng.choice(["North", "South"], n).astype(object)
    columns["Neighborhood"][n_train + 1] = "Mars"                     # only in the test rows
    frame = pd.DataFrame(columns)
    log_price = 11 + 0.0005 * frame["GrLivArea"] + 0.3 * (frame["Neighborhood"] == "North") + rng.normal(0, .05, n)
    train = frame.iloc[:n_train].copy()
    train.insert(0, "Id", np.arange(1, n_train + 1))
    train["SalePrice"] = np.exp(log_price[:n_train]).round()
    test = frame.iloc[n_train:].copy()
    test.insert(0, "Id", np.arange(1461, 1461 + n_test))
    return train, test


def write_house_csvs(folder, n_train=60, n_test=40, seed=0, kaggle_names=False):
    """``house_frames`` written as d2l's (or Kaggle's) two CSV files in ``folder``; returns their paths."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    train, test = house_frames(n_train, n_test, seed)
    names = ("train.csv", "test.csv") if kaggle_names else ("kaggle_house_pred_train.csv",
                                                            "kaggle_house_pred_test.csv")
    paths = folder / names[0], folder / names[1]
    train.to_csv(paths[0], index=False)
    test.to_csv(paths[1], index=False)
    return paths
