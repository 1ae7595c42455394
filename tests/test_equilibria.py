"""Equilibria: hand-derived answers, fixed-point equations, and an independent solver (Nashpy)."""

import nashpy
from hypothesis import given
from hypothesis import strategies as st
import numpy as np
import pytest
from scipy.special import softmax

from gamesim import duality_gap, load_game, solve
from gamesim.core.equilibria import fixed_point_residual
from gamesim.core.games import PreferenceGame, from_payoff


@pytest.mark.parametrize("spec, expected", [
    ("cycle3", np.array([4, 3, 4]) / 11),
    ("biased_rps", np.array([1, 10, 5]) / 16),
    ("rps", np.full(3, 1 / 3)),
    ("perturbed_rps", np.array([1, 3, 3]) / 7),
])
def test_known_von_neumann_winners(spec, expected):
    eq = solve(spec)
    np.testing.assert_allclose(eq.policy, expected, atol=1e-14)
    assert abs(eq.duality_gap) <= 1e-14 and eq.value == pytest.approx(0.5, abs=1e-14)


def test_perturbed_rps_regularized_equilibrium_matches_mmd_setup():
    # the regularized equilibrium at α = τ = 0.1 that MMD's perturbed-RPS study converges to,
    # (0.1735, 0.4863, 0.3402) to the 4 digits quoted in the study's specification
    eq = solve("perturbed_rps", tau=0.1)
    np.testing.assert_allclose(eq.policy, [0.1735, 0.4863, 0.3402], atol=6e-5)
    assert fixed_point_residual(load_game("perturbed_rps"), eq.policy, 0.1) <= 1e-13


def test_condorcet_winner_of_bradley_terry_game():
    game = load_game("bt:n=6,seed=3")
    scores_order = np.argmax(game.P.sum(1))
    eq = solve(game)
    assert eq.policy[scores_order] == 1.0


def test_max_support_when_not_unique():
    # two copies of rock: any split between them is an equilibrium; the max-support one uses both
    A = np.array([[0, 0, -1, 1], [0, 0, -1, 1], [1, 1, 0, -1], [-1, -1, 1, 0.0]])
    eq = solve(from_payoff(A))
    assert np.all(eq.policy > 0.05), eq.policy
    assert eq.duality_gap <= 1e-14
    np.testing.assert_allclose(eq.policy[2:], [1 / 3, 1 / 3], atol=1e-12)


@pytest.mark.parametrize("seed", range(12))
def test_lp_agrees_with_nashpy(seed):
    n = 3 + seed % 8
    game = load_game(f"random:n={n},seed={seed}")
    A = game.payoff[0]
    row, col = nashpy.Game(A).linear_program()  # row player maximizes xᵀAy
    eq = solve(game)
    # measured ≤ 6.7e-16 (policies) and 5.6e-17 (value) over the 12 seeds; 1e-11 leaves room for other LP solvers
    np.testing.assert_allclose(eq.policy, row, atol=1e-11)
    np.testing.assert_allclose(eq.policy, col, atol=1e-11)
    assert eq.value == pytest.approx(0.5 + row @ A @ col, abs=1e-11)
    assert eq.duality_gap <= 1e-13


@pytest.mark.parametrize("seed", range(4))
def test_lp_agrees_with_vertex_enumeration(seed):
    game = load_game(f"skew:n=6,rank=4,seed={seed}")
    (row, _), = list(nashpy.Game(game.payoff[0]).vertex_enumeration())
    np.testing.assert_allclose(solve(game).policy, row, atol=1e-11)  # measured ≤ 4.2e-16


def test_real_games_supports():
    assert np.count_nonzero(solve("soccer").policy) == 3
    assert np.count_nonzero(solve("rrps").policy) == 5
    assert solve("rrps").duality_gap <= 1e-13


@pytest.mark.parametrize("spec", ["cycle3", "rps", "random:n=10,seed=1", "skew:n=40,rank=4,seed=2", "rrps",
                                  "random:n=5,seed=2,contexts=3,ref_seed=1"])
