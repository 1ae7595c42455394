"""Updates against plain-numpy transcriptions of the papers' equations, and the INPO/SPPO losses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gamesim import GamesimError, load_game, simulate
from gamesim.dynamics.algorithms import (ALGORITHMS, BUILTIN, eta_from_inverse, eta_from_sppo_beta, eta_to_inverse,
                                eta_to_sppo_beta, get_algorithm, theorem_schedule)
from gamesim.dynamics.updates import hedge_update, omd_update
from gamesim.dynamics.losses import inpo_loss, inpo_population_loss, inpo_regression_loss, sppo_loss
from transcriptions import hedge, inpo_eq5, nash_md_eq34, normalize, omd



pytestmark = pytest.mark.usefixtures("float64")


CASES = [("omd", omd), ("inpo", omd), ("nash-md", nash_md_eq34), ("sppo", hedge)]


@pytest.mark.parametrize("name, reference_update", CASES)
@pytest.mark.parametrize("seed", [0, 1])
def test_update_matches_paper_equation_over_100_steps(name, reference_update, seed):
    game = load_game(f"random:n=10,seed={seed},ref_seed={seed + 10}")
    eta, tau = 0.7, 0.3
    traj = simulate(game, name, eta=eta, tau=tau, iterations=100)
    pi = game.reference
    for t in range(100):
        pi = reference_update(pi, game.P, game.reference, eta, tau)
        np.testing.assert_allclose(traj.policies[t + 1], pi, atol=1e-12, rtol=0)


@pytest.mark.parametrize("name, reference_update", CASES[2:3] + CASES[:1])
def test_theorem_schedule_matches_paper(name, reference_update):
    game = load_game("random:n=10,seed=2")
    tau = 0.5
    traj = simulate(game, name, tau=tau, schedule="theorem", iterations=100)
    pi = game.reference
    for t in range(100):
        pi = reference_update(pi, game.P, game.reference, 2 / (tau * (t + 2)), tau)
        np.testing.assert_allclose(traj.policies[t + 1], pi, atol=1e-12, rtol=0)


def test_mirror_logits_is_the_geometric_logits_plus_the_scores_bit_for_bit():
    """`mirror_logits` writes (1 − ητ) log π + ητ log π_ref out for numba; it must stay the one
    formula of `geometric_logits` at w = ητ plus η·scores, to the last bit (and a typo must show)."""
    from gamesim.dynamics.updates import geometric_logits, mirror_logits

    rng = np.random.default_rng(4)
    log_pi, log_ref, scores = rng.standard_normal((3, 1000)) - 3
    for eta, tau in ((0.3, 0.1), (1e-3, 7.0), (2.0, 0.5)):
        np.testing.assert_array_equal(mirror_logits(log_pi, log_ref, scores, eta, tau),
                                      geometric_logits(log_pi, log_ref, eta * tau) + eta * scores)
    assert not np.array_equal(mirror_logits(log_pi, log_ref, scores, 0.3, 0.1),
                              geometric_logits(log_pi, log_ref, 0.3 * 0.1 * (1 + 1e-15)) + 0.3 * scores)


@pytest.mark.slow
def test_contextual_update_is_per_context():
    game = load_game("random:n=10,seed=3,contexts=2,ref_seed=1")
    traj = simulate(game, "nash-md", eta=0.4, tau=0.2, iterations=100)
    for c in range(2):
        pi = game.reference[c]
        for _ in range(100):
            pi = nash_md_eq34(pi, game.P[c], game.reference[c], 0.4, 0.2)
        np.testing.assert_allclose(traj.policies[-1, c], pi, atol=1e-12, rtol=0)


def test_step_size_converters_round_trip_and_match_inpo():
    assert eta_from_inverse(0.005) == pytest.approx(200) and eta_to_inverse(200) == pytest.approx(0.005)
    assert eta_from_sppo_beta(1e-3) == pytest.approx(1e3) and eta_to_sppo_beta(1e3) == pytest.approx(1e-3)
    game = load_game("cycle3")
    pi, P, ref = np.array([0.6, 0.3, 0.1]), game.P, game.reference
    eta_inpo, tau = 2.0, 0.5  # INPO's inverse learning rate
    ours = np.exp(omd_update(jnp.log(pi)[None], game.payoff, jnp.log(ref)[None], eta_from_inverse(eta_inpo), tau))
    np.testing.assert_allclose(ours[0], inpo_eq5(pi, P, ref, eta_inpo, tau), atol=1e-15)
    assert float(theorem_schedule(0.1, 0)) * 0.1 == pytest.approx(1.0)


@pytest.mark.parametrize("name, eta, tau, schedule, message", [
    ("omd", 0.0, 0.1, "constant", "eta must be a number in"),
    ("omd", -1.0, 0.1, "constant", "eta must be a number in"),
    ("inpo", 5.0, 0.3, "constant", "eta·tau ≤ 1"),
    ("nash-md", 20.0, 0.1, "constant", "eta·tau ≤ 1"),
    ("nash-md", None, 0.1, "constant", "needs a learning rate"),
    ("nash-md", 0.5, 0.1, "theorem", "do not also give eta"),
    ("nash-md", None, 0.0, "theorem", "needs tau > 0"),
    ("sppo", None, 0.0, "theorem", "schedule"),
    ("omd", float("nan"), 0.1, "constant", "eta must be a number in"),
    ("omd", 0.1, -0.1, "constant", "must be 0 or in"),
    ("inpo", 0.1, 0.1, "cosine", "schedule"),
])
def test_invalid_step_sizes_are_refused(name, eta, tau, schedule, message):
    with pytest.raises(GamesimError, match=message):
        simulate("cycle3", name, eta=eta, tau=tau, schedule=schedule, iterations=10)


def test_unknown_algorithm_suggests():
    with pytest.raises(GamesimError, match="did you mean 'nash-md'"):
        get_algorithm("nashmd")
    assert set(BUILTIN) <= set(ALGORITHMS)
    assert set(BUILTIN) == {"omd", "inpo", "nash-md", "sppo", "optimistic-omd", "extragradient", "mmd", "mpo", "comal",
                            "online-ipo", "ipo-md", "nash-md-pg", "iterative-dpo", "iterative-ipo", "dno",
                            "fictitious-play", "replicator", "mmd-moving-magnet", "apmd", "mwu", "omwu", "zpg", "sparring",
                            "omd-forward-kl", "omd-js", "omd-alpha", "xpo", "vpo", "apo", "apo-sppo", "sea"}


# --- losses ---------------------------------------------------------------------------------------
def _minimize_quadratic(loss, x0):
    """Exact minimizer of a loss quadratic in the logits x: one Newton step with the autodiff Hessian.

    The loss depends on x only through differences x_y − x_y', so the Hessian is singular along
    the all-ones direction; the pseudo-inverse picks the step orthogonal to it.
    """
    g, H = jax.grad(loss)(x0), jax.hessian(loss)(x0)
    return x0 - jnp.linalg.pinv(H, rtol=1e-12) @ g


@pytest.mark.slow
@pytest.mark.parametrize("seed, tau", [(0, 0.4), (1, 0.4), (2, 0.4), (3, 0.0)])
@pytest.mark.parametrize("which", ["eq8_population", "eq7_regression"])
def test_inpo_loss_minimizer_is_the_omd_step(seed, tau, which):
    """INPO Lemma 5 / Prop. 6: argmin of the loss over policies is the closed-form update (eq. 5).

    At τ = 0 the loss is iterative IPO's with reference π_t, and the step is Hedge."""
    game = load_game(f"random:n=8,seed={seed},ref_seed={seed}")
    A, log_ref = jnp.asarray(game.payoff[0]), jnp.log(game.reference)
    log_pi_t = jax.nn.log_softmax(jnp.asarray(np.random.default_rng(seed).standard_normal(8)))
    eta = 0.8
    loss_fn = inpo_population_loss if which == "eq8_population" else inpo_regression_loss
    x = _minimize_quadratic(lambda x: loss_fn(x, log_pi_t, log_ref, A, eta, tau), log_pi_t)
    expected = omd_update(log_pi_t[None], A[None], log_ref[None], eta, tau)[0]
    # measured 1.1e-16 over the 8 cases; 1e-13 leaves room for other BLAS/libm in the pseudo-inverse
    np.testing.assert_allclose(np.exp(jax.nn.log_softmax(x)), np.exp(expected), atol=1e-13)
    if tau == 0:
        np.testing.assert_allclose(expected, hedge_update(log_pi_t[None], A[None], eta)[0], atol=1e-14)


