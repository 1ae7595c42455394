"""XPO and VPO (optimistic online DPO): the population step against a transcription, its minimizer
against scipy.optimize, the derived fixed points, the no-minimizer error and the sampled mode."""

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp, softmax

import transcriptions as tr
from gamesim import simulate
from gamesim.core.errors import GamesimError
from gamesim.core.games import load_game
from gamesim.dynamics.algorithms import optimism_limit

BT5 = "bt:n=5,seed=0"
TAU = 0.5


def _bt_scores(P):
    return np.log(P[:, 0]) - np.log1p(-P[:, 0])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["xpo", "vpo"])
def test_step_matches_transcription_over_100_steps(name):
    game = load_game(BT5)
    alpha = 0.8 * optimism_limit(game.P, game.reference, TAU, name == "vpo")
    traj = simulate(game, name, tau=TAU, alpha=alpha, iterations=100)
    step, pi = tr.OptimisticDPO(vpo=name == "vpo"), game.reference
    expected = [pi]
    for t in range(100):
        pi = step(pi, game.P, game.reference, alpha, TAU, t)
        expected.append(pi)
    assert np.abs(np.asarray(traj.policies) - np.array(expected)).max() < 1e-12


def test_step_is_the_minimizer_of_the_objective_by_scipy():
    """The first XPO step from π_ref: scipy's L-BFGS on the objective in the logits finds no lower
    value, and the same policy (`bt:n=5` with 100 iterations: the compilation of the tests above)."""
    game = load_game(BT5)
    ref, P = game.reference, game.P
    alpha = 0.8 * optimism_limit(P, ref, TAU, False)
    ours = np.asarray(simulate(game, "xpo", tau=TAU, alpha=alpha, iterations=100).policies)[1]
    W = np.outer(ref, ref) * 2

    def objective(theta):
        log_p = theta - logsumexp(theta)
        h = TAU * (log_p - np.log(ref))
        d = h[:, None] - h[None, :]
        return -(W * P * -np.logaddexp(0, -d)).sum() + alpha * ref @ log_p

    best = minimize(objective, np.log(ref), method="L-BFGS-B", options={"ftol": 1e-15, "gtol": 1e-12})
    assert objective(np.log(ours)) <= best.fun + 1e-12
    assert np.abs(softmax(best.x) - ours).max() < 1e-5


def test_vpo_at_alpha_zero_is_the_regularized_optimum_on_bradley_terry():
    """(XPO's is the claim xpo-stationary's.)"""
    game = load_game(BT5)
    traj = simulate(game, "vpo", tau=TAU, alpha=0.0, iterations=100)  # 100: the compilation of the test above
    optimum = softmax(np.log(game.reference) + _bt_scores(game.P) / TAU)
    assert np.abs(np.asarray(traj.policies)[1:] - optimum).max() < 1e-12


def test_optimism_moves_mass_away_from_the_reference():
    """At α > 0 XPO's limit is further from π_ref (in KL(π_ref‖·)) than the α = 0 optimum."""
    game = load_game(BT5)
    ref = game.reference
    alpha = 0.9 * optimism_limit(game.P, ref, TAU, False)
    last = np.asarray(simulate(game, "xpo", tau=TAU, alpha=alpha, iterations=100).policies)[-1]
    optimum = softmax(np.log(ref) + _bt_scores(game.P) / TAU)
    assert tr.kl(ref, last) > tr.kl(ref, optimum) + 1e-3


@pytest.mark.parametrize("name", ["xpo", "vpo"])
def test_alpha_beyond_the_existence_bound_raises(name):
    game = load_game(BT5)
    limit = optimism_limit(game.P, game.reference, TAU, name == "vpo")
    with pytest.raises(GamesimError, match="guaranteed a minimizer"):
        simulate(game, name, tau=TAU, alpha=1.01 * limit, iterations=1)
    with pytest.raises(GamesimError, match="tau > 0"):
        simulate(game, name, tau=0.0, iterations=1)


@pytest.mark.parametrize("name", ["xpo", "vpo"])
def test_sampled_loss_in_expectation_is_stationary_at_the_exact_step(name):
    """`losses.optimistic_dpo_loss` on the expected statistics of the first iteration (pair mass
    π_0 × partner, wins its ⊙ P; optimism α π_ref per ỹ for XPO, αβ π_ref for VPO) has zero gradient at
    the population step's policy: the sampled recipe fits the exact algorithm's objective."""
    import jax
    import jax.numpy as jnp

    from gamesim.dynamics.losses import optimistic_dpo_loss

    game = load_game(BT5)
    ref, P = game.reference, game.P
    vpo = name == "vpo"
    alpha = 0.8 * optimism_limit(P, ref, TAU, vpo)
    pi1 = np.asarray(simulate(game, name, tau=TAU, alpha=alpha, iterations=100).policies)[1]  # 100: one compilation
    M = np.outer(ref, ref)  # π_0 = π_ref, so both partners give the same pair mass at t = 0
    optimism = alpha * TAU * ref if vpo else alpha * ref
    with jax.enable_x64(True):
        grad = jax.grad(optimistic_dpo_loss)(jnp.log(jnp.asarray(pi1)), jnp.log(jnp.asarray(ref)), TAU,
                                             jnp.asarray((M + M.T) * P), jnp.asarray(optimism))
    assert np.abs(np.asarray(grad)).max() < 1e-12


@pytest.mark.slow
def test_sampled_mode_runs_with_optax_and_refuses_the_exact_fit():
    game = load_game(BT5)
    alpha = 0.5 * optimism_limit(game.P, game.reference, TAU, False)
    traj = simulate(game, "xpo", tau=TAU, alpha=alpha, feedback="sampled", fit="adam", pairs=32, iterations=10)
    pis = np.asarray(traj.policies)
    assert np.all(np.isfinite(pis)) and np.allclose(pis.sum(-1), 1)
    assert traj.metrics["queries"][-1] == 10 * 32
    for name in ("xpo", "vpo"):
        with pytest.raises(GamesimError, match="no minimizer"):
            simulate(game, name, tau=TAU, alpha=alpha, feedback="sampled", iterations=1)
