r"""Exact (full-information) self-play updates, one pure function each, in log-probabilities.

Step-size convention: η is a learning rate everywhere in gamesim (the exponent is ηPπ). INPO, DNO
and COMAL write an *inverse* learning rate (exponent P/η_INPO, KL weight τ/η_INPO); SPPO writes
β = 1/η. Convert at the boundary with the helpers below. Every update takes and returns (C, n)
log-policies, one row per context, and uses A = P − 1/2 in place of P: the two differ by the
constant η/2 in the exponent, which the normalization removes.

An `Algorithm` is (init, step, log_policy) over a state pytree, so that methods with memory
(optimistic, extragradient, reference refreshes) fit the same engine; the updates here are
stateless and their state is the log-policy itself.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Callable

import jax.numpy as jnp
from jax.nn import log_softmax

from .errors import GamesimError
from .metrics import matvec


def omd_update(log_pi, A, log_ref, eta, tau):
    r"""KL-regularized online mirror descent, which is INPO's closed-form update.

    INPO (Zhang et al. 2024) eq. 5, inverse convention η_INPO = 1/η:
        π_{t+1}(y) ∝ exp(P(y ≻ π_t)/η_INPO) π_ref(y)^{τ/η_INPO} π_t(y)^{1 − τ/η_INPO};
    learning-rate form (NLHF's OMD, Munos et al. 2023 eqs. 7–8):
        log π_{t+1} = (1 − ητ) log π_t + ητ log π_ref + η Pπ_t − log Z.
    τ = 0 is Hedge / multiplicative weights. Valid for η > 0 and 0 ≤ ητ ≤ 1.
    """
    return log_softmax((1 - eta * tau) * log_pi + eta * tau * log_ref
                       + eta * matvec(A, jnp.exp(log_pi)), axis=-1)


def nash_md_update(log_pi, A, log_ref, eta, tau):
    r"""Nash-MD (Munos et al. 2023, eqs. 3–4), learning-rate convention as in the paper.

    Geometric mixture π^μ_t ∝ π_t^{1−ητ} π_ref^{ητ} (eq. 3), then the mirror step against it:
        π_{t+1}(y) ∝ π^μ_t(y) exp(η P(y ≻ π^μ_t))   (eq. 4).
    Theorem 1 uses η_t = 2/(τ(t+2)) (`schedule="theorem"`); with a constant η the iteration
    converges to a biased point (Calandriello et al. 2024 eq. 13 with β = ητ). Valid for η > 0, 0 ≤ ητ ≤ 1.
    """
    log_mix = log_softmax((1 - eta * tau) * log_pi + eta * tau * log_ref, axis=-1)
    return log_softmax(log_mix + eta * matvec(A, jnp.exp(log_mix)), axis=-1)


def sppo_update(log_pi, A, log_ref, eta, tau):
    r"""SPPO (Wu et al. 2024) eq. 4.1: π_{t+1}(y) ∝ π_t(y) exp(η P(y ≻ π_t)).

    Hedge without KL to π_ref: `log_ref` and `tau` do not enter (τ only sets which game the
    metrics measure). SPPO's paper writes β = 1/η (their eq. 4.6 uses η directly; their runs
    report β = 1e-3, i.e. η = 1e3). Valid for η > 0.
    """
    return log_softmax(log_pi + eta * matvec(A, jnp.exp(log_pi)), axis=-1)


# --- step-size converters ------------------------------------------------------------------------
def eta_from_inverse(eta_inverse: float) -> float:
    """gamesim's learning rate from INPO's / DNO's / COMAL's inverse learning rate: η = 1/η_INPO."""
    return 1.0 / eta_inverse


def eta_to_inverse(eta: float) -> float:
    """INPO's / DNO's / COMAL's inverse learning rate from gamesim's η: η_INPO = 1/η."""
    return 1.0 / eta


def eta_from_sppo_beta(beta: float) -> float:
    """gamesim's η from SPPO's β (their loss uses β = 1/η): η = 1/β."""
    return 1.0 / beta


def eta_to_sppo_beta(eta: float) -> float:
    """SPPO's β from gamesim's η: β = 1/η."""
    return 1.0 / eta


def theorem_schedule(tau: float, t):
    """η_t = 2/(τ(t+2)), t = 0, 1, …: Nash-MD Theorem 1 and INPO Theorem 4 (η_0 τ = 1)."""
    return 2.0 / (tau * (t + 2))


# --- registry --------------------------------------------------------------------------------------
def _identity(x, *_):
    return x


@dataclass(frozen=True)
class Algorithm:
    """A self-play method for the engine.

    init(log_pi0, A, log_ref) → state; step(state, A, log_ref, eta, tau) → state;
    log_policy(state) → (C, n) log-policy. `kl_bounded` says the update needs ητ ≤ 1;
    `schedules` lists the step-size schedules it accepts.
    """

    name: str
    step: Callable
    citation: str
    converges_to: str
    kl_bounded: bool = True
    schedules: tuple = ("constant", "theorem")
    init: Callable = _identity
    log_policy: Callable = _identity

    def check(self, eta, tau: float, schedule: str) -> None:
        """Raise GamesimError unless (η, τ, schedule) is in this algorithm's valid range."""
        if schedule not in self.schedules:
            raise GamesimError(f"{self.name} takes schedule {' or '.join(map(repr, self.schedules))}, "
                               f"not {schedule!r}")
        if schedule == "theorem":
            if eta is not None:
                raise GamesimError("schedule 'theorem' sets η_t = 2/(τ(t+2)) itself; do not also give eta")
            if not tau > 0:
                raise GamesimError("schedule 'theorem' (η_t = 2/(τ(t+2))) needs tau > 0")
            return
        if eta is None:
            raise GamesimError(f"{self.name} needs a learning rate eta (or schedule='theorem')")
        if not (eta > 0 and math.isfinite(eta)):
            raise GamesimError(f"the learning rate eta must be a finite number > 0, got {eta}")
        if self.kl_bounded and eta * tau > 1:
            raise GamesimError(
                f"{self.name} needs eta·tau ≤ 1 (the weight 1 − ητ on log π_t must be ≥ 0); got "
                f"eta={eta}, tau={tau}, eta·tau={eta * tau:g}. Use eta ≤ {1 / tau:g}. If your eta is "
                "INPO's inverse learning rate, convert it: eta = 1/eta_INPO")


ALGORITHMS: dict[str, Algorithm] = {
    "omd": Algorithm("omd", omd_update, "INPO eq. 5; NLHF eqs. 7–8", "π*_τ (last iterate; average for τ = 0)"),
    "inpo": Algorithm("inpo", omd_update, "INPO (Zhang et al. 2024) eq. 5; loss eqs. 7–8",
                      "π*_τ (last iterate)"),
    "nash-md": Algorithm("nash-md", nash_md_update, "Nash-MD (Munos et al. 2023) eqs. 3–4",
                         "π*_τ with schedule 'theorem'; a biased point with constant η"),
    "sppo": Algorithm("sppo", sppo_update, "SPPO (Wu et al. 2024) eq. 4.1",
                      "von Neumann winner (average iterate only)", kl_bounded=False,
                      schedules=("constant",)),
}


def get_algorithm(name) -> Algorithm:
    """The algorithm called `name` (or `name` itself if it is an Algorithm)."""
    if isinstance(name, Algorithm):
        return name
    if name not in ALGORITHMS:
        close = difflib.get_close_matches(str(name), list(ALGORITHMS), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise GamesimError(f"unknown algorithm {name!r}{hint}; choose from {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]
