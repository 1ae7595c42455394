"""Transformer mode: sequence-level oracles are preference games of the intended kind, a tiny INPO
run lowers the exact duality gap from π_ref's, and a resumed run ends with the same parameters."""

import json

import jax
import numpy as np
import pytest

from gamesim import GamesimError, duality_gap, lm, load_game, sequences, solve
from gamesim.cli import main
from gamesim.transformer import CONFIGS, index_to_tokens

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

    from gamesim.updates import bradley_terry_fit

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


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lm")
    return out, lm.run(TINY, SETTINGS, out, progress=False)


def test_tiny_inpo_lowers_the_exact_gap_and_follows_the_tabular_sampled_run(tiny_run):
    from gamesim import simulate
    from gamesim.transformer import enumerate_log_probs, init

    _, result = tiny_run
    gap = result["gap_reg"]
    assert gap[0] > 0.5 and gap[-1] < 0.1 * gap[0], gap
    # the same game, tabular, from the same π_ref (the initial LM), with sampled feedback
    ref = np.exp(np.asarray(enumerate_log_probs(init(jax.random.split(jax.random.PRNGKey(0))[0], TINY), TINY),
                            np.float64))[0]
    game = sequences.load_oracle("bt:scale=2", 4, 5).dense().with_reference(ref / ref.sum())
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
