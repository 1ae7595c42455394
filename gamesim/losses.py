r"""The practical losses whose minimizers the papers' updates are, for tabular log-policies.

All take log-policies of one context, shape (n,) (vmap over contexts or batches), and index
arrays of responses; `weights` (default uniform) turn a sum over listed pairs into an expectation,
which is how the population losses are written. η is gamesim's learning rate (see algorithms.py).
"""

from __future__ import annotations

import jax.numpy as jnp


def inpo_h(log_pi, log_pi_t, log_ref, eta, tau, y, y2):
    r"""INPO §3.2's h_t(π, y, y') in learning-rate form (the paper's τ/η_INPO is ητ here):

        h_t = log π(y)/π(y') − ητ log π_ref(y)/π_ref(y') − (1 − ητ) log π_t(y)/π_t(y').
    """
    def diff(v):
        return v[y] - v[y2]

    return diff(log_pi) - eta * tau * diff(log_ref) - (1 - eta * tau) * diff(log_pi_t)


def _mean(values, weights):
    return jnp.mean(values) if weights is None else jnp.sum(weights * values) / jnp.sum(weights)


def inpo_loss(log_pi, log_pi_t, log_ref, eta, tau, winners, losers, weights=None):
    r"""INPO eq. 8 on preference data (y_w, y_l): mean of (h_t(π, y_w, y_l) − η/2)².

    The paper's target 1/(2η_INPO) is η/2 in gamesim's convention. Minimized over π, the
    population version (`inpo_population_loss`) gives exactly the OMD step (INPO Lemma 5, Prop. 6).
    """
    h = inpo_h(log_pi, log_pi_t, log_ref, eta, tau, winners, losers)
    return _mean((h - eta / 2) ** 2, weights)


def _all_pairs(n):
    i, j = jnp.meshgrid(jnp.arange(n), jnp.arange(n), indexing="ij")
    return i.ravel(), j.ravel()


def inpo_population_loss(log_pi, log_pi_t, log_ref, A, eta, tau):
    r"""INPO eq. 8 in expectation: y, y' ~ π_t i.i.d., (y_w, y_l) = (y, y') with probability P(y ≻ y').

    The ordered pair (i, j) then has weight π_t(i) π_t(j) P[i, j]; A = P − 1/2.
    """
    i, j = _all_pairs(log_pi.shape[-1])
    pi_t = jnp.exp(log_pi_t)
    weights = pi_t[i] * pi_t[j] * (0.5 + A[i, j])
    return inpo_loss(log_pi, log_pi_t, log_ref, eta, tau, i, j, weights)


def inpo_regression_loss(log_pi, log_pi_t, log_ref, A, eta, tau):
    r"""INPO eq. 7: E_{y,y'~π_t}[(h_t(π, y, y') − η(P(y ≻ π_t) − P(y' ≻ π_t)))²] (exact win rates)."""
    i, j = _all_pairs(log_pi.shape[-1])
    pi_t = jnp.exp(log_pi_t)
    win = A @ pi_t  # P(y ≻ π_t) − 1/2
    h = inpo_h(log_pi, log_pi_t, log_ref, eta, tau, i, j)
    return _mean((h - eta * (win[i] - win[j])) ** 2, pi_t[i] * pi_t[j])


def sppo_loss(log_pi, log_pi_t, eta, responses, win_rates, weights=None, log_partition=None):
    r"""SPPO's squared loss: mean of (log π(y)/π_t(y) − (η P̂(y ≻ π_t) − log Z))².

    With the exact log Z = log Σ_y π_t(y) e^{ηP(y≻π_t)} this is eq. 4.4, whose minimizer is the
    update of eq. 4.1; by default log Z is replaced by η/2 (eqs. 4.6–4.7), the practical loss.
    `win_rates` are P̂(y ≻ π_t) for `responses` (exact, or estimated from K samples).
    """
    log_z = eta / 2 if log_partition is None else log_partition
    residual = log_pi[responses] - log_pi_t[responses] - (eta * win_rates - log_z)
    return _mean(residual ** 2, weights)
