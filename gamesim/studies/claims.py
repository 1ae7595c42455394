r"""The papers' claims as executable checks (`gamesim verify`), built to tell a right update from a wrong one.

A claim names its source, the algorithms it is about, its statement and the games it is checked
on. Its check runs the algorithms on one game and returns `Check`s of two kinds:

- **bound**: the theorem's inequality, measured/bound ≤ 1 (1e-13 of float64 rounding allowed on
  the measured side). Bounds use a-priori constants only (from P, π_ref, τ, η: `theory`), never
  a quantity measured on the run being checked.
- **sharp**: what the theory predicts exactly, to a stated tolerance: the limit point (π*_τ from
  `solve`, the von Neumann winner, eq. 13's point), the asymptotic linear rate (the spectral
  radius of the update's Jacobian at the fixed point, `theory.local_rate`, against the rate
  measured over the run's tail), or an identity a proof rests on (checked at every step).

A bound alone passes many wrong updates (a halved step still satisfies an upper bound); each
claim pairs its bound with sharp checks, and `gamesim verify --mutants` (`mutants`) shows which
wrong variants each claim rejects.

Predictions come from the registered algorithm (`Context.reference`: the paper's map), the runs
from the algorithm under test (`Context.algorithm`), which `verify(algorithms=…)` can replace: a
user's implementation, or a deliberately wrong variant. Kinds: "theorem" (a paper's statement),
"derivation" (gamesim's own, derived in the check's docstring), "observation" (what a paper
reports, not what it proves). `register_claim` adds a user's claim (see the README's "Your own
method").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import root
from scipy.special import logsumexp, softmax

from gamesim.dynamics import theory
from gamesim.dynamics.algorithms import Algorithm, get_algorithm, optimism_limit, theorem_schedule
from gamesim.dynamics.losses import inpo_population_loss, ipo_loss, nash_md_pg_loss
from gamesim.core.errors import GamesimError
from gamesim.core.names import did_you_mean
from gamesim.core.games import PreferenceGame, load_game

ROUNDING = 1e-13
"""Float64 rounding allowed on the measured side of a bound."""

LIMIT_TOL = 1e-10
"""Sharp check: max_y |π_T(y) − π̂(y)| at the end of a run sized to reach π̂ to 1e-12."""

RATE_TOL = 1e-3
"""Sharp check: |log ρ̂ / log ρ − 1|, measured tail rate ρ̂ against the Jacobian's spectral radius ρ."""

IDENTITY_TOL = 1e-9
"""Sharp check: relative error of an identity checked at every step."""

TAIL = (1e-5, 1e-10)
"""The tail over which a linear rate is measured: from the first step with max|x_t − x*| ≤ 1e-5
(past the transient; nonlinear terms are then ~1e-5 relative) to the step before it first falls
below 1e-10 (above float64 rounding, which in log-probabilities grows as probabilities shrink)."""

KINDS = ("theorem", "derivation", "observation")


# --- verdicts -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Check:
    """One verdict on one game. ratio = measured/allowed, ≤ 1 passes; for a bound, allowed is the
    bound at the worst point; for a sharp check, measured is the error and allowed its tolerance."""

    label: str
    kind: str  # "bound" or "sharp"
    ratio: float
    measured: float
    allowed: float
    note: str = ""  # what was measured on this game, beyond the ratio

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.ratio) and self.ratio <= 1)


def bound(label: str, measured, limit, note: str = "") -> Check:
    """A theorem's inequality measured ≤ limit, elementwise.

    Args:
        label: what the inequality is (shown by `gamesim verify`).
        measured: the quantity on the run, an array (or scalar) broadcast against `limit`.
        limit: the theorem's bound, from a-priori constants only (never measured on this run).
        note: what was measured, beyond the ratio.

    Returns:
        A "bound" Check at the worst element: ratio (measured − ROUNDING)/limit; where the limit
        is at rounding level (≤ ROUNDING), 0 if measured ≤ limit + ROUNDING, else inf; a
        non-finite measured or limit gives inf. An empty array passes (ratio 0).
    """
    measured, limit = np.broadcast_arrays(np.asarray(measured, float), np.asarray(limit, float))
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = np.where(limit > ROUNDING, (measured - ROUNDING) / limit,
                          np.where(measured <= limit + ROUNDING, 0.0, np.inf))
    ratios = np.where(np.isfinite(measured) & np.isfinite(limit), ratios, np.inf).ravel()
    i = int(np.argmax(ratios)) if ratios.size else 0
    return Check(label, "bound", float(ratios[i]) if ratios.size else 0.0, float(measured.ravel()[i]),
                 float(limit.ravel()[i]), note)


def sharp(label: str, error, tolerance: float, note: str = "") -> Check:
    """An exact prediction met to a stated tolerance.

    Args:
        label: what is predicted (shown by `gamesim verify`).
        error: the errors |measured − predicted|, an array or scalar (signed values count by size).
        tolerance: the largest error allowed, > 0.
        note: what was measured, beyond the ratio.

    Returns:
        A "sharp" Check at the largest |error|: ratio |error|/tolerance (inf for a non-finite error).
    """
    error = np.asarray(error, float).ravel()
    worst = float(np.max(np.where(np.isfinite(error), np.abs(error), np.inf))) if error.size else 0.0
    return Check(label, "sharp", worst / tolerance, worst, tolerance, note)


def relative_error(measured, predicted, floor: float = 1e-300):
    """|measured − predicted| / max(|predicted|, floor), elementwise."""
    measured, predicted = np.asarray(measured, float), np.asarray(predicted, float)
    return np.abs(measured - predicted) / np.maximum(np.abs(predicted), floor)


# --- claims and what a check sees ----------------------------------------------------------------------
@dataclass(frozen=True)
class Claim:
    """A checkable statement.

    Args:
        name: unique, the name `gamesim verify NAME` selects it by.
        source: where the statement comes from (paper, theorem, equation).
        statement: the statement, in one line.
        check: check(ctx: Context) → list of `Check`s (`bound`, `sharp`) for the game `ctx.game`.
        algorithms: the registered names it runs (the ones `verify(algorithms=…)` may replace, and
            whose mutants it may kill).
        games: game specs `verify` runs it on.
        quick_games: game specs for `verify(quick=True)` (a subset, or smaller games).
        kind: "theorem" (a paper's statement), "derivation" (gamesim's own, derived in the
            check's docstring) or "observation" (what a paper reports, not what it proves).
    """

    name: str
    source: str
    statement: str
    check: Callable
    algorithms: tuple
    games: tuple
    quick_games: tuple
    kind: str = "theorem"


Runner = Callable[..., object]
"""runner(game, algorithm, batch, **kwargs) → Trajectory: how a check's runs are made
(`simulate`, or `simulate_batch` when batch is True); a mutant of the whole trajectory wraps it."""


def run(game, algorithm, batch: bool = False, **kwargs):
    """The default runner: gamesim's engine, without a progress bar."""
    from gamesim.engine.simulation import simulate, simulate_batch  # the engine loads at the first check, not when a plugin registers a claim

    return (simulate_batch if batch else simulate)(game, algorithm, progress=False, **kwargs)


class Context:
    """What a claim's check sees: the game, the run lengths (quick or full), the algorithms."""

    def __init__(self, game: PreferenceGame, quick: bool, algorithms: dict | None = None, runner: Runner = run):
        self.game, self.quick = game, quick
        self._algorithms, self._runner = dict(algorithms or {}), runner

    def algorithm(self, name: str) -> Algorithm:
        """The algorithm under test for `name`: a replacement given to `verify`, else the registered one."""
        return get_algorithm(self._algorithms.get(name, name))

    @staticmethod
    def reference(name: str) -> Algorithm:
        """The registered algorithm `name`, the paper's map: predictions (limits, Jacobians) use it."""
        return get_algorithm(name)

    def step(self, name: str, state, A, log_ref, eta, tau, params: dict | None = None):
        """One step of the algorithm under test for `name` at t = 0, its hyperparameters `params`
        with its own defaults filled in."""
        alg = self.algorithm(name)
        return alg.step(state, A, log_ref, eta, tau, 0.0, alg.resolve_params(params or {}))

    def simulate(self, name: str, **kwargs):
        """`simulate(ctx.game, ctx.algorithm(name), **kwargs)`."""
        return self._runner(self.game, self.algorithm(name), **kwargs)

    def simulate_batch(self, name: str, **kwargs):
        """`simulate_batch(ctx.game, ctx.algorithm(name), **kwargs)`: one game, a batch of settings."""
        return self._runner(self.game, self.algorithm(name), batch=True, **kwargs)


