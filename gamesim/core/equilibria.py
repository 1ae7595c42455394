r"""Exact equilibria of preference games.

τ = 0, the von Neumann winner (Dudík et al. 2015; SPPO eq. 3.3; DNO's Minimax Winner): a policy π
with (Pπ)_y ≤ 1/2 for every y, i.e. Aπ ≤ 0. The set of them is a polytope; `solve` returns one of
maximal support (its relative interior).

Fast path (`_interior_point`): since A is skew-symmetric, π ≥ 0, Σπ = 1, s = −Aπ ≥ 0 is a
monotone linear complementarity problem whose every feasible point is an equilibrium
(πᵀs = −πᵀAπ = 0). A primal-dual interior-point method (Mehrotra 1992 predictor-corrector, one dense
LU of diag(s/π) − A per iteration; from n = 200 up to two of Gondzio's 1996 centrality correctors,
each one more solve with that LU, which take n = 1000 from 19 iterations to 14) follows its
central path, whose limit is strictly complementary (Goldman-Tucker): the support S = {y: π_y > s_y} is read off once every response
is separated (π_y/s_y or s_y/π_y > 100). π_S is then solved from A_SS π_S = v·1, Σπ_S = 1 (or, for
a singular system, the least-squares projection of the interior point onto it) and accepted when
it certifies itself: π_S > 0, |Aπ| ≤ 1e-12 on S and Aπ < 0 strictly off S. Strictness makes the
support maximal: for any equilibrium q, qᵀAπ = −πᵀAq forces (Aπ)_y = 0 on supp q, so supp q ⊆ S.
A wrong S is repaired by a few pivots (drop the most negative π_y, add the most violated y).

Fallback, when no certificate is found: the value LP (scipy's HiGHS) gives an equilibrium; if it
is provably the only one (strict complementarity and a nonsingular support system) that is the
answer. Otherwise one more LP over the cone {x ≥ 0, Ax ≤ 0},

    maximize Σ_y s_y  subject to  Ax ≤ 0,  0 ≤ s ≤ 1,  s ≤ x,

finds the maximal support: any y in the support of some equilibrium has a scaled cone point with
x_y ≥ 1, and the cone is closed under sums, so at the optimum s_y = 1 exactly on it. Each LP answer
is polished to float64 accuracy: every equilibrium satisfies (Aπ)_S = 0 (complementary slackness),
so π_S is projected onto {A_SS π_S = 0, Σπ_S = 1} by least squares and kept if its gap is smaller.

τ > 0, the regularized equilibrium π*_τ = softmax(log π_ref + Pπ*_τ/τ) (unique; NLHF Prop. 1):
damped Newton on F(x) = x − log BR_τ(softmax x) in log-probabilities (merit ‖F‖₂), from π_ref, reusing the last
factorization (chord steps) while that contracts ‖F‖ tenfold; if Newton stalls, a continuation in τ (solve at
larger τ first, warm-start the next) takes over. It stops when ‖F‖ stops falling, and succeeds
if max_y |π_y − BR_τ(π)_y| ≤ 1e-13 (or the rounding floor ~ε/τ for tiny τ; τ < 1e-10 is refused).
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field

import jax
import numpy as np
import scipy.linalg
from scipy.optimize import linprog
from scipy.special import log_softmax, logsumexp, softmax
from threadpoolctl import ThreadpoolController

from gamesim.core.divergences import REVERSE_KL, Divergence, as_divergence, best_response, duality_gap_f
from gamesim.core.errors import GamesimError
from gamesim.core.games import PreferenceGame, load_game
from gamesim.core.guards import confirm, progress_bar, solve_estimate
from gamesim.core.metrics import duality_gaps

RESIDUAL_TARGET = 1e-13
"""τ > 0: the fixed-point residual max_y |π_y − BR_τ(π)_y| Newton must reach, a few hundred float64
roundings of a probability (unless the rounding floor of Aπ/τ is higher, see `_newton`)."""
MIN_TAU = 1e-10
"""Smallest τ > 0 solved: below it, π*_τ is not resolvable in float64 (A/τ overflows the Jacobian)."""
MAX_TAU = 1e6
"""Largest τ accepted: far above it π*_τ = π_ref to float64 accuracy and τ·KL overflows the gaps'
precision (a gap of 2τ·KL with KL at rounding level, 1e-16, is then 1e-10 of noise)."""
_MAX_NEWTON = 60
"""Newton (and chord) steps per τ: quadratic convergence needs about ten; the rest is for damping far
from π*_τ, after which the continuation in τ takes over."""


@dataclass(frozen=True)
class Equilibrium:
    """A solved equilibrium, as `solve` returns it.

    Args:
        policy: π*, (n,) or (C, n) for a contextual game (read-only).
        value: min_q J(π*, q), the payoff π* guarantees (the game's value is 1/2, so value =
            1/2 − duality_gap/2).
        duality_gap: DualGap_τ(π*), ρ-weighted over contexts: rounding level at a solution.
        tau: the KL weight it was solved at (0: the von Neumann winner).
        method: how it was found ("interior-point", "lp", "lp+max-support", "newton",
            "newton+continuation", "f-newton", "f-newton+continuation"; '+'-joined over contexts), not
            part of equality.
        divergence: the regularizer's label ("reverse-kl", "forward-kl", "js", "alpha=0.5"; `divergences`).

    References:
        von Neumann winner: Dudík et al. 2015; SPPO eq. 3.3. π*_τ: NLHF (Munos et al. 2023) Prop. 1.
    """

    policy: np.ndarray
    value: float
    duality_gap: float
    tau: float
    method: str = field(default="", compare=False)
    divergence: str = "reverse-kl"


def solve(game, tau: float = 0.0, yes: bool | None = None, divergence=None, alpha: float | None = None) -> Equilibrium:
    """The equilibrium of `game` regularized by KL weight `tau` (see the module docstring for how),
    or by another f-divergence (`divergence`, see `gamesim.core.divergences`).

    Games are immutable, so each game object remembers its solutions: solving again is free.

    Args:
        game: a PreferenceGame or a spec string (`load_game`).
        tau: 0 for the von Neumann winner of maximal support, or τ in [MIN_TAU, MAX_TAU] for the
            regularized equilibrium π*_τ = softmax(log π_ref + Pπ*_τ/τ).
        yes: consent to a solve estimated above the `guards` thresholds (None warns, False refuses).
        divergence: the regularizer D_f of J(π₁, π₂) = π₁ᵀPπ₂ − τD_f(π₁‖π_ref) + τD_f(π₂‖π_ref): None or
            "reverse-kl" (the KL above, today's solver), "forward-kl", "js", "alpha" (with `alpha` in
            (0, 1)) or a `Divergence`. The others solve (Aπ)_y − τ f′(π_y/π_ref(y)) = λ by damped Newton
            (`_f_regularized`), certified by max_y |π_y − BR_f(π)_y| ≤ 1e-13 (or the rounding floor).
        alpha: α of the "alpha" divergence.

    Returns:
        The `Equilibrium`, per context for a contextual game.

    Raises:
        GamesimError: τ out of range, or a refused estimate.

    References:
        τ = 0: Dudík et al. 2015 (von Neumann winner), SPPO eq. 3.3, DNO's Minimax Winner;
        τ > 0: NLHF (Munos et al. 2023) Prop. 1 (unique).

    Examples:
        >>> (solve("cycle3").policy * 11).round(12)        # the von Neumann winner (4, 3, 4)/11
        array([4., 3., 4.])
        >>> solve("cycle3", tau=0.1).policy.round(4)       # π*_τ, between it and the uniform π_ref
        array([0.3371, 0.2835, 0.3794])
    """
    game = load_game(game)
    tau = check_tau(tau)
    div = as_divergence(divergence, alpha)
    if div != REVERSE_KL and tau > 0:
        key = (tau, div)
        if key not in game.solutions:
            confirm(solve_estimate(game.n, game.num_contexts, tau), yes)
            game.solutions[key] = _solve_f(game, tau, div)
        return game.solutions[key]
    if tau not in game.solutions:
        confirm(solve_estimate(game.n, game.num_contexts, tau), yes)
        game.solutions[tau] = _solve(game, tau)
    return game.solutions[tau]


def _solve(game: PreferenceGame, tau: float) -> Equilibrium:
    policies, methods = [], set()
    for A, ref in zip(game.payoff, game.stacked_reference):
        pi, method = (_von_neumann_winner(A) if tau == 0 else _regularized(A, np.log(ref), tau))
        policies.append(pi)
        methods.add(method)
    policy = game.unstack(np.stack(policies))
    policy.setflags(write=False)
    gap = duality_gap(game, policy, tau)
    return Equilibrium(policy, 0.5 - gap / 2, gap, tau, "+".join(sorted(methods)))


def duality_gap(game, policy, tau: float = 0.0, divergence=None, alpha: float | None = None) -> float:
    """DualGap_τ(π) = max_p J(p, π) − min_q J(π, q), ρ-weighted over contexts (`metrics.duality_gaps`).

    Args:
        game: a PreferenceGame or a spec string.
        policy: π, (n,) or (C, n).
        tau: the KL weight τ ≥ 0 of J(π₁, π₂) = π₁ᵀPπ₂ − τ KL(π₁‖π_ref) + τ KL(π₂‖π_ref).
        divergence: the regularizer in place of KL (as `solve`); for all but reverse KL the gap is
            2τ Σ π_ref B_f(π/π_ref, BR_f(π)/π_ref) (`gamesim.core.divergences`; forward KL needs π > 0).
        alpha: α of the "alpha" divergence.

    Returns:
        The gap, ≥ 0 and 0 only at the equilibrium (at τ = 0, twice the exploitability).

    References:
        INPO (Zhang et al. 2024) eq. 3; NLHF (Munos et al. 2023) eq. 2; the computed form
        2τ KL(π‖BR_τ(π)) is derived in `gamesim.core.metrics`.

    Examples:
        >>> duality_gap("cycle3", [1, 0, 0])                # b beats a 90% of the time: 2·0.9 − 1
        0.8
        >>> round(duality_gap("cycle3", [1/3, 1/3, 1/3]) * 15, 12)   # uniform: 2·1.6/3 − 1 = 1/15
        1.0
    """
    game = load_game(game)
    stack = game.stack_policy(policy)
    div = as_divergence(divergence, alpha)
    tau = check_tau(tau)
    if div != REVERSE_KL and tau > 0:
        if div.name == "forward-kl" and np.any(stack <= 0):
            raise GamesimError("the forward-kl duality gap is infinite at a policy with a zero probability "
                               "(f(u) = −log u): give every response probability > 0")
        gaps = [duality_gap_f(A, np.log(ref), pi, tau, div)
                for A, ref, pi in zip(game.payoff, game.stacked_reference, stack)]
        return float(game.weights @ np.asarray(gaps))
    with jax.enable_x64(True), np.errstate(divide="ignore"):
        gaps = duality_gaps(game.payoff, np.log(game.stacked_reference), np.log(stack), check_tau(tau))
        return float(game.weights @ np.asarray(gaps))


def check_tau(tau) -> float:
    try:
        tau = float(tau)
    except (TypeError, ValueError):
        raise GamesimError(f"tau must be a number, got {tau!r}") from None
    if not np.isfinite(tau) or tau < 0 or tau > MAX_TAU:
        raise GamesimError(f"tau (the KL weight) must be 0 or in [{MIN_TAU:g}, {MAX_TAU:g}], got {tau:g}")
    if 0 < tau < MIN_TAU:
        raise GamesimError(f"tau={tau:g} is below {MIN_TAU:g}, too small to resolve in float64; "
                           "use tau = 0 for the original game")
    return tau


# --- τ = 0 -----------------------------------------------------------------------------------------
_CERTIFY_MARGIN = 1e-13
"""A certified support solution has π_y ≥ this on S and (Aπ)_y ≤ −this off S: strictly positive and
strictly losing beyond rounding (≈ 1e3 float64 roundings of a probability), so S is maximal."""
_SUPPORT_RESIDUAL = 1e-12
"""Accepted |(Aπ)_y| on the support S, and residual of the bordered support system: an equilibrium
has (Aπ)_S = 0; a solve of a well-conditioned system of n ≲ 1e3 rounds to far below this."""
_MAX_PIVOTS = 8
"""Support repairs (drop the most negative π_y, add the most violated y) before the LP fallback: the
interior point's support is right or off by one or two responses; more means it is not converging."""
_IPM_MAX_ITERATIONS = 80
"""Interior-point iterations: Mehrotra's method takes 10–30 on these problems; past 80 it has stalled
and the LP fallback is cheaper."""
_IPM_TOLERANCE = 1e-9
"""The interior point stops when μ = πᵀs/n and the residuals are below this: close enough to the
central path's limit to read the support off, not to be the answer (the support system gives that)."""
_IPM_SEPARATION = 100.0
"""... and every response is separated, π_y/s_y or s_y/π_y > this: the support S = {π_y > s_y} is
then read off with a margin of two orders of magnitude."""
_IPM_MIN_MU = 1e-300
"""μ below this has underflowed (near the smallest normal float64, 2.2e-308): stop, the LP takes over."""
_IPM_STEP_FRACTION = 0.99
"""The corrector goes this fraction of the way to the boundary, keeping π, s > 0 (the usual choice)."""
_GONDZIO_CORRECTORS = 2
"""Gondzio's multiple centrality correctors per iteration (Gondzio 1996), each one more solve with the
iteration's LU (n² against its n³): at n = 1000 they cut the iterations from 19 to 14 (a third more
would save none)."""
_GONDZIO_MIN_N = 200
"""... used from this n on: below it a factorization costs about what a corrector's Python does, and
the iterations saved (11 to 9 at n = 100) do not pay."""
_GONDZIO_STRETCH = 2.0
"""A corrector aims at the step this many times the current one (capped at 1) ..."""
_GONDZIO_BOX = 10.0
"""... moving the products π_y s_y there into [σμ/this, σμ·this] (Gondzio's β_min = 0.1, β_max = 10) ..."""
_GONDZIO_GAIN = 0.1
"""... and is kept if it lengthens the step by this fraction of the stretch asked for (Gondzio's γ)."""
_SINGLE_THREAD_MIN_N = 200
"""The interior point runs on one BLAS thread from this n on (`_single_blas_thread`; on a loaded
2-core machine n = 300 took 1.6 s on two threads, 0.04 s on one); below it an LU takes well under a
millisecond and the limit's ~50 µs would show."""
_IPM_START_OFFSET = 1.0
"""The start v = this + max|Aπ_0| makes s = v·1 − Aπ_0 ≥ 1 componentwise, well inside the cone."""
_LP_SUPPORT = 1e-9
"""A response is in an LP solution's support when its probability exceeds this: far above rounding,
far below any probability an equilibrium of these games puts on a response it plays (the polish
then checks the support by the gap)."""
_INDICATOR_CUT = 0.5
"""The support LP's indicators s_y are 0 or 1 at its optimum (see the module docstring): cut halfway."""
_UNIQUE_MARGIN = 1e-9
"""π is provably the only equilibrium when every response off its support loses by more than this,
and [A_SS; 1ᵀ] has full column rank at this singular-value tolerance: a margin above the LP's
tolerance, so that a near-tie is never called unique."""
_CONTINUATION_START = 1.0
"""The continuation in τ starts at τ ≥ this, where P/τ is small and π*_τ is close to π_ref, so Newton
from π_ref converges; it then halves τ down to the target, warm-starting each solve."""
_ROUNDING_FACTOR = 16
"""Newton's tolerance is at least this many ε·max|A|/τ: computing Aπ/τ rounds at ε·max|A|/τ per entry,
and a residual below a few of those cannot be reached for tiny τ."""
_CHORD_CONTRACTION = 0.1
"""A chord step (the last Jacobian again) is kept while it contracts ‖F‖ by this factor (tenfold)."""
_FAR_BELOW_TARGET = 0.01
"""Stop when the residual is this fraction of RESIDUAL_TARGET: a fresh Jacobian would not help."""
_ARMIJO = 1e-4
"""Sufficient decrease of the damped Newton step: ‖F‖ must fall by this fraction of the step (Armijo's
usual constant, Nocedal & Wright §3.1)."""
_MIN_DAMPING = 1e-6
"""The smallest step fraction tried before Newton gives up at this τ (2⁻²⁰: the direction is useless)."""
_LONG_SOLVE = 300
"""A continuation on n ≥ this responses shows a progress bar (each Newton step is an n × n LU)."""


