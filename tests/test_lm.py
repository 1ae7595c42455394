"""Transformer mode: sequence-level oracles are preference games of the intended kind, a tiny INPO
run lowers the exact duality gap from π_ref's, and a resumed run ends with the same parameters."""

import dataclasses
import functools
import json

import jax
import numpy as np
import pytest

from gamesim import GamesimError, duality_gap, load_game, solve
from gamesim.lm import training as lm
from gamesim.lm import sequences, transformer
from gamesim.cli import main
from gamesim.lm.transformer import CONFIGS, index_to_tokens

pytestmark = pytest.mark.slow  # transformer runs: each compiles a network and its training loop

TINY = CONFIGS["tiny"]
SETTINGS = lm.LMSettings(algorithm="inpo", eta=2.0, tau=0.05, iterations=30, oracle="bt:scale=2",
                         pairs=128, steps=10, lr=3e-3, record_every=10)


def test_lifted_game_keeps_the_tabular_matrix_through_the_bijection():
    game = load_game("random:n=64,seed=3")
    seq = sequences.lifted(game, vocab=4, length=3)
    np.testing.assert_allclose(seq.dense().P, game.P, rtol=0, atol=2e-16)  # symmetrized to rounding
    tokens = index_to_tokens(np.arange(64), TINY.__class__(vocab=4, length=3))
    assert (tokens[:, 0] * 16 + tokens[:, 1] * 4 + tokens[:, 2] == np.arange(64)).all()
    with pytest.raises(GamesimError, match="n = V\\^L"):
        sequences.lifted(game, vocab=4, length=5)


def test_bradley_terry_oracle_is_transitive_and_features_oracle_is_not():
    bt = sequences.load_oracle("bt:scale=2,seed=1", 3, 3).dense()
    order = np.argsort(-bt.P.sum(1))
    ranked = bt.P[np.ix_(order, order)]
    assert np.all(ranked[np.triu_indices(bt.n, 1)] >= 0.5)  # a total order: P is transitive
    assert solve(bt).policy[order[0]] == pytest.approx(1.0)  # its Condorcet winner
    feat = sequences.load_oracle("features:rank=4,scale=4,seed=0", 3, 3).dense()
    np.testing.assert_allclose(feat.P + feat.P.T, 1, atol=1e-15)
    beats = feat.P > 0.5
    cycle = np.einsum("ij,jk,ki->i", beats, beats, beats)  # a 3-cycle y ≻ y' ≻ y'' ≻ y
    assert cycle.any()
    # no reward represents it: the best Bradley-Terry fit misses P by far more than on the BT oracle
    assert _bt_misfit(feat) > 0.1 and _bt_misfit(bt) < 1e-6


def _bt_misfit(game):
    import jax.numpy as jnp

    from gamesim.dynamics.updates import bradley_terry_fit

    ones = jnp.ones((1, game.n, game.n))
    with jax.enable_x64(True):
        r = np.asarray(bradley_terry_fit(jnp.zeros((1, game.n)), ones, ones * jnp.asarray(game.P))[0])
    return np.abs(1 / (1 + np.exp(-(r[:, None] - r[None, :]))) - game.P).max()


def test_oracle_spec_errors():
    with pytest.raises(GamesimError, match="unknown sequence oracle"):
        sequences.load_oracle("featurs", 4, 5)
    with pytest.raises(GamesimError, match="rank must be even"):
        sequences.load_oracle("features:rank=3", 4, 5)
    with pytest.raises(GamesimError, match="did you mean 'inpo'"):
        lm.LMSettings(algorithm="inp", eta=1.0, tau=0.1, iterations=1)
    with pytest.raises(GamesimError, match="eta·tau ≤ 1"):
        lm.LMSettings(algorithm="inpo", eta=30.0, tau=0.1, iterations=1)


@functools.cache
def _tiny_run(out):
    return out, lm.run(TINY, SETTINGS, out, progress=False)


@pytest.fixture
def tiny_run(tmp_path_factory):
    """One tiny run per process (see tests/test_verify.py's quick_results for why not a module fixture)."""
    return _tiny_run(tmp_path_factory.getbasetemp() / "tiny-lm-run")


