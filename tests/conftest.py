import jax
import pytest


@pytest.fixture
def x64():
    """Run a test in float64 (exactness tests); restores float32 afterwards."""
    with jax.enable_x64(True):
        yield


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def maybe_jit(request):
    """Parametrise a test over running a function eagerly and under ``jax.jit``."""
    if request.param:
        return lambda f, **kw: jax.jit(f, **kw)
    return lambda f, **kw: f
