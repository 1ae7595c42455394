r"""Exact metrics of policies on a preference game: duality gaps, KL, win rates, regret.

Conventions (per context; game-level numbers are ρ-weighted sums over contexts). A = P − 1/2, so
(Pπ)_y = 1/2 + (Aπ)_y. The τ-regularized game is (INPO eq. 3; NLHF eq. 2)

    J(π₁, π₂) = π₁ᵀPπ₂ − τ KL(π₁‖π_ref) + τ KL(π₂‖π_ref),

π₁ maximizing. Its regularized best response is BR_τ(π) = softmax(log π_ref + Pπ/τ) and

    DualGap_τ(π) = max_p J(p, π) − min_q J(π, q)
                 = 2[τ log Σ_y π_ref(y) e^{(Pπ)_y/τ} + τ KL(π‖π_ref) − 1/2]
                 = 2τ KL(π ‖ BR_τ(π)),

the last form (derived, using πᵀPπ = 1/2) being the one computed: it is a sum of non-negative
terms, accurate near the equilibrium. At τ = 0, DualGap_0(π) = 2 max_y (Pπ)_y − 1 = 2 max_y (Aπ)_y.
Exploitability, max_p P(p ≻ π) − 1/2, is DualGap_0/2.

Regret of the self-play learner that plays π_0, …, π_{T−1} against the losses
l_s(π) = −πᵀPπ_s + τ KL(π‖π_ref) (INPO §3.1), against the best fixed policy in hindsight:

    Regret_T = Σ_s l_s(π_s) − min_π Σ_s l_s(π) = T·V_τ(π̄_T) + τ Σ_s KL(π_s‖π_ref),

with π̄_T the uniform average and V_τ(π̄) = τ log Σ π_ref e^{Aπ̄/τ} (max_y (Aπ̄)_y at τ = 0); derived
from πᵀPπ = 1/2. Jensen on the KL term gives DualGap_τ(π̄_T) ≤ 2 Regret_T / T (INPO Thm. 3).
The linearized regret of INPO Lemma 2 uses the gradients g_s = −Pπ_s + τ(log(π_s/π_ref) + 1):
Σ_s ⟨g_s, π_s⟩ − min_π Σ_s ⟨g_s, π⟩, which bounds the regret against any comparator, π*_τ included.

Iterates as the field reports them (e.g. LiteEFG): the last π_t, the uniform average
π̄_t = Σ_{s≤t} π_s/(t + 1), the linearly weighted average π̃_t = Σ_{s≤t} (s + 1)π_s / ((t + 1)(t + 2)/2)
(CFR+'s averaging), and the best iterate so far, the smallest gap among the records up to t
(so it depends on record_every, as any evaluated best iterate does).

Metrics that are ≥ 0 in exact arithmetic (`NONNEGATIVE`: gaps, KLs, regrets) can come out a
rounding error below 0 (−1e-17 for a gap at its equilibrium); they are clipped at 0, so a log
axis never loses a point to rounding.

f-divergence runs (an algorithm with a `divergence`, e.g. "omd-forward-kl"; `gamesim.core.divergences`):
J has τ D_f in place of τ KL, and `record`/`accumulate` take `divergence=(name, α)`. Then the τ-regularized
gaps are DualGap_f = 2τ Σ π_ref B_f(π/π_ref, BR_f(π)/π_ref) (BR_f by bisection on its λ, 100 halvings,
`f_best_response`), V_f(π̄) = ⟨BR_f(π̄), Aπ̄⟩ − τ D_f(BR_f(π̄)), the regret T·V_f(π̄_T) + τ Σ_s D_f(π_s‖π_ref)
(the same derivation), and the linearized regret's gradients g_s = −Aπ_s + τ f′(π_s/π_ref): the accumulators
then hold Σ_s D_f(π_s) in `sum_kl_ref` and Σ_s [f′(π_s/π_ref) − ⟨π_s, f′(π_s/π_ref)⟩ + D_f(π_s)] in
`sum_log_ratio`, which for reverse KL (f′ = log u + 1) is Σ_s log(π_s/π_ref), the KL sums themselves, so
the formulas below serve both. `kl_to_ref` stays KL(π_t‖π_ref); `kl_to_eq` is KL(π*_f‖π_t), π*_f the f-equilibrium.

Everything here is a pure jax.numpy function of (C, n) stacks, traced inside the engine's loop.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.nn import log_softmax
from jax.scipy.special import logsumexp

from gamesim.core import divergences as fdiv

METRICS = {
    "gap_reg": "duality gap of the τ-regularized game, last iterate: 2τ KL(π_t‖BR_τ(π_t))",
    "gap_reg_avg": "duality gap of the τ-regularized game, uniform average of π_0..π_t",
    "gap": "duality gap of the original game (τ = 0), last iterate: 2 max_y P(y ≻ π_t) − 1",
    "gap_avg": "duality gap of the original game, uniform average of π_0..π_t",
    "gap_reg_wavg": "duality gap of the τ-regularized game, linearly weighted average Σ (s+1)π_s / Σ (s+1)",
    "gap_wavg": "duality gap of the original game, linearly weighted average of π_0..π_t",
    "kl_to_eq": "KL(π*‖π_t), π* = solve(game, τ) (the max-support von Neumann winner at τ = 0)",
    "kl_to_ref": "KL(π_t‖π_ref)",
    "regret": "external regret of the self-play learner over π_0..π_t, best fixed policy in hindsight, KL included",
    "linear_regret": "linearized regret of INPO Lemma 2 over π_0..π_t",
    "winrate_vs_ref": "P(π_t ≻ π_ref)",
    "winrate_vs_eq": "P(π_t ≻ π*)",
    "support": "number of responses with π_t(y) ≥ 1e-9",
    "gap_reg_best": "the smallest gap_reg among the records so far (the best iterate, as evaluated)",
    "gap_best": "the smallest gap among the records so far (the best iterate, as evaluated)",
}
"""Metric name → definition; the names are the columns of `metrics.csv` and `Trajectory.metrics`."""

BEST = {"gap_reg_best": "gap_reg", "gap_best": "gap"}
"""The best-iterate metrics and the recorded metric each is the running minimum of (`best_so_far`)."""

NONNEGATIVE = frozenset({"gap_reg", "gap_reg_avg", "gap", "gap_avg", "gap_reg_wavg", "gap_wavg", "gap_reg_best",
                         "gap_best", "kl_to_eq", "kl_to_ref", "regret", "linear_regret", "dueling_regret"})
"""Metrics ≥ 0 in exact arithmetic (regrets by INPO Thm. 3's Jensen step and symmetry; the dueling
regret because (Aπ_vN)_y ≤ 0), clipped at 0 against rounding."""

SAMPLED_METRICS = {
    "dueling_regret": "Σ_{s≤t} [P(π_vN ≻ π_s) − 1/2], π_vN the von Neumann winner (dueling-bandit regret)",
    "queries": "preference queries made so far",
}
"""Recorded in addition for sampled feedback (computing π_vN costs an LP per game)."""


def matvec(A, pi):
    """(Aπ) per context: A (…, n, n), π (…, n)."""
    return jnp.einsum("...ij,...j->...i", A, pi)


def kl(log_p, log_q):
    """KL(p‖q) over the last axis, from log-probabilities; 0·log 0 = 0; clipped at 0 (rounding)."""
    p = jnp.exp(log_p)
    return jnp.maximum(jnp.sum(jnp.where(p > 0, p * (log_p - log_q), 0.0), axis=-1), 0.0)


def duality_gaps(A, log_ref, log_pi, tau):
    """Per-context duality gap of the τ-regularized game, DualGap_τ(π) = 2τ KL(π ‖ BR_τ(π)).

    Args:
        A: the payoff P − 1/2, (…, n, n).
        log_ref: log π_ref, (…, n).
        log_pi: log π, (…, n).
        tau: τ ≥ 0 (a scalar or broadcastable array); τ = 0 gives the original game's gap
            2 max_y (Aπ)_y.

    Returns:
        DualGap_τ(π) per context, (…), clipped at 0 against rounding.

    References:
        INPO (Zhang et al. 2024) eq. 3 and the gap of its Theorem 3; the closed form is derived in
        this module's docstring.
    """
    pi = jnp.exp(log_pi)
    Api = matvec(A, pi)
    positive = tau > 0
    safe_tau = jnp.where(positive, tau, 1.0)
    regularized = 2 * safe_tau * kl(log_pi, log_softmax(log_ref + Api / safe_tau, axis=-1))
    return jnp.maximum(jnp.where(positive, regularized, 2 * jnp.max(Api, axis=-1)), 0.0)


def f_best_response(scores, log_ref, tau, name, alpha=None):
    """log BR_f(π) per context from the scores Aπ (…, n): π_ref (f′)⁻¹((Aπ − λ)/τ), λ by 100 bisection
    halvings of the bracket of `gamesim.core.divergences` (to adjacent floats), then normalized.

    Args:
        scores: Aπ, (…, n).
        log_ref: log π_ref, (…, n).
        tau: τ > 0 (scalar).
        name: the divergence's name ("reverse-kl", "forward-kl", "js", "alpha").
        alpha: α for "alpha" (a scalar, possibly traced).

    Returns:
        log BR_f(π), (…, n).
    """
    f1, sup = fdiv.f_prime_at_one(name), fdiv.f_prime_sup(name, alpha)
    top = jnp.max(scores, axis=-1)
    lo = jnp.maximum(jnp.min(scores, axis=-1) - tau * f1, top - tau * sup)
    hi = top - tau * f1

    def log_terms(lam):
        v = (scores - lam[..., None]) / tau
        inside = v < sup
        return jnp.where(inside, log_ref + fdiv.inverse_log(name, jnp.where(inside, v, f1), alpha, jnp), jnp.inf)

    def halve(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        above = logsumexp(log_terms(mid), axis=-1) > 0  # Σ BR > 1: λ is too small
        return jnp.where(above, mid, lo), jnp.where(above, hi, mid)

    lo, hi = jax.lax.fori_loop(0, 100, halve, (lo, hi))
    return log_softmax(log_terms(hi), axis=-1)


def _f_sum(log_p, p, log_ref, fn, at_zero):
    """Σ_y π_ref(y) fn(log(p_y/π_ref(y))), with fn's limit `at_zero` where p_y = 0."""
    safe = jnp.where(p > 0, log_p - log_ref, 0.0)
    return jnp.sum(jnp.exp(log_ref) * jnp.where(p > 0, fn(safe), at_zero), axis=-1)


