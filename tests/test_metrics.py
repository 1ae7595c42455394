"""Metrics: closed forms against brute force, regret against numerical optimization, and the
papers' inequalities checked step by step on trajectories."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import minimize
from scipy.special import softmax

from gamesim import duality_gap, load_game, simulate, simulate_batch, solve
from gamesim.core.equilibria import MIN_TAU
from gamesim.core.games import PreferenceGame
from transcriptions import gap_closed_form, kl


def gap_by_definition(P, ref, pi, tau):
    """max_p J(p, π) − min_q J(π, q), each optimum written out: the regularized best responses."""
    def J(p1, p2):
        return p1 @ P @ p2 - tau * kl(p1, ref) + tau * kl(p2, ref)
    br_max = softmax(np.log(ref) + P @ pi / tau)        # argmax_p J(p, π)
    br_min = softmax(np.log(ref) - P.T @ pi / tau)      # argmin_q J(π, q)
    return J(br_max, pi) - J(pi, br_min)


@pytest.mark.parametrize("tau", [0.05, 0.3, 2.0])
@pytest.mark.parametrize("seed", range(3))
def test_regularized_gap_three_ways(tau, seed):
    game = load_game(f"random:n=6,seed={seed},ref_seed={seed}")
    pi = softmax(np.random.default_rng(seed).standard_normal(6))
    P, ref = game.P, game.reference
    ours = duality_gap(game, pi, tau)
    assert ours == pytest.approx(gap_closed_form(P, ref, pi, tau), abs=1e-13)
    assert ours == pytest.approx(gap_by_definition(P, ref, pi, tau), abs=1e-13)


def test_unregularized_gap_and_exploitability():
    game = load_game("cycle3")
    pi = np.array([0.6, 0.3, 0.1])
    assert duality_gap(game, pi) == pytest.approx(2 * np.max(game.P @ pi) - 1, abs=1e-15)
    # the pure-strategy best response: (Pπ)_b = 0.6·0.9 + 0.3·0.5 + 0.1·0.1 = 0.7
    assert duality_gap(game, pi) == pytest.approx(0.4, abs=1e-15)


def test_contextual_gap_is_rho_weighted():
    game = PreferenceGame(np.stack([load_game("cycle3").P, load_game("rps").P]), weights=[0.25, 0.75])
    pi = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    expected = 0.25 * duality_gap("cycle3", pi[0], 0.1) + 0.75 * duality_gap("rps", pi[1], 0.1)
    assert duality_gap(game, pi, 0.1) == pytest.approx(expected, abs=1e-15)


def _regret_by_optimization(P, ref, plays, tau):
    """Σ_s l_s(π_s) − min_π Σ_s l_s(π), the minimum found numerically over softmax logits."""
    def total_loss(pi):
        return sum(-pi @ P @ q + tau * kl(pi, ref) for q in plays)
    best = minimize(lambda x: total_loss(softmax(x)), np.zeros(len(ref)), method="BFGS",
                    options={"gtol": 1e-12}).fun
    if tau == 0:  # a linear loss: its minimum over the simplex is at a vertex
        best = min(total_loss(e) for e in np.eye(len(ref)))
    return sum(-q @ P @ q + tau * kl(q, ref) for q in plays) - best


def _linear_regret(P, ref, plays, tau):
    grads = [-(P @ q) + tau * (np.log(q / ref) + 1) for q in plays]
    return sum(g @ q for g, q in zip(grads, plays)) - np.min(np.sum(grads, axis=0))


@pytest.mark.slow
@pytest.mark.parametrize("name, tau", [("inpo", 0.2), ("sppo", 0.0), ("nash-md", 0.5)])
def test_regret_matches_brute_force(name, tau):
    game = load_game("random:n=5,seed=4,ref_seed=1")
    traj = simulate(game, name, eta=0.9, tau=tau, iterations=12, init="random", seed=3)
    for t in (0, 5, 12):
        plays = traj.policies[: t + 1]
        # measured ≤ 8.7e-15 and 1.3e-15 over the 9 cases; 100× to spare for BFGS and rounding elsewhere
        assert traj.metrics["regret"][t] == pytest.approx(_regret_by_optimization(game.P, game.reference, plays, tau), abs=1e-12)
        assert traj.metrics["linear_regret"][t] == pytest.approx(_linear_regret(game.P, game.reference, plays, tau), abs=1e-13)
        assert traj.metrics["linear_regret"][t] >= traj.metrics["regret"][t] - 1e-12  # convexity


@pytest.mark.slow
def test_recorded_metrics_match_definitions():
    game = load_game("random:n=6,seed=1,ref_seed=2")
    tau = 0.2
    traj = simulate(game, "omd", eta=0.5, tau=tau, iterations=30, record_every=10)
    star = solve(game, tau).policy
    every = simulate(game, "omd", eta=0.5, tau=tau, iterations=30).policies
    for r, t in enumerate(traj.iterations):
        pi, avg = traj.policies[r], every[: t + 1].mean(0)
        m = {k: v[r] for k, v in traj.metrics.items()}
        assert m["gap_reg"] == pytest.approx(duality_gap(game, pi, tau), abs=1e-14)
        assert m["gap_reg_avg"] == pytest.approx(duality_gap(game, avg, tau), abs=1e-14)
        assert m["gap"] == pytest.approx(duality_gap(game, pi), abs=1e-14)
        assert m["gap_avg"] == pytest.approx(duality_gap(game, avg), abs=1e-14)
        assert m["kl_to_eq"] == pytest.approx(kl(star, pi), abs=1e-14)
        assert m["kl_to_ref"] == pytest.approx(kl(pi, game.reference), abs=1e-14)
        assert m["winrate_vs_ref"] == pytest.approx(pi @ game.P @ game.reference, abs=1e-14)
        assert m["winrate_vs_eq"] == pytest.approx(pi @ game.P @ star, abs=1e-14)
        assert m["support"] == np.sum(pi >= 1e-9)


# --- the papers' inequalities, step by step ----------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("spec", ["cycle3", "rps", "random:n=10,seed=0", "random:n=10,seed=1,ref_seed=3",
                                  "skew:n=10,rank=4,scale=3.0,seed=2"])
@pytest.mark.parametrize("tau", [0.1, 1.0])
def test_nash_md_theorem1_recursion_every_step(spec, tau):
    """NLHF Thm. 1: KL(π*‖π_{t+1}) ≤ (1 − η_tτ) KL(π*‖π_t) + 2η_t², η_t = 2/(τ(t+2))."""
    traj = simulate(spec, "nash-md", tau=tau, schedule="theorem", iterations=300)
    kl_t = traj.metrics["kl_to_eq"]
    t = np.arange(300)
    eta = 2 / (tau * (t + 2))
    bound = (1 - eta * tau) * kl_t[:-1] + 2 * eta ** 2
    assert np.all(kl_t[1:] <= bound + 1e-12), np.max(kl_t[1:] - bound)
    assert np.all(kl_t[1:] <= 8 / (tau ** 2 * (t + 2)) + 1e-12)  # the unrolled rate, T = t + 1


@pytest.mark.slow
@pytest.mark.parametrize("name, tau", [("omd", 0.1), ("omd", 0.0), ("sppo", 0.0), ("inpo", 0.5)])
def test_average_gap_at_most_twice_regret_over_T(name, tau, random_games):
    """INPO Thm. 3's step: DualGap_τ(π̄_T) ≤ 2 Regret_T / T, at every record (T = t + 1 plays)."""
    batch = simulate_batch(random_games, name, eta=0.3, tau=tau, iterations=2000, record_every=10)
    T = batch.iterations + 1
    assert np.all(batch.metrics["gap_reg_avg"] <= 2 * batch.metrics["regret"] / T + 1e-13)
    assert np.all(batch.metrics["regret"] <= batch.metrics["linear_regret"] + 1e-10)


