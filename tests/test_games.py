"""Games: built-ins match their definitions, specs parse, CSV round-trips, bad input is refused."""

import numpy as np
import pytest

from gamesim import GamesimError, PreferenceGame, load_game
from gamesim.core.games import BUILTINS, bradley_terry, from_payoff, load_csv, save_csv


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


# --- Kuhn poker: the normal form against the game's known solution (Kuhn 1950) ---------------------
@pytest.fixture(scope="module")
def kuhn_form():
    from gamesim.core.games import kuhn_normal_form

    return kuhn_normal_form()


def _kuhn_mixed(names, probs):
    """A behaviour strategy as a mixed strategy over reduced pure strategies (Kuhn's theorem):
    the product over cards of the probability of that card's action code ("Jb Qpp Kpb")."""
    return np.array([np.prod([probs[part[0]][part[1:]] for part in name.split()]) for name in names])


def _kuhn_p1(names, alpha, bet_k=None, call_q=None):
    """Player 1 bets J with alpha, never Q, K with bet_k (3α); after check and bet calls Q with
    call_q (α + 1/3) and K always."""
    bet_k = 3 * alpha if bet_k is None else bet_k
    call_q = alpha + 1 / 3 if call_q is None else call_q
    behaviour = {"J": (alpha, 0.0), "Q": (0.0, call_q), "K": (bet_k, 1.0)}  # (bet, call after check and bet)
    return _kuhn_mixed(names, {c: {"b": b, "pb": (1 - b) * k, "pp": (1 - b) * (1 - k)}
                               for c, (b, k) in behaviour.items()})


def _kuhn_p2(names, bluff_j=1 / 3, call_q=1 / 3):
    """Player 2 after a check bets J with bluff_j, never Q, always K; facing a bet calls Q with call_q, K always."""
    behaviour = {"J": (0.0, bluff_j), "Q": (call_q, 0.0), "K": (1.0, 1.0)}  # (call a bet, bet after a check)
    return _kuhn_mixed(names, {c: {"bb": k * b, "bp": k * (1 - b), "pb": (1 - k) * b, "pp": (1 - k) * (1 - b)}
                               for c, (k, b) in behaviour.items()})


def _nash_conv(M, x, y):
    """max_i (My)_i − min_j (xᵀM)_j: the duality gap of (x, y) in the zero-sum game M."""
    return (M @ y).max() - (x @ M).min()


def test_kuhn_normal_form_from_the_rules(kuhn_form):
    M, rows, cols = kuhn_form
    assert M.shape == (27, 64) and len(set(rows)) == 27 and len(set(cols)) == 64
    np.testing.assert_array_equal(M * 6, np.round(M * 6))  # six equally likely deals
    m = lambda r, c: M[rows.index(r), cols.index(c)]
    assert m("Jb Qb Kb", "Jpp Qpp Kpp") == 1       # player 2 folds every bet: player 1 takes the ante
    assert m("Jb Qb Kb", "Jbb Qbb Kbb") == 0       # every hand a showdown for 2: symmetric
    assert m("Jpp Qpp Kpp", "Jpb Qpb Kpb") == -1   # player 2 bets after every check, player 1 folds
    # by hand: bet K only, against call every bet and check behind; over (J,Q) (J,K) (Q,J) (Q,K) (K,J) (K,Q):
    assert m("Jpp Qpp Kb", "Jbp Qbp Kbp") == pytest.approx((-1 - 1 + 1 - 1 + 2 + 2) / 6, abs=1e-15)


def test_kuhn_value_by_linear_programming(kuhn_form):
    from scipy.optimize import linprog

    M = kuhn_form[0]
    m, k = M.shape  # max v subject to (xᵀM)_j ≥ v for every column, x in the simplex
    lp = linprog(np.r_[np.zeros(m), -1.0], A_ub=np.c_[-M.T, np.ones(k)], b_ub=np.zeros(k),
                 A_eq=np.r_[np.ones(m), 0.0][None], b_eq=[1.0], bounds=[(0, None)] * m + [(None, None)])
    assert lp.status == 0 and -lp.fun == pytest.approx(-1 / 18, abs=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 1 / 6, 1 / 3])
