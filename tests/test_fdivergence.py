"""f-divergence regularization (f-DPO's reverse/forward KL, Jensen-Shannon and α; Wang et al. 2023): the
f-equilibrium solver, the f best response and duality gap against scipy, the mirror-descent step against
a numpy transcription, and the engine's divergence-aware metrics."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize

from gamesim import GamesimError, load_game, simulate, solve
from gamesim.core.divergences import Divergence, best_response, duality_gap_f
from gamesim.core.equilibria import duality_gap, fixed_point_residual
from transcriptions import f_fn, f_omd, f_prime, omd

pytestmark = pytest.mark.usefixtures("float64")

GAMES = ["cycle3", "biased_rps", "random:n=10,seed=0"]
DIVERGENCES = [("forward-kl", None), ("js", None), ("alpha", 0.3), ("alpha", 0.5), ("alpha", 0.7)]
TAUS = [1e-3, 0.1, 1.0, 10.0]


def test_reverse_kl_is_todays_solve_bit_for_bit():
    """divergence="reverse-kl" (and the default) run today's KL solver, `equilibria._solve`, bit for bit."""
    from gamesim.core.equilibria import _solve

    for spec in GAMES:
        for tau in (0.0, 0.05, 1.0):
            today = _solve(load_game(spec), tau)
            assert today.method in ("interior-point", "newton")
            for div in (None, "reverse-kl", Divergence("reverse-kl")):
                again = solve(load_game(spec), tau, divergence=div)  # fresh games: no shared cache
                assert np.array_equal(today.policy, again.policy) and today.method == again.method
                assert (today.value, today.duality_gap, today.divergence) == (again.value, again.duality_gap, "reverse-kl")
            pi = np.random.default_rng(0).dirichlet(np.ones(load_game(spec).n))
            assert duality_gap(spec, pi, tau, "reverse-kl") == duality_gap(spec, pi, tau)


@pytest.mark.parametrize("name, alpha", DIVERGENCES)
def test_f_equilibrium_is_certified(name, alpha):
    """Fixed-point residual ≤ 1e-12, certificate (its duality gap) ≤ 1e-12, and the first-order condition
    (Aπ)_y − τ f′(π_y/π_ref(y)) = λ with f-DPO's own f′, on three games and a τ sweep."""
    for spec in GAMES:
        game = load_game(spec)
        for tau in TAUS:
            eq = solve(game, tau, divergence=name, alpha=alpha)
            assert eq.divergence == Divergence(name, alpha).label and eq.tau == tau
            assert fixed_point_residual(game, eq.policy, tau, name, alpha) <= 1e-12
            assert 0 <= eq.duality_gap <= 1e-12 and eq.value == 0.5 - eq.duality_gap / 2
            lam = game.payoff[0] @ eq.policy - tau * f_prime(name, eq.policy / game.reference, alpha)
            assert np.ptp(lam) <= 1e-12 * max(1.0, tau)
            assert np.all(eq.policy > 0)  # f′(0⁺) = −∞: interior


@pytest.mark.parametrize("name, alpha", DIVERGENCES + [("reverse-kl", None)])
def test_best_response_and_gap_against_scipy(name, alpha):
    """BR_f maximizes pᵀAπ − τD_f(p‖π_ref) (SLSQP on the simplex, f-DPO's f), and the gap equals
    2 max_p[pᵀAπ − τD_f(p)] + 2τD_f(π); for reverse KL it is the KL closed form 2τ KL(π‖BR_τ(π))."""
    game, tau = load_game("random:n=10,seed=0"), 0.3
    A, ref = game.payoff[0], game.reference
    pi = np.random.default_rng(3).dirichlet(np.ones(10))
    div = Divergence(name, alpha)

    def objective(p):
        return -(p @ A @ pi - tau * np.sum(ref * f_fn(name, p / ref, alpha)))

    res = minimize(objective, ref, method="SLSQP", bounds=[(1e-12, 1)] * 10,
                   constraints={"type": "eq", "fun": lambda p: p.sum() - 1}, options={"ftol": 1e-15, "maxiter": 500})
    br = best_response(A @ pi, np.log(ref), tau, div)
    assert -objective(br) >= -res.fun - 1e-12
    np.testing.assert_allclose(br, res.x, atol=1e-6)
    direct = 2 * (-objective(br)) + 2 * tau * np.sum(ref * f_fn(name, pi / ref, alpha))
    assert duality_gap(game, pi, tau, name, alpha) == pytest.approx(direct, abs=1e-13)
    if name == "reverse-kl":
        assert duality_gap_f(A, np.log(ref), pi, tau, div) == pytest.approx(duality_gap(game, pi, tau), abs=1e-14)