def test_inpo_eq8_equals_eq7_up_to_a_constant():
    """Prop. 6: the two losses differ by a constant in π (checked at several policies)."""
    game = load_game("random:n=6,seed=5")
    A, log_ref = jnp.asarray(game.payoff[0]), jnp.log(game.reference)
    rng = np.random.default_rng(0)
    log_pi_t = jax.nn.log_softmax(jnp.asarray(rng.standard_normal(6)))
    diffs = []
    for _ in range(5):
        x = jnp.asarray(rng.standard_normal(6))
        diffs.append(inpo_population_loss(x, log_pi_t, log_ref, A, 0.5, 0.2)
                     - inpo_regression_loss(x, log_pi_t, log_ref, A, 0.5, 0.2))
    assert np.ptp(np.array(diffs)) < 1e-13


def test_inpo_sample_loss_is_the_weighted_pair_loss():
    log_pi, log_t, log_ref = (jax.nn.log_softmax(jnp.asarray(v)) for v in np.random.default_rng(1).standard_normal((3, 4)))
    w, l = jnp.array([0, 1, 1, 3]), jnp.array([2, 0, 3, 1])
    h = (log_pi[w] - log_pi[l]) - 0.5 * 0.2 * (log_ref[w] - log_ref[l]) - (1 - 0.1) * (log_t[w] - log_t[l])
    assert inpo_loss(log_pi, log_t, log_ref, 0.5, 0.2, w, l) == pytest.approx(float(jnp.mean((h - 0.25) ** 2)))