def f_divergence(log_p, log_ref, name, alpha=None):
    """D_f(p‖π_ref) = Σ π_ref f(p/π_ref) per context (…)."""
    p = jnp.exp(log_p)
    return _f_sum(log_p, p, log_ref, lambda l: fdiv.f_log(name, l, alpha, jnp), fdiv.f_at_zero(name, alpha))


def _f_gap_and_value(scores, log_p, p, log_ref, tau, divergence):
    """(DualGap_f(p), V_f(p)) per context (τ > 0; the module docstring)."""
    name, alpha = divergence
    log_br = f_best_response(scores, log_ref, tau, name, alpha)
    l_b = log_br - log_ref
    fb, fpb, ub = fdiv.f_log(name, l_b, alpha, jnp), fdiv.f_prime_log(name, l_b, alpha, jnp), jnp.exp(l_b)
    breg = lambda l: fdiv.f_log(name, l, alpha, jnp) - fb - fpb * (jnp.exp(l) - ub)
    gap = 2 * tau * _f_sum(log_p, p, log_ref, breg, jnp.inf if name == "forward-kl" else 0.0)
    if name != "forward-kl":  # at p_y = 0: B_f(0, v) = f(0) − f(v) + f′(v)v
        zero = jnp.sum(jnp.where(p > 0, 0.0, jnp.exp(log_ref) * (fdiv.f_at_zero(name, alpha) - fb + fpb * ub)), -1)
        gap = gap + 2 * tau * zero
    value = jnp.sum(jnp.exp(log_br) * scores, axis=-1) - tau * jnp.sum(jnp.exp(log_ref) * fb, axis=-1)
    return gap, value