def _von_neumann_winner(A: np.ndarray) -> tuple[np.ndarray, str]:
    with _single_blas_thread() if len(A) >= _SINGLE_THREAD_MIN_N else contextlib.nullcontext():
        pi = _certified_support_solution(A)
    if pi is not None:
        return pi, "interior-point"
    return _lp_winner(A)


@functools.cache
def _blas_threads() -> ThreadpoolController:
    return ThreadpoolController()  # scans the loaded BLAS libraries once (~10 ms)


def _single_blas_thread():
    """BLAS limited to one thread: a multithreaded LU waits on its slowest thread, and when another
    process holds a core (a 2-core machine running two jobs), or this process ran JAX before (its
    thread pool), an n = 1000 LU then takes up to 10× its one-thread time (measured 200 ms against
    20 ms; the whole solve 5.1 s against 0.6 s, and 1.07 s against 0.56 s after a JAX run)."""
    return _blas_threads().limit(limits=1, user_api="blas")


def _certified_support_solution(A: np.ndarray) -> np.ndarray | None:
    """The maximal-support equilibrium from the interior point's support, or None (see the module doc)."""
    x, s = _interior_point(A)
    if x is None:
        return None
    S = x > s
    for _ in range(_MAX_PIVOTS):
        pi = _support_system(A, S, x)
        if pi is None:
            return None
        scores = A @ pi
        inside = np.where(S, pi, np.inf).argmin()
        outside = np.where(S, -np.inf, scores).argmax()
        in_ok = pi[inside] >= _CERTIFY_MARGIN
        out_ok = S.all() or scores[outside] <= -_CERTIFY_MARGIN
        if in_ok and out_ok and np.abs(scores[S]).max() <= _SUPPORT_RESIDUAL:
            return pi
        if not in_ok:
            S[inside] = False
        if not out_ok:
            S[outside] = True
    return None