def test_sppo_loss_exact_partition_vanishes_at_the_update():
    game = load_game("random:n=7,seed=3")
    P = game.P
    pi_t = normalize(np.random.default_rng(2).uniform(0.1, 1, 7))
    eta = 2.0
    nxt = hedge(pi_t, P, None, eta, 0.0)
    wins = P @ pi_t
    log_z = np.log(np.sum(pi_t * np.exp(eta * wins)))
    y = jnp.arange(7)
    exact = sppo_loss(jnp.log(nxt), jnp.log(pi_t), eta, y, wins, pi_t, log_partition=log_z)
    assert exact < 1e-28
    # the practical loss (log Z ≈ η/2, eqs. 4.6–4.7) is off by exactly (log Z − η/2)² there
    practical = sppo_loss(jnp.log(nxt), jnp.log(pi_t), eta, y, wins, pi_t)
    assert practical == pytest.approx((log_z - eta / 2) ** 2, rel=1e-10)
    assert sppo_loss(jnp.log(pi_t), jnp.log(pi_t), eta, y, wins, pi_t, log_partition=log_z) > 1e-3


# EGPO's five tabular losses, transcribed line by line from its code (zhourunlong/EGPO,
# simulations/loss_funcs.py; stop-gradient where it detaches), differentiated by autodiff and
# stepped by plain SGD on the unnormalized logits θ, as its run.py does.
def _egpo_loss(method, theta, theta_ref, P, beta, lr, prefs_at=None):
    n = P.shape[0]
    sg = jax.lax.stop_gradient
    log_pi, log_ref = jax.nn.log_softmax(theta), jax.nn.log_softmax(theta_ref)
    d = log_pi - log_ref
    contrast = d[:, None] - d[None, :]
    true_lr = 2 * lr / (beta * n)
    mixture = jax.nn.softmax((1 - true_lr * beta) * sg(log_pi) + true_lr * beta * log_ref)
    if method == "online-ipo-2":
        pi = sg(jax.nn.softmax(theta))
        return pi @ ((contrast - (P - 0.5) / beta) ** 2) @ pi
    if method == "nash-md-pg":
        item = (P @ mixture - beta * sg(d)) * log_pi
        return -jnp.sum(sg(jax.nn.softmax(theta)) * item)
    opponent = {"nash-md": mixture}.get(method, sg(jax.nn.softmax(theta if prefs_at is None else prefs_at)))
    prefs = P @ opponent
    return jnp.sum((contrast - (prefs[:, None] - prefs[None, :]) / beta) ** 2) / n ** 2


