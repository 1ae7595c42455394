"""The wider family: plain-numpy transcriptions (to 1e-12 over 100 steps), autodiff gradients
against the closed-form steps, and each method's fixed point or limit where its paper states one."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from gamesim import GamesimError, load_game, simulate, solve
from gamesim.core.equilibria import fixed_point_residual
from gamesim.dynamics.losses import dpo_population_loss, ipo_loss, nash_md_pg_loss
from gamesim.dynamics.updates import (BT_RIDGE, bradley_terry_fit, ipo_md_update, iterative_dpo_update,
                             nash_md_pg_update)
from transcriptions import (IterativeDPO, Optimistic, Refreshing, extragradient, fictitious_play, hedge, mixture, mmd,
                            nash_md_pg, normalize, omd, online_ipo, replicator)


pytestmark = pytest.mark.usefixtures("float64")


CASES = {
    "optimistic-omd": (Optimistic, {}), "extragradient": (lambda: extragradient, {}), "mmd": (lambda: mmd, {}),
    "mpo": (lambda: Refreshing(mmd, 7), {"refresh_every": 7}),
    "comal": (lambda: Refreshing(omd, 9), {"refresh_every": 9}),
    "online-ipo": (lambda: online_ipo, {}), "ipo-md": (lambda: partial(online_ipo, beta=0.3), {"beta": 0.3}),
    "nash-md-pg": (lambda: partial(nash_md_pg, beta=0.3), {"beta": 0.3}), "iterative-dpo": (IterativeDPO, {}),
    "iterative-ipo": (lambda: hedge, {}), "dno": (lambda: hedge, {}), "replicator": (lambda: replicator, {}),
    "fictitious-play": (lambda: fictitious_play, {}),
}


NEEDS_TAU = {"mpo", "comal", "online-ipo", "ipo-md", "nash-md-pg"}


@pytest.mark.slow
@pytest.mark.parametrize("name, tau", [(name, tau) for name in CASES for tau in (0.0, 0.3)
                                       if tau > 0 or name not in NEEDS_TAU])
def test_update_matches_transcription_over_100_steps(name, tau):
    game = load_game("random:n=10,seed=4,ref_seed=5")
    make, params = CASES[name]
    step = make()
    eta = None if name == "fictitious-play" else 0.7
    traj = simulate(game, name, eta=eta, tau=tau, iterations=100, **params)
    pi = np.full(10, 0.1) if name == "dno" else game.reference
    for t in range(100):
        pi = step(pi, game.P, game.reference, eta, tau, t)
        np.testing.assert_allclose(traj.policies[t + 1], pi, atol=1e-12, rtol=0, err_msg=f"step {t + 1}")


@pytest.mark.slow
def test_gap_triggered_refresh_matches_transcription():
    game = load_game("cycle3")
    traj = simulate(game, "comal", eta=0.5, tau=0.1, iterations=100, refresh_every=10 ** 6, refresh_gap=1e-4)
    step, pi = Refreshing(omd, 10 ** 6, 1e-4), game.reference
    for t in range(100):
        pi = step(pi, game.P, game.reference, 0.5, 0.1, t)
        np.testing.assert_allclose(traj.policies[t + 1], pi, atol=1e-12, rtol=0)


# --- autodiff gradients of the losses against the closed-form steps --------------------------------------
def _setup(seed, n=7):
    game = load_game(f"random:n={n},seed={seed},ref_seed={seed + 1}")
    log_pi = jax.nn.log_softmax(jnp.asarray(np.random.default_rng(seed).standard_normal(n)))
    return jnp.asarray(game.payoff[0]), jnp.log(game.reference), log_pi


@pytest.mark.slow
@pytest.mark.parametrize("beta", [0.0, 0.4])
def test_ipo_loss_gradient_is_the_ipo_md_step(beta):
    """SGD on the online IPO / IPO-MD loss with learning rate lr equals the step with η = 4 lr/τ."""
    A, log_ref, log_pi = _setup(1)
    tau, lr = 0.3, 0.01
    log_mix = jax.nn.log_softmax((1 - beta) * log_pi + beta * log_ref)
    grad = jax.grad(ipo_loss)(log_pi, log_ref, A, tau, log_mix)
    by_sgd = jax.nn.log_softmax(log_pi - lr * grad)
    np.testing.assert_allclose(by_sgd, ipo_md_update(log_pi[None], A[None], log_ref[None], 4 * lr / tau, tau, beta)[0],
                               atol=1e-13)


def test_nash_md_pg_loss_gradient_is_the_step():
    A, log_ref, log_pi = _setup(2)
    tau, lr, beta = 0.2, 0.05, 0.25
    log_mix = jax.nn.log_softmax((1 - beta) * log_pi + beta * log_ref)
    grad = jax.grad(nash_md_pg_loss)(log_pi, log_ref, A, tau, log_mix)
    np.testing.assert_allclose(jax.nn.log_softmax(log_pi - lr * grad),
                               nash_md_pg_update(log_pi[None], A[None], log_ref[None], lr, tau, beta)[0], atol=1e-13)


def test_bradley_terry_fit_matches_scipy():
    A, _, log_pi = _setup(3)
    pi = np.exp(np.asarray(log_pi))
    P = 0.5 + np.asarray(A)
    W = np.outer(pi, pi)

    def nll(r):
        d = r[:, None] - r[None, :]
        return -np.sum(W * P * -np.logaddexp(0, -d)) + BT_RIDGE / 2 * W.sum(1) @ r ** 2

    ours = np.asarray(bradley_terry_fit(jnp.zeros((1, 7)), jnp.asarray(W)[None], jnp.asarray(W * P)[None])[0])
    theirs = minimize(nll, np.zeros(7), method="BFGS", options={"gtol": 1e-13}).x
    np.testing.assert_allclose(ours - ours.mean(), theirs - theirs.mean(), atol=1e-6)


@pytest.mark.parametrize("dropped", [1e-3, 1e-9, 1e-12])
def test_bradley_terry_fit_recovers_scores_of_a_nearly_dropped_response(dropped):
    # On a Bradley-Terry P the maximum-likelihood reward is the true one whatever the pair
    # weights; a ridge not scaled to each response's comparison mass loses the response the
    # policy has nearly dropped (r_c − r_b came out 8e-4 instead of 2.197 at π_c = 1e-12).
    scores = np.array([0.3, -1.0, 1.2])
    P = 1 / (1 + np.exp(-(scores[:, None] - scores[None, :])))
    pi = normalize(np.array([0.5, 0.5, dropped]))
    W = np.outer(pi, pi)
    with jax.enable_x64(True):
        r = np.asarray(bradley_terry_fit(jnp.zeros((1, 3)), jnp.asarray(W)[None], jnp.asarray(W * P)[None])[0])
    # measured 8.0e-9 at each of the three π_c (the ridge's bias); 5e-8 leaves 6× for rounding
    np.testing.assert_allclose(r - r.mean(), scores - scores.mean(), atol=5e-8)


@pytest.mark.slow
def test_dpo_loss_minimizer_is_the_iterative_dpo_step():
    A, _, log_pi_t = _setup(4)
    eta = 0.8
    loss = lambda x: dpo_population_loss(x, log_pi_t, A, eta)  # noqa: E731
    x = minimize(lambda v: float(loss(jnp.asarray(v))), np.asarray(log_pi_t), jac=lambda v: np.asarray(jax.grad(loss)(jnp.asarray(v))),
                 method="BFGS", options={"gtol": 1e-12}).x
    step, _ = iterative_dpo_update(log_pi_t[None], jnp.zeros((1, 7)), A[None], eta)
    # measured 5.2e-10, where BFGS stops (gtol 1e-12); 1e-8 leaves 20× for where it stops elsewhere
    np.testing.assert_allclose(np.exp(jax.nn.log_softmax(x)), np.exp(step[0]), atol=1e-8)


# --- fixed points and limits ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_mmd_is_omd_at_eta_over_one_plus_eta_tau():
    """Derived: MMD(η, α = τ, magnet π_ref) = KL-regularized OMD at η/(1 + ητ), exactly."""
    game = load_game("random:n=10,seed=6,ref_seed=2")
    eta, tau = 3.0, 0.8  # ητ > 1: outside OMD's own range, inside MMD's
    a = simulate(game, "mmd", eta=eta, tau=tau, iterations=100).policies
    b = simulate(game, "omd", eta=eta / (1 + eta * tau), tau=tau, iterations=100).policies
    np.testing.assert_allclose(a, b, atol=1e-13, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("name, eta", [("optimistic-omd", 0.5), ("extragradient", 0.5), ("mmd", 0.5),
                                       ("online-ipo", 2.0)])
def test_converges_to_the_regularized_equilibrium(name, eta):
    game, tau = load_game("random:n=10,seed=1,ref_seed=2"), 0.2
    traj = simulate(game, name, eta=eta, tau=tau, iterations=10000, record_every=10000)
    # measured at most 1.1e-15 and 1.1e-16 over the four methods: rounding-level, with 100× to spare
    assert fixed_point_residual(game, traj.policies[-1], tau) < 1e-13
    assert traj.metrics["gap_reg"][-1] < 1e-14


def test_online_ipo_stationary_point_is_pi_star():
    """Calandriello et al. Prop. 4.1: π*_τ is a fixed point of the expected online IPO step."""
    game, tau = load_game("cycle3"), 0.1
    star = solve(game, tau).policy
    traj = simulate(game, "online-ipo", eta=1.0, tau=tau, iterations=10, init=star)
    np.testing.assert_allclose(traj.policies, np.broadcast_to(star, (11, 3)), atol=1e-14)


@pytest.mark.slow
@pytest.mark.parametrize("name, beta", [("ipo-md", 0.25), ("nash-md-pg", 0.25), ("nash-md", None)])
def test_biased_fixed_point_is_eq13_and_prop52(name, beta):
    """Calandriello et al.: the limit π satisfies π ∝ π_ref exp(P π'/τ), π' ∝ π^{1−β}π_ref^β (eq. 13),
    and π' is the regularized equilibrium at temperature τ/(1 − β) (Prop. 5.2). Constant-step
    Nash-MD has the same limit with β = ητ."""
    game, tau, eta = load_game("random:n=10,seed=2"), 0.2, 1.0
    beta = eta * tau if beta is None else beta
    kw = {} if name == "nash-md" else {"beta": beta}
    pi = simulate(game, name, eta=eta, tau=tau, iterations=20000, record_every=20000, **kw).policies[-1]
    mix = mixture(pi, game.reference, beta)
    np.testing.assert_allclose(pi, normalize(game.reference * np.exp(game.P @ mix / tau)), atol=1e-12)
    np.testing.assert_allclose(mix, solve(game, tau / (1 - beta)).policy, atol=1e-10)
    assert np.abs(pi - solve(game, tau).policy).max() > 1e-3  # not π*_τ


@pytest.mark.slow
@pytest.mark.parametrize("name", ["comal", "mpo"])
def test_refresh_methods_reach_the_von_neumann_winner(name):
    traj = simulate("cycle3", name, eta=0.5, tau=0.1, iterations=8000, record_every=1000)
    assert traj.metrics["gap"][-1] < 1e-14
    np.testing.assert_allclose(traj.policies[-1], np.array([4, 3, 4]) / 11, atol=1e-14)


@pytest.mark.slow
def test_optimistic_last_iterate_reaches_von_neumann_winner_without_regularization():
    traj = simulate("cycle3", "optimistic-omd", eta=0.5, tau=0.0, iterations=3000, record_every=3000)
    assert traj.metrics["gap"][-1] < 1e-8


@pytest.mark.slow
def test_fictitious_play_average_converges():
    """Robinson 1951: the empirical average of fictitious play converges to the equilibrium."""
    traj = simulate("biased_rps", "fictitious-play", iterations=20000, record_every=1000)
    assert np.all(np.diff(traj.metrics["gap"][1:]) < 0) and traj.metrics["gap"][-1] < 2e-3
    smooth = simulate("cycle3", "fictitious-play", tau=0.1, iterations=20000, record_every=20000)
    assert smooth.metrics["kl_to_eq"][-1] < 1e-8  # measured 7.8e-10


@pytest.mark.slow
def test_iterative_dpo_finds_the_condorcet_winner_but_cycles_without_one():
    bt = simulate("bt:n=6,seed=3", "iterative-dpo", eta=1.0, iterations=2000, record_every=2000)
    assert bt.metrics["gap"][-1] < 1e-12  # measured 0: π_t reaches the vertex to rounding
    cyc = simulate("cycle3", "iterative-dpo", eta=1.0, iterations=2000, record_every=100)
    assert np.min(cyc.metrics["gap"][5:]) > 0.3  # never settles near (4, 3, 4)/11


@pytest.mark.slow
@pytest.mark.parametrize("name", ["dno", "replicator", "iterative-ipo"])
def test_average_iterate_methods(name):
    traj = simulate("cycle3", name, eta=0.1, iterations=20000, record_every=20000, init=[0.5, 0.3, 0.2])
    assert traj.metrics["gap_avg"][-1] < 0.02 < traj.metrics["gap"][-1]


@pytest.mark.slow
def test_equilibrium_is_a_fixed_point_of_replicator_and_hedge():
    star = solve("rps").policy
    for name in ("replicator", "sppo"):
        traj = simulate("rps", name, eta=0.5, iterations=10, init=star)
        np.testing.assert_allclose(traj.policies[-1], star, atol=1e-15)


@pytest.mark.parametrize("name, kwargs, message", [
    ("fictitious-play", {"eta": 0.5}, "no learning rate"),
    ("replicator", {"eta": 2.5}, "eta < 2"),
    ("ipo-md", {"eta": 0.5, "tau": 0.1, "beta": 1.5}, r"beta must be a number in \[0, 1\]"),
    ("comal", {"eta": 0.5, "tau": 0.1, "refresh_every": 2.5}, "integer"),
    ("comal", {"eta": 0.5, "tau": 0.1, "refresh_evry": 10}, "did you mean 'refresh_every'"),
    ("omd", {"eta": 0.5, "beta": 0.1}, "no hyperparameter"),
    ("mmd", {"eta": 0.5, "tau": 0.1, "schedule": "theorem"}, "schedule"),
])
def test_bad_hyperparameters(name, kwargs, message):
    with pytest.raises(GamesimError, match=message):
        simulate("cycle3", name, iterations=10, **kwargs)
