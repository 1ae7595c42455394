"""EGPO's neural-policy mode (gamesim/mlp.py): its step is the checked tabular step when the network
is replaced by free logits, its SGD step on the MLP matches finite differences of an independent
numpy transcription of EGPO's loss, its loop and study plumbing, and its input checks.

Shapes are shared (3 runs, n = 10, width 10, depth 3; one run length) so each compiles once.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gamesim import load_game, simulate_batch
from gamesim.lm import mlp
from gamesim.studies import study
from gamesim.dynamics.algorithms import EGPO_METHODS, egpo_settings
from gamesim.core.errors import GamesimError
from gamesim.core.metrics import duality_gaps

RUNS, N, BETA, LR = 3, 10, 0.1, 0.1  # EGPO's tabular config at β = 0.1 (lr 0.1)
GAMES = [f"random:n={N},seed={s}" for s in range(RUNS)]


def _identity(params):
    return params


_step = jax.jit(mlp.sgd_step, static_argnums=(0, 1))


@pytest.mark.slow
@pytest.mark.parametrize("method", EGPO_METHODS)
def test_free_logits_step_is_the_tabular_egpo_step(method, float64):
    """With the logits themselves as the parameters, three SGD steps of each method (summed over
    the runs) equal `egpo_settings`' gamesim method run by `simulate_batch` from π_ref, to 1e-12;
    three, because π_0 = π_ref is every mixture and the first step cannot tell Nash-MD's apart."""
    games = [load_game(f"random:n={N},seed={s},ref_seed={100 + s}") for s in range(RUNS)]
    log_ref = jnp.asarray(np.log([g.reference for g in games]))
    A = jnp.asarray(np.stack([g.payoff[0] for g in games]))
    theta, expected = log_ref, []
    for _ in range(3):
        theta = _step(method, _identity, theta, log_ref, A, BETA, LR)
        expected.append(np.asarray(jax.nn.softmax(theta)))
    name, kwargs = egpo_settings(method, lr=LR, beta=BETA, n=N)
    traj = simulate_batch(games, name, inits="reference", iterations=3, **kwargs)
    np.testing.assert_allclose(traj.policies[:, 1:], np.stack(expected, 1), rtol=0, atol=1e-12)


@pytest.mark.slow
def test_init_draws_egpos_distributions():
    """NeuralPolicy.random_init: torch's xavier_normal_, N(0, 2/(fan_in + fan_out)) untruncated
    (JAX's glorot_normal truncates: nothing beyond 2.3σ), zero biases; virtual inputs N(0, 1)."""
    with jax.enable_x64(True):
        p = mlp.init_mlp(jax.random.PRNGKey(3), 400, 300, hidden=200, depth=2)
    assert [W.shape for W, _ in p["layers"]] == [(200, 200), (200, 300)] and p["inputs"].shape == (400, 200)
    for (W, b), fans in zip(p["layers"], (400, 500)):
        z = np.asarray(W) / np.sqrt(2 / fans)
        assert abs(z.std() - 1) < 0.02 and 0.009 < np.mean(np.abs(z) > 2.5) < 0.016  # N(0, 1): 0.0124
        assert not np.any(b)
    assert abs(np.asarray(p["inputs"]).std() - 1) < 0.01


# --- an independent transcription: numpy, no autodiff --------------------------------------------------
def _np_logits(p):
    x = p["inputs"]
    for W, b in p["layers"][:-1]:
        x = np.maximum(x @ W + b, 0.0)
    W, b = p["layers"][-1]
    return x @ W + b


def _np_log_softmax(z):
    z = z - z.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def _np_online_ipo_1(p, log_ref, A, s):
    """EGPO's online_ipo_1, summed over the runs: Σ_r (1/n²) Σ_{y,y'} (d_y − d_y' − (s_y − s_y')/β)²."""
    d = _np_log_softmax(_np_logits(p)) - log_ref
    c = d[:, :, None] - d[:, None, :] - (s[:, :, None] - s[:, None, :]) / BETA
    return np.sum(c ** 2) / N ** 2