def _support_system(A: np.ndarray, S: np.ndarray, x: np.ndarray) -> np.ndarray | None:
    """π with support ⊆ S solving A_SS π_S = v·1, Σ π_S = 1 (v = 0 at a solution): the bordered
    system's solution when it is positive (the only one when the system is nonsingular), else the
    least-squares projection of the interior point x onto the solutions (several equilibria on S)."""
    idx = np.flatnonzero(S)
    k = len(idx)
    if k == 0:
        return None
    B = np.zeros((k + 1, k + 1))
    B[:k, :k], B[:k, k], B[k, :k] = A[np.ix_(idx, idx)], -1.0, 1.0
    rhs = np.r_[np.zeros(k), 1.0]
    try:
        with np.errstate(all="ignore"):
            solution = np.linalg.solve(B, rhs)
        if np.all(solution[:k] > 0) and np.abs(B @ solution - rhs).max() <= _SUPPORT_RESIDUAL:
            pi = np.zeros(len(S))
            pi[idx] = solution[:k]
            return pi
    except np.linalg.LinAlgError:
        pass
    return _polish(A, np.where(S, x, 0) / x[S].sum(), S)


def _interior_point(A: np.ndarray, max_iter: int = _IPM_MAX_ITERATIONS) -> tuple[np.ndarray | None,
                                                                                  np.ndarray | None]:
    """Primal-dual interior point (Mehrotra 1992, with Gondzio's 1996 correctors) for π ≥ 0, s = v·1 − Aπ ≥ 0, Σπ = 1, π∘s = 0; returns
    (π, s) once every pair is separated by a factor _IPM_SEPARATION with μ = πᵀs/n and the residuals
    below _IPM_TOLERANCE, (None, None) if that does not happen (the LP fallback takes over)."""
    n = A.shape[0]
    x = np.full(n, 1.0 / n)
    v = _IPM_START_OFFSET + np.abs(A @ x).max()
    s = v - A @ x
    ones, minus_A = np.ones(n), -A
    diagonal = np.diag_indices(n)
    correctors = _GONDZIO_CORRECTORS if n >= _GONDZIO_MIN_N else 0
    for _ in range(max_iter):
        r_s, r_e = s - v + A @ x, x.sum() - 1.0
        mu = x @ s / n
        separated = np.maximum(x / s, s / x).min() > _IPM_SEPARATION
        if max(mu, np.abs(r_s).max(), abs(r_e)) < _IPM_TOLERANCE and separated:
            return x, s
        if not np.isfinite(mu) or mu < _IPM_MIN_MU:
            break
        K = minus_A.copy()
        K[diagonal] += s / x
        lu = scipy.linalg.lu_factor(K, overwrite_a=True, check_finite=False)
        b = scipy.linalg.lu_solve(lu, ones, check_finite=False)

        def direction(r_c, lu=lu, b=b, r_s=r_s, r_e=r_e, x=x):
            # (diag(s/π) − A)Δπ + Δv·1 = (r_c + π∘r_s)/π, 1ᵀΔπ = −r_e; Δs = −r_s + Δv·1 − AΔπ
            a = scipy.linalg.lu_solve(lu, (r_c + x * r_s) / x, check_finite=False)
            dv = (a.sum() + r_e) / b.sum()
            dx = a - b * dv
            return dx, -r_s + dv - A @ dx, dv

        def step_to_boundary(dx, ds, x=x, s=s):
            worst = max((-dx / x).max(), (-ds / s).max())
            return np.inf if worst <= 0 else 1.0 / worst

        dx, ds, _ = direction(-x * s)  # predictor (affine scaling), then Mehrotra's corrector
        alpha = min(1.0, step_to_boundary(dx, ds))
        sigma = ((x + alpha * dx) @ (s + alpha * ds) / n / mu) ** 3  # Mehrotra's centering σ = (μ_aff/μ)³
        r_c = sigma * mu - x * s - dx * ds
        dx, ds, dv = direction(r_c)
        step = step_to_boundary(dx, ds)
        for _ in range(correctors if step < 1 else 0):
            # Gondzio's corrector: aim π∘s at [σμ/10, 10σμ] (moving each by at most 10σμ) at a longer
            # trial step; kept if it lengthens the step
            trial = min(1.0, _GONDZIO_STRETCH * step)
            products = (x + trial * dx) * (s + trial * ds)
            target = sigma * mu * _GONDZIO_BOX
            r_c = r_c + np.maximum(np.clip(products, sigma * mu / _GONDZIO_BOX, target) - products, -target)
            corrected = direction(r_c)
            longer = step_to_boundary(*corrected[:2])
            if longer < step + _GONDZIO_GAIN * (trial - step):
                break
            (dx, ds, dv), step = corrected, longer
        alpha = min(1.0, _IPM_STEP_FRACTION * step)
        x, s, v = x + alpha * dx, s + alpha * ds, v + alpha * dv
    return None, None