def test_tiny_inpo_lowers_the_exact_gap_and_follows_the_tabular_sampled_run(tiny_run):
    from gamesim import simulate
    from gamesim.lm.transformer import enumerate_log_probs, init

    _, result = tiny_run
    gap = result["gap_reg"]
    assert gap[0] > 0.5 and gap[-1] < 0.1 * gap[0], gap
    # the same game, tabular, from the same π_ref (the initial LM), with sampled feedback: the
    # `sequence` built-in, checked here against the initial model enumerated by hand
    game = load_game("sequence:model=tiny,oracle=bt,scale=2")
    ref = np.exp(np.asarray(enumerate_log_probs(init(jax.random.split(jax.random.PRNGKey(0))[0], TINY), TINY),
                            np.float64))[0]
    np.testing.assert_allclose(game.reference, ref / ref.sum(), rtol=1e-5)
    np.testing.assert_array_equal(game.P, sequences.load_oracle("bt:scale=2", 4, 5).dense().P)
    assert duality_gap(game, game.reference, 0.05) == pytest.approx(gap[0], rel=1e-4)
    tab = simulate(game, "inpo", eta=2.0, tau=0.05, iterations=30, record_every=10, feedback="sampled",
                   pairs=128, progress=False)
    tab_gap = tab.metrics["gap_reg"]
    assert tab_gap[0] == pytest.approx(gap[0], rel=1e-4)
    # both fall by more than 4× in 30 iterations; the LM faster (0.10 vs 0.47 at t = 10 here): its
    # shared parameters move the probability of responses it never sampled, the table cannot
    assert tab_gap[-1] < gap[0] / 4 and gap[-1] < gap[0] / 4 and gap[1] < tab_gap[1]


