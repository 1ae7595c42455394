r"""The papers' bounds, as functions, in gamesim's learning-rate convention.

Every bound is written with η the learning rate; where a paper uses the inverse convention
(INPO: η_INPO = 1/η) the conversion is done here once and stated. t counts updates from π_0.
"""

from __future__ import annotations

import jax
import numpy as np
import scipy.linalg
from jax.flatten_util import ravel_pytree
from scipy.special import log_softmax

from gamesim.core.equilibria import solve


def inpo_regret_bound(t_plays, eta, tau, D, B):
    r"""INPO Lemma 2's proof: Reg_T ≤ η_INPO D + (4τ²B² + 1) T/η_INPO, i.e. with η = 1/η_INPO

        Reg_T ≤ D/η + (4τ²B² + 1) η T,

    D = max_π KL(π‖π_1) = log(1/min π_1), B ≥ |log(π_t/π_ref)| over the iterates (Assumption A).
    Holds for any constant η; the theorem's choice η_INPO = max(Bτ, 1)√T/√D gives O(√(TD)).
    """
    return D / eta + (4 * tau ** 2 * B ** 2 + 1) * eta * t_plays


def inpo_theorem3_bound(t_plays, eta, tau, D, B):
    r"""INPO Theorem 3: DualGap_τ(π̄_T) ≤ 2 Reg_T / T ≤ 2[D/(ηT) + (4τ²B² + 1)η]."""
    return 2 * inpo_regret_bound(t_plays, eta, tau, D, B) / t_plays


def inpo_theorem3_eta(T, tau, D, B):
    r"""The theorem's step: η_INPO = max(Bτ, 1)√T/√D, so η = √D / (max(Bτ, 1)√T)."""
    return np.sqrt(D) / (max(B * tau, 1.0) * np.sqrt(T))


def inpo_theorem4_step(kl_t, eta, tau, B):
    r"""INPO Theorem 4's recursion: KL(π*, π_{t+1}) ≤ (1 − τ/η_INPO) KL(π*, π_t) + 8C²/η_INPO²,
    C = max(Bτ, 1); with η = 1/η_INPO: (1 − ητ) KL_t + 8C²η² (needs ητ ≤ 1)."""
    C = np.maximum(B * tau, 1.0)
    return (1 - eta * tau) * kl_t + 8 * C ** 2 * eta ** 2


def inpo_theorem4_rate(t, tau, B):
    r"""INPO Theorem 4 with η_t = 2/(τ(t+2)) (η_INPO,t = τ(t+2)/2): KL(π*, π_T) ≤ 32C²/(τ²(T+1))."""
    C = np.maximum(B * tau, 1.0)
    return 32 * C ** 2 / (tau ** 2 * (t + 1))


def nash_md_step(kl_t, eta, tau):
    r"""Nash-MD Theorem 1 (Munos et al. 2023, eq. 6): KL(π*_τ, π_{t+1}) ≤ (1 − ητ) KL(π*_τ, π_t) + 2η²."""
    return (1 - eta * tau) * kl_t + 2 * eta ** 2


def nash_md_rate(t, tau):
    r"""Nash-MD Theorem 1 with η_t = 2/(τ(t+2)): KL(π*_τ, π_T) ≤ 8/(τ²(T+1))."""
    return 8 / (tau ** 2 * (t + 1))


def hedge_average_gap_bound(t_plays, eta, D):
    r"""SPPO Theorem 4.1 through Freund & Schapire (1999): Hedge on the gains Pπ_t ∈ [0, 1]^n has
    regret ≤ D/η + ηT/8 (Hoeffding's lemma; D = log(1/min π_0), log n from uniform), and in
    self-play DualGap_0(π̄_T) = 2 max_y (Aπ̄_T)_y = 2 Regret_T / T (derived: Σ_t π_tᵀPπ_t = T/2), so

        DualGap_0(π̄_T) ≤ 2(D/(ηT) + η/8).
    """
    return 2 * (D / (eta * t_plays) + eta / 8)


def mmd_rate(t, eta, alpha, kl_0):
    r"""MMD Theorem 3.4 (Sokota et al. 2023): for η ≤ α/L², B_ψ(z*; z_{t+1}) ≤ (1 + ηα)^{−t} B_ψ(z*; z_1).
    In self-play both players' Bregman terms are KL(π*‖π_t), so KL(π*‖π_t) ≤ (1 + ηα)^{−t} KL(π*‖π_0)."""
    return kl_0 * (1 + eta * alpha) ** (-np.asarray(t, dtype=float))


def mmd_max_eta(alpha, A):
    r"""MMD's step condition η ≤ α/L², L = max_ij |A_ij| (Prop. 2.4: F is max|A|-smooth for
    two-player zero-sum normal-form games; P and A = P − 1/2 give the same F on the simplex)."""
    return alpha / np.abs(A).max() ** 2