# --- shared pieces of the checks ------------------------------------------------------------------------
def _kl(p, q):
    """KL(p‖q) over the last axis (0 log 0 = 0)."""
    p, q = np.asarray(p, float), np.asarray(q, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.sum(np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0), axis=-1)


def _stacked(game: PreferenceGame, policies):
    """Recorded policies (R, n) or (R, C, n) as (R, C, n)."""
    p = np.asarray(policies, float)
    return p if game.contextual else p[:, None, :]


def _weighted(game: PreferenceGame, per_context):
    """ρ-weighted sum over the last (context) axis."""
    return np.asarray(per_context) @ game.weights


def _scores(game: PreferenceGame, pi):
    """Aπ per context for (…, C, n) policies."""
    return np.einsum("cij,...cj->...ci", game.payoff, pi)


def _best_response(game: PreferenceGame, pi, tau):
    """BR_τ(π) = softmax(log π_ref + Aπ/τ) for (…, C, n) policies."""
    return softmax(np.log(game.stacked_reference) + _scores(game, pi) / tau, axis=-1)


def _gap(game: PreferenceGame, pi, tau):
    """DualGap_τ of (…, C, n) policies, ρ-weighted (numpy, independent of `metrics`)."""
    if tau > 0:
        return _weighted(game, 2 * tau * _kl(pi, _best_response(game, pi, tau)))
    return _weighted(game, 2 * np.max(_scores(game, pi), axis=-1))


def _steps(rho: float, start_error: float, cap: int) -> int:
    """Iterations for an error shrinking by ρ per step to fall from `start_error` to 1e-12 (with 30%
    to spare), in multiples of 500 so that runs of one game share compiled loops."""
    need = np.log(1e-12 / max(start_error, 1e-12)) / np.log(rho) if rho < 1 else np.inf
    steps = int(np.ceil(min(1.3 * need + 100, cap) / 500) * 500)
    if not steps < cap:
        raise GamesimError(f"a linear rate ρ = {rho:.6f} needs more than {cap} iterations; choose settings "
                           "that converge faster")
    return steps


def _tail_rate(states, fixed, left) -> float:
    """The contraction per step of the dominant mode z_t = uᴴ(x_t − x*) over the tail `TAIL`
    (NaN when the run never enters it): ≈ |λ| for the map whose left eigenvector u is."""
    err = np.abs(states - fixed).max(axis=1)
    inside = np.flatnonzero(err <= TAIL[0])
    if not inside.size:
        return np.nan
    first = inside[0]
    below = np.flatnonzero(err[first:] < TAIL[1])
    last = first + below[0] - 1 if below.size else len(err) - 1
    if last - first < 5:
        return np.nan
    z = (states[[first, last]] - fixed) @ left.conj()
    return float((np.abs(z[1]) / np.abs(z[0])) ** (1 / (last - first)))


def linear_convergence(ctx: Context, name: str, *, eta, tau, limit, label: str, params=None, init=None,
                       fixed_state=None, states=None, theorem_rate=None, cap: int = 250_000) -> list[Check]:
    r"""Sharp checks of a constant-step method that converges linearly to `limit` (π̂, a policy):

    - the last iterate reaches π̂: max|π_T − π̂| ≤ LIMIT_TOL, with T sized from the predicted rate;
    - the rate measured over the tail equals ρ = ρ(J), J the Jacobian of the *registered* step at
      the fixed point, to RATE_TOL (relative, on log ρ);
    - if `theorem_rate` (the theorem's contraction factor q of KL per step) is given, ρ̂² ≤ q.

    Args:
        ctx: the check's Context (game, algorithm under test, reference algorithm).
        name: the registered algorithm.
        eta, tau: the constant step and the regularization.
        limit: π̂, the predicted limit, shape `game.policy_shape()`.
        label: prefix of the checks' labels (the setting).
        params: the algorithm's hyperparameters (its defaults for the rest).
        init: π_0 as `simulate` takes it (default: the algorithm's).
        fixed_state: the state pytree at the fixed point (default log π̂ as (C, n)).
        states: states(policies) → the flattened state of each record, rebuilt from the recorded
            policies (default log π).
        theorem_rate: the theorem's contraction factor q of KL per step, or None.
        cap: the most iterations the run may need; a slower predicted rate is an error.

    Returns:
        Two sharp Checks (the limit and the rate) and, with `theorem_rate`, a bound.

    Raises:
        GamesimError: if reaching π̂ to 1e-12 at the predicted rate needs `cap` iterations or more.

    References:
        The local rate is the spectral radius of the step's Jacobian at its fixed point
        (`theory.local_rate`); the tail over which it is measured is TAIL.
    """
    from gamesim.engine.simulation import initial_policy  # the engine loads when a check runs (see `run`)

    game = ctx.game
    pi_hat = game.stack_policy(limit)
    fixed_state = np.log(pi_hat) if fixed_state is None else fixed_state
    states = states or (lambda p: np.log(p).reshape(len(p), -1))
    reference = ctx.reference(name)
    rho, left = theory.local_rate(reference.step, fixed_state, game.payoff, np.log(game.stacked_reference),
                                  eta, tau, reference.resolve_params(params or {}))
    fixed = np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(fixed_state)])  # ravel_pytree's order
    alg = ctx.algorithm(name)
    pi0 = np.exp(initial_policy(game, alg.default_init if init is None else init, 0))
    T = _steps(rho, float(np.abs(states(pi0[None])[0] - fixed).max()), cap)
    traj = ctx.simulate(name, eta=eta, tau=tau, iterations=T, init=init, **(params or {}))
    pis = _stacked(game, traj.policies)
    with np.errstate(divide="ignore", invalid="ignore"):
        measured = _tail_rate(states(pis), fixed, left)
    checks = [sharp(f"{label}: the last iterate reaches π̂ (max|π_T − π̂| ≤ {LIMIT_TOL:g})",
                    np.abs(pis[-1] - pi_hat).max(), LIMIT_TOL, f"T = {T}"),
              sharp(f"{label}: tail rate ρ̂ = ρ(J), J the Jacobian of the registered step at π̂ "
                    f"(|log ρ̂/log ρ − 1| ≤ {RATE_TOL:g})", abs(np.log(measured) / np.log(rho) - 1), RATE_TOL,
                    f"ρ̂ = {measured:.8g}, ρ = {rho:.8g}")]
    if theorem_rate is not None:
        checks.append(bound(f"{label}: the theorem's rate bounds it, ρ̂² ≤ its KL contraction per step",
                            measured ** 2, theorem_rate))
    return checks


def contraction(ctx: Context, name: str, *, eta, tau, rate: float, label: str) -> list[Check]:
    """A theorem's linear contraction KL(π*_τ‖π_t) ≤ rate^t KL(π*_τ‖π_0) checked over 300 steps
    from π_ref, with `linear_convergence`'s sharp checks and ρ̂² ≤ rate."""
    from gamesim.core.equilibria import solve  # scipy.optimize loads when a check runs, not with the claims a plugin registers

    traj = ctx.simulate(name, eta=eta, tau=tau, iterations=300)
    kl, t = traj.metrics["kl_to_eq"], traj.iterations
    return [bound(f"KL(π*_τ‖π_t) ≤ rate^t KL(π*_τ‖π_0), {label}", kl[1:], kl[0] * rate ** t[1:].astype(float)),
            *linear_convergence(ctx, name, eta=eta, tau=tau, limit=solve(ctx.game, tau).policy, label=label,
                                theorem_rate=rate)]


def _average_is_uniform(game, traj, tau, metric: str) -> Check:
    """The recorded average-iterate metric is that of the uniform mixture of π_0..π_t (every record)."""
    pis = _stacked(game, traj.policies)
    mean = np.cumsum(pis, axis=0) / np.arange(1, len(pis) + 1)[:, None, None]
    return sharp(f"π̄_t is the theorem's uniform mixture of π_0..π_t ({metric} recomputed, "
                 f"relative error ≤ {IDENTITY_TOL:g})",
                 relative_error(traj.metrics[metric], _gap(game, mean, tau), floor=1e-12), IDENTITY_TOL)


