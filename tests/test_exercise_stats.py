"""The statistics the exercise answers share (experiments/exercise_answers/common.py: sample std, mean ± std over
seeds without the diverged members, the paired difference and its verdict) and the search strategies replayed on
per-epoch curves (search.py), against hand-computed values."""
import math

import numpy as np
import pytest

from exercise_answers.common import paired, sample_std, seed_stats, signed
from exercise_answers.search import grid_best, random_search, successive_halving


def test_sample_std_by_hand_and_with_one_value():
    # [1, 2, 3, 4]: squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, over n - 1 = 3
    assert sample_std([1.0, 2.0, 3.0, 4.0]) == pytest.approx(math.sqrt(5 / 3))
    np.testing.assert_allclose(sample_std([[1.0, 2.0], [3.0, 5.0]], 0), [math.sqrt(2), math.sqrt(4.5)])
    assert sample_std([0.7]) == 0.0                                  # one seed: no spread seen
    assert math.isnan(sample_std([0.7], single=math.nan))
    assert sample_std([[1.0], [2.0]], 1, single=None) is None        # one seed per row: no band
    np.testing.assert_array_equal(sample_std([[1.0], [2.0]], 1), [0.0, 0.0])


def test_seed_stats_leaves_out_and_counts_diverged_members():
    s = seed_stats([0.9, 0.8, np.nan, 1.0, np.inf])
    assert s.mean == pytest.approx(0.9) and s.std == pytest.approx(0.1) and s.diverged == 2
    assert str(s) == "0.9000 ± 0.1000 (2 diverged)"
    assert tuple(seed_stats([0.25])) == (0.25, 0.0, 0) and str(seed_stats([0.25])) == "0.2500 ± 0.0000"
    gone = seed_stats([np.nan, np.nan])
    assert math.isnan(gone.mean) and math.isnan(gone.std) and gone.diverged == 2


def test_paired_difference_by_hand():
    # per-seed differences 0.1, 0.05, 0.15: mean 0.1, std 0.05, standard error 0.05/√3 = 0.0289 < 0.1 / 2
    p = paired([0.9, 0.8, 0.7], [0.8, 0.75, 0.55])
    assert p["mean"] == pytest.approx(0.1) and p["std"] == pytest.approx(0.05) and p["n"] == 3
    assert p["se"] == pytest.approx(0.05 / math.sqrt(3)) and p["beyond"] is True
    assert signed(p) == "+0.1000 ± 0.0289" and signed(p, "std") == "+0.1000 ± 0.0500"
    assert paired([0.1, 0.05, 0.15])["mean"] == pytest.approx(0.1)  # the differences themselves


def test_paired_verdict_can_fail():
    # differences 0.1, -0.05, 0.1: mean 0.05, std √0.0075 = 0.0866, se 0.05: 0.05 is not beyond 2 se = 0.1
    p = paired([0.1, -0.05, 0.1])
    assert p["mean"] == pytest.approx(0.05) and p["se"] == pytest.approx(0.05)
    assert p["beyond"] is False
    assert signed(paired([-0.3, -0.31]), "se") == "-0.3050 ± 0.0050" and paired([-0.3, -0.31])["beyond"]


def test_paired_one_seed_and_a_diverged_member_follow_the_callers_convention():
    one = paired([0.9], [0.8])                                       # default: one seed cannot tell
    assert one["n"] == 1 and math.isnan(one["std"]) and math.isnan(one["se"]) and one["beyond"] is False
    strict = paired([0.9], [0.8], single_std=0.0)                    # §5.2: std 0, any nonzero difference counts
    assert strict["std"] == 0.0 and strict["se"] == 0.0 and strict["beyond"] is True
    assert paired([0.8], [0.8], single_std=0.0)["beyond"] is False
    lost = paired([0.9, np.nan], [0.8, 0.7])                         # a diverged member: nothing to compare
    assert math.isnan(lost["mean"]) and math.isnan(lost["se"]) and lost["beyond"] is False
    assert paired([0.9, np.nan], [0.8, 0.7], diverged_beyond=True)["beyond"] is True
    empty = paired([])
    assert empty["n"] == 0 and math.isnan(empty["mean"]) and empty["beyond"] is False


def test_grid_best_and_successive_halving_by_hand():
    # 9 configurations x 9 epochs: configuration i scores i/10 throughout, except 0, worst for 3 epochs, then best
    curves = np.tile(np.arange(9.0)[:, None] / 10, (1, 9))
    curves[0, 3:] = 1.0
    assert grid_best(curves) == (0, 4)
    sh = successive_halving(curves, np.ones(9), eta=3)
    # rungs 1, 3, 9: 9 configurations for 1 epoch, the best 3 (8, 7, 6) to epoch 3, the best one (8) to the end
    assert sh["rungs"] == [1, 3, 9] and sh["winner"] == 8
    assert sh["epoch_fraction"] == pytest.approx((9 * 1 + 3 * 2 + 1 * 6) / 81)
    cost = np.arange(1.0, 10.0)                                      # configuration i costs i + 1 per epoch
    spent = 45 * 1 + (9 + 8 + 7) * 2 + 9 * 6                         # all, then 8, 7 and 6, then 8 alone
    assert successive_halving(curves, cost)["cost_fraction"] == pytest.approx(spent / (45 * 9))
    assert successive_halving(curves[:, :2], np.ones(9))["rungs"] == [1, 1, 2]   # short runs: repeated rungs


def test_random_search_on_flat_and_one_peak_curves():
    flat = random_search(np.ones((2, 3)), np.random.default_rng(0), trials=1, draws=50)
    assert flat["within"] == 1.0 and flat["median_found"] == 1.0 and flat["epochs"] == [1, 3]
    peak = np.zeros((10, 10))
    peak[3, 7] = 1.0  # one point of 100: 5 picks find it 1 - 0.99⁵ = 4.9% of the time
    found = random_search(peak, np.random.default_rng(0), trials=5, draws=4000)["within"]
    assert 0.03 < found < 0.07