def test_kuhn_known_equilibria_are_equilibria(kuhn_form, alpha):
    M, rows, cols = kuhn_form
    x, y = _kuhn_p1(rows, alpha), _kuhn_p2(cols)
    assert x.sum() == pytest.approx(1, abs=1e-15) and y.sum() == pytest.approx(1, abs=1e-15)
    assert _nash_conv(M, x, y) <= 1e-12
    assert x @ M @ y == pytest.approx(-1 / 18, abs=1e-12)


@pytest.mark.parametrize("p1, p2", [
    ({"alpha": 0.5, "bet_k": 1.0, "call_q": 5 / 6}, {}),   # α = 1/2 is outside [0, 1/3]
    ({"alpha": 0.2, "bet_k": 0.3}, {}),                    # K bet not 3α
    ({"alpha": 0.1}, {"bluff_j": 0.5}),                    # player 2 bluffs J too often
    ({"alpha": 0.1}, {"call_q": 0.5}),                     # player 2 calls Q too often
])
def test_kuhn_non_equilibria_are_rejected(kuhn_form, p1, p2):
    M, rows, cols = kuhn_form
    assert _nash_conv(M, _kuhn_p1(rows, **p1), _kuhn_p2(cols, **p2)) >= 0.02


@pytest.fixture(scope="module")
def kuhn_game():
    return load_game("kuhn")


def test_kuhn_symmetric_game_and_its_gap(kuhn_form, kuhn_game):
    from gamesim import duality_gap
    from gamesim.core.games import KUHN_SCALE, pair_marginals

    M, rows, cols = kuhn_form
    game = kuhn_game
    assert game.n == 27 * 64 and KUHN_SCALE == 2 >= np.abs(M).max()  # c = 2, P = 1/2 + A_sym/4
    rng = np.random.default_rng(0)
    for i, j, k, l in rng.integers(0, [27, 64, 27, 64], size=(50, 4)):
        assert game.P[64 * i + j, 64 * k + l] == pytest.approx(0.5 + (M[i, l] - M[k, j]) / 8, abs=1e-15)
    assert game.names[64 * 3 + 5] == f"{rows[3]} / {cols[5]}"
    x, y = rng.dirichlet(np.ones(27)), rng.dirichlet(np.ones(64))
    xm, ym = pair_marginals(np.outer(x, y).ravel(), (27, 64))
    np.testing.assert_allclose(xm, x, atol=1e-15)
    np.testing.assert_allclose(ym, y, atol=1e-15)
    assert duality_gap(game, np.outer(x, y).ravel()) == pytest.approx(_nash_conv(M, x, y) / 4, rel=1e-12)


@pytest.mark.slow
def test_kuhn_solve_finds_an_equilibrium_of_the_known_family(kuhn_form, kuhn_game):
    from gamesim import solve
    from gamesim.core.games import pair_marginals

    M, rows, cols = kuhn_form
    x, y = pair_marginals(solve(kuhn_game).policy, M.shape)
    assert _nash_conv(M, x, y) <= 1e-9
    assert x @ M @ y == pytest.approx(-1 / 18, abs=1e-12)
    act = lambda s, names, card, code: sum(p for p, n in zip(s, names) if n.split()["JQK".index(card)][1:] == code)
    alpha = act(x, rows, "J", "b")
    assert 0 <= alpha <= 1 / 3 + 1e-9
    assert act(x, rows, "K", "b") == pytest.approx(3 * alpha, abs=1e-9)
    assert act(x, rows, "Q", "b") == pytest.approx(0, abs=1e-9)
    assert act(x, rows, "Q", "pb") == pytest.approx(alpha + 1 / 3, abs=1e-9)  # Q is always checked
    assert act(x, rows, "J", "pb") == pytest.approx(0, abs=1e-9)  # fold J
    assert act(x, rows, "K", "pp") == pytest.approx(0, abs=1e-9)  # call with K
    # player 2's codes: the answer to a bet, then the action after a check
    assert act(y, cols, "J", "pb") + act(y, cols, "J", "bb") == pytest.approx(1 / 3, abs=1e-9)  # bluff J
    assert act(y, cols, "J", "bp") + act(y, cols, "J", "bb") == pytest.approx(0, abs=1e-9)  # fold J
    assert act(y, cols, "Q", "bp") + act(y, cols, "Q", "bb") == pytest.approx(1 / 3, abs=1e-9)  # call with Q
    assert act(y, cols, "Q", "pb") + act(y, cols, "Q", "bb") == pytest.approx(0, abs=1e-9)  # check Q
    assert act(y, cols, "K", "bb") == pytest.approx(1, abs=1e-9)  # bet and call K