# --- properties on random games --------------------------------------------------------------------------
@st.composite
def games(draw, n=st.integers(2, 8)):
    size = draw(n)
    lower = draw(st.lists(st.sampled_from([0.0, 1.0, 0.5]) | st.floats(0, 1), min_size=size * size, max_size=size * size))
    L = np.tril(np.array(lower).reshape(size, size), -1)
    return PreferenceGame(L + np.triu(1 - L.T, 1) + 0.5 * np.eye(size))


@pytest.mark.slow
@given(games(), st.just(0.0) | st.floats(MIN_TAU, 3), st.integers(0, 2 ** 31))
def test_gaps_nonnegative_and_zero_at_equilibrium(game, tau, seed):
    pi = np.random.default_rng(seed).dirichlet(np.ones(game.n))
    assert duality_gap(game, pi, tau) >= -1e-15  # ≥ 0 up to float64 rounding
    assert duality_gap(game, pi, 0.0) >= -1e-15
    eq = solve(game, tau)
    assert -1e-15 <= eq.duality_gap <= 1e-10


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "numba"])
def test_weighted_average_and_best_iterate_match_numpy(backend):
    """gap_wavg / gap_reg_wavg are the gaps of Σ (s+1)π_s / Σ (s+1) (CFR+/LiteEFG's linear
    averaging), recomputed here from the recorded policies; gap_best / gap_reg_best are the running
    minima of the recorded gaps; both engine paths, and a resumed run continues both."""
    from gamesim.core.metrics import NONNEGATIVE

    game, tau = load_game("random:n=10,seed=1"), 0.05
    run = simulate(game, "omd", eta=0.5, tau=tau, iterations=60, record_every=1, backend=backend)
    w = np.arange(1, 62)[:, None]
    wavg = np.cumsum(w * run.policies, 0) / np.cumsum(w)[:, None]
    A = np.asarray(game.payoff[0])
    np.testing.assert_allclose(run.metrics["gap_wavg"], 2 * (wavg @ A.T).max(1), atol=1e-14)
    np.testing.assert_allclose(run.metrics["gap_reg_wavg"], [duality_gap(game, p, tau) for p in wavg], atol=1e-14)
    np.testing.assert_array_equal(run.metrics["gap_best"], np.minimum.accumulate(run.metrics["gap"]))
    np.testing.assert_array_equal(run.metrics["gap_reg_best"], np.minimum.accumulate(run.metrics["gap_reg"]))
    assert run.metrics["gap_wavg"][-1] != run.metrics["gap_avg"][-1]  # not the uniform average
    first = simulate(game, "omd", eta=0.5, tau=tau, iterations=30, record_every=1, backend=backend)
    rest = simulate(game, "omd", eta=0.5, tau=tau, iterations=60, record_every=1, backend=backend, resume_from=first)
    for name in ("gap_wavg", "gap_reg_wavg", "gap_best", "gap_reg_best"):
        np.testing.assert_allclose(rest.metrics[name], run.metrics[name], atol=1e-14, err_msg=name)
    assert NONNEGATIVE >= {"gap_wavg", "gap_reg_wavg", "gap_best", "gap_reg_best"}