def _lp_winner(A: np.ndarray) -> tuple[np.ndarray, str]:
    n = A.shape[0]
    # the value LP: minimize v subject to Aπ ≤ v·1, Σπ = 1, π ≥ 0 (v* = 0 for every such game)
    res = linprog(np.r_[np.zeros(n), 1.0], A_ub=np.c_[A, -np.ones(n)], b_ub=np.zeros(n),
                  A_eq=np.r_[np.ones(n), 0.0][None], b_eq=[1.0], bounds=[(0, None)] * n + [(None, None)],
                  method="highs")
    if res.status != 0:
        raise RuntimeError(f"the equilibrium LP failed ({res.message}); please report this game")
    pi = _best(A, np.maximum(res.x[:n], 0) / np.maximum(res.x[:n], 0).sum())
    if _unique(A, pi):
        return pi, "lp"
    # possibly several equilibria: the one of maximal support, over the cone {x ≥ 0, Ax ≤ 0}
    res = linprog(np.r_[np.zeros(n), -np.ones(n)], A_ub=np.block([[A, np.zeros((n, n))], [-np.eye(n), np.eye(n)]]),
                  b_ub=np.zeros(2 * n), bounds=[(0, None)] * n + [(0, 1)] * n, method="highs")
    if res.status != 0 or not np.any(res.x[n:] > _INDICATOR_CUT):
        return pi, "lp (maximal support not confirmed: the support LP failed)"
    support = res.x[n:] > _INDICATOR_CUT
    wide = np.where(support, np.maximum(res.x[:n], 0), 0.0)
    return _best(A, wide / wide.sum()), "lp+max-support"