def _egpo_sgd_step(method, theta, theta_ref, P, beta, lr):
    grad = jax.grad(_egpo_loss, argnums=1)
    if method == "egpo":  # the half step, then the step from θ_t with preferences at π_{t+1/2}
        half = theta - lr * grad("egpo", theta, theta_ref, P, beta, lr)
        return theta - lr * grad("egpo", theta, theta_ref, P, beta, lr, half)
    return theta - lr * grad(method, theta, theta_ref, P, beta, lr)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["online-ipo-1", "online-ipo-2", "nash-md", "nash-md-pg", "egpo"])
@pytest.mark.parametrize("lr,beta", [(2e-4, 1e-3), (0.02, 0.01), (0.1, 0.1)])
def test_egpo_settings_follow_egpos_sgd_steps(method, lr, beta):
    """`egpo_settings` (EGPO's three configs): three steps of the converted gamesim method equal
    three SGD steps on EGPO's own loss, in float64, to 1e-12."""
    from gamesim.dynamics.algorithms import egpo_settings

    game = load_game("random:n=10,seed=3,ref_seed=103")
    P = np.asarray(game.P)
    theta = theta_ref = jnp.asarray(np.log(game.reference))
    expected = []
    for _ in range(3):
        theta = _egpo_sgd_step(method, theta, theta_ref, P, beta, lr)
        expected.append(np.asarray(jax.nn.softmax(theta)))
    name, kwargs = egpo_settings(method, lr=lr, beta=beta, n=game.n)
    traj = simulate(game, name, init="reference", iterations=3, **kwargs)
    np.testing.assert_allclose(traj.policies[1:], expected, rtol=0, atol=1e-12)


@pytest.mark.slow
def test_egpo_settings_reject_other_conventions():
    """A wrong conversion fails the transcription (the Nash-MD mixture at the paper's ητ, or Online
    IPO 1's η without the 1/n), and bad arguments are refused with the valid choices."""
    from gamesim.dynamics.algorithms import egpo_settings

    game = load_game("random:n=10,seed=3,ref_seed=103")
    theta = theta_ref = jnp.asarray(np.log(game.reference))
    for _ in range(3):  # the first step cannot tell mixtures apart: π_0 = π_ref is every mixture
        theta = _egpo_sgd_step("nash-md", theta, theta_ref, np.asarray(game.P), 0.1, 0.1)
    name, kwargs = egpo_settings("nash-md", lr=0.1, beta=0.1, n=10)
    paper = simulate(game, name, init="reference", iterations=3, **{**kwargs, "mix_ratio": 1.0}).policies[3]
    no_n = simulate(game, "omd", init="reference", iterations=3, eta=4 * 0.1 / 0.1, tau=0.1).policies[3]
    for wrong in (paper, no_n):
        assert np.abs(wrong - jax.nn.softmax(theta)).max() > 1e-6
    with pytest.raises(GamesimError, match="EGPO's methods are"):
        egpo_settings("ipo", lr=0.1, beta=0.1, n=10)
    with pytest.raises(GamesimError, match="lr must be"):
        egpo_settings("egpo", lr=-1, beta=0.1, n=10)
    with pytest.raises(GamesimError, match="n is the number"):
        egpo_settings("egpo", lr=0.1, beta=0.1, n=2.5)


