"""Sample efficiency (gamesim.core.efficiency): queries to reach a target, and the median's interval,
against hand-derived answers; the `mixed` game family it is measured on."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gamesim import load_game, solve
from gamesim.core.efficiency import median_interval, queries_to_reach

QUERIES = np.arange(6) * 64.0
NOISY = np.array([1.0, 0.5, 0.05, 0.2, 0.04, 0.03])
"""A sampled run's gap: below 0.1 at record 2, back above at record 3, below again from record 4 on."""


def test_sustained_target_counts_from_the_record_after_which_it_holds():
    q = queries_to_reach(QUERIES, NOISY, [0.1, 0.3, 1e-3, 2.0])
    np.testing.assert_array_equal(q, [4 * 64, 2 * 64, np.inf, 0.0])


def test_first_passage_counts_the_first_record_below():
    q = queries_to_reach(QUERIES, NOISY, [0.1, 0.3, 1e-3, 2.0], sustained=False)
    np.testing.assert_array_equal(q, [2 * 64, 2 * 64, np.inf, 0.0])


def test_a_nan_record_is_not_reached_and_runs_batch():
    values = np.stack([NOISY, np.where(np.arange(6) == 5, np.nan, NOISY)])
    q = queries_to_reach(np.broadcast_to(QUERIES, values.shape), values, [0.1])
    np.testing.assert_array_equal(q, [[4 * 64], [np.inf]])


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="one shape"):
        queries_to_reach(QUERIES, NOISY[:-1], [0.1])


@given(st.lists(st.floats(0, 1), min_size=2, max_size=12), st.booleans())
def test_more_accuracy_never_needs_fewer_queries(values, sustained):
    eps = np.geomspace(1, 1e-3, 9)
    q = queries_to_reach(np.arange(len(values)) * 10.0, np.array(values), eps, sustained)
    assert np.all(q[1:] >= q[:-1])
    if not sustained:  # the first passage is never later than the sustained target
        assert np.all(q <= queries_to_reach(np.arange(len(values)) * 10.0, np.array(values), eps, True))


def test_median_interval_is_the_order_statistics_of_the_binomial_table():
    """95% intervals of a median (order statistics x_(l), x_(u), coverage P(l ≤ Bin(n, 1/2) < u) ≥ 0.95):
    n = 8: (x_(1), x_(8)), since (x_(2), x_(7)) covers only 1 − 2·9/256 = 0.93; n = 20: (x_(6), x_(15))."""
    rng = np.random.default_rng(0)
    x8, x20 = rng.permutation(np.arange(1.0, 9.0)), rng.permutation(np.arange(1.0, 21.0))
    for x, (median, low, high) in ((x8, (4.5, 1, 8)), (x20, (10.5, 6, 15))):
        assert tuple(float(v) for v in median_interval(x)) == (median, low, high)


def test_censored_runs_sort_last_and_too_few_seeds_give_no_interval():
    median, low, high = median_interval(np.array([[10.0, 20, np.inf, np.inf, 50, 30, 40, np.inf],
                                                  [np.inf] * 8]))
    np.testing.assert_array_equal(median, [45.0, np.inf])  # half the runs censored: ∞
    np.testing.assert_array_equal(low, [10.0, np.inf])
    np.testing.assert_array_equal(high, [np.inf, np.inf])
    assert np.isnan(median_interval(np.array([1.0, 2.0, 3.0]))[1])


def test_mixed_game_is_bradley_terry_at_zero_and_intransitive_when_cyclic():
    assert np.array_equal(load_game("mixed:n=10,cyclic=0,seed=3").P, load_game("bt:n=10,seed=3").P)
    P = load_game("mixed:n=10,cyclic=3,seed=0").P
    np.testing.assert_allclose(P + P.T, np.ones_like(P), rtol=0, atol=3e-16)  # σ(x) + σ(−x) in float64, as `bt`
    assert np.count_nonzero(solve(load_game("mixed:n=10,cyclic=0.5,seed=0"), 0.0).policy > 1e-9) == 1
    assert np.count_nonzero(solve(load_game("mixed:n=10,cyclic=3,seed=0"), 0.0).policy > 1e-9) == 3
    with pytest.raises(Exception, match="cyclic ≥ 0"):
        load_game("mixed:cyclic=-1")


def test_circular_triads_count_the_cycles_of_the_majority_relation():
    """Hand counts: a 3-cycle is one cyclic triple of one; Bradley-Terry none; rock-paper-scissors-
    lizard-Spock (each beats two, loses to two) has C(5, 3) − Σ_i C(2, 2) = 10 − 5 = 5 of 10."""
    from gamesim.core.games import circular_triads

    assert circular_triads(load_game("cycle3").P) == 1.0
    assert circular_triads(load_game("bt:n=12,seed=1").P) == 0.0
    beats = np.zeros((5, 5))
    for i in range(5):
        beats[i, (i + 1) % 5] = beats[i, (i + 3) % 5] = 1.0
    assert circular_triads(0.5 + (beats - beats.T) / 2) == 0.5
    assert circular_triads(load_game("mixed:n=10,cyclic=1,seed=0").P) == pytest.approx(7 / 120)