def _best(A: np.ndarray, pi: np.ndarray) -> np.ndarray:
    """π or its polish on its support, whichever has the smaller gap."""
    polished = _polish(A, pi, pi > _LP_SUPPORT)
    return polished if polished is not None and _gap0(A, polished) <= _gap0(A, pi) else pi


def _unique(A: np.ndarray, pi: np.ndarray) -> bool:
    """Whether π is the only equilibrium: off its support S every response loses strictly, and
    [A_SS; 1ᵀ] has full column rank. (Any equilibrium q has (Aπ)_y = 0 on supp q, so supp q ⊆ S,
    and A_SS q_S = 0 with Σ q = 1: the nonsingular system then gives q = π.)"""
    S = pi > 0
    scores = A @ pi
    if np.any(~S) and scores[~S].max() > -_UNIQUE_MARGIN:
        return False
    M = np.vstack([A[np.ix_(S, S)], np.ones(S.sum())])
    return np.linalg.matrix_rank(M, tol=_UNIQUE_MARGIN) == S.sum()


def _polish(A: np.ndarray, pi: np.ndarray, support: np.ndarray) -> np.ndarray | None:
    """Nearest point to π on {A_SS π_S = 0, Σ π_S = 1}, if it stays a positive distribution."""
    S = np.flatnonzero(support)
    M = np.vstack([A[np.ix_(S, S)], np.ones(len(S))])
    residual = np.concatenate([np.zeros(len(S)), [1.0]]) - M @ pi[S]
    delta = np.linalg.lstsq(M, residual, rcond=None)[0]
    out = np.zeros_like(pi)
    out[S] = pi[S] + delta
    if np.any(out[S] <= 0):
        return None
    return out / out.sum()