def test_kuhn_mmd_is_two_player_mmd_on_the_normal_form(kuhn_form, kuhn_game):
    """One MMD step at (η, τ) from a product policy is each player's MMD step on M at η/8, α = 8τ."""
    import jax

    from gamesim.core.games import pair_marginals
    from gamesim.dynamics.updates import mmd_update

    M = kuhn_form[0]
    rng = np.random.default_rng(1)
    x, y = rng.dirichlet(np.ones(27)), rng.dirichlet(np.ones(64))
    eta, tau = 2.0, 0.01
    with jax.enable_x64(True):
        log_pi = mmd_update(np.log(np.outer(x, y).ravel()), kuhn_game.payoff[0], np.log(kuhn_game.reference),
                            eta, tau)
    step, alpha = eta / 8, 8 * tau
    x1 = np.exp((np.log(x) + step * alpha * np.log(1 / 27) + step * M @ y) / (1 + step * alpha))
    y1 = np.exp((np.log(y) + step * alpha * np.log(1 / 64) - step * x @ M) / (1 + step * alpha))
    x1, y1 = x1 / x1.sum(), y1 / y1.sum()
    np.testing.assert_allclose(np.exp(log_pi), np.outer(x1, y1).ravel(), rtol=1e-12, atol=1e-17)
    np.testing.assert_allclose(pair_marginals(np.exp(log_pi), M.shape)[0], x1, rtol=1e-12)


def test_kuhn_construction_refuses_bad_input():
    from gamesim.core.games import from_zero_sum, pair_marginals

    with pytest.raises(GamesimError, match="scale c = 0.5 .* c ≥ max"):
        from_zero_sum([[1.0, -1.0], [-1.0, 1.0]], 0.5)
    with pytest.raises(GamesimError, match="2-D"):
        from_zero_sum([1.0, -1.0], 1.0)
    with pytest.raises(GamesimError, match=r"has shape \(1728,\), not \(10,\)"):
        pair_marginals(np.full(10, 0.1), (27, 64))


def test_kuhn_undominated_form_is_the_textbook_8_by_4(kuhn_form):
    """Iterated removal of weakly dominated strategies leaves Kuhn's textbook 8 × 4 form: player 1
    bets or check-folds J, check-folds or check-calls Q, bets or check-calls K; player 2 bluffs J or
    not after a check and calls Q or not; the value stays −1/18 (LP)."""
    from scipy.optimize import linprog

    from gamesim.core.games import undominated

    M, rows, cols = kuhn_form
    R, C = undominated(M)
    assert sorted(rows[i] for i in R) == sorted(f"J{j} Q{q} K{k}" for j in ("b", "pp") for q in ("pp", "pb")
                                                for k in ("b", "pb"))
    assert sorted(cols[j] for j in C) == sorted(f"J{j} Q{q} Kbb" for j in ("pp", "pb") for q in ("pp", "bp"))
    Ms = M[np.ix_(R, C)]
    # max v s.t. xᵀM ≥ v, x in the simplex
    res = linprog(np.r_[np.zeros(len(R)), -1.0], A_ub=np.c_[-Ms.T, np.ones(len(C))], b_ub=np.zeros(len(C)),
                  A_eq=np.r_[np.ones(len(R)), 0.0][None], b_eq=[1.0], bounds=[(0, None)] * len(R) + [(None, None)])
    assert abs(-res.fun + 1 / 18) < 1e-12
    game = load_game("kuhn:strategies=undominated")
    assert game.n == 32 and game.label == "kuhn:strategies=undominated"
    with pytest.raises(GamesimError, match="strategies is 'reduced'"):
        load_game("kuhn:strategies=all")