def _np_sgd_step(p, log_ref, A, opponent_params, h=1e-6):
    """p − lr ∇L by central differences, the preferences s = Aπ taken at `opponent_params`."""
    s = np.einsum("rij,rj->ri", A, np.exp(_np_log_softmax(_np_logits(opponent_params))))
    leaves, tree = jax.tree_util.tree_flatten(p)
    new = []
    for k, leaf in enumerate(leaves):
        grad = np.zeros_like(leaf)
        for idx in np.ndindex(leaf.shape):
            values = []
            for sign in (1, -1):
                bumped = [x.copy() for x in leaves]
                bumped[k][idx] += sign * h
                values.append(_np_online_ipo_1(jax.tree_util.tree_unflatten(tree, bumped), log_ref, A, s))
            grad[idx] = (values[0] - values[1]) / (2 * h)
        new.append(leaf - LR * grad)
    return jax.tree_util.tree_unflatten(tree, new)


@pytest.fixture(scope="module")
def network():
    """The reference network of seed 0 over GAMES (numpy leaves), its log π_ref and A."""
    with jax.enable_x64(True):
        ref = mlp.init_mlp(jax.random.PRNGKey(0), RUNS, N)
        log_ref = np.asarray(jax.nn.log_softmax(mlp.mlp_logits(ref)))
    A = np.stack([load_game(g).payoff[0] for g in GAMES])
    return jax.tree_util.tree_map(np.asarray, ref), log_ref, A


def _assert_step_close(got, want, start, rtol=1e-6):
    """The steps got − start and want − start agree to rtol of the step's largest entry."""
    steps = [np.concatenate([np.ravel(a - b) for a, b in zip(jax.tree_util.tree_leaves(x),
                                                              jax.tree_util.tree_leaves(start))]) for x in (got, want)]
    np.testing.assert_allclose(steps[0], steps[1], rtol=0, atol=rtol * np.abs(steps[1]).max())


def _mlp_step(method, params, log_ref, A):
    with jax.enable_x64(True):
        return jax.tree_util.tree_map(np.asarray, _step(method, mlp.mlp_logits, params, log_ref, A, BETA, LR))


@pytest.mark.slow
def test_mlp_step_is_sgd_on_the_summed_loss_by_finite_differences(network):
    """One Online IPO 1 step on the shared MLP (weights, biases and virtual inputs) is lr times the
    finite-difference gradient of the numpy loss summed over the runs, to 1e-6 of the step."""
    p, log_ref, A = network
    assert len(jax.tree_util.tree_leaves(p)) == 7  # three (W, b) layers and the virtual inputs
    _assert_step_close(_mlp_step("online-ipo-1", p, log_ref, A), _np_sgd_step(p, log_ref, A, p), p)


@pytest.mark.slow
def test_mlp_extragradient_steps_from_the_original_parameters(network):
    """EGPO's step: θ_{t+1/2} = θ_t − lr ∇L(θ_t; π_t), then θ_t − lr ∇L(θ_t; π_{t+1/2}) (finite
    differences as above); continuing from θ_{t+1/2} instead is another point."""
    p, log_ref, A = network
    half = _np_sgd_step(p, log_ref, A, p)
    got = _mlp_step("egpo", p, log_ref, A)
    _assert_step_close(got, _np_sgd_step(p, log_ref, A, half), p)
    from_half = _np_sgd_step(half, log_ref, A, half)
    gap = max(np.abs(a - b).max() for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(from_half)))
    assert gap > 1e-3


# --- the loop, the study mode ------------------------------------------------------------------------
RUN = {"lr": LR, "beta": BETA, "iterations": 4, "record_every": 2}


@pytest.fixture(scope="module")
def trajectory():
    return mlp.run(GAMES, "online-ipo-1", seeds=[0, 1], **RUN)


