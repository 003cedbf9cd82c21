"""The hand-checkable helpers of the §3.6 and §4.1-4.4 exercise answers (experiments/exercise_answers/)."""
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))

from exercise_answers import s3_6, s4_3, s4_4  # noqa: E402

from regjax.losses import softmax_cross_entropy  # noqa: E402


def test_exact_validation_loss_from_quick_estimate():
    rng = np.random.default_rng(0)
    losses = rng.exponential(size=450)
    for b in (32, 50, 64, 256, 449, 450):
        l_q, l_last = s4_3.quick_and_dirty(losses, b)
        assert np.isclose(s4_3.exact_from_quick(l_q, l_last, len(losses), b), losses.mean(), rtol=1e-12)
    # by hand: losses [1, 1, 4] in batches of 2: batch means 1 and 4, L_q = 2.5, L_v = 2
    l_q, l_last = s4_3.quick_and_dirty(np.array([1.0, 1.0, 4.0]), 2)
    assert (l_q, l_last) == (2.5, 4.0)
    assert s4_3.exact_from_quick(l_q, l_last, 3, 2) == 2.0


def test_onehot_cross_entropy_equals_indexed():
    logits = jax.random.normal(jax.random.key(0), (8, 5)) * 3
    labels = jnp.arange(8) % 5
    np.testing.assert_allclose(s4_4.onehot_cross_entropy(logits, labels), softmax_cross_entropy(logits, labels),
                               rtol=1e-5, atol=1e-6)


def test_vandermonde_exact_iff_few_points():
    for d, _, n, exact, residual, residual_clean, *_ in s3_6._vandermonde_rows(0):
        if d == 3:
            assert (residual < 1e-20) == (exact == "yes")
            assert residual_clean < 1e-20
