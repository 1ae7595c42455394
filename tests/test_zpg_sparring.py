"""ZPG (Zhang & Ying 2024) and Sparring with EXP3 (Ailon et al. 2014; Auer et al. 2002): each step is
gamesim's draws (the run's key) plus an update, and the update is checked against a plain-numpy
transcription given the same draws; the estimators against their expectations; Sparring's average
iterate against the von Neumann winner."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gamesim import GamesimError, load_game, simulate
from gamesim.dynamics.algorithms import exp3_parameters
from gamesim.dynamics.updates import exp3_policy, sparring_draw, sparring_wins, zpg_draw
from transcriptions import exp3, exp3_played, normalize, sparring_expected, zpg

pytestmark = pytest.mark.usefixtures("float64")


def _subkeys(seed, steps):
    """The engine's key stream: per step (key, sub) = split(key), the k-th draw from fold_in(sub, k)."""
    key, subs = jax.random.key(seed), []
    for _ in range(steps):
        key, sub = jax.random.split(key)
        subs.append(sub)
    return subs


@pytest.mark.slow
@pytest.mark.parametrize("queries", [7, 0])
def test_zpg_matches_transcription_over_100_steps(queries):
    game, T, seed, eta, mu, N, D = load_game("random:n=4,seed=3"), 100, 5, 0.3, 0.2, 3, 2.0
    traj = simulate(game, "zpg", eta=eta, iterations=T, seed=seed, init="uniform", mu=mu, perturbations=N,
                    queries_per_pair=queries, trim=D)
    A, pi = jnp.asarray(game.payoff), np.full(4, 0.25)
    draw = jax.jit(lambda sub, log_pi: jax.vmap(lambda k: zpg_draw(jax.random.fold_in(sub, k), A, log_pi, mu,
                                                                   float(queries), D))(jnp.arange(N)))
    for t, sub in enumerate(_subkeys(seed, T)):
        v, _, y, y2, w = (np.asarray(x)[:, 0] for x in draw(sub, jnp.log(pi)[None]))
        pi = zpg(pi, game.P, eta, mu, v, queries, D, y, y2, w)
        np.testing.assert_allclose(traj.policies[t + 1], pi, atol=1e-12, rtol=0, err_msg=f"step {t + 1}")
    if queries:
        np.testing.assert_array_equal(traj.metrics["queries"], traj.iterations * N * queries)


@pytest.mark.slow
@pytest.mark.parametrize("duels, gamma", [(3, 0.2), (0, 0.2), (1, 0.0)])
def test_sparring_matches_transcription_over_100_steps(duels, gamma):
    game, T, seed, eta = load_game("cycle3"), 100, 2, 0.1
    traj = simulate(game, "sparring", eta=eta, iterations=T, seed=seed, duels=duels, gamma=gamma)
    g = gamma or min(1.0, 3 * eta)  # gamma = 0: Auer et al.'s coupling η = γ/K
    A, wl, wr = jnp.asarray(game.payoff), np.full(3, 1 / 3), np.full(3, 1 / 3)
    draw = jax.jit(lambda sub, log_pl, log_pr: jax.vmap(
        lambda k: sparring_draw(jax.random.fold_in(sub, k), A, log_pl, log_pr))(jnp.arange(max(duels, 1))))
    for t, sub in enumerate(_subkeys(seed, T)):
        pl, pr = exp3_played(wl, g), exp3_played(wr, g)
        if duels == 0:
            wl, wr = sparring_expected(wl, wr, game.P, g, eta)
        else:
            x, y, b = (np.asarray(z)[:, 0] for z in draw(sub, jnp.log(pl)[None], jnp.log(pr)[None]))
            wl, wr = exp3(wl, g, eta, x, b), exp3(wr, g, eta, y, 1 - b)
        np.testing.assert_allclose(traj.policies[t + 1], exp3_played(wl, g), atol=1e-12, rtol=0, err_msg=f"step {t + 1}")
    assert np.all(traj.metrics["queries"] == traj.iterations * duels)


def test_exp3_importance_weighted_estimator_is_unbiased():
    """E[W_j/(N p_j)] = (P p_R)_j for the left learner and (P p_L)_j for the right, over many keys,
    within 5 standard errors (the estimator's own sample variance)."""
    game, K, N = load_game("cycle3"), 20000, 2
    A = jnp.asarray(game.payoff)
    log_pl = exp3_policy(jnp.log(jnp.array([[0.7, 0.2, 0.1]])), 0.3)
    log_pr = exp3_policy(jnp.log(jnp.array([[0.1, 0.3, 0.6]])), 0.3)
    keys = jax.vmap(lambda s: jax.random.key_data(jax.random.key(s)))(jnp.arange(K))
    wl, wr, _ = jax.jit(jax.vmap(lambda k: sparring_wins(k, A, log_pl, log_pr, jnp.float64(N))))(keys)
    for wins, log_p, opponent in ((wl, log_pl, log_pr), (wr, log_pr, log_pl)):
        est = np.asarray(wins[:, 0] / (N * jnp.exp(log_p[0])))
        expected = game.P @ np.exp(np.asarray(opponent[0]))
        se = est.std(axis=0) / np.sqrt(K)
        assert np.all(np.abs(est.mean(axis=0) - expected) < 5 * se), (est.mean(axis=0), expected, se)