@pytest.mark.parametrize("tau", [1.0, 0.1, 0.01, 1e-3])
def test_regularized_fixed_point(spec, tau):
    game = load_game(spec)
    eq = solve(game, tau)
    assert fixed_point_residual(game, eq.policy, tau) <= 1e-12
    assert 0 <= eq.duality_gap + 1e-15 and eq.duality_gap <= 1e-12


def test_regularized_known_value_cycle3():
    # equations.md sanity value (uniform reference, τ = 0.1), and a check from scratch
    pi = solve("cycle3", 0.1).policy
    np.testing.assert_allclose(pi, [0.337, 0.284, 0.379], atol=1e-3)
    P = load_game("cycle3").P
    np.testing.assert_allclose(pi, softmax(np.log(np.full(3, 1 / 3)) + P @ pi / 0.1), atol=1e-14)
    assert duality_gap("cycle3", pi, 0.0) == pytest.approx(0.0245, abs=1e-4)


def test_regularized_large_game():
    game = load_game("random:n=2000,seed=0")
    eq = solve(game, 0.05)
    assert fixed_point_residual(game, eq.policy, 0.05) <= 1e-12
    assert eq.duality_gap <= 1e-12


def test_regularized_tends_to_von_neumann_winner():
    target = solve("cycle3").policy
    errors = [np.abs(solve("cycle3", tau).policy - target).max() for tau in (0.1, 0.01, 0.001)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 2e-3


def test_contextual_solve_is_per_context():
    game = load_game("random:n=5,seed=3,contexts=2")
    eq = solve(game)
    for c in range(2):
        single = PreferenceGame(game.P[c])
        np.testing.assert_allclose(eq.policy[c], solve(single).policy, atol=1e-14)


def test_bad_tau():
    from gamesim import GamesimError

    with pytest.raises(GamesimError, match="must be 0 or in"):
        solve("rps", -0.1)
    with pytest.raises(GamesimError, match="too small"):
        solve("rps", 1e-12)
    with pytest.raises(GamesimError, match="number"):
        solve("rps", "abc")


@given(st.integers(2, 25), st.integers(0, 2 ** 31), st.integers(0, 3), st.sampled_from(["uniform", "sign", "rank2"]))
def test_interior_point_support_matches_the_lp_max_support(n, seed, copies, kind):
    """The interior-point path's certified equilibrium against the two-LP path on random games,
    made degenerate (several equilibria) by duplicating responses or by sign/low-rank payoffs."""
    from gamesim.core.equilibria import _certified_support_solution, _lp_winner

    rng = np.random.default_rng(seed)
    if kind == "rank2":
        u, w = rng.standard_normal((2, n))
        A = np.outer(u, w) - np.outer(w, u)
    else:
        L = np.tril(rng.uniform(-1, 1, (n, n)), -1)
        A = L - L.T if kind == "uniform" else np.sign(L - L.T)
    dup = rng.integers(0, n, copies)  # a copy of response y: the same row and column
    idx = np.r_[np.arange(n), dup]
    A = A[np.ix_(idx, idx)] / (2 * max(np.abs(A).max(), 1e-300))
    pi = _certified_support_solution(A)
    lp, _ = _lp_winner(A)
    if pi is None:  # no certificate (1 in ~600 such games): the LP fallback answers
        assert copies or kind != "uniform", "a generic game (unique equilibrium) must be certified"
        return
    assert 2 * (A @ pi).max() <= 1e-12 and pi.min() >= 0 and abs(pi.sum() - 1) <= 1e-12
    np.testing.assert_array_equal(pi > 0, lp > 1e-9)  # the same (maximal) support


def test_interior_point_is_the_lp_solution_on_a_large_generic_game():
    """n = 300, lower triangle of L uniform on [−1, 1], A = (L − Lᵀ)/2: the equilibrium is unique and
    mixed (about half the responses); HiGHS's LP and the interior-point path agree."""
    from scipy.optimize import linprog

    n = 300
    L = np.tril(np.random.default_rng(0).uniform(-1, 1, (n, n)), -1)
    A = (L - L.T) / 2
    eq = solve(from_payoff(A))
    assert eq.method == "interior-point" and eq.duality_gap <= 1e-13
    res = linprog(np.r_[np.zeros(n), 1.0], A_ub=np.c_[A, -np.ones(n)], b_ub=np.zeros(n),
                  A_eq=np.r_[np.ones(n), 0.0][None], b_eq=[1.0], bounds=[(0, None)] * n + [(None, None)],
                  method="highs")
    np.testing.assert_allclose(eq.policy, res.x[:n], atol=1e-11)  # measured 1.3e-15
    assert 100 < np.count_nonzero(eq.policy) < 200


def test_without_a_certificate_the_lp_answers(monkeypatch):
    from gamesim.core import equilibria

    monkeypatch.setattr(equilibria, "_interior_point", lambda A: (None, None))
    A = np.array([[0, 0, -1, 1], [0, 0, -1, 1], [1, 1, 0, -1], [-1, -1, 1, 0.0]])
    eq = solve(from_payoff(A))
    assert eq.method == "lp+max-support" and np.all(eq.policy > 0.05)


def _generic_antisymmetric(n, seed=0):
    L = np.tril(np.random.default_rng(seed).uniform(-1, 1, (n, n)), -1)
    return L - L.T


@pytest.mark.parametrize("n", [50, 300, 1000])
def test_large_generic_games_are_certified_and_match_highs(n):
    """The benchmark's games (A = L − Lᵀ, seed 0; Gondzio's correctors from n = 200): certified by the
    interior-point path, provably the only equilibrium, and HiGHS's (n ≤ 300: its LP takes 5–20 s at 1000)."""
    from scipy.optimize import linprog

    from gamesim.core.equilibria import _unique, _von_neumann_winner

    A = _generic_antisymmetric(n)
    pi, method = _von_neumann_winner(A)
    assert method == "interior-point"
    assert (A @ pi).max() <= 1e-10 and pi.min() >= 0 and abs(pi.sum() - 1) <= 1e-12
    assert _unique(A, pi)
    if n <= 300:
        res = linprog(np.r_[np.zeros(n), 1.0], A_ub=np.c_[A, -np.ones(n)], b_ub=np.zeros(n),
                      A_eq=np.r_[np.ones(n), 0.0][None], b_eq=[1.0], bounds=[(0, None)] * n + [(None, None)],
                      method="highs")
        np.testing.assert_allclose(pi, res.x[:n], atol=1e-11)


@pytest.mark.parametrize("kind", ["copies", "sign", "rank2"])
def test_large_degenerate_games_keep_the_maximal_support(kind):
    """n = 300 (the corrector path) made degenerate as in the property test above (all three are
    certified, the copies and rank-2 ones through the least-squares projection): the certified
    support is the two-LP path's maximal support."""
    from gamesim.core.equilibria import _certified_support_solution, _lp_winner

    n, rng = 300, np.random.default_rng(1)
    if kind == "rank2":
        u, w = rng.standard_normal((2, n))
        A = np.outer(u, w) - np.outer(w, u)
    else:
        A = _generic_antisymmetric(n, seed=1)
        A = np.sign(A) if kind == "sign" else A
    if kind == "copies":  # copies of responses in the support: several equilibria
        support = np.flatnonzero(_lp_winner(A)[0] > 1e-9)
        idx = np.r_[np.arange(n), support[:3]]
        A = A[np.ix_(idx, idx)]
    pi = _certified_support_solution(A)
    lp, _ = _lp_winner(A)
    assert 2 * (A @ pi).max() <= 1e-12 and pi.min() >= 0 and abs(pi.sum() - 1) <= 1e-12
    np.testing.assert_array_equal(pi > 0, lp > 1e-9)