@pytest.mark.slow
def test_run_records_the_steps_from_the_reference_network(trajectory, network):
    """Rows are game-major (run g of seed s: g·2 + s); record 0 is π_ref's gap (π_0 = π_ref), the
    last the gap after 4 `sgd_step`s from seed 1's network; the seeds draw different networks."""
    _, _, A = network
    gaps = trajectory.metrics["gap_reg"]
    assert gaps.shape == (RUNS * 2, 3) and list(trajectory.iterations) == [0, 2, 4]
    with jax.enable_x64(True):
        params = mlp.init_mlp(jax.random.PRNGKey(1), RUNS, N)
        log_ref = jax.nn.log_softmax(mlp.mlp_logits(params))
        first = duality_gaps(A, log_ref, log_ref, BETA)
        for _ in range(4):
            params = _step("online-ipo-1", mlp.mlp_logits, params, log_ref, jnp.asarray(A), BETA, LR)
        last = duality_gaps(A, log_ref, jax.nn.log_softmax(mlp.mlp_logits(params)), BETA)
    np.testing.assert_allclose(gaps[1::2, 0], first, rtol=1e-12)
    np.testing.assert_allclose(gaps[1::2, -1], last, rtol=1e-10)
    assert np.all(np.abs(gaps[0::2, 0] - gaps[1::2, 0]) > 1e-6)
    np.testing.assert_allclose(trajectory.metrics["kl_to_ref"][:, 0], 0.0, atol=1e-15)


@pytest.mark.slow
def test_study_mode_mlp_stacks_like_any_group(tmp_path, trajectory):
    """A mode = "mlp" group runs `mlp.run` per cell and stacks it over (game, algorithm, seed, record)."""
    spec = tmp_path / "neural.toml"
    games = ", ".join(f'"{g}"' for g in GAMES)
    spec.write_text(f"""
[[group]]
name = "net"
mode = "mlp"
games = [{games}]
algorithms = ["online-ipo-1"]
tau = {BETA}
lr = {LR}
iterations = 4
record_every = 2
seeds = 2

[[panel]]
kind = "curves"
metric = "gap_reg"
""")
    s = study.load_spec(spec)
    res = study.run_study(s, tmp_path / "results", log=lambda *a: None)["net"]
    assert res.dims == ("game", "algorithm", "seed", "record")
    np.testing.assert_array_equal(res.arrays["gap_reg"][:, 0].reshape(RUNS * 2, 3), trajectory.metrics["gap_reg"])
    assert study.plot_study(s, {"net": res}, tmp_path / "figures")


@pytest.mark.parametrize("change,message", [
    ({"eta": 0.1}, "unknown key .* 'eta'"),
    ({"lr": None}, "needs 'lr'"),
    ({"algorithms": ["omd"]}, "unknown algorithm"),
    ({"metrics": ["kl_to_eq"]}, "unknown metric"),
    ({"policies": True}, "neither policies"),
    ({"games": ["random:n=10,seed=0,ref_seed=1"]}, "own reference"),
    ({"games": ["random:n=10,seed=0", "random:n=12,seed=1"]}, "one size n"),
])
def test_study_refuses_bad_mlp_groups(change, message):
    table = {"mode": "mlp", "games": GAMES[:1], "algorithms": ["egpo"], "tau": BETA, "lr": LR, "iterations": 4}
    table = {k: v for k, v in (table | change).items() if v is not None}
    with pytest.raises(GamesimError, match=message):
        study._group("g", table, "spec")


@pytest.mark.parametrize("change,message", [
    ({"method": "omd"}, "EGPO's methods are"),
    ({"lr": 0.0}, "lr must be"),
    ({"beta": float("nan")}, "beta must be"),
    ({"iterations": 4.0}, "iterations must be a whole number"),
    ({"record_every": 3}, "must divide"),
    ({"hidden": 0}, "hidden must be"),
    ({"depth": True}, "depth must be"),
    ({"seeds": []}, "seeds is a non-empty"),
    ({"seeds": [-1]}, "a seed must be"),
    ({"games": []}, "non-empty list"),
    ({"games": "random:n=10,seed=0"}, "non-empty list"),
    ({"games": ["random:n=10,seed=0,contexts=2"]}, "2 contexts"),
])
def test_run_refuses_bad_input(change, message):
    args = {"games": GAMES, "method": "egpo", **RUN} | change
    with pytest.raises(GamesimError, match=message):
        mlp.run(args.pop("games"), args.pop("method"), **args)