# --- a-priori constants ------------------------------------------------------------------------------
def assumption_a_bound(game, tau: float, log_pi0=None) -> float:
    r"""A bound on INPO's Assumption A constant B ≥ |log(π_t/π_ref)| that holds before the run, for
    OMD/INPO and Nash-MD with η_tτ ≤ 1 (derived):

        B = max(osc(log(π_0/π_ref)), ω/τ),   ω = max_{y,y',z} (A_{yz} − A_{y'z}) ≤ 1,

    osc(v) = max v − min v. Each step writes d_{t+1} = (1 − η_tτ)d_t + η_t s_t − log Z_t with scores
    s_t = Aπ_t (Nash-MD: Aπ^μ_t), osc(s_t) ≤ ω, so osc(d_{t+1}) ≤ (1 − η_tτ)osc(d_t) + η_tω never
    exceeds max(osc(d_0), ω/τ); and |d_t| ≤ osc(d_t) because Σ π_ref e^{d_t} = 1 puts 0 between
    min d_t and max d_t. From π_0 = π_ref, Bτ = ω ≤ 1, so INPO's C = max(Bτ, 1) is 1.
    """
    A = game.payoff
    omega = float(np.max(A.max(axis=1) - A.min(axis=1)))
    log_ref = np.log(game.stacked_reference)
    d0 = 0.0 if log_pi0 is None else float(np.max(np.ptp(np.asarray(log_pi0) - log_ref, axis=-1)))
    return max(d0, omega / tau)


def omd_max_eta(tau, A):
    r"""The largest OMD/INPO step for which the MMD step condition η_m ≤ τ/L² holds at η_m =
    η/(1 − ητ): η = η_m/(1 + η_mτ) with η_m = τ/L², L = max|A|. There (gamesim's derivation: OMD at
    η is MMD at η_m, whose Theorem 3.4 contracts by 1/(1 + η_mτ) = 1 − ητ)
    KL(π*_τ‖π_t) ≤ (1 − ητ)^t KL(π*_τ‖π_0)."""
    eta_m = mmd_max_eta(tau, A)
    return eta_m / (1 + eta_m * tau)


def extragradient_max_eta(tau, A):
    r"""Cen, Wei & Chi (2021) Theorem 1's step condition for the predictive update (EGPO's tabular
    step): η ≤ 1/(τ + 2‖A‖_∞), ‖A‖_∞ = max|A_ij| (≤ 1/2 for a preference game), under which
    KL(π*_τ‖π_t) ≤ (1 − ητ)^t KL(π*_τ‖π_0) (entropy replaced by KL to π_ref; in self-play both
    players' KL are equal)."""
    return 1.0 / (tau + 2 * np.abs(A).max())


def nash_md_constant_bound(t, eta, tau, kl_0):
    r"""NLHF Theorem 1's recursion KL_{t+1} ≤ (1 − ητ)KL_t + 2η² unrolled at a constant η (ητ ≤ 1):
    KL(π*_τ‖π_t) ≤ (1 − ητ)^t KL_0 + (2η/τ)(1 − (1 − ητ)^t)."""
    q = (1 - eta * tau) ** np.asarray(t, dtype=float)
    return q * kl_0 + 2 * eta / tau * (1 - q)


# --- exact predictions ---------------------------------------------------------------------------------
def mixture_limit(game, tau: float, beta: float) -> np.ndarray:
    r"""The stationary point of IPO-MD and Nash-MD-PG (Calandriello et al. 2024, eq. 13),
    π ∝ π_ref exp(Pπ'/τ) with π' ∝ π^{1−β}π_ref^β, found without iterating: by their Prop. 5.2
    π' is the regularized equilibrium at temperature τ/(1 − β), so π = softmax(log π_ref + Aπ*_{τ/(1−β)}/τ).
    Constant-step Nash-MD converges to the same point with β = ητ (gamesim's derivation: its
    fixed point satisfies log π = (1 − ητ) log π + ητ log π_ref + ηAπ^μ − c, i.e. eq. 13)."""
    if not 0 <= beta < 1:
        raise ValueError(f"the mixture weight β must be in [0, 1), got {beta}")
    mix = game.stack_policy(solve(game, tau / (1 - beta)).policy)
    logits = np.log(game.stacked_reference) + np.einsum("cij,cj->ci", game.payoff, mix) / tau
    return game.unstack(np.exp(log_softmax(logits, axis=-1)))


def local_rate(step, state, A, log_ref, eta, tau, params=None):
    r"""(ρ, u): the spectral radius ρ of the Jacobian J = ∂step/∂state at a fixed point `state`
    (any pytree of arrays; t = 0 and constant η), and a left eigenvector u of its dominant
    eigenvalue λ. Near the fixed point the error e_t = state_t − state* obeys e_{t+1} ≈ Je_t, so the
    dominant mode z_t = uᴴe_t obeys z_{t+1} ≈ λz_t: |z_t| shrinks by exactly ρ per step, the
    asymptotic linear rate (derived: linearization). J is computed by JAX's autodiff of `step`.
    Directions that leave the normalized log-policies (adding a constant to log π) are mapped to
    eigenvalue 0, so they never set ρ.
    """
    with jax.enable_x64(True):
        flat, unravel = ravel_pytree(jax.tree_util.tree_map(jax.numpy.asarray, state))
        A, log_ref = jax.numpy.asarray(A), jax.numpy.asarray(log_ref)

        def f(x):
            return ravel_pytree(step(unravel(x), A, log_ref, eta, tau, 0.0, params or {}))[0]

        J = np.asarray(jax.jacobian(f)(flat))
    w, left = scipy.linalg.eig(J, left=True, right=False)
    i = int(np.argmax(np.abs(w)))
    return float(np.abs(w[i])), left[:, i]