def _gap0(A: np.ndarray, pi: np.ndarray) -> float:
    return 2 * float(np.max(A @ pi))


# --- τ > 0 -----------------------------------------------------------------------------------------
def _regularized(A: np.ndarray, log_ref: np.ndarray, tau: float) -> tuple[np.ndarray, str]:
    x, ok = _newton(A, log_ref, tau, log_ref.copy())
    if ok:
        return np.exp(x), "newton"
    # continuation: halve τ from a value where π*_τ is close to π_ref
    taus = [tau]
    while taus[-1] < _CONTINUATION_START:
        taus.append(taus[-1] * 2)
    x = log_ref.copy()
    bar = progress_bar(None, len(taus), long=len(x) >= _LONG_SOLVE, unit="τ")
    for t in reversed(taus):
        x, ok = _newton(A, log_ref, t, x)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    if not ok:
        raise RuntimeError(f"the regularized equilibrium solver did not converge at tau={tau}; please report this game")
    return np.exp(x), "newton+continuation"


def _newton(A: np.ndarray, log_ref: np.ndarray, tau: float, x: np.ndarray) -> tuple[np.ndarray, bool]:
    """Damped Newton on F(x) = x − log BR_τ(softmax x) = 0 with merit ‖F‖₂; returns (log π, converged).

    Converged means max_y |π_y − BR_τ(π)_y| ≤ max(RESIDUAL_TARGET, 16 ε max|A|/τ), the second term
    the rounding floor of computing Aπ/τ (_ROUNDING_FACTOR); it iterates until ‖F‖ stops falling.
    """
    n = len(x)
    tol = max(RESIDUAL_TARGET, _ROUNDING_FACTOR * np.finfo(float).eps * np.abs(A).max() / tau)

    def evaluate(x):
        pi = np.exp(x)
        log_q = log_softmax(log_ref + A @ pi / tau)
        return pi, log_q, x - log_q

    def converged(pi, log_q):
        return float(np.max(np.abs(pi - np.exp(log_q)))) <= tol

    pi, log_q, F = evaluate(x)
    norm, lu = np.linalg.norm(F), None
    for _ in range(_MAX_NEWTON):
        if lu is not None:  # a chord step (the last Jacobian again), kept while it contracts ‖F‖ 10×
            x_new = log_softmax(x - scipy.linalg.lu_solve(lu, F, check_finite=False))
            pi_new, log_q_new, F_new = evaluate(x_new)
            norm_new = np.linalg.norm(F_new)
            if np.isfinite(norm_new) and norm_new < _CHORD_CONTRACTION * norm:
                x, pi, log_q, F, norm = x_new, pi_new, log_q_new, F_new, norm_new
                continue
            if float(np.max(np.abs(pi - np.exp(log_q)))) <= _FAR_BELOW_TARGET * RESIDUAL_TARGET:
                break  # far below the target: a fresh Jacobian would not help
        q = np.exp(log_q)
        # J = I − (I − 1qᵀ)(A/τ)(diag π − ππᵀ), built in place
        J = np.multiply(A, pi / -tau)
        J += np.outer(A @ pi, pi / tau)
        J -= q @ J
        J[np.diag_indices(n)] += 1.0
        try:
            lu = scipy.linalg.lu_factor(J, overwrite_a=True, check_finite=False)
        except (np.linalg.LinAlgError, ValueError):
            break
        step = -scipy.linalg.lu_solve(lu, F, check_finite=False)
        alpha = 1.0
        while alpha > _MIN_DAMPING:
            x_new = log_softmax(x + alpha * step)
            pi_new, log_q_new, F_new = evaluate(x_new)
            norm_new = np.linalg.norm(F_new)
            if np.isfinite(norm_new) and norm_new < (1 - _ARMIJO * alpha) * norm:
                break
            alpha /= 2
        else:
            break
        if alpha < 1:
            lu = None  # chord steps only from a full Newton step
        x, pi, log_q, F, norm = x_new, pi_new, log_q_new, F_new, norm_new
    return x, converged(pi, log_q)


