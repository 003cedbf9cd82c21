"""Shared test configuration.

* ``x64``: a fixture running a test in float64 (exactness tests).
* Eager-vs-jit coverage uses ``chex.variants(with_jit=True, without_jit=True)`` on ``chex.TestCase`` classes
  (each test runs once with its function under ``jax.jit`` and once without).
* Hypothesis runs under the ``regjax`` profile: derandomized (the same examples on every run and machine),
  no example database, no deadline (the first call of a shape compiles). For a wider local search run
  ``pytest --hypothesis-profile=regjax-thorough``.
"""
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


@pytest.fixture
def x64():
    """Run a test in float64 (exactness tests); restores float32 afterwards."""
    with jax.enable_x64(True):
        yield