def test_zpg_exact_direction_is_the_smoothed_value_gradient():
    """On a Bradley-Terry game σ⁻¹(P(y' ≻ y)) = r_y' − r_y, so the exact value difference is ⟨π' − π, r⟩
    (a closed form), and the mean of (n/μ) d v over many v is the gradient of the ball-smoothed value,
    within O(μ) and 5 standard errors of the autodiff gradient π ⊙ (r − ⟨π, r⟩) of V(θ) = ⟨softmax θ, r⟩."""
    r = np.array([0.4, -0.3, 0.9, 0.0])
    P = 1 / (1 + np.exp(-(r[:, None] - r[None, :])))
    A = jnp.asarray(P - 0.5)[None]
    theta = jnp.asarray([0.3, -0.2, 0.1, 0.5])
    log_pi = jax.nn.log_softmax(theta)[None]
    mu, K, n = 0.05, 10000, 4
    v, d, *_ = jax.jit(jax.vmap(lambda k: zpg_draw(jax.random.key(k), A, log_pi, mu, 0.0, 50.0)))(jnp.arange(K))
    pert = np.asarray(jax.nn.softmax(log_pi + mu * v, axis=-1))[:, 0]
    np.testing.assert_allclose(np.asarray(d)[:, 0], (pert - np.exp(np.asarray(log_pi[0]))) @ r, atol=1e-12)
    g = n / mu * np.asarray(d)[:, 0, None] * np.asarray(v)[:, 0]
    grad = np.asarray(jax.grad(lambda th: jax.nn.softmax(th) @ jnp.asarray(r))(theta))
    se = g.std(axis=0) / np.sqrt(K)
    assert np.all(np.abs(g.mean(axis=0) - grad) < 5 * se + 0.02), (g.mean(axis=0), grad, se)
    # the sampled oracle: w/M is an unbiased rate of "y' (perturbed) beats y", P(y' ≻ y), not P(y ≻ y')
    _, _, y, y2, w = jax.jit(jax.vmap(lambda k: zpg_draw(jax.random.key(k), A, log_pi, mu, 5.0, 50.0)))(jnp.arange(K))
    p = P[np.asarray(y2)[:, 0], np.asarray(y)[:, 0]]
    err = (np.asarray(w)[:, 0] / 5 - p) * (p - 0.5)  # weighted: y, y' are near-exchangeable, a plain mean is blind
    assert abs(err.mean()) < 5 * err.std() / np.sqrt(K), err.mean()


@pytest.mark.slow
def test_sparring_average_iterate_approaches_the_von_neumann_winner():
    """Dudík et al. 2015: with both EXP3 learners at vanishing regret, the average play is an
    approximate von Neumann winner; on cycle3 it is (4/11, 3/11, 4/11)."""
    T = 20000
    eta, gamma = exp3_parameters(3, T)
    traj = simulate("cycle3", "sparring", eta=eta, gamma=gamma, iterations=T, record_every=T // 4, seed=0)
    gaps = traj.metrics["gap_avg"]
    assert gaps[-1] < 0.05 and gaps[-1] < gaps[1], gaps
    avg = np.mean(traj.policies[1:], axis=0)  # a coarse check of the records themselves
    assert np.abs(avg - np.array([4, 3, 4]) / 11).max() < 0.15, avg


@pytest.mark.parametrize("params, message", [({"gamma": 1.5}, "gamma must be a number in"),
                                             ({"duels": 2.5}, "duels must be an integer"),
                                             ({"duels": -1}, "duels must be an integer")])
def test_sparring_bad_hyperparameters_are_refused(params, message):
    with pytest.raises(GamesimError, match=message):
        simulate("cycle3", "sparring", eta=0.1, iterations=2, **params)


def test_exp3_parameters_are_corollary_3_2():
    eta, gamma = exp3_parameters(3, 1000)
    assert gamma == pytest.approx(np.sqrt(3 * np.log(3) / ((np.e - 1) * 1000))) and eta == pytest.approx(gamma / 3)
    assert exp3_parameters(10, 1) == (0.1, 1.0)
    with pytest.raises(GamesimError, match="horizon"):
        exp3_parameters(3, 0)
    assert normalize(np.ones(2))[0] == 0.5
