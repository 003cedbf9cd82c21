"""Shared test configuration.

* One persistent JAX compilation cache for the whole session (a temporary folder): tests that build the same
  program -- the same model and shapes, built anew in each test -- compile it once. Child processes started with
  ``tests.helpers.child_env`` (or a copy of ``os.environ``) use it too. Results are unaffected: a cache hit runs
  the very executable a compilation would produce.
* Every test has its own regjax data cache (``$REGJAX_CACHE_DIR`` in its ``tmp_path``) and no
  ``$REGJAX_DATA_DIR``.
* ``x64``: a fixture running a test in float64 (exactness tests).
* Eager-vs-jit coverage uses ``chex.variants(with_jit=True, without_jit=True)`` on ``chex.TestCase`` classes
  (each test runs once with its function under ``jax.jit`` and once without).
* Hypothesis runs under the ``regjax`` profile: derandomized (the same examples on every run and machine),
  no example database, no deadline (the first call of a shape compiles). For a wider local search run
  ``pytest --hypothesis-profile=regjax-thorough``.
"""
import os
import tempfile

import jax
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "regjax",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=30,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "regjax-thorough", settings.get_profile("regjax"), derandomize=False, max_examples=500
)
settings.load_profile("regjax")

_CACHE = tempfile.TemporaryDirectory(prefix="regjax-test-jax-cache-")
os.environ["JAX_COMPILATION_CACHE_DIR"] = _CACHE.name
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
jax.config.update("jax_compilation_cache_dir", _CACHE.name)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)


# The longest files first: with two workers taking whole files (--dist loadfile), starting the long ones early
# keeps one worker from finishing alone with a long file at the end.
LONG_FIRST = ("test_parallel.py", "test_benchmarks.py", "test_cli.py", "test_sweep.py", "test_experiments.py",
              "test_train.py", "test_house.py", "test_models_options.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))


@pytest.fixture(autouse=True)
def _offline_cache(tmp_path, monkeypatch):
    """Every test gets its own regjax data cache and no $REGJAX_DATA_DIR / $REGJAX_KAGGLE_DIR: nothing a user has
    leaks in."""
    monkeypatch.setenv("REGJAX_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("REGJAX_DATA_DIR", raising=False)
    monkeypatch.delenv("REGJAX_KAGGLE_DIR", raising=False)


@pytest.fixture
def x64():
    """Run a test in float64 (exactness tests); restores float32 afterwards."""
    with jax.enable_x64(True):
        yield