def test_nash_md_mixture_off_the_paper_never_takes_the_numba_chain():
    """The numba loop hard-codes Nash-MD's mixture at ητ: with mix_ratio ≠ 1 "auto" must take JAX
    and "numba" must refuse, so EGPO's mixture is never silently replaced by the paper's."""
    from gamesim.engine import simulation as engine

    game, alg = load_game("random:n=10,seed=0"), get_algorithm("nash-md")
    common = {"dtype": "float64", "runs": 8, "iterations": 10 ** 6, "record_every": 1000}
    assert engine.choose_backend("auto", alg, game, **common, params=[{"mix_ratio": 1.0}]) in ("numba", "jax")
    assert engine.choose_backend("auto", alg, game, **common, params=[{"mix_ratio": 0.5}]) == "jax"
    with pytest.raises(GamesimError, match="no numba path"):
        engine.choose_backend("numba", alg, game, **common, params=[{"mix_ratio": 1.0}, {"mix_ratio": 0.5}])


def _offline_ipo_eq10(theta, log_ref, P, tau):
    """Offline IPO's loss (Calandriello et al. 2024, eq. 10), transcribed: pairs y, y' ~ μ = π_ref, the
    winner y_w is y with probability P(y ≻ y'), loss (log(π(y_w)π_ref(y_l) / (π(y_l)π_ref(y_w))) − τ⁻¹/2)²."""
    h = jax.nn.log_softmax(theta) - log_ref
    h = h[:, None] - h[None, :]  # h[y, y']: y wins
    mu = jnp.exp(log_ref)
    expected = P * (h - 1 / (2 * tau)) ** 2 + P.T * (h.T - 1 / (2 * tau)) ** 2
    return mu @ expected @ mu


@pytest.mark.slow
def test_offline_ipo_is_ipo_md_at_beta_one():
    """Offline IPO from μ = π_ref is IPO-MD at β = 1 (both responses from π_ref^1): SGD at lr on eq. 10
    is `ipo-md` with β = 1, η = 4 lr/τ (20 steps, to 1e-12), and eq. 10's optimum
    π ∝ π_ref exp(P(y ≻ π_ref)/τ), the point experiments/calandriello.toml draws, is its fixed point,
    which online IPO (β = 0) leaves."""
    game = load_game("random:n=10,seed=3,ref_seed=103")
    P, log_ref = np.asarray(game.P), np.log(game.reference)
    tau, lr = 0.2, 0.05
    theta, expected = jnp.zeros(game.n), []
    for _ in range(20):
        theta = theta - lr * jax.grad(_offline_ipo_eq10)(theta, log_ref, P, tau)
        expected.append(np.asarray(jax.nn.softmax(theta)))
    traj = simulate(game, "ipo-md", eta=4 * lr / tau, tau=tau, beta=1.0, init="uniform", iterations=20)
    np.testing.assert_allclose(traj.policies[1:], expected, rtol=0, atol=1e-12)
    optimum = normalize(game.reference * np.exp(P @ game.reference / tau))
    for beta, moves in ((1.0, False), (0.0, True)):
        traj = simulate(game, "ipo-md", eta=4 * lr / tau, tau=tau, beta=beta, init=optimum, iterations=20)
        assert (np.abs(traj.policies[-1] - optimum).max() > 1e-3) == moves
        if not moves:
            np.testing.assert_allclose(traj.policies, np.broadcast_to(optimum, traj.policies.shape),
                                       rtol=0, atol=1e-13)


def _abe_code(name, pi0, M, lr, mu, freq, draws):
    """Abe et al.'s learners as their code runs them (`CyberAgentAILab/adaptively-perturbed-md`,
    algorithms/md.py, omd.py, apmd.py with the entropy regularizer and G = KL), transcribed for one
    player of a symmetric game, payoffs q_t = Mπ_t + draws[t]; the slingshot starts uniform."""
    strategy, hat, sling, n, out = pi0, pi0, np.ones_like(pi0) / len(pi0), 0, []
    for noise in draws:
        grad = M @ strategy + noise
        if name == "apmd":
            grad = grad - mu * (np.log(strategy / sling) + 1)
            if n % freq == 0:
                n, sling = 0, strategy.copy()
        if name == "omwu":
            hat = normalize(hat * np.exp(lr * grad))
            strategy = normalize(hat * np.exp(lr * grad))
        else:
            strategy = normalize(strategy * np.exp(lr * grad))
        n += 1
        out.append(strategy)
    return np.array(out)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["apmd", "mwu", "omwu"])