def test_resumed_run_ends_with_the_same_parameters(tiny_run, tmp_path):
    _, full = tiny_run
    part = lm.run(TINY, SETTINGS, tmp_path, progress=False, stop_after=12)
    assert part["interrupted"] and json.loads((tmp_path / "run.json").read_text())["iterations_done"] == 10
    resumed = lm.run(TINY, SETTINGS, tmp_path, resume=True, progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(resumed["params"]), jax.tree_util.tree_leaves(full["params"])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(resumed["gap_reg"], full["gap_reg"])


def test_cli_writes_a_run_directory(tiny_run, tmp_path, capsys):
    args = ["lm", "run", "--algorithm", "inpo", "--eta", "2", "--tau", "0.05", "--oracle", "bt:scale=2",
            "--iterations", "10", "--pairs", "128", "--steps", "10", "--record-every", "10", "--out", str(tmp_path)]
    assert main(args) == 0
    header = (tmp_path / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "iteration" and {"gap_reg", "gap", "kl_to_eq"} <= set(header)
    assert (tmp_path / "checkpoint.npz").exists()
    assert json.loads(capsys.readouterr().out)["gap_reg"] == pytest.approx(tiny_run[1]["gap_reg"][1], rel=1e-6)
    assert main(args) == 2  # results are never overwritten silently


@pytest.mark.parametrize("algorithm", lm.LM_ALGORITHMS)
def test_every_algorithm_learns_the_transitive_game_and_only_nash_methods_the_intransitive_one(algorithm):
    """On the Bradley-Terry oracle every algorithm cuts π_ref's regularized gap by 3× in 10
    iterations. On the intransitive `features` oracle INPO and Nash-MD still lower it, while
    iterative DPO, which fits a Bradley-Terry model to intransitive answers, drives it up by 3×."""
    s = dataclasses.replace(SETTINGS, algorithm=algorithm, iterations=10, record_every=10)
    gap = lm.run(TINY, s, progress=False)["gap_reg"]
    assert gap[-1] < gap[0] / 3, gap
    if algorithm in ("inpo", "nash-md", "iterative-dpo"):
        gap = lm.run(TINY, dataclasses.replace(s, oracle="features:rank=4,scale=4"), progress=False)["gap_reg"]
        assert gap[-1] > 3 * gap[0] if algorithm == "iterative-dpo" else gap[-1] < gap[0], gap


def test_sampled_metrics_agree_with_the_exact_ones(tiny_run):
    """The Monte-Carlo win rate and KL with their 95% intervals, against the enumerated values of
    the same trained policy: each within 4 standard errors (a 1-in-15,000 miss for a correct
    estimator)."""
    from gamesim.lm.transformer import enumerate_log_probs

    params = tiny_run[1]["params"]
    ref = transformer.initial_params(TINY)
    oracle = sequences.load_oracle(SETTINGS.oracle, TINY.vocab, TINY.length)
    game = sequences.reference_game(oracle, transformer.initial_policy(TINY))
    exact = lm.exact_metrics(game, enumerate_log_probs(params, TINY), 0.0, None)
    arrays = {k: jax.numpy.asarray(v, "float32") for k, v in oracle.arrays.items()}
    sampled = lm.sampled_metrics(params, ref, TINY, arrays, jax.random.PRNGKey(7), 4096)
    assert exact["kl_to_ref"] > 0.5 and exact["winrate_vs_ref"] > 0.7  # the policy has moved
    for name in ("winrate_vs_ref", "kl_to_ref"):
        se = sampled[f"{name}_ci95"] / lm.Z95
        assert 0 < se < 0.05 and abs(sampled[name] - exact[name]) < 4 * se, (name, sampled, exact)


def test_config_file_beyond_enumeration_runs_with_sampled_metrics(tmp_path, capsys):
    """A model read from --config FILE with 4^7 = 16384 responses (too many to enumerate): the run
    records the sampled metrics with intervals, and shows a progress bar when asked."""
    config = tmp_path / "model.toml"
    config.write_text("vocab = 4\nlength = 7\nd_model = 16\nn_layers = 1\nn_heads = 2\n")
    args = ["lm", "run", "--config", str(config), "--algorithm", "nash-md", "--eta", "2", "--tau", "0.05",
            "--oracle", "features", "--iterations", "2", "--pairs", "32", "--steps", "2", "--eval-samples", "512",
            "--devices", "1"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    header = (tmp_path / "a" / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["iteration", "winrate_vs_ref", "winrate_vs_ref_ci95", "kl_to_ref", "kl_to_ref_ci95"]
    final = json.loads(capsys.readouterr().out)
    assert 0 < final["winrate_vs_ref_ci95"] < 0.1 and final["kl_to_ref"] > 0
    assert main([*args, "--metrics", "exact", "--out", str(tmp_path / "b")]) == 2
    assert "use metrics='sampled'" in capsys.readouterr().err
    model = lm.load_model_config(str(config))
    settings = lm.LMSettings("nash-md", 2.0, 0.05, 2, "features", pairs=32, steps=2, eval_samples=512)
    lm.run(model, settings, progress=True, devices=1)
    assert "0.00/2.00 [" in capsys.readouterr().err  # tqdm on stderr, total = iterations
    config.write_text("vocab = 4\nlenght = 7\n")
    with pytest.raises(GamesimError, match="did you mean 'length'"):
        lm.load_model_config(str(config))


SHARDED = """
import json, jax, numpy as np
from gamesim.lm import training as lm
from gamesim.lm import transformer
from gamesim.lm.sequences import load_oracle
from gamesim.lm.transformer import CONFIGS
s = lm.LMSettings(algorithm="inpo", eta=2.0, tau=0.05, iterations=3, oracle="bt:scale=2", pairs=128, steps=10)
one, two = (lm.run(CONFIGS["tiny"], s, progress=False, devices=d) for d in (1, 2))
leaves = jax.tree_util.tree_leaves(two["params"])
step, optimizer = lm._iteration(CONFIGS["tiny"], s, 2)
ref = transformer.initial_params(CONFIGS["tiny"])
oracle = {k: jax.numpy.asarray(v, "float32") for k, v in load_oracle(s.oracle, 4, 5).arrays.items()}
args = jax.device_put((ref, optimizer.init(ref), ref, oracle), lm.data_sharding(2)[1])
hlo = step.lower(*args, jax.random.PRNGKey(0)).compile().as_text()
print(json.dumps({"devices": jax.local_device_count(), "param_devices": len(leaves[0].sharding.device_set),
                  "all_reduce": "all-reduce" in hlo,
                  "param_diff": max(float(np.abs(np.asarray(a) - np.asarray(b)).max())
                                    for a, b in zip(jax.tree_util.tree_leaves(one["params"]), leaves)),
                  "gap_diff": float(np.abs(one["gap_reg"] - two["gap_reg"]).max())}))
"""


def test_data_parallel_run_over_two_devices_matches_one_device():
    """With two CPU devices forced, the pairs are split over them (the compiled step all-reduces
    the gradients, parameters are replicated on both) and the run matches the one-device run up
    to float32 summation order."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["devices"] == 2 and out["param_devices"] == 2 and out["all_reduce"], out
    assert out["param_diff"] < 1e-5 and out["gap_diff"] < 1e-5, out
