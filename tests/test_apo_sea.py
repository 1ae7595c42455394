"""APO (He, Yuan & Gu 2024) and SEA's Thompson sampling (Liu et al. 2024): transcriptions of the papers'
steps (APO to 1e-12 over 100 steps), SEA's ensemble fit against scipy, and SEA's pair rule against
oat's loop."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from gamesim import GamesimError, load_game, simulate
from gamesim.dynamics.algorithms import SEA_ENSEMBLE, get_algorithm
from gamesim.dynamics.updates import anchored_bradley_terry_fit, sea_thompson_pair
from transcriptions import (APO, IterativeDPO, anchored_bt_gradient, anchored_bt_objective, hedge, normalize,
                            oat_bai_second, oat_duel)


pytestmark = pytest.mark.usefixtures("float64")


@pytest.mark.slow
@pytest.mark.parametrize("name, inner", [("apo", IterativeDPO), ("apo-sppo", lambda: hedge)])
def test_apo_matches_transcription_over_100_steps(name, inner):
    game = load_game("random:n=10,seed=4,ref_seed=5")
    eta, alpha = 0.7, 0.4
    traj = simulate(game, name, eta=eta, iterations=100, alpha=alpha)
    step, pi = APO(inner(), alpha), game.reference
    for t in range(100):
        pi = step(pi, game.P, game.reference, eta, 0.0, t)
        np.testing.assert_allclose(traj.policies[t + 1], pi, atol=1e-12, rtol=0, err_msg=f"step {t + 1}")


def test_anchored_bradley_terry_fit_matches_scipy():
    rng = np.random.default_rng(0)
    n = 6
    wins = rng.integers(0, 4, (n, n)).astype(float) * (1 - np.eye(n))
    anchor, precision = rng.normal(size=n), 0.7
    r = np.asarray(anchored_bradley_terry_fit(jnp.zeros(n), jnp.asarray(wins + wins.T), jnp.asarray(wins),
                                              jnp.asarray(anchor), precision, 30))
    ref = minimize(anchored_bt_objective, np.zeros(n), args=(wins, anchor, precision), method="BFGS",
                   options={"gtol": 1e-12}).x
    np.testing.assert_allclose(r, ref, atol=1e-7)


def _sea_transcription(game, tau, precision, bai, key_data, T):
    """SEA's run in plain numpy, drawing the same randomness as gamesim (the key's splits); each member
    refit by scipy's BFGS from scratch. Returns the policies π_1..π_T."""
    P, ref = game.P, game.reference
    key, sub = jax.random.split(jax.random.wrap_key_data(key_data))
    z = np.asarray(jax.random.normal(sub, (SEA_ENSEMBLE, 1, len(ref))))[:, 0]
    rewards, wins, out = z.copy(), np.zeros((len(ref), len(ref))), []
    for _ in range(T):
        key, k_pair, k_answer = jax.random.split(key, 3)
        order = np.asarray(jax.random.permutation(k_pair, SEA_ENSEMBLE))
        y, y2 = oat_duel(np.argmax(rewards, axis=-1), order)
        if bai:
            y2 = oat_bai_second(rewards, y)
        u = float(jax.random.uniform(k_answer, (1,))[0])
        if y != y2:
            if u < P[y, y2]:
                wins[y, y2] += 1
            else:
                wins[y2, y] += 1
        rewards = np.stack([minimize(anchored_bt_objective, a / np.sqrt(precision), method="BFGS", jac=anchored_bt_gradient,
                                     args=(wins, a / np.sqrt(precision), precision), options={"gtol": 1e-11}).x
                            for a in z])
        out.append(normalize(ref * np.exp(rewards.mean(0) / tau)))
    return np.array(out)


def test_sea_pair_rules_are_oats():
    """Both second-response rules against oat's loop (EnnEETS) and variance argmax (EnnBAITS), on ensembles
    that mostly agree (so that the explore-exploit rule's fallback to y itself is exercised too)."""
    rng = np.random.default_rng(1)
    for trial in range(20):
        rewards = rng.normal(size=(SEA_ENSEMBLE, 3, 4)) + np.array([0.0, 2.5 * (trial % 3), 0.0, 0.0])
        key = jax.random.key(trial)
        order = np.asarray(jax.random.permutation(key, SEA_ENSEMBLE))
        for bai in (0, 1):
            first, second = map(np.asarray, sea_thompson_pair(key, jnp.asarray(rewards), bai))
            for c in range(3):
                y, y2 = oat_duel(np.argmax(rewards[:, c], axis=-1), order)
                assert (first[c], second[c]) == (y, oat_bai_second(rewards[:, c], y) if bai else y2)