class Accumulators(NamedTuple):
    """Running sums over the iterates played so far, π_0..π_t, per context.

    Lemma 2's gradient sum Σ_s g_s = −A Σ_s π_s + τ Σ_s log(π_s/π_ref) (up to constants) is
    linear in these sums, so the loop itself does no matrix product for the metrics.
    """

    plays: jnp.ndarray  # scalar: t + 1
    sum_pi: jnp.ndarray  # (C, n): Σ_s π_s
    sum_kl_ref: jnp.ndarray  # (C,): Σ_s KL(π_s‖π_ref)
    sum_log_ratio: jnp.ndarray  # (C, n): Σ_s log(π_s/π_ref)
    sum_weighted_pi: jnp.ndarray  # (C, n): Σ_s (s + 1) π_s


def accumulate(acc: Accumulators | None, log_pi, log_ref, divergence=None) -> Accumulators:
    """Add the iterate π_t to the running sums over π_0..π_t.

    Args:
        acc: the sums over π_0..π_{t−1}, or None at t = 0 (start them).
        log_pi: log π_t, (C, n).
        log_ref: log π_ref, (C, n).

    Returns:
        The sums over π_0..π_t: plays t + 1, Σ π_s, Σ KL(π_s‖π_ref), Σ log(π_s/π_ref) and
        Σ (s + 1)π_s (π_t with weight t + 1, CFR+'s linear averaging). With `divergence` = (name, α)
        of an f-divergence run, D_f and the shifted f′ of the module docstring in place of KL and log ratio.
    """
    pi = jnp.exp(log_pi)
    if divergence is None:
        div_ref, ratio = kl(log_pi, log_ref), log_pi - log_ref
    else:
        name, alpha = divergence
        div_ref = f_divergence(log_pi, log_ref, name, alpha)
        slope = fdiv.f_prime_log(name, log_pi - log_ref, alpha, jnp)
        ratio = slope - jnp.sum(jnp.where(pi > 0, pi * slope, 0.0), axis=-1, keepdims=True) + div_ref[..., None]
    if acc is None:
        return Accumulators(jnp.ones((), log_pi.dtype), pi, div_ref, ratio, pi)
    return Accumulators(acc.plays + 1, acc.sum_pi + pi, acc.sum_kl_ref + div_ref,
                        acc.sum_log_ratio + ratio, acc.sum_weighted_pi + (acc.plays + 1) * pi)


