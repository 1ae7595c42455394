"""Bandit mode: oracles, recipes, fitters against generic optimizers, the 1/√N approach to the
exact step, reproducibility, and the command line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.optimize import minimize

from gamesim import GamesimError, load_game, simulate, simulate_batch
from gamesim import solve as gamesim_solve
from gamesim.bandit import sampled as bandit
from gamesim.bandit import feedback
from gamesim.cli import main
from gamesim.dynamics.updates import omd_update

pytestmark = pytest.mark.usefixtures("float64")
GAME = "random:n=10,seed=1,ref_seed=2"


def test_oracle_statistics():
    A = jnp.asarray(load_game("cycle3").payoff[0])
    y, y2 = jnp.zeros(200_000, int), jnp.ones(200_000, int)  # P[a, b] = 0.1
    key = jax.random.key(0)
    for oracle, expected in [(feedback.Oracle(), 0.1), (feedback.Oracle(flip=0.2), 0.26),
                             (feedback.Oracle(bias=0.15), 0.25), (feedback.Oracle(hard=0.0), 0.1)]:
        labels = feedback.answer(key, A, y, y2, oracle)
        assert abs(float(labels.mean()) - expected) < 4e-3, oracle
    assert set(np.unique(feedback.answer(key, A, y, y2, feedback.Oracle()))) == {0.0, 1.0}


@pytest.mark.slow
def test_best_vs_worst_tournament():
    """On a transitive game with a deterministic oracle the tournament finds the sampled best and worst."""
    scores = np.arange(6.0) * 50  # P = σ(s_i − s_j) ≈ 0/1
    A = jnp.asarray(1 / (1 + np.exp(-(scores[:, None] - scores[None, :]))) - 0.5)
    log_pi = jnp.log(jnp.full(6, 1 / 6))
    data = feedback.best_vs_worst(jax.random.key(1), log_pi, A, feedback.Oracle(), groups=50, K=8)
    k_sample = jax.random.split(jax.random.key(1), 5)[0]
    drawn = feedback.sample(k_sample, log_pi, (50, 8))
    np.testing.assert_array_equal(data.first, drawn.max(1))
    np.testing.assert_array_equal(data.second, drawn.min(1))
    np.testing.assert_array_equal(data.weight, (drawn.max(1) > drawn.min(1)).astype(float))
    assert feedback.best_vs_worst_queries(8) == 11 and feedback.win_rates_queries(5) == 10


@pytest.mark.slow
def test_win_rates_recipe():
    A = jnp.asarray(load_game("cycle3").payoff[0])
    data = feedback.win_rates(jax.random.key(2), jnp.log(jnp.full(3, 1 / 3)), A, feedback.Oracle(hard=0.0), 4, 5)
    y = np.asarray(data.response).reshape(4, 5)
    P = 0.5 + np.asarray(A)
    np.testing.assert_allclose(np.asarray(data.win_rate).reshape(4, 5), P[y[:, :, None], y[:, None, :]].mean(-1),
                               atol=1e-15)


@pytest.mark.slow
@pytest.mark.parametrize("name, recipe", [("inpo", "pairs"), ("inpo", "best-worst"), ("nash-md", "pairs"),
                                          ("online-ipo", "pairs"), ("sppo", "win-rates"), ("sppo", "best-worst"),
                                          ("iterative-dpo", "pairs")])
def test_exact_fit_is_the_empirical_minimizer(name, recipe):
    """The exact fitter's θ minimizes the algorithm's loss on the data, as a generic optimizer finds."""
    game = load_game("random:n=5,seed=3,ref_seed=4")
    A, log_ref = jnp.asarray(game.payoff[0]), jnp.log(jnp.asarray(game.reference))
    log_pi = jax.nn.log_softmax(jnp.asarray(np.random.default_rng(5).standard_normal(5)))
    K = {"best-worst": 8, "win-rates": 5}.get(recipe, 0)
    data, anchor, scale = bandit.collect(name, recipe, 200, K, jax.random.key(6), log_pi, A, log_ref, 0.7, 0.3,
                                         feedback.Oracle(hard=0.0 if recipe == "pairs" else 1.0))
    theta, _ = bandit.exact_fit(name, data, anchor, scale, jnp.zeros(5))
    loss = jax.jit(lambda th: bandit.data_loss(name, th, data, anchor, scale))
    generic = minimize(lambda v: float(loss(jnp.asarray(v))), np.asarray(log_pi), method="BFGS",
                       jac=lambda v: np.asarray(jax.grad(loss)(jnp.asarray(v))), options={"gtol": 1e-12})
    assert abs(float(loss(theta)) - generic.fun) < 1e-12  # measured ≤ 2.2e-16 over the 7 cases
    if recipe == "pairs":  # unique when the compared pairs connect every response (asserted)
        edges = np.zeros((5, 5))
        edges[np.asarray(data.first), np.asarray(data.second)] = 1
        assert np.linalg.matrix_rank(np.diag((edges + edges.T).sum(1)) - edges - edges.T) == 4
    if recipe != "best-worst":  # its kept pairs may leave θ free on a component
        np.testing.assert_allclose(np.exp(jax.nn.log_softmax(theta)), np.exp(jax.nn.log_softmax(generic.x)),
                                   atol=1e-8)  # measured ≤ 9.2e-10 (where BFGS stops); 10× to spare


@pytest.mark.parametrize("n, N", [(40, 8), (1024, 128), (6, 3), (5, 40)])
def test_least_squares_fit_on_the_touched_responses_is_the_full_pseudo_inverse(n, N):
    """When 2N < n the fit works on the responses the pairs touch (the transformer study's table,
    n = 1024, N = 128); it equals numpy's minimum-norm solution on the full n×n Laplacian, several
    components and repeated pairs included, and the untouched responses stay at the anchor."""
    rng = np.random.default_rng(n)
    first, second = rng.integers(0, n, N), rng.integers(0, n, N)
    second[0] = first[0]  # a self-comparison: no edge
    first[1], second[1] = first[2], second[2]  # a repeated pair
    labels, weights = rng.integers(0, 2, N).astype(float), rng.uniform(0.5, 2.0, N)
    with jax.enable_x64(True):
        data = feedback.Pairs(jnp.asarray(first), jnp.asarray(second), jnp.asarray(labels), jnp.asarray(weights))
        anchor = rng.standard_normal(n)
        theta, _ = jax.jit(lambda d, c: bandit.exact_fit("inpo", d, c, 0.7, None))(data, jnp.asarray(anchor))
    L, b = np.zeros((n, n)), np.zeros(n)
    for i, j, label, w in zip(first, second, labels, weights):
        L[i, i] += w
        L[j, j] += w
        L[i, j] -= w
        L[j, i] -= w
        b[i] += w * 0.7 * (label - 0.5)
        b[j] -= w * 0.7 * (label - 0.5)
    np.testing.assert_allclose(theta, anchor + np.linalg.pinv(L, hermitian=True) @ b, rtol=0, atol=1e-12)
    untouched = np.setdiff1d(np.arange(n), np.r_[first, second])
    assert np.array_equal(np.asarray(theta)[untouched], anchor[untouched])


@pytest.mark.slow
def test_sampled_inpo_step_approaches_the_omd_step_like_one_over_sqrt_n():
    """Soft oracle, exact fitter: one sampled INPO step from π_ref differs from the exact OMD step by
    O(1/√N); quadrupling N must halve the RMS error over seeds (measured factor in [0.4, 0.62])."""
    game = load_game(GAME)
    exact = np.exp(np.asarray(omd_update(jnp.log(jnp.asarray(game.reference))[None],
                                         jnp.asarray(game.payoff), jnp.log(jnp.asarray(game.reference))[None],
                                         0.8, 0.3))[0])
    errors = []
    for N in (256, 1024, 4096, 16384):
        traj = simulate_batch(game, "inpo", eta=0.8, tau=0.3, iterations=1, seeds=list(range(24)),
                              feedback="sampled", pairs=N, oracle="soft")
        errors.append(np.sqrt(np.mean(np.sum((traj.policies[:, 1] - exact) ** 2, -1))))
    factors = np.array(errors[1:]) / np.array(errors[:-1])
    assert np.all((0.4 < factors) & (factors < 0.62)), (errors, factors)


@pytest.mark.slow
def test_dueling_regret_matches_its_definition():
    game = load_game("random:n=6,seed=1,ref_seed=2")  # its von Neumann winner lacks full support
    traj = simulate(game, "inpo", eta=0.5, tau=0.1, iterations=20, feedback="sampled", pairs=16)
    winner = gamesim_solve(game).policy
    expected = np.cumsum([winner @ game.P @ q - 0.5 for q in traj.policies])
    np.testing.assert_allclose(traj.metrics["dueling_regret"], expected, atol=1e-13)
    assert expected[-1] > 0


@pytest.mark.slow
def test_same_seed_same_run_and_batch_equals_single():
    kw = dict(eta=0.5, tau=0.1, iterations=30, record_every=10, feedback="sampled", pairs=32)
    a, b = simulate(GAME, "inpo", seed=7, **kw), simulate(GAME, "inpo", seed=7, **kw)
    assert np.array_equal(a.policies, b.policies)
    assert not np.array_equal(a.policies, simulate(GAME, "inpo", seed=8, **kw).policies)
    batch = simulate_batch(GAME, "inpo", seeds=[7, 8], **kw)
    np.testing.assert_allclose(batch.policies[0], a.policies, atol=1e-13, rtol=0)
    np.testing.assert_array_equal(batch.metrics["queries"][0], a.iterations * 32)


@pytest.mark.slow
@pytest.mark.parametrize("name, fit", [("inpo", "adam"), ("sppo", "sgd"), ("nash-md", "exact"), ("iterative-dpo", "exact"),
                                       ("online-ipo", "sgd")])
def test_every_sampled_algorithm_runs_and_stays_a_policy(name, fit):
    traj = simulate("cycle3", name, eta=0.5, tau=0.1, iterations=30, record_every=10, feedback="sampled",
                    pairs=32, fit=fit, flip=0.1, position_bias=0.05, **({} if fit == "exact" else {"lr": 0.05}))
    assert np.all(np.isfinite(traj.policies)) and np.allclose(traj.policies.sum(-1), 1)
    assert all(np.all(np.isfinite(v)) for v in traj.metrics.values())
    assert np.abs(traj.policies[1:] - traj.policies[0]).max() > 1e-3  # the sampled steps move the policy
    queries = np.diff(traj.metrics["queries"])  # the same positive number of queries per record
    assert queries[0] > 0 and np.all(queries == queries[0]), traj.metrics["queries"]


@pytest.mark.slow
def test_sampled_inpo_learns_on_average():
    """Many pairs per step: the sampled INPO's regularized gap falls well below π_ref's."""
    traj = simulate_batch(GAME, "inpo", eta=0.5, tau=0.1, iterations=100, record_every=100, seeds=[0, 1, 2],
                          feedback="sampled", pairs=1024)
    assert np.all(traj.metrics["gap_reg"][:, -1] < 0.1 * traj.metrics["gap_reg"][:, 0])


@pytest.mark.parametrize("kwargs, message", [
    ({"algorithm": "mmd"}, "sampled feedback is available for"),
    ({"recipe": "win-rates"}, "takes recipe"),
    ({"fit": "lbfgs"}, "fit must be"),
    ({"oracle": "soft", "recipe": "best-worst"}, "hard oracle"),
    ({"pairs": 0}, "pairs must be"),
    ({"samples": 6, "recipe": "best-worst"}, "power of two"),
    ({"flip": 0.7}, r"flip must be a number in \[0, 0.5\]"),
    ({"lr": 0.1}, "no hyperparameter 'lr'"),
    ({"algorithm": "online-ipo", "tau": 0.0}, "needs tau > 0"),
    ({"feedback": "noisy"}, "feedback must be"),
])
def test_bad_sampling_settings(kwargs, message):
    args = {"algorithm": "inpo", "eta": 0.5, "tau": 0.1, "feedback": "sampled", **kwargs}
    with pytest.raises(GamesimError, match=message):
        simulate("cycle3", args.pop("algorithm"), iterations=5, **args)
    with pytest.raises(GamesimError, match="add feedback='sampled'"):
        simulate("cycle3", "inpo", eta=0.5, iterations=5, pairs=10)


@pytest.mark.slow
def test_cli_sampled_run(tmp_path, capsys):
    out = tmp_path / "s"
    assert main(["run", "cycle3", "--algorithm", "inpo", "--eta", "0.5", "--tau", "0.1", "--iterations", "20",
                 "--record-every", "10", "--feedback", "sampled", "--pairs", "32", "--out", str(out)]) == 0
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[-1] == "queries"
    assert np.loadtxt(out / "metrics.csv", delimiter=",", skiprows=1)[-1, -1] == 640


@pytest.mark.parametrize("n", [3, 10, 32, 33, 200])
def test_sample_inverts_the_cdf_as_numpy_does(n):
    """Both search methods (compare-all up to COMPARE_ALL_MAX_N, binary search above) return
    numpy's searchsorted index of the same uniforms, zero-probability responses never drawn."""
    rng = np.random.default_rng(n)
    with jax.enable_x64(True):
        log_pi = np.log(rng.dirichlet(np.full(n, 0.3)))
        log_pi[rng.choice(n, max(1, n // 4), replace=False)] = -np.inf
        log_pi -= np.log(np.exp(log_pi).sum())
        key = jax.random.key(n)
        drawn = np.asarray(jax.jit(lambda k, lp: feedback.sample(k, lp, (5000,)))(key, jnp.asarray(log_pi)))
        cdf = np.cumsum(np.exp(log_pi))
        u = np.asarray(jax.random.uniform(key, (5000,), dtype=jnp.float64)) * cdf[-1]
    assert np.array_equal(drawn, np.minimum(np.searchsorted(cdf, u, side="right"), n - 1))
    assert np.all(np.isfinite(log_pi[drawn]))


def test_sampling_frequencies_match_the_policy():
    from scipy.stats import chisquare

    pi = np.array([0.5, 0.3, 0.15, 0.05, 0.0])
    with np.errstate(divide="ignore"):
        draws = np.asarray(feedback.sample(jax.random.key(3), jnp.log(jnp.asarray(pi)), (100_000,)))
    counts = np.bincount(draws, minlength=5)
    assert counts[4] == 0  # probability 0 is never drawn
    assert chisquare(counts[:4], 100_000 * pi[:4]).pvalue > 1e-3


@pytest.mark.slow
def test_contextual_game_as_oracle():
    """Each context draws its own data: a contextual run's contexts behave like separate runs."""
    game = load_game("random:n=4,seed=2,contexts=2")
    traj = simulate_batch(game, "inpo", eta=0.5, tau=0.1, iterations=60, record_every=60, seeds=[0, 1, 2, 3],
                          feedback="sampled", pairs=512)
    assert traj.policies.shape == (4, 2, 2, 4)
    assert np.all(traj.metrics["gap_reg"][:, -1] < 0.2 * traj.metrics["gap_reg"][:, 0])
    assert not np.allclose(traj.policies[:, -1, 0], traj.policies[:, -1, 1])


@pytest.mark.slow
def test_sampled_run_resumes_bit_for_bit():
    kw = dict(eta=0.5, tau=0.1, record_every=10, feedback="sampled", pairs=32, seed=4)
    whole = simulate(GAME, "inpo", iterations=40, **kw)
    rest = simulate(GAME, "inpo", iterations=40, resume_from=simulate(GAME, "inpo", iterations=20, **kw), **kw)
    np.testing.assert_array_equal(whole.policies, rest.policies)
    np.testing.assert_array_equal(whole.metrics["queries"], rest.metrics["queries"])


@pytest.mark.slow
def test_sppo_best_and_worst_keeps_each_prompts_extremes():
    """SPPO's official recipe: per prompt, the samples with the highest and the lowest estimated
    win rate (as its compute_prob.py's max/min), each with its own P̂; everything else weight 0."""
    game = load_game("random:n=6,seed=2")
    A, log_pi = jnp.asarray(game.payoff[0]), jnp.log(jnp.full(6, 1 / 6))
    rates = feedback.win_rates(jax.random.key(3), log_pi, A, feedback.Oracle(), 50, 5)
    kept = feedback.best_and_worst(rates, 5)
    table, weight = np.asarray(rates.win_rate).reshape(50, 5), np.asarray(kept.weight).reshape(50, 5)
    for row, w in zip(table, weight):
        assert set(np.flatnonzero(w)) == {int(np.argmax(row)), int(np.argmin(row))}
    np.testing.assert_array_equal(kept.win_rate, rates.win_rate)
    alg = bandit.sampled_algorithm("sppo", pairs=4, recipe="best-worst")
    assert alg.queries_per_step == 4 * 10


EGPO_METHODS = ["online-ipo-1", "online-ipo-2", "nash-md", "nash-md-pg", "egpo"]


@pytest.mark.slow
@pytest.mark.parametrize("method", EGPO_METHODS)
def test_egpo_recipe_is_egpos_sampled_sgd_step(method, float64):
    """recipe="egpo": the loss and learning rate on given samples are EGPO's `*_sample` losses
    (transcribed from its code, soft oracle: it reads P) and its SGD step at lr, to 1e-12."""
    from gamesim.dynamics.algorithms import egpo_settings

    game = load_game("random:n=10,seed=3,ref_seed=103")
    P, log_ref = np.asarray(game.P), jnp.log(jnp.asarray(game.reference))
    lr, beta, N = 0.1, 0.1, 100
    name, kw = egpo_settings(method, lr=lr, beta=beta, n=10, samples=N)
    rng = np.random.default_rng(7)
    log_pi = jax.nn.log_softmax(jnp.asarray(rng.standard_normal(10)))
    y, y2, y3 = (jnp.asarray(rng.integers(0, 10, N)) for _ in range(3))
    triples = method in ("online-ipo-1", "nash-md", "egpo")
    label = 0.5 + P[y, y3] - P[y2, y3] if triples else P[y, y2]
    data = feedback.Pairs(y, y2, jnp.asarray(label), jnp.ones(N))

    def egpo(theta):  # EGPO's loss_funcs.py, with these samples
        d = jax.nn.log_softmax(theta) - log_ref
        if method == "nash-md-pg":
            return -jnp.sum((P[y, y2] - beta * jax.lax.stop_gradient(d)[y]) * jax.nn.log_softmax(theta)[y]) / N
        target = P[y, y3] - P[y2, y3] if triples else P[y, y2] - 0.5
        return jnp.sum((d[y] - d[y2] - target / beta) ** 2) / N

    mine = bandit.egpo_loss(name, log_pi, data, log_pi, log_ref, kw["tau"])
    assert abs(float(mine - egpo(log_pi))) < 1e-12
    step = bandit.egpo_lr(name, kw["eta"], kw["tau"], 10) * jax.grad(bandit.egpo_loss, argnums=1)(
        name, log_pi, data, log_pi, log_ref, kw["tau"])
    np.testing.assert_allclose(step, lr * jax.grad(egpo)(log_pi), rtol=0, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("method", EGPO_METHODS)
def test_egpo_recipe_steps_are_unbiased_for_the_exact_conversion(method, float64):
    """EGPO's samplers (uniform y, y' and y'' ~ π_t or its mixture; y, y' ~ π_t; y ~ π_t, y' ~ π^β)
    make one sampled step an unbiased estimate of the exact `egpo_settings` step (the centred
    log-policy is linear in θ): the mean over 400 keys is within 5 standard errors of it, and the
    exact step at η/2 is not."""
    from gamesim.dynamics.algorithms import egpo_settings, get_algorithm

    game = load_game("random:n=10,seed=3,ref_seed=103")
    A, log_ref = jnp.asarray(game.payoff), jnp.log(jnp.asarray(game.stacked_reference))
    log_pi = jax.nn.log_softmax(jnp.asarray(np.random.default_rng(8).standard_normal((1, 10))))
    name, kw = egpo_settings(method, lr=0.1, beta=0.1, n=10, samples=100)
    sampled_alg = bandit.sampled_algorithm(name, pairs=100, recipe="egpo", oracle="soft")
    extra = {k: v for k, v in kw.items() if k in get_algorithm(name).params}

    def one_step(alg, key, eta):
        state = alg.init(log_pi, A, log_ref, jax.random.key_data(key))
        return alg.log_policy(alg.step(state, A, log_ref, eta, kw["tau"], 0, alg.resolve_params(extra)))[0]

    keys = jax.random.split(jax.random.key(9), 400)
    centred = lambda lp: lp - lp.mean(-1, keepdims=True)  # noqa: E731
    sampled = np.asarray(centred(jax.jit(jax.vmap(lambda k: one_step(sampled_alg, k, kw["eta"])))(keys)))
    se = sampled.std(0) / np.sqrt(len(sampled))
    exact = np.asarray(centred(one_step(get_algorithm(name), keys[0], kw["eta"])))
    half = np.asarray(centred(one_step(get_algorithm(name), keys[0], kw["eta"] / 2)))
    assert np.all(np.abs(sampled.mean(0) - exact) < 5 * se + 1e-12)
    assert np.abs(sampled.mean(0) - half).max() > 10 * se.max()