@pytest.mark.parametrize("noise", [0.0, 0.1])
def test_abe_et_al_learners_follow_their_code(name, noise):
    """`apmd`, `mwu`, `omwu` at gamesim's η = 2η_APMD, τ = μ/2 and noise σ_APMD/2 (A = M/2 on payoffs in
    [−1, 1]) are APMD's code at (η_APMD, μ, σ_APMD), slingshot schedule and OMD's first step included,
    with the noise drawn as the engine draws it (one N(0, 1) vector per step from the run's key)."""
    game, T, seed, freq = load_game("abe_biased_rps"), 60, 3, 7
    M = 2 * (np.asarray(game.P) - 0.5)
    np.testing.assert_allclose(M, np.array([[0, -1, 3], [1, 0, -1], [-3, 1, 0]]) / 3, atol=1e-15)  # their game
    pi0 = normalize(np.random.default_rng(0).exponential(size=3))  # their random init
    key, draws = jax.random.key(seed), []
    for _ in range(T):
        key, sub = jax.random.split(key)
        draws.append(noise * np.asarray(jax.random.normal(sub, (1, 3), jnp.float64))[0])
    lr, mu = 0.1, 0.1
    params = {"noise": noise / 2} | ({"refresh_every": freq} if name == "apmd" else {})
    traj = simulate(game, name, eta=2 * lr, tau=mu / 2 if name == "apmd" else 0.0, iterations=T, init=pi0,
                    seed=seed, **params)
    expected = _abe_code(name, pi0, M, lr, mu, freq, draws)
    np.testing.assert_allclose(traj.policies[1:], expected, atol=1e-12, rtol=0)
    if name == "apmd":  # the reset timing matters: COMAL's (magnet := π_{t+1} after step t) is another method
        comal = simulate(game, "comal", eta=2 * lr, tau=mu / 2, iterations=T, init=pi0, refresh_every=freq)
        assert noise or np.abs(comal.policies[1:] - expected).max() > 1e-6


@pytest.mark.parametrize("name, lr, temp, mag_lr", [("mmd", 0.1, 0.1, 0.0), ("mmd-moving-magnet", 0.1, 1.0, 0.05)])
def test_mmd_follows_mmds_code(name, lr, temp, mag_lr):
    """`mmd` and `mmd-moving-magnet` are MMD's two-player simultaneous learner (`ssokota/mmd`: the
    normal-form game and update of mmd/nfg, perturbed RPS min-max normalized, uniform start and
    magnet) at the settings of its QRE example (η = α) and of its moving-magnet runs (α = 1, η = 0.1,
    η̃ = 0.05, magnet step of mmd/efg/learners.py: ρ ∝ ρ^{1−η̃} π_{t+1}^{η̃}): both players' policies
    are gamesim's self-play policy."""
    raw = np.array([[0, -3, 3], [3, 0, -1], [-3, 1, 0]], float)
    table = (raw - raw.min()) / (raw.max() - raw.min())
    T = 200
    pols, mags = [np.ones(3) / 3] * 2, [np.ones(3) / 3] * 2
    params = {"magnet_lr": mag_lr} if name == "mmd-moving-magnet" else {}
    traj = simulate("perturbed_rps", name, eta=lr, tau=temp, iterations=T, init="uniform", **params)
    for t in range(T):
        payoffs = [table @ pols[1], -pols[0] @ table]
        pols = [normalize((p * np.exp(lr * q) * m ** (lr * temp)) ** (1 / (1 + lr * temp)))
                for p, q, m in zip(pols, payoffs, mags)]
        mags = [normalize(m ** (1 - mag_lr) * p ** mag_lr) for m, p in zip(mags, pols)]
        for p in pols:
            np.testing.assert_allclose(traj.policies[t + 1], p, atol=1e-12, rtol=0)
