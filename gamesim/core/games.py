"""Preference games: the matrix P, the reference policy π_ref, contexts, built-ins, CSV files.

P[i, j] = Prob(response i beats response j), with P + Pᵀ = 1 (so diag P = 1/2), checked to 1e-9.
gamesim keeps P as given and computes with its antisymmetric part A = (P − Pᵀ)/2 = P − 1/2, which
is exactly antisymmetric in floating point: (Pπ)_y = 1/2 + (Aπ)_y for any distribution π, and the
constant cancels in softmax updates.

A contextual game is a stack of C matrices with context weights ρ and a reference policy per
context; every quantity decouples per context and game-level numbers are ρ-weighted.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gamesim.core.errors import GamesimError
from gamesim.core.files import atomic_open
from gamesim.core.guards import check_matrix_memory, check_seed
from gamesim.core.names import did_you_mean

COMPLEMENT_TOL = 1e-9
"""Largest |P + Pᵀ − 1| accepted; computations use A = (P − Pᵀ)/2, exactly antisymmetric."""

SUM_TOL = 1e-9
"""Largest |Σ π_ref − 1| (and |Σ ρ − 1|) accepted; within it the vector is renormalized."""

DATA_DIR = Path(__file__).parents[1] / "data"


class PreferenceGame:
    """A (possibly contextual) preference game: P(y ≻ y') per context, π_ref and ρ.

    Args:
        P: (n, n) preference matrix, or (C, n, n) for C contexts; entries in [0, 1] with
            P + Pᵀ = 1 to COMPLEMENT_TOL (so diag P = 1/2). Kept as given.
        reference: π_ref, (n,) or (C, n); default uniform. Every entry must be positive, each
            row sum 1 to SUM_TOL (then renormalized).
        names: optional names of the n responses.
        weights: ρ, the context weights (C,), positive; default uniform.
        label: a short description (the spec string it came from, or a file name).

    Raises:
        GamesimError: naming the entry or shape that breaks one of the conditions above.

    References:
        Munos et al. 2023 (NLHF) §3, Zhang et al. 2024 (INPO) §2: the preference model P(y ≻ y'|x)
        and the KL-regularized game J(π₁, π₂) of `gamesim.core.metrics` (INPO eq. 3).
    """

    def __init__(self, P, reference=None, names: Sequence[str] | None = None,
                 weights=None, label: str = "custom"):
        P = _as_float_array(P, "the preference matrix P")
        if P.ndim not in (2, 3):
            raise GamesimError(
                f"the preference matrix must be 2-D (n×n) or 3-D (contexts×n×n), got shape {P.shape}")
        self.contextual = P.ndim == 3
        stack = P if self.contextual else P[None]
        _check_preferences(stack)
        self._P = stack
        self._payoff = (stack - np.swapaxes(stack, 1, 2)) / 2  # exactly antisymmetric
        for a in (self._P, self._payoff):
            a.setflags(write=False)
        C, n = stack.shape[0], stack.shape[1]
        self._reference = _check_reference(reference, C, n, self.contextual)
        self._weights = _check_weights(weights, C)
        if names is not None:
            names = tuple(str(x) for x in names)
            if len(names) != n:
                raise GamesimError(f"{len(names)} response names given for {n} responses")
        self.names = names
        self.label = label
        self.solutions: dict = {}  # τ → Equilibrium, filled by equilibria.solve

    # --- shapes -------------------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Number of responses."""
        return self._payoff.shape[-1]

    @property
    def num_contexts(self) -> int:
        """Number of contexts C (1 for a non-contextual game)."""
        return self._payoff.shape[0]

    @property
    def P(self) -> np.ndarray:
        """The preference matrix as given, (n, n), or (C, n, n) for a contextual game."""
        return self._P if self.contextual else self._P[0]

    @property
    def reference(self) -> np.ndarray:
        """π_ref, (n,), or (C, n) for a contextual game."""
        return self._reference if self.contextual else self._reference[0]

    @property
    def weights(self) -> np.ndarray:
        """Context weights ρ, (C,)."""
        return self._weights

    # --- stacked views used by the solvers and the engine ---------------------------------------
    @property
    def payoff(self) -> np.ndarray:
        """A = (P − Pᵀ)/2 = P − 1/2 as a (C, n, n) stack, exactly antisymmetric."""
        return self._payoff

    @property
    def stacked_reference(self) -> np.ndarray:
        """π_ref as a (C, n) stack."""
        return self._reference

    def policy_shape(self) -> tuple[int, ...]:
        """Shape of a policy on this game.

        Returns:
            (n,), or (C, n) for a contextual game.
        """
        return (self.num_contexts, self.n) if self.contextual else (self.n,)

    def stack_policy(self, policy, what: str = "policy") -> np.ndarray:
        """Check a user policy and return it as a (C, n) stack.

        Args:
            policy: shape `policy_shape()`; non-negative, each row summing to 1 to SUM_TOL.
            what: the policy's name in error messages.

        Returns:
            The policy as a float64 (C, n) array.

        Raises:
            GamesimError: for a wrong shape, a non-finite or negative entry, or a wrong sum.
        """
        policy = _as_float_array(policy, what)
        if policy.shape != self.policy_shape():
            raise GamesimError(f"{what} has shape {policy.shape}; this game needs {self.policy_shape()}")
        stack = policy if self.contextual else policy[None]
        _check_distribution(stack, what, positive=False)
        return stack

    def unstack(self, stack: np.ndarray) -> np.ndarray:
        """Inverse of `stack_policy`.

        Args:
            stack: an array (…, C, n) whose context axis is the one before last.

        Returns:
            `stack` itself for a contextual game, else (…, n) with the context axis dropped.
        """
        return stack if self.contextual else stack[..., 0, :]

    def with_reference(self, reference) -> PreferenceGame:
        """The same game with another reference policy.

        Args:
            reference: the new π_ref, (n,) or (C, n), checked as in `PreferenceGame`.

        Returns:
            A new PreferenceGame with the same P, names, weights and label (no cached solutions).
        """
        return PreferenceGame(self.P, reference, self.names, self._weights, self.label)

    def __repr__(self) -> str:
        ctx = f", contexts={self.num_contexts}" if self.contextual else ""
        return f"PreferenceGame({self.label!r}, n={self.n}{ctx})"


# --- validation ----------------------------------------------------------------------------------
def _as_float_array(x, what: str) -> np.ndarray:
    try:
        arr = np.array(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise GamesimError(f"{what} must be numeric: {exc}") from None
    if not np.all(np.isfinite(arr)):
        raise GamesimError(f"{what} has NaN or infinite entries; every entry must be a finite number")
    return arr


def _check_preferences(stack: np.ndarray) -> None:
    if stack.shape[-1] != stack.shape[-2]:
        raise GamesimError(
            f"the preference matrix must be square (P[i, j] for every pair of responses), "
            f"got {stack.shape[-2]}×{stack.shape[-1]}")
    if stack.shape[-1] == 0:
        raise GamesimError("the preference matrix is empty")
    lo, hi = stack.min(), stack.max()
    if lo < 0 or hi > 1:
        raise GamesimError(
            f"preferences are probabilities and must lie in [0, 1]; found entries in [{lo:g}, {hi:g}]. "
            "For a payoff matrix use gamesim.core.games.from_payoff")
    err = np.abs(stack + np.swapaxes(stack, 1, 2) - 1).max()
    if err > COMPLEMENT_TOL:
        c, i, j = np.unravel_index(np.argmax(np.abs(stack + np.swapaxes(stack, 1, 2) - 1)), stack.shape)
        where = (f"P[{i},{i}] = {float(stack[c, i, i])!r}, not 1/2" if i == j else
                 f"P[{i},{j}] + P[{j},{i}] = {float(stack[c, i, j] + stack[c, j, i])!r}")
        raise GamesimError(
            f"preferences must be complementary, P + Pᵀ = 1 (so diag P = 1/2); {where}. "
            "Symmetrize with P ← (P + 1 − Pᵀ)/2 if the asymmetry is noise")


def _check_distribution(stack: np.ndarray, what: str, positive: bool) -> np.ndarray:
    if positive and np.any(stack <= 0):
        bad = np.argwhere(stack <= 0)[:5, -1].tolist()
        raise GamesimError(
            f"{what} must give every response positive probability (KL(π‖π_ref) is infinite "
            f"otherwise); responses {bad} have probability ≤ 0. Mix it with the uniform policy")
    if np.any(stack < 0):
        raise GamesimError(f"{what} has negative entries")
    sums = stack.sum(-1)
    if np.any(np.abs(sums - 1) > SUM_TOL):
        raise GamesimError(
            f"{what} must sum to 1 over responses; sums are {np.round(sums, 12).tolist()}")
    return stack / sums[..., None]


def _check_reference(reference, C: int, n: int, contextual: bool) -> np.ndarray:
    if reference is None:
        ref = np.full((C, n), 1.0 / n)
    else:
        ref = _as_float_array(reference, "the reference policy π_ref")
        if ref.shape == (n,):
            ref = np.broadcast_to(ref, (C, n))
        elif not (contextual and ref.shape == (C, n)):
            want = f"({n},) or ({C}, {n})" if contextual else f"({n},)"
            raise GamesimError(f"the reference policy π_ref has shape {ref.shape}; expected {want}")
        ref = _check_distribution(np.array(ref), "the reference policy π_ref", positive=True)
    ref.setflags(write=False)
    return ref


def _check_weights(weights, C: int) -> np.ndarray:
    if weights is None:
        w = np.full(C, 1.0 / C)
    else:
        w = _as_float_array(weights, "the context weights ρ")
        if w.shape != (C,):
            raise GamesimError(f"the context weights ρ have shape {w.shape}; expected ({C},)")
        if np.any(w <= 0):
            raise GamesimError("context weights ρ must be positive; drop contexts of weight 0")
        w = _check_distribution(w, "the context weights ρ", positive=True)
    w.setflags(write=False)
    return w


# --- built-in games ------------------------------------------------------------------------------
RPS_PAYOFF = np.array([[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]])
BIASED_RPS_PAYOFF = np.array([[0.0, -25.0, 50.0], [25.0, 0.0, -5.0], [-50.0, 5.0, 0.0]])
PERTURBED_RPS_PAYOFF = np.array([[0.0, -3.0, 3.0], [3.0, 0.0, -1.0], [-3.0, 1.0, 0.0]])


def from_payoff(payoff, reference=None, names=None, label: str = "payoff") -> PreferenceGame:
    """The preference game of a symmetric zero-sum game given by its payoff matrix.

    P = (1 + A / max|A|) / 2 (P = 1/2 everywhere when A = 0), whose von Neumann winners are the
    symmetric equilibria of A.

    Args:
        payoff: A, (n, n), antisymmetric (A = −Aᵀ) to COMPLEMENT_TOL·max(1, max|A|).
        reference, names: as in `PreferenceGame`.
        label: the game's label.

    Returns:
        The PreferenceGame of P.

    Raises:
        GamesimError: if A is not square or not antisymmetric.
    """
    A = _as_float_array(payoff, "the payoff matrix")
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise GamesimError(f"the payoff matrix must be square, got shape {A.shape}")
    if np.abs(A + A.T).max() > COMPLEMENT_TOL * max(1.0, np.abs(A).max()):
        raise GamesimError("the payoff matrix must be antisymmetric (A = −Aᵀ): a symmetric zero-sum game")
    scale = np.abs(A).max()
    P = np.full(A.shape, 0.5) if scale == 0 else (1 + A / scale) / 2
    return PreferenceGame(P, reference, names, label=label)


def rps() -> PreferenceGame:
    """Rock-paper-scissors: P = 1/2 + A/2 with A the RPS payoff; equilibrium uniform."""
    return from_payoff(RPS_PAYOFF, names=("rock", "paper", "scissors"), label="rps")


def biased_rps() -> PreferenceGame:
    """Biased RPS, payoff [[0,−25,50],[25,0,−5],[−50,5,0]] mapped to [0,1]; equilibrium (1,10,5)/16."""
    return from_payoff(BIASED_RPS_PAYOFF, names=("rock", "paper", "scissors"), label="biased_rps")


def perturbed_rps() -> PreferenceGame:
    """MMD's perturbed RPS (Sokota et al. 2023), payoff [[0,−3,3],[3,0,−1],[−3,1,0]] mapped to [0,1].

    Its von Neumann winner is (1, 3, 3)/7: (Mπ)_rock = (−3·3 + 3·3)/7 = 0, (Mπ)_paper = (3 − 3)/7 = 0.
    """
    return from_payoff(PERTURBED_RPS_PAYOFF, names=("rock", "paper", "scissors"), label="perturbed_rps")


def cycle3() -> PreferenceGame:
    """The 3-cycle of COMAL (Liu et al. 2024): P[b≻a] = P[c≻b] = 0.9, P[a≻c] = 0.8.

    Its unique equilibrium is (4/11, 3/11, 4/11): (Aπ)_a = −0.4·3/11 + 0.3·4/11 = 0, and so on.
    """
    P = np.array([[0.5, 0.1, 0.8], [0.9, 0.5, 0.1], [0.2, 0.9, 0.5]])
    return PreferenceGame(P, names=("a", "b", "c"), label="cycle3")


def from_zero_sum(M, scale: float, names=None, label: str = "zero_sum") -> PreferenceGame:
    """The symmetric preference game of a two-player zero-sum game M (m × k, M[i, l] = what the row
    player wins with i against column l), by the standard symmetrization in which each player
    plays both roles, half the time each: a response is a pair (i, j) = (row strategy, column
    strategy), index i·k + j, and

        A_sym[(i,j),(k,l)] = (M[i,l] − M[k,j]) / 2,     P = 1/2 + A_sym / (2c),   c = `scale`.

    (A_sym π)_(i,j) = [(Mȳ)_i − (x̄ᵀM)_j] / 2 for any π with marginals x̄ (rows) and ȳ (columns), so
    π is a von Neumann winner iff (x̄, ȳ) is a Nash equilibrium of M, and the duality gap of the
    preference game is DualGap(π) = 2 max_y (Pπ)_y − 1 = [max_i (Mȳ)_i − min_j (x̄ᵀM)_j] / (2c):
    M's own duality gap (NashConv) over 2c. `pair_marginals` maps π back to (x̄, ȳ).
    """
    M = _as_float_array(M, "the zero-sum payoff matrix M")
    if M.ndim != 2:
        raise GamesimError(f"the zero-sum payoff matrix M must be 2-D (rows × columns), got shape {M.shape}")
    A = (M[:, None, None, :] - M.T[None, :, :, None]) / 2  # A[i, j, k, l] = (M[i, l] − M[k, j]) / 2
    A = A.reshape(M.size, M.size)
    if not scale >= np.abs(A).max():
        raise GamesimError(f"scale c = {scale!r} leaves P = 1/2 + A_sym/(2c) outside [0, 1]; give "
                           f"c ≥ max|A_sym| = {np.abs(A).max():g} (any c ≥ max|M| will do)")
    return PreferenceGame(0.5 + A / (2 * scale), names=names, label=label)


def pair_marginals(policy, shape) -> tuple[np.ndarray, np.ndarray]:
    """(x̄, ȳ): the row and column marginals of a policy over the pairs of `from_zero_sum`, shape (m, k)."""
    policy = _as_float_array(policy, "the policy")
    if policy.shape != (math.prod(shape),):
        raise GamesimError(f"a policy over the {shape[0]} × {shape[1]} strategy pairs has shape "
                           f"({math.prod(shape)},), not {policy.shape}")
    joint = policy.reshape(shape)
    return joint.sum(1), joint.sum(0)


KUHN_CARDS = "JQK"
KUHN_SCALE = 2.0
"""c of the `kuhn` game: the most a player wins or loses in one hand (ante 1 + bet 1), so |M| ≤ 2."""


def _kuhn_winnings(cards: tuple[int, int], history: str) -> float | None:
    """Player 1's winnings at the end of a Kuhn poker hand, None while it goes on. Actions: 'p'
    (pass: check, or fold to a bet) and 'b' (bet, or call a bet); player 1 acts at even depths."""
    if history in ("bp", "pbp"):  # a fold: the folder loses the ante
        return 1.0 if history == "bp" else -1.0
    if history in ("pp", "bb", "pbb"):  # a showdown: the ante, or ante and bet
        stake = 1.0 if history == "pp" else 2.0
        return stake if cards[0] > cards[1] else -stake
    return None


def kuhn_normal_form() -> tuple[np.ndarray, list[str], list[str]]:
    """Kuhn poker's reduced normal form (M, player 1's strategies, player 2's), derived from the game tree.

    A pure strategy assigns an action to each information set (player, own card, history) of the
    tree; the reduced form keeps only the information sets that the strategy itself does not rule
    out (a player who bets never decides what to do after checking), which leaves 3³ = 27
    strategies for player 1 (per card: bet, check-fold, check-call) and 4³ = 64 for player 2 (per
    card: check or bet after a check, fold or call a bet). M[i, l] is player 1's expected winnings
    over the 6 equally likely deals. A name gives, per card, the strategy's actions ('p' pass:
    check or fold; 'b' bet or call): "Jb Qpp Kpb" (player 1: bet J; check-fold Q; check-call K),
    "Jpb Qbp Kbb" (player 2: per card, the answer to a bet, then the action after a check).
    """
    deals = list(itertools.permutations(range(len(KUHN_CARDS)), 2))

    def order(info_set):  # by card, then depth, then history ("b" before "p")
        card, h = info_set
        return card, len(h), h

    def reached(player, strategy=None):
        """The player's information sets reached over all deals and opponent actions when it plays
        `strategy` (a dict from information set to action; every action when None)."""
        found = {}
        for cards in deals:
            stack = [""]
            while stack:
                h = stack.pop()
                if _kuhn_winnings(cards, h) is None:
                    mine = len(h) % 2 == player
                    if mine:
                        found[cards[player], h] = None
                    stack += [h + a for a in ("pb" if strategy is None or not mine else strategy[cards[player], h])]
        return sorted(found, key=order)

    def reduced(player):
        """Pure strategies restricted to the information sets they reach, without duplicates."""
        sets, out = reached(player), {}
        for actions in itertools.product("pb", repeat=len(sets)):
            full = dict(zip(sets, actions))
            out.setdefault(tuple((s, full[s]) for s in reached(player, full)), None)
        return [dict(s) for s in out]

    def play(s1, s2, cards):
        h = ""
        while (w := _kuhn_winnings(cards, h)) is None:
            h += (s1, s2)[len(h) % 2][cards[len(h) % 2], h]
        return w

    def name(s):
        return " ".join(KUHN_CARDS[c] + "".join(a for (card, _), a in s.items() if card == c)
                        for c in range(len(KUHN_CARDS)))

    S1, S2 = reduced(0), reduced(1)
    M = np.array([[sum(play(a, b, cards) for cards in deals) / len(deals) for b in S2] for a in S1])
    return M, [name(s) for s in S1], [name(s) for s in S2]


def undominated(M) -> tuple[list[int], list[int]]:
    """The rows and columns of a zero-sum game M (row player maximizes) that survive iterated
    removal of weakly dominated strategies, rows then columns in each round, in index order.
    Removal keeps the value, and at least one equilibrium (not necessarily all of them)."""
    M = np.asarray(M, dtype=float)
    rows, cols, changed = list(range(M.shape[0])), list(range(M.shape[1])), True
    while changed:
        changed = False
        for i in list(rows):
            other = M[[k for k in rows if k != i]][:, cols]
            if np.any(np.all(other >= M[i, cols], 1) & np.any(other > M[i, cols], 1)):
                rows.remove(i)
                changed = True
        for j in list(cols):
            other = M[rows][:, [l for l in cols if l != j]]
            if np.any(np.all(other <= M[rows, j][:, None], 0) & np.any(other < M[rows, j][:, None], 0)):
                cols.remove(j)
                changed = True
    return rows, cols


KUHN_STRATEGIES = ("reduced", "undominated")


def kuhn(strategies: str = "reduced") -> PreferenceGame:
    """Kuhn poker (Kuhn 1950) as a symmetric preference game over pairs (player 1's, player 2's strategy).

    Rules: a deck of three cards J < Q < K; each player antes 1 and is dealt one card. Player 1
    checks or bets 1. After a check, player 2 checks (showdown for the antes) or bets 1, and
    player 1 then folds (losing the ante) or calls (showdown for 2). After a bet, player 2 folds
    (losing the ante) or calls (showdown for 2). The higher card wins a showdown.

    Construction: M = `kuhn_normal_form()` (27 × 64, from the game tree), symmetrized by
    `from_zero_sum` at c = KUHN_SCALE = 2: P = 1/2 + A_sym/4, 1728 responses (i, j), index 64·i + j.
    `pair_marginals(π, (27, 64))` gives back (x̄, ȳ). The preference game's duality gap is M's
    duality gap (NashConv) over 2c = 4, and OpenSpiel's exploitability (NashConv/2) is twice it.
    From a product policy x ⊗ y (π_ref uniform is one), an update on softmax scores of Aπ keeps
    the product form, A = A_sym/(2c) scoring (i, j) by [(Mȳ)_i − (x̄ᵀM)_j]/(4c): MMD at (η, τ) on
    `kuhn` is simultaneous two-player MMD on M at step η/(4c) = η/8 and temperature α = 4cτ = 8τ.

    `strategies="undominated"` (spec `kuhn:strategies=undominated`) keeps the 8 × 4 strategies
    that survive iterated removal of weakly dominated ones (`undominated`): 32 responses, the form
    textbooks print, with the same value and the equilibrium family below.

    Known solution (Kuhn 1950): the value is −1/18 for player 1. Player 1's equilibria are,
    for α ∈ [0, 1/3]: bet J with probability α, never bet Q, bet K with 3α; after check and bet,
    fold J, call Q with α + 1/3, call K. Player 2's is unique: after a check bet J with 1/3,
    check Q, bet K; facing a bet fold J, call Q with 1/3, call K.
    """
    M, rows, cols = kuhn_normal_form()
    if strategies not in KUHN_STRATEGIES:
        raise GamesimError(f"kuhn: strategies is 'reduced' (27 × 64) or 'undominated' (8 × 4), not {strategies!r}")
    if strategies == "undominated":
        keep_rows, keep_cols = undominated(M)
        M, rows, cols = M[np.ix_(keep_rows, keep_cols)], [rows[i] for i in keep_rows], [cols[j] for j in keep_cols]
    label = "kuhn" if strategies == "reduced" else "kuhn:strategies=undominated"
    return from_zero_sum(M, KUHN_SCALE, names=[f"{r} / {c}" for r in rows for c in cols], label=label)


def random_matrix(n: int, rng: np.random.Generator) -> np.ndarray:
    """EGPO-style random game: strictly-lower triangle i.i.d. U[0,1], upper = 1 − lower, diag 1/2."""
    lower = np.tril(rng.uniform(size=(n, n)), -1)
    return lower + np.triu(1 - lower.T, 1) + 0.5 * np.eye(n)


def skew_matrix(n: int, rng: np.random.Generator, rank: int = 2, scale: float = 1.0) -> np.ndarray:
    """Low-rank intransitive game P = σ(v_iᵀ R v_j), v_i ~ N(0, I_rank), R = scale·⊕[[0,1],[−1,0]].

    The general preference model's embeddings (Zhang et al. 2024, "General Preference Modeling
    with Preference Representations"): R skew-symmetric makes P complementary by construction.
    """
    if rank < 2 or rank % 2:
        raise GamesimError(f"skew games need an even rank ≥ 2 (a skew-symmetric R), got rank={rank}")
    v = rng.standard_normal((n, rank))
    R = np.kron(np.eye(rank // 2), np.array([[0.0, 1.0], [-1.0, 0.0]])) * scale
    logits = v @ R @ v.T
    logits = (logits - logits.T) / 2  # exact antisymmetry against rounding
    return 1 / (1 + np.exp(-logits))


def bradley_terry_matrix(scores) -> np.ndarray:
    """Transitive game P[i, j] = σ(s_i − s_j) from scores s."""
    s = _as_float_array(scores, "the Bradley-Terry scores")
    d = s[:, None] - s[None, :]
    return 1 / (1 + np.exp(-d))


def bradley_terry(scores, reference=None, names=None) -> PreferenceGame:
    """A Bradley-Terry (transitive) game, P[i, j] = σ(s_i − s_j).

    Args:
        scores: s, (n,), finite.
        reference, names: as in `PreferenceGame`.

    Returns:
        The PreferenceGame labelled "bradley_terry"; its von Neumann winner is the top-scoring
        response (the Condorcet winner).

    References:
        Bradley & Terry 1952; the reward model of DPO (Rafailov et al. 2023, eq. 1).
    """
    return PreferenceGame(bradley_terry_matrix(scores), reference, names, label="bradley_terry")


def _seeded(draw: Callable[..., np.ndarray], label: str):
    """A spec factory drawing `contexts` matrices from one seeded generator."""

    def factory(n: int, seed: int = 0, contexts: int = 1, **kw) -> PreferenceGame:
        if n < 1:
            raise GamesimError(f"{label} needs n ≥ 1, got n={n}")
        if contexts < 1:
            raise GamesimError(f"contexts must be ≥ 1, got {contexts}")
        check_matrix_memory(n, contexts, f"{label}:n={n}" + (f",contexts={contexts}" if contexts > 1 else ""))
        rng = np.random.default_rng(seed)
        mats = [draw(n, rng, **kw) for _ in range(contexts)]
        return PreferenceGame(np.stack(mats) if contexts > 1 else mats[0], label=label)

    return factory


def _bt_draw(n: int, rng: np.random.Generator, scale: float = 1.0) -> np.ndarray:
    return bradley_terry_matrix(scale * rng.standard_normal(n))


def mixed_matrix(n: int, rng: np.random.Generator, cyclic: float = 0.5, scale: float = 1.0) -> np.ndarray:
    """Bradley-Terry plus a cyclic part: P = σ(s_i − s_j + c·v_iᵀRv_j), s ~ N(0, scale²), v_i ~ N(0, I₂),
    R = [[0, 1], [−1, 0]], c = `cyclic` ≥ 0.

    The logit is the sum of a gradient (transitive) part and a rank-2 rotational (intransitive) part of
    the general preference model (`skew_matrix`), so c moves the game from transitive (c = 0: the same
    matrix as `bt` with the same seed and scale) to strongly intransitive (large c).
    """
    if not (np.isfinite(cyclic) and cyclic >= 0):
        raise GamesimError(f"mixed games need cyclic ≥ 0 (the weight of the intransitive part), got cyclic={cyclic}")
    s = scale * rng.standard_normal(n)
    v = rng.standard_normal((n, 2))
    rotation = v[:, 0, None] * v[None, :, 1] - v[:, 1, None] * v[None, :, 0]  # v_iᵀRv_j, antisymmetric exactly
    return 1 / (1 + np.exp(-(s[:, None] - s[None, :] + cyclic * rotation)))


def circular_triads(P) -> float:
    """The fraction of the triples {i, j, k} whose majority preferences form a cycle (i ≻ j ≻ k ≻ i,
    strict: P > 1/2), Kendall & Babington Smith's (1940) measure of intransitivity: 0 for a
    Bradley-Terry game, 1 for a 3-cycle. The count is trace(W³)/3, W[i, j] = [P[i, j] > 1/2]."""
    W = (np.asarray(P, float) > 0.5).astype(float)
    n = W.shape[-1]
    return float(np.trace(W @ W @ W) / 3 / math.comb(n, 3)) if n >= 3 else 0.0


def load_csv(path: str | os.PathLike) -> PreferenceGame:
    """Read a preference matrix from a CSV file.

    Args:
        path: a text file of n rows of n numbers, P[i, j] in row i, with an optional first row
            of response names (a row with no number in it). Blank lines are skipped.

    Returns:
        The PreferenceGame (uniform π_ref) labelled with the file's name.

    Raises:
        GamesimError: naming the line and cell of a ragged row or non-number, an unreadable or
            empty file, or a matrix that is not square or not a preference matrix.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark (spreadsheet exports) is not data
    except OSError as exc:
        raise GamesimError(f"cannot read game file {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise GamesimError(f"{path} is not a text file; a game file is CSV: n rows of n numbers") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if any(c.strip() for c in r)]
    if not rows:
        raise GamesimError(f"{path}: the file is empty; expected n rows of n numbers")
    names = None
    if not any(_is_number(c) for c in rows[0]):
        names, rows = [c.strip() for c in rows[0]], rows[1:]
    n = len(names) if names is not None else len(rows[0]) if rows else 0
    values = []
    for k, row in enumerate(rows):
        line = k + 1 + (names is not None)
        if len(row) != n:
            raise GamesimError(f"{path}, line {line}: {len(row)} cells, expected {n} (ragged rows)")
        for j, c in enumerate(row):
            if not _is_number(c):
                shown = _shown(c) if n > 1 else "the line"  # one column: not a CSV matrix; show nothing of it
                raise GamesimError(f"{path}, line {line}, cell {j + 1}: {shown} is not a number"
                                   + ("; a game file is CSV, n rows of n numbers" if n == 1 else ""))
        values.append([float(c) for c in row])
    if len(values) != n:
        raise GamesimError(f"{path}: {len(values)} rows of {n} numbers; a preference matrix is square")
    return PreferenceGame(np.array(values), names=names, label=path.name)


def save_csv(game: PreferenceGame, path: str | os.PathLike) -> None:
    """Write a non-contextual game's P as CSV, atomically; `load_csv` reads it back exactly.

    Args:
        game: a non-contextual game (π_ref and ρ are not written).
        path: the file to write; a first row of names is written when the game has names, and
            every entry as its shortest exact repr.

    Raises:
        GamesimError: for a contextual game.
    """
    if game.contextual:
        raise GamesimError("a CSV file holds one matrix; save each context of a contextual game separately")
    with atomic_open(path, "w") as f:
        if game.names is not None:
            f.write(",".join(game.names) + "\n")
        for row in game.P:
            f.write(",".join(repr(float(x)) for x in row) + "\n")


def _shown(cell: str) -> str:
    """A cell for an error message: short cells as they are, longer ones only by their length, so
    that an error about a file never shows more of it than a short offending cell."""
    cell = cell.strip()
    return repr(cell) if len(cell) <= 16 and cell.isprintable() else f"a {len(cell)}-character cell"


def _is_number(cell: str) -> bool:
    try:
        return math.isfinite(float(cell))
    except ValueError:
        return False


# --- spec strings ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Builtin:
    factory: Callable[..., PreferenceGame]
    params: dict  # name -> default; the default's type is the parameter's type
    doc: str


BUILTINS: dict[str, Builtin] = {
    "rps": Builtin(lambda: rps(), {}, "rock-paper-scissors; equilibrium uniform"),
    "cycle3": Builtin(lambda: cycle3(), {},
                      "COMAL's 3-cycle (Liu et al. 2024); equilibrium (4/11, 3/11, 4/11)"),
    "biased_rps": Builtin(lambda: biased_rps(), {}, "biased RPS; equilibrium (1/16, 10/16, 5/16)"),
    "abe_biased_rps": Builtin(lambda: from_payoff([[0, -1, 3], [1, 0, -1], [-3, 1, 0]], names=("rock", "paper", "scissors"),
                                                  label="abe_biased_rps"), {},
                              "the biased RPS of M2WU and APMD (Abe et al. 2023, 2024), payoff [[0,−1,3],[1,0,−1],[−3,1,0]]/3; "
                              "equilibrium (1/5, 3/5, 1/5)"),
    "perturbed_rps": Builtin(lambda: perturbed_rps(), {},
                             "MMD's perturbed RPS (Sokota et al. 2023); equilibrium (1/7, 3/7, 3/7)"),
    "kuhn": Builtin(lambda **kw: kuhn(**kw), {"strategies": "reduced"},
                    "Kuhn poker's reduced normal form (27 × 64; strategies=undominated: 8 × 4) symmetrized, "
                    "P = 1/2 + A_sym/4; value −1/18"),
    "random": Builtin(_seeded(random_matrix, "random"), {"n": 10, "seed": 0, "contexts": 1},
                      "EGPO-style: lower triangle i.i.d. U[0,1], upper = 1 − lower"),
    "skew": Builtin(_seeded(skew_matrix, "skew"),
                    {"n": 10, "rank": 2, "scale": 1.0, "seed": 0, "contexts": 1},
                    "low-rank intransitive P = σ(v_iᵀ R v_j), R skew-symmetric (general preference model)"),
    "bt": Builtin(_seeded(_bt_draw, "bt"), {"n": 5, "scale": 1.0, "seed": 0, "contexts": 1},
                  "transitive Bradley-Terry P = σ(s_i − s_j), scores ~ N(0, scale²)"),
    "mixed": Builtin(_seeded(mixed_matrix, "mixed"), {"n": 10, "cyclic": 0.5, "scale": 1.0, "seed": 0, "contexts": 1},
                     "Bradley-Terry plus a rank-2 cyclic part, P = σ(s_i − s_j + cyclic·v_iᵀRv_j): "
                     "transitive at cyclic=0 (= bt), mildly intransitive at 0.5, strongly at 3"),
    "soccer": Builtin(lambda: load_csv(DATA_DIR / "soccer_10agents.csv"), {},
                      "10 MuJoCo soccer agents (Rowland et al. 2019, via OpenSpiel; Apache-2.0)"),
    "rrps": Builtin(lambda: load_csv(DATA_DIR / "rrps_43bots.csv"), {},
                    "43 repeated-RPS bots (Lanctot et al. 2023, via OpenSpiel; Apache-2.0)"),
}
def register_builtin(name: str, builtin: Builtin) -> None:
    """Add a built-in game spec from a higher layer (the lm layer's `sequence` game), so that the
    core's `load_game` parses it without importing what builds it. Names are unique."""
    if name in BUILTINS or name in ALIASES:
        raise GamesimError(f"a built-in game named {name!r} exists already; choose another name")
    BUILTINS[name] = builtin


ALIASES = {"bradley_terry": "bt", "biased-rps": "biased_rps"}
COMMON_PARAMS = {"ref_seed": None}
"""Keys every spec takes: ref_seed=K draws π_ref with logits ~ N(0, 1) from seed K (EGPO's setup)."""


def load_game(spec) -> PreferenceGame:
    """A game from a spec string (`rps`, `random:n=10,seed=3`, `path/to/game.csv`) or a game.

    Spec grammar: NAME[:KEY=VALUE,...]. `gamesim games` lists the names and their keys. A file is
    named by a path: one that ends in .csv or contains a directory separator (`./cycle3`). A bare
    name is a built-in, never a file of that name in the working directory: if both exist the
    spec is ambiguous, and an error says how to name the file.

    Args:
        spec: a spec string, an os.PathLike (always a CSV file), or a PreferenceGame (returned
            as it is). Every built-in also takes ref_seed=K: π_ref with logits ~ N(0, 1) drawn
            from seed K (EGPO's setup).

    Returns:
        The PreferenceGame, labelled with the spec.

    Raises:
        GamesimError: for an unknown name or key (with the closest one), a malformed value, an
            ambiguous bare name, or a bad file (see `load_csv`).

    Examples:
        >>> game = load_game("cycle3")
        >>> game.n, game.names, float(game.P[1, 0])
        (3, ('a', 'b', 'c'), 0.9)
    """
    if isinstance(spec, PreferenceGame):
        return spec
    if not isinstance(spec, (str, os.PathLike)):
        raise GamesimError(f"a game is a spec string, a CSV path or a PreferenceGame, not {type(spec).__name__}")
    path_like = isinstance(spec, os.PathLike)
    spec = os.fspath(spec).strip()
    if path_like or spec.lower().endswith(".csv") or os.sep in spec or (os.altsep and os.altsep in spec):
        return load_csv(spec)
    if os.path.exists(spec):
        name = spec.partition(":")[0]
        if ALIASES.get(name, name) in BUILTINS:
            raise GamesimError(f"{spec!r} is both a built-in game and a file in this directory; write "
                               f"./{spec} for the file, or run elsewhere for the built-in")
        raise GamesimError(f"{spec!r} is a file, not a built-in game; name files by a path: ./{spec}")
    key, kwargs = parse_spec(spec)
    ref_seed = kwargs.pop("ref_seed", None)
    game = BUILTINS[key].factory(**kwargs)
    game.label = spec
    if ref_seed is not None:
        logits = np.random.default_rng(ref_seed).standard_normal((game.num_contexts, game.n))
        ref = np.exp(logits - logits.max(-1, keepdims=True))
        ref /= ref.sum(-1, keepdims=True)
        game = game.with_reference(ref if game.contextual else ref[0])
        game.label = spec
    return game


def parse_spec(spec: str) -> tuple[str, dict]:
    """A built-in game's spec string → (its name, its parameters with defaults filled in)."""
    name, _, args = spec.partition(":")
    key = ALIASES.get(name, name)
    if key not in BUILTINS:
        raise GamesimError(f"unknown game {name!r}{did_you_mean(name, [*BUILTINS, *ALIASES])}; "
                           "`gamesim games` lists the built-ins, or give a path to a .csv file")
    known = {**BUILTINS[key].params, **COMMON_PARAMS}
    kwargs = dict(BUILTINS[key].params)
    for item in filter(None, (a.strip() for a in args.split(","))):
        k, eq, v = item.partition("=")
        k = k.strip()
        if not eq:
            raise GamesimError(f"game spec {spec!r}: {item!r} is not KEY=VALUE")
        if k not in known:
            keys = ", ".join(known) or "none"
            raise GamesimError(f"game {key!r} has no parameter {k!r}{did_you_mean(k, known)}; its keys: {keys}")
        kwargs[k] = _parse_value(k, v.strip(), known[k], spec)
    return key, kwargs


def _parse_value(key: str, value: str, default, spec: str):
    if isinstance(default, str):
        return value
    want = float if isinstance(default, float) else int
    try:
        parsed = want(value)
    except ValueError:
        raise GamesimError(f"game spec {spec!r}: {key}={value!r} is not {'a number' if want is float else 'an integer'}") from None
    if key == "seed" or key.endswith("_seed"):
        check_seed(parsed, f"game spec {spec!r}: {key}")
    return parsed


def describe_builtins() -> list[str]:
    """One line per built-in game: its spec with defaults, and what it is."""
    lines = []
    for name, b in BUILTINS.items():
        args = ",".join(f"{k}={v}" for k, v in b.params.items())
        lines.append(f"{name + (':' + args if args else ''):<40} {b.doc}")
    return lines