@pytest.mark.parametrize("bai", [1])
def test_sea_matches_transcription(bai):
    game, tau, precision, T = load_game("bt:n=4,seed=0"), 0.5, 2.0, 10
    alg = get_algorithm("sea")
    key = jax.random.key_data(jax.random.key(7))
    A, log_ref = jnp.asarray(game.P - 0.5)[None], jnp.log(jnp.asarray(game.reference))[None]
    state = alg.init(log_ref, A, log_ref, key)
    params = alg.resolve_params({"prior_precision": precision, "bai": bai})
    step = jax.jit(lambda s, t: alg.step(s, A, log_ref, None, tau, t, params))
    mine = []
    for t in range(T):
        state = step(state, t)
        mine.append(np.exp(np.asarray(alg.log_policy(state))[0]))
    np.testing.assert_allclose(np.array(mine), _sea_transcription(game, tau, precision, bai, key, T), atol=1e-6)


@pytest.mark.slow
def test_sea_finds_the_condorcet_winner_and_counts_queries():
    traj = simulate("bt:n=5,seed=0", "sea", tau=0.05, iterations=200, record_every=200, seed=1)
    assert traj.metrics["queries"][-1] == 200
    # its policy's mode is the Condorcet winner (the game's only equilibrium)
    assert traj.metrics["gap"][-1] < 0.05


def test_sea_needs_tau_and_no_eta():
    with pytest.raises(GamesimError, match="tau > 0"):
        simulate("bt:n=5,seed=0", "sea", iterations=3)
    with pytest.raises(GamesimError, match="no learning rate"):
        simulate("bt:n=5,seed=0", "sea", eta=0.5, tau=0.1, iterations=3)
    with pytest.raises(GamesimError, match=r"alpha must be a number in \[0, 0.99\]"):
        simulate("bt:n=5,seed=0", "apo", eta=0.5, iterations=3, alpha=1.0)


@pytest.mark.slow
def test_sampled_apo_samples_from_the_extrapolation():
    """Two steps of sampled APO: the second iteration's anchor and sampler is the extrapolation of the
    first two fitted policies, so its state's reference is (1 + α) log π̂_2 − α log π̂_1 normalized,
    and its fitted π̂_2 is the DPO fit on pairs from that reference (checked with the same key)."""
    from gamesim.bandit.sampled import sampled_algorithm

    game, alpha = load_game("bt:n=5,seed=0"), 0.5
    A, log_ref = jnp.asarray(game.P - 0.5)[None], jnp.log(jnp.asarray(game.reference))[None]
    apo, dpo = sampled_algorithm("apo", pairs=32), sampled_algorithm("iterative-dpo", pairs=32)
    key = jax.random.key_data(jax.random.key(0))
    p_apo = apo.resolve_params({"alpha": alpha})
    p_dpo = dpo.resolve_params({})
    s1 = apo.step(apo.init(log_ref, A, log_ref, key), A, log_ref, 0.5, 0.0, 0, p_apo)
    s2 = apo.step(s1, A, log_ref, 0.5, 0.0, 1, p_apo)
    hat1, hat2 = np.asarray(s1[0][0]), np.asarray(s2[0][0])
    logits = (1 + alpha) * hat1 - alpha * np.log(game.reference)
    np.testing.assert_allclose(np.asarray(s1[3][0]), logits - np.log(np.exp(logits).sum()), atol=1e-12)
    # the second fit is iterative DPO's step from the extrapolated reference, with the same key and scores
    d2 = dpo.step((s1[3], s1[1], s1[2]), A, log_ref, 0.5, 0.0, 1, p_dpo)
    np.testing.assert_allclose(hat2, np.asarray(d2[0][0]), atol=1e-12)
    logits = (1 + alpha) * hat2 - alpha * hat1  # extrapolated from π̂_1, not from the reference π_1
    np.testing.assert_allclose(np.asarray(s2[3][0]), logits - np.log(np.exp(logits).sum()), atol=1e-12)
