"""Games: built-ins match their definitions, specs parse, CSV round-trips, bad input is refused."""

import numpy as np
import pytest

from gamesim import GamesimError, PreferenceGame, load_game
from gamesim.games import BUILTINS, bradley_terry, from_payoff, load_csv, save_csv


@pytest.mark.parametrize("spec", [*BUILTINS, "random:n=7,seed=3,contexts=2", "skew:n=20,rank=4,scale=2.0",
                                  "bt:n=6,seed=2", "cycle3:ref_seed=4"])
def test_every_builtin_is_a_valid_preference_game(spec):
    game = load_game(spec)
    P = game.P if game.contextual else game.P[None]
    assert np.all((P >= 0) & (P <= 1))
    assert np.abs(P + np.swapaxes(P, 1, 2) - 1).max() <= 1e-15
    A = game.payoff
    assert np.array_equal(A, -np.swapaxes(A, 1, 2))  # exactly antisymmetric
    assert np.all(game.stacked_reference > 0)
    np.testing.assert_allclose(game.stacked_reference.sum(-1), 1, atol=1e-15)


def test_hand_built_games():
    assert load_game("cycle3").P[1, 0] == 0.9 and load_game("cycle3").P[2, 1] == 0.9
    assert load_game("cycle3").P[0, 2] == 0.8
    # RPS: paper beats rock, P = 1/2 + A/2
    P = load_game("rps").P
    assert P[1, 0] == 1 and P[0, 1] == 0 and P[0, 0] == 0.5
    # biased RPS: payoff/100 + 1/2
    np.testing.assert_array_equal(load_game("biased_rps").P[0], [0.5, 0.25, 1.0])


def test_random_game_is_egpo_construction():
    game = load_game("random:n=5,seed=7")
    lower = np.tril(np.random.default_rng(7).uniform(size=(5, 5)), -1)
    np.testing.assert_array_equal(np.tril(game.P, -1), lower)
    assert load_game("random:n=5,seed=7").P.tobytes() == game.P.tobytes()
    assert not np.array_equal(load_game("random:n=5,seed=8").P, game.P)


def test_bradley_terry_and_skew_structure():
    g = bradley_terry([0.0, 1.0, 3.0])
    assert g.P[2, 0] == pytest.approx(1 / (1 + np.exp(-3)))
    # skew games of rank 2: P = σ(vᵢᵀ R vⱼ) has logit matrix of rank 2
    P = load_game("skew:n=12,rank=2,seed=1").P
    logits = np.log(P / (1 - P))
    assert np.linalg.matrix_rank(logits, tol=1e-8) == 2


def test_contexts_and_reference_seed():
    g = load_game("random:n=4,seed=1,contexts=3,ref_seed=2")
    assert g.contextual and g.P.shape == (3, 4, 4) and g.reference.shape == (3, 4)
    np.testing.assert_allclose(g.weights, 1 / 3)
    assert len({tuple(r) for r in g.reference}) == 3


def test_csv_round_trip_is_exact(tmp_path):
    for spec in ["soccer", "random:n=9,seed=4", "skew:n=6,seed=2"]:
        game = load_game(spec)
        save_csv(game, tmp_path / "g.csv")
        back = load_csv(tmp_path / "g.csv")
        assert back.P.tobytes() == game.P.tobytes()
        assert back.names == game.names
    assert load_game(str(tmp_path / "g.csv")).n == 6


def test_real_games_shipped():
    soccer, rrps = load_game("soccer"), load_game("rrps")
    assert soccer.n == 10 and rrps.n == 43
    assert soccer.names[0] == "agent0" and rrps.names[-1] == "zq_move"


def test_from_payoff_scales_by_max_abs():
    g = from_payoff([[0, 2], [-2, 0]])
    np.testing.assert_array_equal(g.P, [[0.5, 1.0], [0.0, 0.5]])


# --- bad input: each case a clear GamesimError -------------------------------------------------------
@pytest.mark.parametrize("P, message", [
    (np.full((2, 3), 0.5), "square"),
    ([[0.5, 1.2], [-0.2, 0.5]], r"\[0, 1\]"),
    ([[0.5, 0.7], [0.7, 0.5]], "complementary"),
    ([[0.5, np.nan], [0.5, 0.5]], "NaN or infinite"),
    ([[0.5, np.inf], [0.0, 0.5]], "NaN or infinite"),
    ([[0.6, 0.5], [0.5, 0.4]], "complementary"),
    (np.zeros((2, 2, 2, 2)), "2-D"),
    ([["a", "b"], ["c", "d"]], "numeric"),
])
def test_bad_matrices(P, message):
    with pytest.raises(GamesimError, match=message):
        PreferenceGame(P)


@pytest.mark.parametrize("ref, message", [
    ([0.5, 0.5, 0.0], "positive probability"),
    ([0.5, 0.6, 0.1], "sum to 1"),
    ([0.5, 0.5], "shape"),
    ([0.5, np.nan, 0.5], "NaN"),
])
def test_bad_reference(ref, message):
    with pytest.raises(GamesimError, match=message):
        load_game("rps").with_reference(ref)


def test_tiny_asymmetry_is_accepted_and_averaged_out():
    P = np.array([[0.5, 0.3 + 4e-10], [0.7, 0.5]])
    g = PreferenceGame(P)
    assert g.P[0, 1] == P[0, 1]  # the user's matrix is kept as given
    assert g.payoff[0, 0, 1] == -g.payoff[0, 1, 0] == pytest.approx(-0.2 + 2e-10, abs=1e-16)


@pytest.mark.parametrize("spec, message", [
    ("rsp", "did you mean 'rps'"),
    ("cycel3", "did you mean 'cycle3'"),
    ("random:m=4", "no parameter 'm'"),
    ("random:n=four", "not an integer"),
    ("random:n", "KEY=VALUE"),
    ("skew:rank=3", "even rank"),
    ("random:n=0", "n ≥ 1"),
    ("missing_file.csv", "cannot read"),
])
def test_bad_specs(spec, message):
    with pytest.raises(GamesimError, match=message):
        load_game(spec)


@pytest.mark.parametrize("text, message", [
    ("0.5,0.5\n0.5\n", "ragged"),
    ("0.5,x\n0.5,0.5\n", "not a number"),
    ("a,b\n0.5,0.5\n", "square"),
    ("", "empty"),
    ("a,b,c\n0.5,0.5,0.5\n0.5,0.5\n", "ragged"),
])
def test_malformed_csv(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(GamesimError, match=message):
        load_csv(path)


def test_contextual_game_refuses_single_csv(tmp_path):
    with pytest.raises(GamesimError, match="one matrix"):
        save_csv(load_game("random:n=3,contexts=2"), tmp_path / "x.csv")
