r"""The papers' bounds, as functions, in gamesim's learning-rate convention.

Every bound is written with η the learning rate; where a paper uses the inverse convention
(INPO: η_INPO = 1/η) the conversion is done here once and stated. t counts updates from π_0.
"""

from __future__ import annotations

import numpy as np


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