def fixed_point_residual(game, policy, tau: float, divergence=None, alpha: float | None = None) -> float:
    """max |π − BR(π)| over contexts and responses (τ > 0): BR = softmax(log π_ref + Pπ/τ) for reverse
    KL, else the f-regularized best response (`divergences.best_response`, a root in λ)."""
    game = load_game(game)
    stack = game.stack_policy(policy)
    div = as_divergence(divergence, alpha)
    out = 0.0
    for A, ref, pi in zip(game.payoff, game.stacked_reference, stack):
        br = (softmax(np.log(ref) + A @ pi / tau) if div == REVERSE_KL
              else best_response(A @ pi, np.log(ref), tau, div))
        out = max(out, float(np.max(np.abs(pi - br))))
    return out


# --- τ > 0, another f-divergence ---------------------------------------------------------------------
def _solve_f(game: PreferenceGame, tau: float, div: Divergence) -> Equilibrium:
    policies, methods = [], set()
    for A, ref in zip(game.payoff, game.stacked_reference):
        pi, method = _f_regularized(A, np.log(ref), tau, div)
        policies.append(pi)
        methods.add(method)
    policy = game.unstack(np.stack(policies))
    policy.setflags(write=False)
    gap = duality_gap(game, policy, tau, div)
    return Equilibrium(policy, 0.5 - gap / 2, gap, tau, "+".join(sorted(methods)), div.label)