@pytest.mark.parametrize("name, alpha", DIVERGENCES)
def test_equilibrium_is_the_limit_of_mirror_descent(name, alpha):
    """An independent method: the numpy transcription of the mirror-descent dynamics, run to convergence
    (η = 1, τ = 0.5, 1500 steps), lands on `solve`'s f-equilibrium."""
    game, tau = load_game("random:n=10,seed=0"), 0.5
    step, pi = f_omd(name, alpha), game.reference
    for _ in range(1500):
        pi = step(pi, game.P, game.reference, 1.0, tau)
    np.testing.assert_allclose(pi, solve(game, tau, divergence=name, alpha=alpha).policy, atol=1e-12, rtol=0)


def test_f_omd_update_is_omd_for_reverse_kl():
    import jax.numpy as jnp

    from gamesim.core.divergences import f_prime_log
    from gamesim.dynamics.updates import f_omd_update, omd_update

    game = load_game("random:n=10,seed=0")
    A, log_ref = jnp.asarray(game.payoff), jnp.log(game.stacked_reference)
    log_pi = jnp.log(jnp.asarray(np.random.default_rng(1).dirichlet(np.ones(10))))[None]
    for eta, tau in [(0.5, 0.1), (2.0, 0.5), (1.0, 1.0)]:
        f_step = f_omd_update(log_pi, A, log_ref, eta, tau, lambda ell: f_prime_log("reverse-kl", ell, None, jnp))
        np.testing.assert_allclose(f_step, omd_update(log_pi, A, log_ref, eta, tau), atol=1e-14, rtol=0)
    pi = np.exp(np.asarray(log_pi[0]))
    np.testing.assert_allclose(f_omd("reverse-kl")(pi, game.P, game.reference, 0.5, 0.1),
                               omd(pi, game.P, game.reference, 0.5, 0.1), atol=1e-15)


@pytest.mark.parametrize("name, alpha", [("forward-kl", None), ("js", None), ("alpha", 0.3)])
def test_f_omd_update_matches_transcription_over_100_steps(name, alpha):
    """The pure step, jitted (no engine), against the numpy transcription, to 1e-12 over 100 steps."""
    import jax
    import jax.numpy as jnp

    from gamesim.core.divergences import f_prime_log
    from gamesim.dynamics.updates import f_omd_update

    game, eta, tau = load_game("random:n=10,seed=4,ref_seed=5"), 0.7, 0.3
    step = jax.jit(lambda lp: f_omd_update(lp, jnp.asarray(game.payoff), jnp.log(game.stacked_reference), eta, tau,
                                           lambda ell: f_prime_log(name, ell, alpha, jnp)))
    log_pi, pi, numpy_step = jnp.log(game.stacked_reference), game.reference, f_omd(name, alpha)
    for t in range(100):
        log_pi, pi = step(log_pi), numpy_step(pi, game.P, game.reference, eta, tau)
        np.testing.assert_allclose(np.exp(log_pi[0]), pi, atol=1e-12, rtol=0, err_msg=f"step {t + 1}")


