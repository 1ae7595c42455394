r"""f-divergence regularizers: the f-regularized preference game, its best response and duality gap.

Source: Wang, Jiang, Yang, Liu, Chen 2023, "Beyond Reverse KL: Generalizing Direct Preference
Optimization with Diverse Divergence Constraints" (f-DPO, arXiv 2309.16240): D_f(p‖q) = Σ_y q_y f(p_y/q_y)
with f convex, f(1) = 0, and their four regularizers (their table of f and f′):

    reverse KL   f(u) = u log u                                 f′(u) = log u + 1          (range ℝ)
    forward KL   f(u) = −log u                                  f′(u) = −1/u               (range (−∞, 0))
    JS           f(u) = u log u − (u + 1) log((u + 1)/2)        f′(u) = log(2u/(1 + u))    (range (−∞, log 2))
    α, 0<α<1     f(u) = (u^{1−α} − (1−α)u − α)/(α(α − 1))       f′(u) = (1 − u^{−α})/α     (range (−∞, 1/α))

The game (derived here; the paper regularizes a single policy against a fixed reward): with A = P − 1/2,

    J(π₁, π₂) = π₁ᵀPπ₂ − τ D_f(π₁‖π_ref) + τ D_f(π₂‖π_ref),   π₁ maximizing.

Best response. max_p pᵀAπ − τ D_f(p‖π_ref) over the simplex is strictly concave; its KKT conditions
are (Aπ)_y − τ f′(p_y/π_ref(y)) = λ − μ_y, μ ≥ 0, μ_y p_y = 0. All four f have f′(0⁺) = −∞, so
every p_y > 0 (μ = 0) and

    BR_f(π)_y = π_ref(y) · (f′)⁻¹(((Aπ)_y − λ)/τ),   λ the root of Σ_y BR_f(π)_y = 1,

a 1-D root that is unique because (f′)⁻¹ is increasing (f strictly convex): the sum falls strictly in
λ. It lies in [min_y (Aπ)_y − τ f′(1), max_y (Aπ)_y − τ f′(1)] (at the ends every argument is ≥ f′(1),
resp. ≤ f′(1), so every ratio is ≥ 1, resp. ≤ 1), and above max_y (Aπ)_y − τ sup f′ where the range of
f′ is bounded. Reverse KL gives λ = τ log Σ π_ref e^{Aπ/τ} − τ and BR_f = softmax(log π_ref + Aπ/τ).

Equilibrium. J is symmetric (A skew), so the unique equilibrium is symmetric, π = BR_f(π):

    (Aπ)_y − τ f′(π_y/π_ref(y)) = λ   for every y (interior, by f′(0⁺) = −∞).

Duality gap. With πᵀAπ = 0 and min_q J(π, q) = 1 − max_q [qᵀPπ − τ D_f(q)] − τ D_f(π),

    DualGap_f(π) = max_p J(p, π) − min_q J(π, q) = 2 max_p [pᵀAπ − τ D_f(p‖π_ref)] + 2τ D_f(π‖π_ref).

Writing p* = BR_f(π) and using its KKT condition (Aπ = τ f′(p*/π_ref) + λ, Σ(p* − π) = 0) gives the
computed form, a sum of non-negative terms (accurate near the equilibrium):

    DualGap_f(π) = 2τ Σ_y π_ref(y) B_f(π_y/π_ref(y), p*_y/π_ref(y)),   B_f(u, v) = f(u) − f(v) − f′(v)(u − v),

the Bregman divergence of D_f. For reverse KL, B summed is KL(π‖p*): the KL closed form 2τ KL(π‖BR_τ(π))
of `gamesim.core.metrics`.

Log-ratio form. The dynamics work in log-space, so f′ is also given as a function of ℓ = log(p/π_ref)
(`f_prime_log`), with h(ℓ) = d f′/dℓ = u f″(u) > 0 (`f_prime_log_slope`, Newton's Jacobian) and the inverse
ℓ = log (f′)⁻¹(v) (`inverse_log`); each takes an array module `xp` (numpy or jax.numpy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from gamesim.core.errors import GamesimError

DIVERGENCES = ("reverse-kl", "forward-kl", "js", "alpha")
"""The divergence names `Divergence` takes (`divergence=` of `solve`, `duality_gap`)."""


@dataclass(frozen=True)
class Divergence:
    """An f-divergence regularizer D_f(p‖q) = Σ q f(p/q) of f-DPO's table (see the module docstring).

    Args:
        name: "reverse-kl" (gamesim's default KL), "forward-kl", "js" (Jensen-Shannon) or "alpha".
        alpha: α in (0, 1) for "alpha" (None otherwise).

    References:
        Wang et al. 2023 (f-DPO, arXiv 2309.16240), the f and f′ of their four divergences.
    """

    name: str
    alpha: float | None = None

    def __post_init__(self):
        if self.name not in DIVERGENCES:
            raise GamesimError(f"unknown divergence {self.name!r}; choose from {', '.join(DIVERGENCES)}")
        if self.name == "alpha":
            a = self.alpha
            if not (isinstance(a, (int, float)) and not isinstance(a, bool) and math.isfinite(a) and 0 < a < 1):
                raise GamesimError(f"the alpha-divergence needs alpha in (0, 1) (f-DPO's range), got {a!r}")
            object.__setattr__(self, "alpha", float(a))
        elif self.alpha is not None:
            raise GamesimError(f"alpha belongs to the 'alpha' divergence only, not {self.name!r}; drop it")

    @property
    def label(self) -> str:
        """The name, with α for the α-divergence ("alpha=0.5")."""
        return f"alpha={self.alpha:g}" if self.name == "alpha" else self.name

    def f(self, u):
        """f(u), u = p/q ≥ 0 (numpy)."""
        u = np.asarray(u, float)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(u > 0, f_log(self.name, np.log(np.where(u > 0, u, 1.0)), self.alpha),
                            f_at_zero(self.name, self.alpha))

    def f_prime(self, u):
        """f′(u) (numpy), u > 0."""
        return self.f_prime_log(np.log(np.asarray(u, float)))

    def f_prime_log(self, log_u, xp=np):
        """f′(e^ℓ) as a function of ℓ = log u, in the array module `xp`."""
        return f_prime_log(self.name, log_u, self.alpha, xp)

    def f_prime_log_slope(self, log_u, xp=np):
        """h(ℓ) = d f′(e^ℓ)/dℓ = u f″(u) > 0: 1, e^{−ℓ}, 1/(1 + e^ℓ), e^{−αℓ}."""
        if self.name == "reverse-kl":
            return xp.ones_like(log_u)
        if self.name == "forward-kl":
            return xp.exp(-log_u)
        if self.name == "js":
            return 1.0 / (1.0 + xp.exp(log_u))
        return xp.exp(-self.alpha * log_u)

    @property
    def f_prime_at_one(self) -> float:
        """f′(1): 1 for reverse KL, −1 for forward KL, 0 for JS and α."""
        return f_prime_at_one(self.name)

    @property
    def f_prime_sup(self) -> float:
        """sup of f′'s range: ∞, 0, log 2, 1/α."""
        return f_prime_sup(self.name, self.alpha)

    def inverse_log(self, v, xp=np):
        """ℓ = log (f′)⁻¹(v), for v below `f_prime_sup` (numpy or `xp`)."""
        return inverse_log(self.name, v, self.alpha, xp)

    def bregman(self, u, v):
        """B_f(u, v) = f(u) − f(v) − f′(v)(u − v) ≥ 0 (numpy), v > 0."""
        u, v = np.asarray(u, float), np.asarray(v, float)
        return self.f(u) - self.f(v) - self.f_prime(v) * (u - v)

    def value(self, p, q) -> float:
        """D_f(p‖q) = Σ q f(p/q) for distributions p, q (q > 0)."""
        p, q = np.asarray(p, float), np.asarray(q, float)
        return float(np.sum(q * self.f(p / q)))


def f_log(name: str, log_u, alpha, xp=np):
    """f(e^ℓ) for the divergence `name` (α: `alpha`, possibly a traced array), in array module `xp`:
    ℓe^ℓ, −ℓ, ℓe^ℓ − (e^ℓ + 1) log((e^ℓ + 1)/2), (e^{(1−α)ℓ} − (1−α)e^ℓ − α)/(α(α − 1))."""
    if name == "reverse-kl":
        return log_u * xp.exp(log_u)
    if name == "forward-kl":
        return -log_u
    if name == "js":
        u = xp.exp(log_u)
        return log_u * u - (u + 1) * (xp.logaddexp(0.0, log_u) - math.log(2.0))
    return (xp.exp((1 - alpha) * log_u) - (1 - alpha) * xp.exp(log_u) - alpha) / (alpha * (alpha - 1))


def f_at_zero(name: str, alpha):
    """f(0⁺): 0, ∞, log 2, 1/(1 − α)."""
    return {"reverse-kl": 0.0, "forward-kl": math.inf, "js": math.log(2.0)}.get(name, None) if name != "alpha" \
        else 1.0 / (1.0 - alpha)


def f_prime_log(name: str, log_u, alpha, xp=np):
    """f′(e^ℓ) for the divergence `name` (α: `alpha`, possibly a traced array), in array module `xp`:
    ℓ + 1, −e^{−ℓ}, log 2 − log(1 + e^{−ℓ}), (1 − e^{−αℓ})/α."""
    if name == "reverse-kl":
        return log_u + 1.0
    if name == "forward-kl":
        return -xp.exp(-log_u)
    if name == "js":
        return math.log(2.0) - xp.logaddexp(0.0, -log_u)
    return -xp.expm1(-alpha * log_u) / alpha


def f_prime_at_one(name: str) -> float:
    """f′(1): 1 for reverse KL, −1 for forward KL, 0 for JS and α."""
    return {"reverse-kl": 1.0, "forward-kl": -1.0}.get(name, 0.0)


def f_prime_sup(name: str, alpha):
    """sup of f′'s range: ∞, 0, log 2, 1/α (an array when α is)."""
    return {"reverse-kl": math.inf, "forward-kl": 0.0, "js": math.log(2.0)}[name] if name != "alpha" else 1.0 / alpha


def inverse_log(name: str, v, alpha, xp=np):
    """ℓ = log (f′)⁻¹(v), v below `f_prime_sup`: v − 1, −log(−v), v − log(2 − e^v), −log(1 − αv)/α."""
    if name == "reverse-kl":
        return v - 1.0
    if name == "forward-kl":
        return -xp.log(-v)
    if name == "js":
        return v - xp.log(2.0 - xp.exp(v))
    return -xp.log1p(-alpha * v) / alpha


REVERSE_KL = Divergence("reverse-kl")


def as_divergence(divergence=None, alpha: float | None = None) -> Divergence:
    """A `Divergence` from a Divergence, a name (with `alpha` for "alpha"), or None (reverse KL)."""
    if divergence is None:
        divergence = "reverse-kl"
    if isinstance(divergence, Divergence):
        if alpha is not None:
            raise GamesimError("give alpha inside the Divergence, not beside it")
        return divergence
    if not isinstance(divergence, str):
        raise GamesimError(f"divergence must be a name ({', '.join(DIVERGENCES)}) or a Divergence, "
                           f"got {type(divergence).__name__}")
    return Divergence(divergence, alpha)


def best_response_log(scores, log_ref, tau: float, divergence: Divergence) -> np.ndarray:
    """log BR_f(π) = log π_ref + log (f′)⁻¹((s − λ)/τ) for scores s = Aπ (one context, numpy): λ by
    bisection to adjacent floats on log Σ BR = 0 (in log space, so that probabilities below float64's
    range keep a finite log), then normalized.

    Args:
        scores: (Aπ)_y, (n,).
        log_ref: log π_ref, (n,).
        tau: τ > 0.
        divergence: the regularizer.

    Returns:
        log BR_f(π), (n,).
    """
    s = np.asarray(scores, float)
    lo = max(s.min() - tau * divergence.f_prime_at_one, s.max() - tau * divergence.f_prime_sup)
    hi = s.max() - tau * divergence.f_prime_at_one

    def log_terms(lam):
        v = (s - lam) / tau
        inside = v < divergence.f_prime_sup
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            return np.where(inside, log_ref + divergence.inverse_log(np.where(inside, v, 0.0)), np.inf)

    scale = 4 * np.finfo(float).eps * (np.abs(s).max() + tau * (1 + abs(divergence.f_prime_at_one)))
    for _ in range(200):  # halvings to a few roundings of the scores' scale (about 60)
        mid = 0.5 * (lo + hi)
        if not lo < mid < hi or hi - lo <= scale:
            break
        if logsumexp(log_terms(mid)) > 0:
            lo = mid
        else:
            hi = mid
    t = log_terms(hi)
    return t - logsumexp(t)


def best_response(scores, log_ref, tau: float, divergence: Divergence) -> np.ndarray:
    """BR_f(π) = π_ref (f′)⁻¹((s − λ)/τ) for scores s = Aπ (one context, numpy): `best_response_log`."""
    return np.exp(best_response_log(scores, log_ref, tau, divergence))


def duality_gap_f(A, log_ref, pi, tau: float, divergence: Divergence) -> float:
    """DualGap_f(π) = 2τ Σ π_ref B_f(π/π_ref, BR_f(π)/π_ref) for one context (numpy; module docstring).
    A response with π_y = 0 contributes B_f(0, v) = f(0) − f(v) + f′(v)v (∞ for forward KL); one where
    BR_f underflows to 0 as well contributes 0 (both ratios are 0 in float64)."""
    ref = np.exp(log_ref)
    log_star = best_response_log(A @ pi, log_ref, tau, divergence)
    u, v = pi / ref, np.exp(log_star - log_ref)
    both_zero = (u == 0) & (v == 0)
    fv = f_log(divergence.name, log_star - log_ref, divergence.alpha)
    fpv = divergence.f_prime_log(log_star - log_ref)
    with np.errstate(invalid="ignore", over="ignore"):
        terms = divergence.f(u) - fv - fpv * (u - v)
    return max(2 * tau * float(np.sum(np.where(both_zero, 0.0, ref * terms))), 0.0)