def _f_regularized(A: np.ndarray, log_ref: np.ndarray, tau: float, div: Divergence) -> tuple[np.ndarray, str]:
    """π with π = BR_f(π): damped Newton from π_ref, else a continuation in τ (as `_regularized`)."""
    ell, ok = _f_newton(A, log_ref, tau, div, np.zeros_like(log_ref))
    if ok:
        return np.exp(log_ref + ell), "f-newton"
    taus = [tau]
    while taus[-1] < _CONTINUATION_START:
        taus.append(taus[-1] * 2)
    ell = np.zeros_like(log_ref)
    for t in reversed(taus):
        ell, ok = _f_newton(A, log_ref, t, div, ell)
    if not ok:
        raise RuntimeError(f"the {div.label}-regularized equilibrium solver did not converge at tau={tau}; "
                           "please report this game")
    return np.exp(log_ref + ell), "f-newton+continuation"


def _f_newton(A, log_ref, tau, div, ell):
    """Damped Newton on F(ℓ, λ) = (Aπ − τ f′(e^ℓ) − λ·1, Σπ − 1), π = π_ref e^ℓ, ℓ = log(π/π_ref),
    merit ‖F‖₂; returns (ℓ, converged), converged as in `_newton` but with the f best response.

    Jacobian [A diag(π) − τ diag(h(ℓ)), −1; πᵀ, 0], h = d f′/dℓ > 0: nonsingular, since in the variable
    δπ = π∘δℓ its block is A − τ diag(h/π), a skew matrix minus a positive diagonal."""
    n = len(ell)
    ref = np.exp(log_ref)
    tol = max(RESIDUAL_TARGET, _ROUNDING_FACTOR * np.finfo(float).eps * np.abs(A).max() / tau)

    def evaluate(ell, lam):
        pi = ref * np.exp(ell)
        with np.errstate(over="ignore", invalid="ignore"):
            return np.r_[A @ pi - tau * div.f_prime_log(ell) - lam, pi.sum() - 1.0]

    lam = float(np.mean(A @ (ref * np.exp(ell)) - tau * div.f_prime_log(ell)))  # least squares for λ given ℓ
    F = evaluate(ell, lam)
    norm = np.linalg.norm(F)
    for _ in range(_MAX_NEWTON):
        pi = ref * np.exp(ell)
        J = np.zeros((n + 1, n + 1))
        J[:n, :n] = A * pi
        J[np.diag_indices(n)] -= tau * div.f_prime_log_slope(ell)
        J[:n, n], J[n, :n] = -1.0, pi
        try:
            step = -np.linalg.solve(J, F)
        except np.linalg.LinAlgError:
            break
        alpha = 1.0
        while alpha > _MIN_DAMPING:
            ell_new, lam_new = ell + alpha * step[:n], lam + alpha * step[n]
            F_new = evaluate(ell_new, lam_new)
            norm_new = np.linalg.norm(F_new)
            if np.isfinite(norm_new) and norm_new < (1 - _ARMIJO * alpha) * norm:
                break
            alpha /= 2
        else:
            break
        ell, lam, F, norm = ell_new, lam_new, F_new, norm_new
    ell = ell - logsumexp(log_ref + ell)  # normalized in log space: an underflowed π_y keeps a finite ℓ_y
    pi = ref * np.exp(ell)
    residual = float(np.max(np.abs(pi - best_response(A @ pi, log_ref, tau, div))))
    return ell, residual <= tol