@pytest.mark.slow
def test_engine_runs_omd_alpha_with_its_divergence_metrics():
    """The registered omd-alpha (α a Param) through the engine: its steps are the transcription's, and its
    recorded gap_reg / kl_to_eq / winrate_vs_eq refer to the α-regularized game; regret ≤ linear regret and
    the average's gap ≤ 2 regret/T (INPO Thm. 3's argument, which holds for any convex regularizer)."""
    game, eta, tau, alpha = load_game("cycle3"), 1.0, 0.1, 0.3
    traj = simulate(game, "omd-alpha", eta=eta, tau=tau, alpha=alpha, iterations=100, record_every=10)
    step, pi = f_omd("alpha", alpha), game.reference
    for t in range(100):
        pi = step(pi, game.P, game.reference, eta, tau)
        if (t + 1) % 10 == 0:
            np.testing.assert_allclose(traj.policies[(t + 1) // 10], pi, atol=1e-12, rtol=0)
    gaps = [duality_gap(game, p, tau, "alpha", alpha) for p in traj.policies]
    np.testing.assert_allclose(traj.metrics["gap_reg"], gaps, atol=1e-14, rtol=1e-10)
    star = solve(game, tau, divergence="alpha", alpha=alpha).policy
    kl = [np.sum(star * np.log(star / p)) for p in traj.policies]
    np.testing.assert_allclose(traj.metrics["kl_to_eq"], np.maximum(kl, 0), atol=1e-14)
    m, plays = traj.metrics, traj.iterations + 1
    assert np.all(m["regret"] <= m["linear_regret"] + 1e-12)
    assert np.all(m["gap_reg_avg"] <= 2 * m["regret"] / plays + 1e-12)
    assert m["gap_reg"][-1] < 1e-8 and np.all(np.isfinite(np.asarray(list(m.values()), float)))
    # too large a step (ητ = 1 at τ = 0.01: π* ≪ π_ref, h = (π_ref/π*)^α) blows the run up: infinite, never NaN
    wild = simulate(game, "omd-alpha", eta=100.0, tau=0.01, alpha=0.99, iterations=100, record_every=10)
    assert not any(np.isnan(np.asarray(v, float)).any() for v in wild.metrics.values())
    assert not np.isnan(wild.policies).any() and np.isinf(wild.metrics["linear_regret"][-1])


@settings(max_examples=8)
@given(st.integers(0, 10 ** 6), st.integers(2, 6), st.floats(0.05, 5.0), st.sampled_from(DIVERGENCES))
def test_f_equilibrium_property_on_random_games(seed, n, tau, divergence):
    name, alpha = divergence
    game = load_game(f"random:n={n},seed={seed}")
    eq = solve(game, tau, divergence=name, alpha=alpha)
    assert fixed_point_residual(game, eq.policy, tau, name, alpha) <= 1e-12
    assert 0 <= eq.duality_gap <= 1e-12
    pi = np.random.default_rng(seed).dirichlet(np.ones(n))
    assert duality_gap(game, pi, tau, name, alpha) >= 0


def test_bad_divergences_are_refused():
    for kwargs, words in [({"divergence": "chi2"}, "unknown divergence"), ({"divergence": "alpha"}, "alpha in (0, 1)"),
                          ({"divergence": "alpha", "alpha": 1.0}, "alpha in (0, 1)"),
                          ({"divergence": "js", "alpha": 0.5}, "belongs to the 'alpha' divergence")]:
        with pytest.raises(GamesimError, match=words.replace("(", r"\(").replace(")", r"\)")):
            solve("cycle3", 0.1, **kwargs)
    with pytest.raises(GamesimError, match="alpha must be a number in"):
        simulate("cycle3", "omd-alpha", eta=1.0, tau=0.1, alpha=1.5, iterations=2)
    with pytest.raises(GamesimError, match="eta·tau ≤ 1"):
        simulate("cycle3", "omd-forward-kl", eta=20.0, tau=0.1, iterations=2)
    with pytest.raises(GamesimError, match="infinite at a policy with a zero"):
        duality_gap("cycle3", [1, 0, 0], 0.1, "forward-kl")
    assert np.isfinite(duality_gap("cycle3", [1, 0, 0], 0.1, "js"))


@pytest.mark.parametrize("name, alpha", [("omd-forward-kl", None), ("omd-js", None), ("omd-alpha", 0.3)])
def test_sampled_pair_regression_on_the_population_is_the_f_omd_step(name, alpha):
    """The sampled recipe's anchor is the f-regularized step without preferences, π_t e^{−ητ f′(π_t/π_ref)}
    (numpy, f′ as f-DPO lists it); weighted by π_t(y)π_t(y') with the soft labels P, the pair regression's
    minimizer is then θ = c + ηAπ_t (derived: the normal equations vanish since πᵀAπ = 0), the `omd-*`
    step itself (transcription, 1e-12): INPO's population identity with the f-divergence's anchor."""
    import jax.numpy as jnp

    from gamesim.bandit import feedback, sampled

    game, eta, tau = load_game("random:n=4,seed=1,ref_seed=2"), 0.4, 0.3
    P, ref = game.P, game.reference
    pi = np.array([0.1, 0.4, 0.3, 0.2])
    params = {"alpha": alpha} if alpha else {}
    divergence = name.removeprefix("omd-")
    anchor = sampled._anchor("f-mirror", jnp.log(pi), jnp.log(ref), eta, tau, (divergence, alpha))
    expected = pi * np.exp(-eta * tau * f_prime(divergence, pi / ref, alpha))
    np.testing.assert_allclose(np.exp(anchor), expected / expected.sum(), rtol=1e-13)
    y, y2 = (a.ravel() for a in np.meshgrid(np.arange(4), np.arange(4), indexing="ij"))
    data = feedback.Pairs(jnp.asarray(y), jnp.asarray(y2), jnp.asarray(P[y, y2]), jnp.asarray(pi[y] * pi[y2]))
    theta, _ = sampled.exact_fit(name, data, anchor, eta, jnp.zeros(4))
    step = f_omd(divergence, alpha)(pi, P, ref, eta, tau)
    np.testing.assert_allclose(np.exp(theta - np.log(np.sum(np.exp(theta)))), step, rtol=0, atol=1e-12)
    if alpha:  # the registry's wiring, α included, on one case (a sampled program compiles per algorithm)
        run = simulate(game, name, eta=eta, tau=tau, iterations=2, feedback="sampled", pairs=8, **params)
        assert run.metrics["queries"][-1] == 16 and np.isfinite(run.metrics["gap_reg"]).all()