def _tournament(n: int, seed: int) -> PreferenceGame:
    """A random 0/1 tournament: every comparison is won with certainty."""
    upper = np.triu(np.random.default_rng(seed).integers(0, 2, (n, n)), 1).astype(float)
    return PreferenceGame(upper + np.tril(1 - upper.T, -1) + 0.5 * np.eye(n))


@pytest.mark.slow
@pytest.mark.parametrize("name, tau", [("omd", 0.1), ("omd", 0.0), ("nash-md", 0.1), ("sppo", 0.0)])
def test_nonnegative_metrics_stay_nonnegative_over_a_million_steps_on_tournaments(name, tau):
    """Gaps, KLs and regrets are ≥ 0 in exact arithmetic; over 10⁶ iterations on 0/1 tournaments
    (where rounding used to leave gap_reg_avg at −1e-12) every recorded one is ≥ 0, and the clip
    at 0 only ever replaces rounding-level values (the unclipped gap of the same policies is ≥ −1e-15)."""
    from gamesim.core.metrics import NONNEGATIVE

    games = [_tournament(6, s) for s in range(4)]
    runs = simulate_batch(games, name, eta=0.5, tau=tau, iterations=10 ** 6, record_every=10 ** 5)
    for metric in NONNEGATIVE & set(runs.metrics):
        assert np.all(runs.metrics[metric] >= 0), metric
    for g, policies, gaps in zip(games, runs.policies, runs.metrics["gap_reg"]):  # clipped only at rounding level
        scores = policies @ np.asarray(g.payoff[0]).T
        if tau == 0:
            exact = 2 * scores.max(1)
        else:
            z = np.log(g.reference) + scores / tau
            exact = 2 * tau * np.array([kl(p, softmax(zi)) for p, zi in zip(policies, z)])
        np.testing.assert_allclose(gaps, exact, rtol=1e-12, atol=1e-15)  # measured: 1.1e-16 absolute, 1e-13 relative