def _run_length(ctx: Context, quick: int, full: int) -> int:
    return quick if ctx.quick else full


# --- INPO ---------------------------------------------------------------------------------------------
def _inpo_lemma5(ctx: Context) -> list[Check]:
    """One Newton step on eq. 8's population loss (quadratic in log π) is its exact minimizer; it
    must equal one step of the update under test (eq. 5)."""
    game, eta, tau = ctx.game, 0.5, 0.2
    with jax.enable_x64(True):
        A, log_ref = jnp.asarray(game.payoff[0]), jnp.log(jnp.asarray(game.stacked_reference[0]))
        log_pi_t = jax.nn.log_softmax(jnp.asarray(np.random.default_rng(game.n).standard_normal(game.n)))
        loss = lambda x: inpo_population_loss(x, log_pi_t, log_ref, A, eta, tau)
        x = log_pi_t - jnp.linalg.pinv(jax.hessian(loss)(log_pi_t), rtol=1e-12) @ jax.grad(loss)(log_pi_t)
        step = ctx.step("inpo", log_pi_t[None], A[None], log_ref[None], eta, tau)[0]
        error = float(jnp.max(jnp.abs(jnp.exp(jax.nn.log_softmax(x)) - jnp.exp(step))))
    return [sharp("argmin of eq. 8 (autodiff Newton) = one step of the update (max |Δπ| ≤ 1e-8)", error, 1e-8)]


def _inpo_theorem3(ctx: Context) -> list[Check]:
    r"""Theorem 3's chain at its step, with B and D a priori, and Lemma 2's regret exactly.

    Exact form of Lemma 2's regret (derived): the update is log π_{s+1} = log π_s − ηg̃_s − log Z_s
    with g̃_s = −Aπ_s + τ log(π_s/π_ref) (the loss gradient less constants, which the linearized
    regret ignores), so Σ_{s≤t} g̃_s(y) = [log(π_0/π_{t+1})(y) − Σ log Z_s]/η and, as ⟨g̃_s, π_s⟩ =
    τKL(π_s‖π_ref),

        LinRegret_t = τ Σ_{s≤t} KL(π_s‖π_ref) + (1/η)[max_y log(π_{t+1}(y)/π_0(y)) + Σ_{s≤t} log Z_s],

    log Z_s = logsumexp((1 − ητ) log π_s + ητ log π_ref + ηAπ_s). The proof bounds the bracket.
    """
    game = ctx.game
    T, tau = _run_length(ctx, 2000, 20000), 0.1
    D = float(np.log(1 / game.stacked_reference.min()))
    B = theory.assumption_a_bound(game, tau)
    eta = float(theory.inpo_theorem3_eta(T, tau, D, B))
    traj = ctx.simulate("inpo", eta=eta, tau=tau, iterations=T)
    plays = traj.iterations[1:] + 1
    m = {k: v[1:] for k, v in traj.metrics.items()}
    pis, log_ref = _stacked(game, traj.policies), np.log(game.stacked_reference)
    log_z = logsumexp((1 - eta * tau) * np.log(pis[:-1]) + eta * tau * log_ref + eta * _scores(game, pis[:-1]), axis=-1)
    bracket = np.max(np.log(pis[1:]) - np.log(pis[:1]), axis=-1) + np.cumsum(log_z, axis=0)
    exact = _weighted(game, tau * np.cumsum(_kl(pis[:-1], game.stacked_reference), axis=0) + bracket / eta)
    return [
        bound("DualGap_τ(π̄_T) ≤ 2 Regret_T/T (Jensen)", m["gap_reg_avg"], 2 * m["regret"] / plays),
        bound("Regret_T ≤ LinRegret_T", m["regret"], m["linear_regret"]),
        bound("2 LinRegret_T/T ≤ 2[D/(ηT) + (4τ²B² + 1)η], B a priori (Lemma 2)",
              2 * m["linear_regret"] / plays, theory.inpo_theorem3_bound(plays, eta, tau, D, B), f"B = {B:.4g}"),
        sharp(f"Lemma 2's regret, exact: LinRegret_t = τΣKL(π_s‖π_ref) + [max log(π_{{t+1}}/π_0) + Σ log Z_s]/η "
              f"(relative error ≤ {IDENTITY_TOL:g})", relative_error(traj.metrics["linear_regret"][:-1], exact,
                                                                   floor=1e-12), IDENTITY_TOL),
        _average_is_uniform(game, traj, tau, "gap_reg_avg"),
    ]


def _kl_recursion(label, kl, eta_t, step_bound) -> Check:
    return bound(label, kl[1:], step_bound(kl[:-1], eta_t))


SCHEDULED = ("omd", "inpo", "nash-md")


def _theorem_schedule(ctx: Context) -> list[Check]:
    """Derived: η_t = 2/(τ(t+2)) has η_0τ = 1, so the first step drops π_0's own weight 1 − η_0τ and
    is a full best response: OMD/INPO gives BR_τ(π_0); Nash-MD, whose mixture π_0^{1−η_0τ}π_ref^{η_0τ}
    is then π_ref, gives BR_τ(π_ref). Checked from a random π_0; the second step then has η_1τ = 2/3."""
    game, tau, out = ctx.game, 0.25, []
    for name in SCHEDULED:
        traj = ctx.simulate(name, tau=tau, schedule="theorem", iterations=2, init="random")
        pis = _stacked(game, traj.policies)
        target = _best_response(game, pis[0] if name != "nash-md" else game.stacked_reference, tau)
        out.append(sharp(f"{name}: the first step is the best response BR_τ({'π_ref' if name == 'nash-md' else 'π_0'}) "
                         "(max|Δπ| ≤ 1e-12)", np.abs(pis[1] - target).max(), 1e-12))
    return out


def _inpo_theorem4(ctx: Context) -> list[Check]:
    """Theorem 4's recursion and rate with C = max(Bτ, 1) from the a-priori B (C = 1 here), plus the
    exact behaviour at a constant η: linear convergence to π*_τ (derived: the fixed point of eq. 5
    is π*_τ for every η) at the rate of the linearized step."""
    from gamesim.core.equilibria import solve  # scipy.optimize loads when a check runs, not with the claims a plugin registers

    game, tau, eta = ctx.game, 0.5, 0.6
    T = _run_length(ctx, 2000, 20000)
    B = theory.assumption_a_bound(game, tau)
    const = ctx.simulate("inpo", eta=eta, tau=tau, iterations=T)
    sched = ctx.simulate("inpo", tau=tau, schedule="theorem", iterations=T)
    kl, t = sched.metrics["kl_to_eq"], sched.iterations
    step = lambda k, e: theory.inpo_theorem4_step(k, e, tau, B)
    return [
        _kl_recursion(f"constant η = {eta}: KL_{{t+1}} ≤ (1 − ητ)KL_t + 8C²η², C = max(Bτ, 1) a priori",
                      const.metrics["kl_to_eq"], eta, step),
        _kl_recursion("η_t = 2/(τ(t+2)): KL_{t+1} ≤ (1 − η_tτ)KL_t + 8C²η_t²", kl, theorem_schedule(tau, t[:-1]), step),
        bound("η_t = 2/(τ(t+2)): KL(π*_τ‖π_T) ≤ 32C²/(τ²(T+1))", kl[1:], theory.inpo_theorem4_rate(t[1:], tau, B)),
        *linear_convergence(ctx, "inpo", eta=eta, tau=tau, limit=solve(game, tau).policy,
                            label=f"constant η = {eta}, τ = {tau} (derived)"),
    ]


def _omd_linear(ctx: Context) -> list[Check]:
    r"""OMD/INPO is MMD in disguise (derived): MMD's step (Sokota et al. eq. 12) with magnet π_ref,
    α = τ and step η_m is log π_{t+1} = [log π_t + η_mτ log π_ref + η_mAπ_t]/(1 + η_mτ) − c, which is
    OMD at η = η_m/(1 + η_mτ). MMD's Theorem 3.4 then gives KL(π*_τ‖π_t) ≤ (1 − ητ)^t KL(π*_τ‖π_0)
    whenever η_m = η/(1 − ητ) ≤ τ/L², L = max|A|; checked at the largest such η."""
    tau = 0.2
    eta = float(theory.omd_max_eta(tau, ctx.game.payoff))
    return contraction(ctx, "omd", eta=eta, tau=tau, rate=1 - eta * tau,
                       label=f"rate 1 − ητ, η the largest with η/(1 − ητ) ≤ τ/L², τ = {tau}")