def _gap_and_value(scores, log_p, p, log_ref, tau, divergence=None):
    """(DualGap_τ(p), V_τ(p)) per context from the scores Ap, sharing one logsumexp: with
    z = log π_ref + Ap/τ, log BR_τ(p) = z − logsumexp(z) and V_τ = τ logsumexp(z) (τ > 0);
    (2 max_y (Ap)_y, max_y (Ap)_y) at τ = 0."""
    positive = tau > 0
    safe_tau = jnp.where(positive, tau, 1.0)
    z = log_ref + scores / safe_tau
    lse = logsumexp(z, axis=-1)
    gap = 2 * safe_tau * jnp.sum(jnp.where(p > 0, p * (log_p - z + lse[..., None]), 0.0), axis=-1)
    top = jnp.max(scores, axis=-1)
    value = safe_tau * lse
    if divergence is not None:
        gap, value = _f_gap_and_value(scores, log_p, p, log_ref, safe_tau, divergence)
    return jnp.where(positive, gap, 2 * top), jnp.where(positive, value, top)


def record(acc: Accumulators, A, log_ref, weights, log_pi, tau, log_pi_star, pi_vn=None, divergence=None) -> dict:
    """Every metric of `METRICS` at the current iterate (the best-iterate ones excepted).

    Three matrix-vector products per record, Aπ_t, Aπ̄_t and Aπ̃_t: A Σ_s π_s = (t + 1) Aπ̄_t, and by
    antisymmetry P(π ≻ q) − 1/2 = πᵀAq = −qᵀAπ for the win rates against π_ref and π*. The
    best-iterate metrics (`BEST`) are running minima over the records, taken by `best_so_far`.

    Args:
        acc: the running sums over π_0..π_t (`accumulate`, π_t included).
        A: the payoff P − 1/2, (C, n, n).
        log_ref: log π_ref, (C, n).
        weights: ρ, the context weights, (C,).
        log_pi: log π_t, (C, n).
        tau: τ ≥ 0, the regularization the gaps, regrets and `kl_to_eq` refer to.
        log_pi_star: log π*, the equilibrium `kl_to_eq` and `winrate_vs_eq` measure against, (C, n).
        pi_vn: the von Neumann winner, (C, n), for the dueling regret (sampled feedback), or None.
        divergence: (name, α) of an f-divergence run (the module docstring), or None for KL.

    Returns:
        Metric name → scalar, ρ-weighted over contexts; those in NONNEGATIVE clipped at 0.

    References:
        INPO (Zhang et al. 2024) eq. 3 (the gaps), §3.1 and Theorem 3 (the regret), Lemma 2 (the
        linearized regret); the closed forms are derived in this module's docstring.
    """
    T = acc.plays
    pi = jnp.exp(log_pi)
    avg, wavg = acc.sum_pi / T, acc.sum_weighted_pi / (T * (T + 1) / 2)
    scores, avg_scores, wavg_scores = matvec(A, pi), matvec(A, avg), matvec(A, wavg)
    gap_reg, _ = _gap_and_value(scores, log_pi, pi, log_ref, tau, divergence)
    gap_reg_avg, value_avg = _gap_and_value(avg_scores, jnp.log(avg), avg, log_ref, tau, divergence)
    gap_reg_wavg, _ = _gap_and_value(wavg_scores, jnp.log(wavg), wavg, log_ref, tau, divergence)
    per_context = {
        "gap_reg": gap_reg,
        "gap_reg_avg": gap_reg_avg,
        "gap": 2 * jnp.max(scores, axis=-1),
        "gap_avg": 2 * jnp.max(avg_scores, axis=-1),
        "gap_reg_wavg": gap_reg_wavg,
        "gap_wavg": 2 * jnp.max(wavg_scores, axis=-1),
        "kl_to_eq": kl(log_pi_star, log_pi),
        "kl_to_ref": kl(log_pi, log_ref),
        "regret": T * value_avg + tau * acc.sum_kl_ref,
        "linear_regret": tau * acc.sum_kl_ref - jnp.min(-T * avg_scores + tau * acc.sum_log_ratio, axis=-1),
        "winrate_vs_ref": 0.5 - jnp.sum(jnp.exp(log_ref) * scores, axis=-1),
        "winrate_vs_eq": 0.5 - jnp.sum(jnp.exp(log_pi_star) * scores, axis=-1),
        "support": jnp.sum(pi >= 1e-9, axis=-1).astype(pi.dtype),
    }
    if divergence is not None:  # an iterate with π_y = 0 (a run blown up by too large an η): f′(0) = −∞, and for
        # forward KL D_f = ∞ too, whose ∞ − ∞ is the linearized regret's unbounded value, not a NaN
        per_context["linear_regret"] = jnp.where(jnp.isnan(per_context["linear_regret"]), jnp.inf,
                                                 per_context["linear_regret"])
    if pi_vn is not None:
        per_context["dueling_regret"] = T * jnp.sum(pi_vn * avg_scores, axis=-1)
    out = {name: jnp.dot(weights, value) for name, value in per_context.items()}
    return {name: jnp.maximum(v, 0.0) if name in NONNEGATIVE else v for name, v in out.items()}


def best_so_far(metrics: dict) -> dict:
    """`metrics` (arrays whose last axis is every record from π_0 on) with the best-iterate metrics
    added: the running minimum of each `BEST` source over the records."""
    return {**metrics, **{name: np.minimum.accumulate(np.asarray(metrics[source]), axis=-1)
                          for name, source in BEST.items()}}