# --- Nash-MD -------------------------------------------------------------------------------------------
def _nash_md_theorem1(ctx: Context) -> list[Check]:
    """Theorem 1 with η_t = 2/(τ(t+2)): its recursion and 8/(τ²(T+1)) rate; and (derived)
    KL(π*_τ‖π_T) = Θ(1/T²): the iterate tracks the biased fixed point of its current step (eq. 13
    with β = η_tτ, at distance O(η_t) from π*_τ), and KL is quadratic in that distance."""
    tau = 0.1
    T = _run_length(ctx, 2000, 10000)
    traj = ctx.simulate("nash-md", tau=tau, schedule="theorem", iterations=T)
    t, kl = traj.iterations, traj.metrics["kl_to_eq"]
    tail = t >= T // 4
    slope = np.polyfit(np.log(t[tail]), np.log(kl[tail]), 1)[0]
    return [
        _kl_recursion("KL_{t+1} ≤ (1 − η_tτ)KL_t + 2η_t² (eq. 6)", kl, theorem_schedule(tau, t[:-1]),
                      lambda k, e: theory.nash_md_step(k, e, tau)),
        bound("KL(π*_τ‖π_T) ≤ 8/(τ²(T+1))", kl[1:], theory.nash_md_rate(t[1:], tau)),
        sharp("KL(π*_τ‖π_T) ∝ T^−2 (derived): slope of log KL over the last ¾ of log T = −2 ± 0.05",
              slope + 2, 0.05),
    ]


def _nash_md_constant(ctx: Context) -> list[Check]:
    """At a constant η: Theorem 1's recursion unrolled (a corollary), and (derived, with
    Calandriello et al. Prop. 5.2) linear convergence to eq. 13's point with β = ητ,
    softmax(log π_ref + Aπ*_{τ/(1−ητ)}/τ), which is not π*_τ."""
    game, eta, tau = ctx.game, 0.8, 0.25
    limit = theory.mixture_limit(game, tau, eta * tau)
    traj = ctx.simulate("nash-md", eta=eta, tau=tau, iterations=500)
    kl = traj.metrics["kl_to_eq"]
    return [bound("KL(π*_τ‖π_t) ≤ (1 − ητ)^t KL_0 + (2η/τ)(1 − (1 − ητ)^t) (eq. 6 unrolled)",
                  kl[1:], theory.nash_md_constant_bound(traj.iterations[1:], eta, tau, kl[0])),
            *linear_convergence(ctx, "nash-md", eta=eta, tau=tau, limit=limit,
                                label=f"η = {eta}, τ = {tau}: π̂ = eq. 13's point with β = ητ (Prop. 5.2)")]


# --- Hedge: SPPO, DNO, iterative IPO ---------------------------------------------------------------------
HEDGE = ("sppo", "dno", "iterative-ipo")


def _hedge_theorem(ctx: Context) -> list[Check]:
    r"""SPPO Theorem 4.1 via Freund & Schapire (1999) for each Hedge method, D = log(1/min π_0) a priori.

    Exact form (derived: the update unrolled, log π_{t+1} = log π_0 + ηAΣ_{s≤t}π_s − Σ log Z_s, with
    Z_s = Σ_y π_s(y)e^{η(Aπ_s)_y}):

        DualGap_0(π̄_t) = 2 max_y (Aπ̄_t)_y = 2[max_y log(π_{t+1}(y)/π_0(y)) + Σ_{s≤t} log Z_s] / (η(t + 1)).

    The theorem bounds the first term by D and each log Z_s by η²/8 (Hoeffding's lemma: (Aπ_s)_y ∈
    [−1/2, 1/2] has mean 0 under π_s), giving 2(D/(ηT) + η/8). At the theorem's step η = √(8D/T)
    the gap falls like T^{−1/2}: the slope over T ∈ [T/64, T] is fitted from one batch of runs.
    """
    game, out = ctx.game, []
    T = _run_length(ctx, 2048, 16384)
    for name in HEDGE:
        init = "uniform" if name == "dno" else None
        pi0 = game.stack_policy(np.full(game.policy_shape(), 1 / game.n)) if init else game.stacked_reference
        D = float(np.log(1 / pi0.min()))
        eta = float(np.sqrt(8 * D / T))
        traj = ctx.simulate(name, eta=eta, iterations=T, init=init)
        pis, plays = _stacked(game, traj.policies), traj.iterations + 1
        log_z = logsumexp(eta * _scores(game, pis[:-1]), b=pis[:-1], axis=-1)
        exact = _weighted(game, 2 * (np.max(np.log(pis[1:]) - np.log(pis[:1]), axis=-1)
                                     + np.cumsum(log_z, axis=0)) / (eta * plays[:-1, None]))
        Ts = (T // 64) * 2 ** np.arange(7)
        batch = ctx.simulate_batch(name, eta=list(np.sqrt(8 * D / Ts)), iterations=T, record_every=T // 64, inits=init)
        final = batch.metrics["gap_avg"][np.arange(len(Ts)), Ts // (T // 64)]
        at_equilibrium = final.max() <= 1e-12  # π_0 is the equilibrium (DNO's uniform start on RPS)
        slope = -0.5 if at_equilibrium else np.polyfit(np.log(Ts), np.log(final), 1)[0]
        out += [bound(f"{name}: DualGap_0(π̄_T) ≤ 2(D/(ηT) + η/8), η = √(8D/T)", traj.metrics["gap_avg"],
                      theory.hedge_average_gap_bound(plays, eta, D)),
                bound(f"{name}: log Z_s ≤ η²/8 at every step (Hoeffding's lemma)", _weighted(game, log_z),
                      eta ** 2 / 8),
                sharp(f"{name}: DualGap_0(π̄_t) = 2[max log(π_{{t+1}}/π_0) + Σ log Z_s]/(η(t+1)) (exact, derived; "
                      f"relative error ≤ {IDENTITY_TOL:g})",
                      relative_error(traj.metrics["gap_avg"][:-1], exact, floor=1e-12), IDENTITY_TOL),
                _average_is_uniform(game, traj, 0.0, "gap_avg"),
                sharp(f"{name}: at η_T = √(8D/T) the gap falls like T^−1/2 (fitted slope over T/64..T: −0.5 ± 0.25)",
                      slope + 0.5, 0.25, "π_0 is the equilibrium: the gap stays 0" if at_equilibrium
                      else f"slope {slope:.3f}")]
    return out


def _hedge_cycles(ctx: Context) -> list[Check]:
    T = _run_length(ctx, 3000, 20000)
    traj = ctx.simulate("sppo", eta=0.5, iterations=T, record_every=T // 100, init=[0.6, 0.3, 0.1])
    gaps = traj.metrics["gap"]
    return [bound("DualGap_0(π_t) ≥ 0.1 over the second half of the run", 0.1, gaps[len(gaps) // 2:].min())]


# --- extragradient, optimistic, MMD ---------------------------------------------------------------------------
def _egpo_linear(ctx: Context) -> list[Check]:
    """EGPO's tabular step (extragradient with the KL mirror map) is Cen et al.'s predictive update
    in self-play; their Theorem 1 contracts KL(π*_τ‖π_t) by (1 − ητ) per step for η ≤ 1/(τ + 2 max|A|).
    Sharp: the limit π*_τ and the Jacobian's rate, which that contraction must bound."""
    tau = 0.1
    eta = float(theory.extragradient_max_eta(tau, ctx.game.payoff))
    return contraction(ctx, "extragradient", eta=eta, tau=tau, rate=1 - eta * tau,
                       label=f"rate 1 − ητ at η = 1/(τ + 2 max|A|), τ = {tau}")


def _optimistic_states(game):
    """The optimistic step's state (log π_t, Aπ_{t−1}) rebuilt from recorded policies (Aπ_{−1} = Aπ_0)."""
    def states(pis):
        scores = _scores(game, pis)
        previous = np.concatenate([scores[:1], scores[:-1]])
        return np.concatenate([np.log(pis).reshape(len(pis), -1), previous.reshape(len(pis), -1)], axis=1)

    return states


def _optimistic(ctx: Context, tau: float, eta: float) -> list[Check]:
    from gamesim.core.equilibria import solve  # scipy.optimize loads when a check runs, not with the claims a plugin registers

    game = ctx.game
    pi = game.stack_policy(solve(game, tau).policy)
    return linear_convergence(ctx, "optimistic-omd", eta=eta, tau=tau, limit=solve(game, tau).policy,
                              label=f"η = {eta}, τ = {tau}", fixed_state=(np.log(pi), _scores(game, pi)),
                              states=_optimistic_states(game))


def _optimistic_regularized(ctx: Context) -> list[Check]:
    """Derived: the fixed point of the one-line optimistic step log π_{t+1} = (1 − ητ)log π_t +
    ητ log π_ref + η(2Aπ_t − Aπ_{t−1}) − c is (π*_τ, Aπ*_τ), and it is approached at the linearized
    step's rate (Cen et al. 2021 prove linear convergence of the two-sequence form)."""
    return _optimistic(ctx, 0.1, 0.5)


def _optimistic_unregularized(ctx: Context) -> list[Check]:
    """Wei et al. 2021: with a unique equilibrium, OMWU's last iterate converges linearly at a
    constant step (η ≤ 1/8 for payoffs in [−1, 1]; A = P − 1/2 ∈ [−1/2, 1/2] allows η ≤ 1/4). On
    games whose equilibrium has full support the fixed point is (π*, Aπ* = 0) and the rate is the
    linearized step's (derived)."""
    return _optimistic(ctx, 0.0, 0.25)


def _mmd_theorem34(ctx: Context) -> list[Check]:
    """MMD Theorem 3.4 at its largest step η = α/L², L = max|A|: KL(π*_τ‖π_t) ≤ (1 + ηα)^{−t}KL_0;
    sharp: the limit π*_τ and the Jacobian's rate, which the theorem's must bound."""
    tau = 0.2
    eta = float(theory.mmd_max_eta(tau, ctx.game.payoff))
    return contraction(ctx, "mmd", eta=eta, tau=tau, rate=1 / (1 + eta * tau),
                       label=f"rate 1/(1 + ηα) at η = α/L², α = τ = {tau}")


# --- online IPO, IPO-MD, Nash-MD-PG ---------------------------------------------------------------------
def _loss_step_error(ctx: Context, name: str, loss, lr_to_eta, beta: float) -> float:
    """max |one step of `name` at η − one SGD step of lr on `loss` (autodiff)| in log π, η = lr_to_eta·lr,
    from a random policy on context 0 (π_ref of the game)."""
    game, tau, lr = ctx.game, 0.2, 0.01
    with jax.enable_x64(True):
        A, log_ref = jnp.asarray(game.payoff[0]), jnp.log(jnp.asarray(game.stacked_reference[0]))
        log_pi = jax.nn.log_softmax(jnp.asarray(np.random.default_rng(game.n + 1).standard_normal(game.n)))
        log_mix = jax.nn.log_softmax((1 - beta) * log_pi + beta * log_ref)
        sgd = jax.nn.log_softmax(log_pi - lr * jax.grad(loss)(log_pi, log_ref, A, tau, log_mix))
        params = {"beta": beta} if ctx.reference(name).params else {}
        step = ctx.step(name, log_pi[None], A[None], log_ref[None], lr_to_eta(tau) * lr, tau, params)
        return float(jnp.max(jnp.abs(step[0] - sgd)))


def _online_ipo_prop41(ctx: Context) -> list[Check]:
    """Prop. 4.1: π*_τ is the stationary point of online IPO's expected dynamics; sharp: one step
    from π*_τ stays there, and the iterates converge to it at the linearized step's rate."""
    from gamesim.core.equilibria import solve  # scipy.optimize loads when a check runs, not with the claims a plugin registers

    game, tau, eta = ctx.game, 0.2, 2.0
    star = solve(game, tau).policy
    stay = ctx.simulate("online-ipo", eta=eta, tau=tau, iterations=1, init=star).policies[-1]
    return [sharp("one step from π*_τ stays at π*_τ (max|Δπ| ≤ 1e-13)", np.abs(stay - star).max(), 1e-13),
            *linear_convergence(ctx, "online-ipo", eta=eta, tau=tau, limit=star, label=f"η = {eta}, τ = {tau}")]


def _online_ipo_prop42(ctx: Context) -> list[Check]:
    """Prop. 4.2: online IPO's expected loss gradient is the self-play policy gradient; so SGD at lr
    on the IPO loss (eq. 11, pairs from sg[π]) is the step at η = 4 lr/τ: autodiff against the step."""
    error = _loss_step_error(ctx, "online-ipo", ipo_loss, lambda tau: 4 / tau, 0.0)
    return [sharp("SGD on the online IPO loss (autodiff) = the step at η = 4 lr/τ (max|Δ log π| ≤ 1e-12)",
                  error, 1e-12)]


def _ipo_md_prop5(ctx: Context) -> list[Check]:
    """Props. 5.1 and 5.2 for IPO-MD and Nash-MD-PG (β = 0.25): each step is SGD on its loss (IPO's
    on pairs from π' ∝ π^{1−β}π_ref^β at η = 4 lr/τ; Nash-MD-PG's surrogate at η = lr, autodiff);
    both converge to eq. 13's point, whose mixture π' is π*_{τ/(1−β)} (Prop. 5.2), linearly."""
    game, tau, eta, beta = ctx.game, 0.2, 2.0, 0.25
    limit = theory.mixture_limit(game, tau, beta)
    out = []
    for name, loss, factor in (("ipo-md", ipo_loss, lambda t: 4 / t), ("nash-md-pg", nash_md_pg_loss, lambda t: 1.0)):
        error = _loss_step_error(ctx, name, loss, factor, beta)
        out += [sharp(f"{name}: one step = SGD on its loss (autodiff; max|Δ log π| ≤ 1e-12) (Prop. 5.1)", error, 1e-12),
                *linear_convergence(ctx, name, eta=eta, tau=tau, limit=limit, params={"beta": beta},
                                    label=f"{name}, η = {eta}, τ = {tau}, β = {beta}: π̂ = eq. 13's point (Prop. 5.2)")]
    return out


# --- magnet refreshes: COMAL, MPO ---------------------------------------------------------------------------
def _refresh(ctx: Context, name: str, inner: str) -> list[Check]:
    r"""The conceptual prox-point method: m_{k+1} = π*_τ of the game regularized towards m_k (COMAL
    Alg. 1; MPO's magnet update). With an inner solver run to 1e-12 between resets (K steps, sized
    from the inner step's rate at the first magnet), the iterate at each reset is the next prox point
    (computed independently with `solve`), and for the von Neumann winner π* (derived from
    m_{k+1} ∝ m_k exp(Am_{k+1}/τ), the three-point identity of COMAL's Lemma 4)

        KL(π*‖m_{k+1}) = KL(π*‖m_k) − KL(m_{k+1}‖m_k) + m_{k+1}ᵀAπ*/τ ≤ KL(π*‖m_k) − KL(m_{k+1}‖m_k),

    so KL(π*‖m_k) never grows and the last iterate converges to π* (Lemma 4, Thm. 1)."""
    from gamesim.core.equilibria import solve  # scipy.optimize loads when a check runs, not with the claims a plugin registers

    game, tau, eta = ctx.game, 0.1, 0.5
    refreshes = _run_length(ctx, 12, 30)
    star0 = solve(game, tau).policy
    rho, _ = theory.local_rate(ctx.reference(inner).step, np.log(game.stack_policy(star0)), game.payoff,
                               np.log(game.stacked_reference), eta, tau)
    K = _steps(rho, float(np.abs(np.log(game.stacked_reference / game.stack_policy(star0))).max()), 20_000)
    traj = ctx.simulate(name, eta=eta, tau=tau, iterations=K * refreshes, record_every=K, refresh_every=K)
    magnets = _stacked(game, traj.policies)
    prox = [game.stacked_reference]
    for _ in range(refreshes):
        prox.append(game.stack_policy(solve(game.with_reference(game.unstack(prox[-1])), tau).policy))
    pi_star = game.stack_policy(solve(game).policy)
    kl = _weighted(game, _kl(pi_star, magnets))
    step_kl = _weighted(game, _kl(magnets[1:], magnets[:-1]))
    exact = kl[:-1] - step_kl + _weighted(game, np.sum(magnets[1:] * _scores(game, pi_star), axis=-1)) / tau
    first_phase = ctx.simulate(name, eta=eta, tau=tau, iterations=K, refresh_every=K + 1)
    return [
        bound("KL(π*‖m_{k+1}) ≤ KL(π*‖m_k) at every reset (Lemma 4)", kl[1:], kl[:-1]),
        sharp(f"the iterate at each of {refreshes} resets is the next prox point π*_τ(·; m_k) (solve; "
              "max|Δπ| ≤ 1e-9)", np.abs(magnets - np.stack(prox)).max(), 1e-9),
        sharp("Lemma 4's identity KL(π*‖m_{k+1}) = KL(π*‖m_k) − KL(m_{k+1}‖m_k) + m_{k+1}ᵀAπ*/τ "
              "(absolute error ≤ 1e-9)", kl[1:] - exact, 1e-9),
        sharp(f"the last iterate approaches π* = solve(game): KL(π*‖m_{refreshes}) ≤ 1e-6 (Thm. 1)", kl[-1], 1e-6),
        *_inner_rate(ctx, name, first_phase, star0, rho, inner, eta, tau),
    ]


def _inner_rate(ctx, name, traj, star, rho, inner, eta, tau) -> list[Check]:
    """Between resets the method is its inner step towards π*_τ(·; magnet): its tail rate over the
    first phase must be the inner step's linearized rate ρ."""
    game = ctx.game
    _, left = theory.local_rate(ctx.reference(inner).step, np.log(game.stack_policy(star)), game.payoff,
                                np.log(game.stacked_reference), eta, tau)
    pis = _stacked(game, traj.policies)
    with np.errstate(divide="ignore", invalid="ignore"):
        measured = _tail_rate(np.log(pis).reshape(len(pis), -1), np.log(game.stack_policy(star)).ravel(), left)
    return [sharp(f"first phase: tail rate ρ̂ = ρ(J), J the Jacobian of the inner step ({inner}) "
                  f"(|log ρ̂/log ρ − 1| ≤ {RATE_TOL:g})", abs(np.log(measured) / np.log(rho) - 1), RATE_TOL,
                  f"ρ̂ = {measured:.8g}, ρ = {rho:.8g}")]


def _comal(ctx: Context) -> list[Check]:
    return _refresh(ctx, "comal", "omd")


def _mpo(ctx: Context) -> list[Check]:
    return _refresh(ctx, "mpo", "mmd")


# --- iterative DPO ----------------------------------------------------------------------------------------------
def _iterative_dpo_bt(ctx: Context) -> list[Check]:
    r"""Derived: on a Bradley-Terry game, P = σ(s_y − s_y'), the Bradley-Terry fit to any comparisons of
    pairs recovers s (up to a constant), so iterative DPO is π_t = softmax(log π_0 + tηs) exactly:
    the policy moves towards the Condorcet winner along a straight line in logits. s = logit P[:, 0]."""
    game, eta = ctx.game, 0.5
    T = 100
    traj = ctx.simulate("iterative-dpo", eta=eta, iterations=T)
    P = np.stack([game.P]) if not game.contextual else game.P
    s = np.log(P[..., 0]) - np.log1p(-P[..., 0])
    t = traj.iterations[:, None, None]
    predicted = softmax(np.log(game.stacked_reference) + t * eta * s, axis=-1)
    return [sharp("π_t = softmax(log π_0 + tη·s), s the Bradley-Terry scores (max|Δπ| ≤ 1e-7)",
                  np.abs(_stacked(game, traj.policies) - predicted).max(), 1e-7)]


# --- XPO --------------------------------------------------------------------------------------------------------
def _xpo_residual(P, ref, W, pi, alpha, tau):
    """max |Σ_y' W_yy'(σ(r_y − r_y') − P_yy') − (α/β)(π − π_ref)|, r = β log(π/π_ref): XPO's stationarity."""
    r = tau * np.log(pi / ref)
    S = 1 / (1 + np.exp(-(r[..., :, None] - r[..., None, :])))
    return np.abs((W * (S - P)).sum(-1) - alpha / tau * (pi - ref)).max()


def _xpo_fixed_point(P, ref, alpha, tau):
    """π* with W = π*π_refᵀ + π_ref π*ᵀ stationary (scipy.optimize.root, r_n pinned at 0)."""
    def equations(free):
        r = np.append(free, 0.0)
        pi = softmax(np.log(ref) + r / tau)
        M = np.outer(pi, ref)
        S = 1 / (1 + np.exp(-(r[:, None] - r[None, :])))
        return ((M + M.T) * (S - P)).sum(-1)[:-1] - alpha / tau * (pi - ref)[:-1]

    return softmax(np.log(ref) + np.append(root(equations, np.zeros(len(ref) - 1), tol=1e-15).x, 0.0) / tau)


def _xpo_stationary(ctx: Context) -> list[Check]:
    r"""Derived (`updates.optimistic_dpo_update`). XPO's population step minimizes
    α⟨π_ref, log π⟩ + L_BT(β log(π/π_ref); W̄_t), W̄_t the mean of π_iπ_refᵀ + π_refπ_iᵀ over i ≤ t.
    (1) At α = 0 on a Bradley-Terry game the fit is the true score s, so every iterate from the
    first is π_ref e^{s/β}/Z, the KL-regularized optimum. (2) At α > 0 every iterate satisfies the
    stationarity condition Σ_y' W̄_yy'(σ(r_y − r_y') − P_yy') = (α/β)(π − π_ref), W̄ recomputed here
    from the trajectory. (3) The population fixed point π* (W = π*π_refᵀ + π_refπ*ᵀ; scipy root)
    is a fixed point of the step. (bound) α is below `algorithms.optimism_limit`, under which a
    minimizer exists at every step (the paper's sample-complexity bound is not checkable exactly)."""
    game, tau = ctx.game, 0.5
    P = np.stack([game.P]) if not game.contextual else game.P
    ref = game.stacked_reference
    s = np.log(P[..., 0]) - np.log1p(-P[..., 0])
    optimum = softmax(np.log(ref) + s / tau, axis=-1)
    limit = optimism_limit(P, ref, tau, False)
    alpha, T = 0.8 * limit, 12
    star = np.stack([_xpo_fixed_point(P[c], ref[c], alpha, tau) for c in range(len(P))])
    init = star if game.contextual else star[0]
    # one compilation: α = 0, α > 0 from π_ref, and α > 0 from π* (W̄_0 = W* there, so π* must stay put)
    runs = ctx.simulate_batch("xpo", tau=tau, alpha=[0.0, alpha, alpha], iterations=T,
                              inits=[game.reference, game.reference, init]).policies
    plain, pis, still = (_stacked(game, x) for x in runs)
    W, residual = np.zeros(P.shape), 0.0
    for t in range(T):
        M = pis[t][..., :, None] * ref[..., None, :]
        W += (M + np.swapaxes(M, -1, -2) - W) / (t + 1)
        residual = max(residual, _xpo_residual(P, ref, W, pis[t + 1], alpha, tau))
    moved = float(np.abs(still - star).max())
    return [
        bound("α / optimism_limit (a minimizer exists at every step)", alpha, limit),
        sharp("α = 0: π_t = π_ref e^{s/β}/Z for t ≥ 1 (max|Δπ| ≤ 1e-10)", np.abs(plain[1:] - optimum).max(), LIMIT_TOL),
        sharp("α > 0: every π_{t+1} is stationary for its objective on W̄_t (max residual ≤ 1e-10)", residual,
              LIMIT_TOL),
        sharp("from π*, the fixed point (scipy root), the iterates stay at π* (max|Δπ| ≤ 1e-10)", moved, LIMIT_TOL),
    ]
def apo_effective_steps(alpha: float, t):
    r"""c_t of APO on a Bradley-Terry game: log π̂_t = log π_0 + η c_t s, with c_0 = 0, c_1 = 1 and
    c_{t+1} = (1 + α)c_t − αc_{t−1} + 1, i.e. c_t − c_{t−1} = (1 − α^t)/(1 − α) and
    c_t = t/(1 − α) − α(1 − α^t)/(1 − α)² (derived in `_apo_bt`)."""
    t = np.asarray(t, float)
    return t / (1 - alpha) - alpha * (1 - alpha ** t) / (1 - alpha) ** 2


def _apo_bt(ctx: Context) -> list[Check]:
    r"""Derived from APO's Algorithm 1 (He, Yuan & Gu 2024) on a Bradley-Terry game P = σ(s_y − s_y'): each
    DPO step against π_t recovers s (as for `_iterative_dpo_bt`), so π̂_{t+1} ∝ π_t e^{ηs}, and the
    extrapolation log π_{t+1} = (1 + α) log π̂_{t+1} − α log π̂_t keeps every iterate on the line
    log π_0 + (·)ηs. Writing log π̂_t = log π_0 + ηc_t s gives log π_t = log π_0 + η(c_t + α(c_t − c_{t−1}))s
    and c_{t+1} = c_t + α(c_t − c_{t−1}) + 1 (`apo_effective_steps`), c_t ≈ t/(1 − α): the paper's
    1/(1 − α) acceleration over iterative DPO's c_t = t.

    Sharp: π̂_t = softmax(log π_0 + ηc_t s). Bound, in the minimal sub-optimality gap setting of the paper's
    analysis, Δ = min_{y ≠ y*} (s_{y*} − s_y): π̂_t(y)/π̂_t(y*) = (π_0(y)/π_0(y*)) e^{−ηc_t(s_{y*} − s_y)}, so
    1 − π̂_t(y*) ≤ ((1 − π_0(y*))/π_0(y*)) e^{−ηc_tΔ}, with a-priori constants only."""
    game, eta, alpha = ctx.game, 0.5, 0.3
    T = 60
    traj = ctx.simulate("apo", eta=eta, iterations=T, alpha=alpha)
    P = np.stack([game.P]) if not game.contextual else game.P
    s = np.log(P[..., 0]) - np.log1p(-P[..., 0])
    log_pi0 = np.log(game.stacked_reference)
    c = apo_effective_steps(alpha, traj.iterations)[:, None, None]
    predicted = softmax(log_pi0 + c * eta * s, axis=-1)
    pis = _stacked(game, traj.policies)
    best = np.argmax(s, axis=-1)
    gaps = np.sort(s, axis=-1)
    delta = gaps[..., -1] - gaps[..., -2]
    pi0_best = np.take_along_axis(game.stacked_reference, best[:, None], axis=-1)[:, 0]
    pi_best = np.take_along_axis(pis, np.broadcast_to(best[None, :, None], (len(pis), len(best), 1)), axis=-1)[..., 0]
    limit = (1 - pi0_best) / pi0_best * np.exp(-eta * c[..., 0] * delta)
    return [sharp(f"π̂_t = softmax(log π_0 + ηc_t·s), c_t = t/(1−α) − α(1−α^t)/(1−α)², α = {alpha} (max|Δπ| ≤ 1e-7)",
                  np.abs(pis - predicted).max(), 1e-7),
            bound("1 − π̂_t(y*) ≤ ((1 − π_0(y*))/π_0(y*))·exp(−ηc_tΔ), Δ the minimal sub-optimality gap",
                  1 - pi_best, limit)]


# --- the registry ---------------------------------------------------------------------------------------------
RANDOM = ("random:n=10,seed=0", "random:n=10,seed=1", "random:n=50,seed=2,ref_seed=3")
SKEW = ("skew:n=20,rank=4,seed=0", "skew:n=100,rank=6,scale=2.0,seed=1")
ALL = ("cycle3", "rps:ref_seed=1", "biased_rps", *RANDOM, *SKEW, "soccer", "rrps")
QUICK = ("cycle3", "random:n=10,seed=0,ref_seed=1")
FULL_SUPPORT = ("cycle3", "rps:ref_seed=1", "biased_rps", "perturbed_rps")
"""Games whose (unique) von Neumann winner has full support."""
BT = ("bt:n=5,seed=0", "bt:n=10,scale=2.0,seed=1,ref_seed=2", "bt:n=20,seed=3,contexts=2")

CLAIMS: dict[str, Claim] = {}


def register_claim(claim: Claim) -> Claim:
    """Add a claim to the registry that `verify` and `gamesim verify` run.

    Args:
        claim: a Claim with a name not yet taken (registering the same object again is allowed),
            a kind of KINDS, and non-empty games and quick_games.

    Returns:
        `claim`, so a plugin can write `CLAIM = register_claim(Claim(...))`.

    Raises:
        GamesimError: for a non-Claim, a taken name, an unknown kind or no games.
    """
    if not isinstance(claim, Claim):
        raise GamesimError(f"register_claim takes a gamesim.studies.claims.Claim, not {type(claim).__name__}")
    if claim.name in CLAIMS and CLAIMS[claim.name] is not claim:
        raise GamesimError(f"a claim called {claim.name!r} exists already; choose another name")
    if claim.kind not in KINDS:
        raise GamesimError(f"claim {claim.name!r}: kind must be one of {', '.join(KINDS)}, not {claim.kind!r}")
    if not claim.games or not claim.quick_games:
        raise GamesimError(f"claim {claim.name!r} needs games and quick_games (game specs) to run on")
    CLAIMS[claim.name] = claim
    return claim


for _claim in [
    Claim("inpo-lemma5", "INPO (Zhang et al. 2024) Lemma 5 / Prop. 6",
          "the minimizer of the population loss (eq. 8) is the OMD step (eq. 5)", _inpo_lemma5, ("inpo",), ALL, QUICK),
    Claim("inpo-thm3", "INPO Theorem 3, Lemma 2",
          "DualGap_τ(π̄_T) ≤ 2Regret_T/T ≤ 2LinRegret_T/T ≤ 2[D/(ηT) + (4τ²B² + 1)η] at η = √D/(max(Bτ,1)√T); "
          "Lemma 2's regret exactly", _inpo_theorem3, ("inpo",), ALL, QUICK),
    Claim("inpo-thm4", "INPO Theorem 4",
          "KL_{t+1} ≤ (1 − ητ)KL_t + 8C²η² (C = max(Bτ, 1)); with η_t = 2/(τ(t+2)), KL(π*_τ‖π_T) ≤ 32C²/(τ²(T+1)); "
          "at a constant η, linear convergence to π*_τ", _inpo_theorem4, ("inpo",), ALL, QUICK),
    Claim("omd-linear", "gamesim: OMD = MMD at η/(1 − ητ), with MMD Theorem 3.4",
          "KL(π*_τ‖π_t) ≤ (1 − ητ)^t KL(π*_τ‖π_0) when η/(1 − ητ) ≤ τ/L²; the limit π*_τ at the linearized rate",
          _omd_linear, ("omd",), ALL, QUICK, kind="derivation"),
    Claim("theorem-schedule", "gamesim: the schedule of NLHF Theorem 1 and INPO Theorem 4",
          "with η_t = 2/(τ(t+2)), η_0τ = 1: the first step is the regularized best response (to π_0; Nash-MD: to π_ref)",
          _theorem_schedule, SCHEDULED, ALL, QUICK, kind="derivation"),
    Claim("nash-md-thm1", "Nash-MD (NLHF, Munos et al. 2023) Theorem 1, eq. 6",
          "KL_{t+1} ≤ (1 − η_tτ)KL_t + 2η_t² and KL(π*_τ‖π_T) ≤ 8/(τ²(T+1)) for η_t = 2/(τ(t+2)); "
          "the actual decay is T^−2", _nash_md_theorem1, ("nash-md",), ALL, QUICK),
    Claim("nash-md-constant", "NLHF Theorem 1 at a constant step; Calandriello et al. 2024 eq. 13, Prop. 5.2",
          "KL_t ≤ (1 − ητ)^t KL_0 + 2η/τ; the iterates converge linearly to eq. 13's point with β = ητ, "
          "softmax(log π_ref + Aπ*_{τ/(1−ητ)}/τ), not π*_τ", _nash_md_constant, ("nash-md",), ALL, QUICK,
          kind="derivation"),
    Claim("sppo-thm41", "SPPO (Wu et al. 2024) Theorem 4.1 (Freund & Schapire 1999); DNO/SPO, iterative IPO",
          "DualGap_0(π̄_T) ≤ 2(D/(ηT) + η/8), D = log(1/min π_0), at η = √(8D/T), exactly "
          "2[max log(π_{T}/π_0) + Σ log Z_s]/(ηT); slope −1/2 over T", _hedge_theorem, HEDGE, ALL, QUICK),
    Claim("egpo-linear", "EGPO (Zhou et al. 2025); Cen, Wei & Chi 2021 Theorem 1",
          "extragradient (the predictive update): KL(π*_τ‖π_t) ≤ (1 − ητ)^t KL_0 for η ≤ 1/(τ + 2 max|A|); "
          "the limit π*_τ at the linearized rate", _egpo_linear, ("extragradient",), ALL, QUICK),
    Claim("omwu-regularized", "gamesim: the one-line optimistic step (Cen et al. 2021 prove the two-sequence form)",
          "at τ > 0 the last iterate converges linearly to π*_τ at the linearized rate",
          _optimistic_regularized, ("optimistic-omd",), ALL, QUICK, kind="derivation"),
    Claim("omwu-last-iterate", "Wei, Lee, Zhang & Luo 2021 (OMWU, unique equilibrium)",
          "at τ = 0 and a constant η (≤ 1/4 for A ∈ [−1/2, 1/2]) the last iterate converges linearly to the "
          "von Neumann winner", _optimistic_unregularized, ("optimistic-omd",), FULL_SUPPORT, FULL_SUPPORT[:2]),
    Claim("mmd-thm34", "MMD (Sokota et al. 2023) Theorem 3.4",
          "KL(π*_τ‖π_t) ≤ (1 + ητ)^{−t} KL(π*_τ‖π_0) at η = τ/L², L = max|A|; the limit at the linearized rate",
          _mmd_theorem34, ("mmd",), ALL, QUICK),
    Claim("online-ipo-prop41", "Calandriello et al. 2024, Prop. 4.1",
          "π*_τ is the stationary point of online IPO's expected dynamics, reached at the linearized rate",
          _online_ipo_prop41, ("online-ipo",), ALL, QUICK),
    Claim("online-ipo-prop42", "Calandriello et al. 2024, Prop. 4.2",
          "the online IPO loss's gradient is the self-play policy gradient: SGD at lr is the step at η = 4 lr/τ",
          _online_ipo_prop42, ("online-ipo",), ALL, QUICK),
    Claim("ipo-md-prop5", "Calandriello et al. 2024, Props. 5.1 and 5.2",
          "IPO-MD and Nash-MD-PG steps are SGD on their losses; both converge to eq. 13's point, whose mixture "
          "is π*_{τ/(1−β)}", _ipo_md_prop5, ("ipo-md", "nash-md-pg"), ALL, QUICK),
    Claim("comal-lemma4", "COMAL (Liu et al. 2024) Alg. 1, Lemma 4, Theorem 1",
          "with exact inner solves the resets are prox points, KL(π*‖m_k) falls by at least KL(m_{k+1}‖m_k), "
          "and the last iterate converges to the von Neumann winner", _comal, ("comal",), FULL_SUPPORT,
          FULL_SUPPORT[:2]),
    Claim("mpo-thm34", "MPO (Wang et al. 2024) Lemma 3.3, Theorem 3.4",
          "MMD with the magnet reset to the inner equilibrium: prox points with non-increasing KL(π*‖m_k), "
          "last-iterate convergence to the von Neumann winner", _mpo, ("mpo",), FULL_SUPPORT, FULL_SUPPORT[:2]),
    Claim("iterative-dpo-bt", "gamesim: iterative DPO (Rafailov et al. 2023) on Bradley-Terry games",
          "the fitted reward is the true score s, so π_t = softmax(log π_0 + tηs)", _iterative_dpo_bt,
          ("iterative-dpo",), BT, BT[:2], kind="derivation"),
    Claim("xpo-stationary", "gamesim: XPO (Xie et al. 2024) Alg. 1 in population form",
          "at α = 0 on a Bradley-Terry game the iterates are π_ref e^{s/β}/Z from the first step; at α > 0 each "
          "iterate is stationary for its objective on the accumulated pairs, and the population fixed point is one",
          _xpo_stationary, ("xpo",), BT[:2], BT[:1], kind="derivation"),
    Claim("apo-bt", "gamesim: APO (He, Yuan & Gu 2024) Alg. 1 with DPO, on Bradley-Terry games (minimal-gap setting)",
          "π̂_t = softmax(log π_0 + ηc_t s), c_t = t/(1 − α) − α(1 − α^t)/(1 − α)²; "
          "1 − π̂_t(y*) ≤ ((1 − π_0(y*))/π_0(y*)) e^{−ηc_tΔ}", _apo_bt, ("apo",), BT, BT[:1], kind="derivation"),
    Claim("hedge-cycles", "SPPO / MWU; COMAL §5",
          "Hedge's last iterate does not converge: DualGap_0 ≥ 0.1 over the second half of the run",
          _hedge_cycles, ("sppo",), ("cycle3", "rps"), ("cycle3", "rps"), kind="observation"),
]:
    register_claim(_claim)

BUILTIN_CLAIMS = frozenset(CLAIMS)
"""The claims gamesim ships (a plugin's are added to CLAIMS beside them)."""


# --- running them ---------------------------------------------------------------------------------------------
@dataclass
class Result:
    """A claim's checks on its games: checks[label][game] → Check."""

    claim: Claim
    checks: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ratios(self) -> dict:
        """game → the worst ratio over the claim's checks on it."""
        out: dict = {}
        for per_game in self.checks.values():
            for game, check in per_game.items():
                out[game] = max(out.get(game, -np.inf), check.ratio if np.isfinite(check.ratio) else np.inf)
        return out

    @property
    def worst(self) -> float:
        return max(self.ratios.values(), default=np.inf)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for per_game in self.checks.values() for c in per_game.values())


def select(names: Sequence[str] | None) -> list[Claim]:
    """The named claims (all by default); an unknown name is an error naming the closest one."""
    names = list(CLAIMS) if not names else list(names)
    for name in names:
        if name not in CLAIMS:
            raise GamesimError(f"unknown claim {name!r}{did_you_mean(name, CLAIMS)}; claims: {', '.join(CLAIMS)}")
    return [CLAIMS[n] for n in names]


def check_claim(claim: Claim, quick: bool = False, algorithms: dict | None = None, runner: Runner = run,
                stop_on_failure: bool = False) -> Result:
    """Run one claim on its games.

    Args:
        claim: the Claim.
        quick: run on its quick_games, with the checks' quick run lengths.
        algorithms: name → Algorithm (or registered name) run in place of the registered `name`.
        runner: how the checks' runs are made (`run`; a mutant may wrap it).
        stop_on_failure: stop at the first game on which a check fails.

    Returns:
        The Result: checks[label][game spec] → Check, and the seconds taken. A GamesimError
        raised by a check (a run the substituted algorithm cannot make) is a failed Check.
    """
    t0 = time.perf_counter()
    result = Result(claim)
    for spec in claim.quick_games if quick else claim.games:
        try:
            with np.errstate(divide="ignore", invalid="ignore"):
                checks = claim.check(Context(load_game(spec), quick, algorithms, runner))
        except GamesimError as exc:  # e.g. an algorithm put in another's place that lacks its schedule
            checks = [Check("the claim's runs are possible", "sharp", np.inf, np.nan, 0.0, str(exc))]
        for c in checks:
            result.checks.setdefault(c.label, {})[spec] = c
        if stop_on_failure and not all(c.passed for c in checks):
            break
    result.seconds = time.perf_counter() - t0
    return result


def verify(names=None, quick: bool = False, algorithms: dict | None = None) -> list[Result]:
    """Run the named claims on their games (`gamesim verify`).

    Args:
        names: claim names of `CLAIMS`; None or empty for all.
        quick: run each on its quick_games with shorter runs.
        algorithms: name → Algorithm (or registered name) run in place of the registered `name`
            (your implementation of INPO, say), while predictions still come from the
            registered one.

    Returns:
        One Result per claim, in the order of `names` (registry order by default).

    Raises:
        GamesimError: for an unknown claim or algorithm name (with the closest one).
    """
    for name, alg in (algorithms or {}).items():
        get_algorithm(name)
        get_algorithm(alg)
    return [check_claim(claim, quick, algorithms) for claim in select(names)]
