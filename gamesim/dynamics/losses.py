r"""The practical losses whose minimizers the papers' updates are, for tabular log-policies.

All take log-policies of one context, shape (n,) (vmap over contexts or batches), and index
arrays of responses; `weights` (default uniform) turn a sum over listed pairs into an expectation,
which is how the population losses are written. η is gamesim's learning rate (see algorithms.py).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gamesim.dynamics.updates import geometric_logits


def inpo_h(log_pi, log_pi_t, log_ref, eta, tau, y, y2):
    r"""INPO §3.2's h_t(π, y, y') in learning-rate form (the paper's τ/η_INPO is ητ here):

        h_t = log π(y)/π(y') − ητ log π_ref(y)/π_ref(y') − (1 − ητ) log π_t(y)/π_t(y'),

    the difference at y and y' of log π − c, c = (1 − ητ) log π_t + ητ log π_ref (`updates.geometric_logits`).
    """
    d = log_pi - geometric_logits(log_pi_t, log_ref, eta * tau)
    return d[y] - d[y2]


def _mean(values, weights):
    """Weighted mean; 0 when every weight is 0 (e.g. a tournament that kept no pair)."""
    if weights is None:
        return jnp.mean(values)
    return jnp.sum(weights * values) / jnp.maximum(jnp.sum(weights), jnp.finfo(values.dtype).tiny)


def pair_regression_loss(theta, anchor, first, second, target, weights=None):
    r"""Mean of ((θ − c)(y) − (θ − c)(y') − target)² over the pairs: the shape of INPO's, IPO's
    and Nash-MD's losses, with anchor c the log-policy the step is taken from."""
    d = theta - anchor
    return _mean((d[first] - d[second] - target) ** 2, weights)


def inpo_loss(log_pi, log_pi_t, log_ref, eta, tau, winners, losers, weights=None, labels=None):
    r"""INPO eq. 8 on preference data (y_w, y_l): mean of (h_t(π, y_w, y_l) − η/2)².

    The paper's target 1/(2η_INPO) is η/2 in gamesim's convention. With `labels` in [0, 1] (the
    first response's win probability, or a 0/1 answer) the target is η(label − 1/2): a soft label
    p gives p(h − η/2)² + (1 − p)(h + η/2)² up to a constant, as h is antisymmetric. Minimized over
    π, the population version (`inpo_population_loss`) gives the OMD step (INPO Lemma 5, Prop. 6).
    """
    target = eta / 2 if labels is None else eta * (labels - 0.5)
    anchor = geometric_logits(log_pi_t, log_ref, eta * tau)
    return pair_regression_loss(log_pi, anchor, winners, losers, target, weights)


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


def ipo_loss(log_pi, log_ref, A, tau, log_sampler):
    r"""IPO's population loss (Azar et al. 2023) on pairs y, y' ~ sampler (held fixed, stop-gradient):

        Σ_{y,y'} s(y)s(y') (log(π(y)/π_ref(y)) − log(π(y')/π_ref(y')) − (P(y ≻ y') − 1/2)/τ)².

    sampler = π is online IPO (Calandriello et al. 2024, eq. 11), the geometric mixture
    π^{1−β} π_ref^β is IPO-MD; SGD with learning rate lr on it is `updates.ipo_md_update` with
    η = 4 lr/τ. With π_ref = sampler = π_t it is iterative IPO, whose minimizer is Hedge.
    """
    i, j = _all_pairs(log_pi.shape[-1])
    s = jnp.exp(log_sampler)
    d = log_pi - log_ref
    return jnp.sum(s[i] * s[j] * (d[i] - d[j] - A[i, j] / tau) ** 2)


def nash_md_pg_loss(logits, log_ref, A, tau, log_opponent):
    r"""Nash-MD-PG's surrogate (Munos et al. 2023, §7; as in EGPO's code): −Σ_y sg(π)_y
    [P(y ≻ π') − τ sg(log(π(y)/π_ref(y)))] log π(y), π = softmax(logits), π' the opponent
    (stop-gradient). Its gradient on the logits is minus `updates.nash_md_pg_update`'s
    direction, so SGD with lr is η = lr.
    """
    log_pi = jax.nn.log_softmax(logits)
    pi = jax.lax.stop_gradient(jnp.exp(log_pi))
    advantage = 0.5 + A @ jnp.exp(log_opponent) - tau * jax.lax.stop_gradient(log_pi - log_ref)
    return -jnp.sum(pi * advantage * log_pi)


def dpo_loss(log_pi, log_pi_t, eta, first, second, labels, weights=None):
    r"""DPO's loss (Rafailov et al. 2023) with reference π_t and β = 1/η on labelled pairs:
    mean of −[ℓ log σ(β(h(y) − h(y'))) + (1 − ℓ) log σ(β(h(y') − h(y)))], h = log(π/π_t)."""
    h = log_pi - log_pi_t
    margin = (h[first] - h[second]) / eta
    return _mean(-(labels * jax.nn.log_sigmoid(margin) + (1 - labels) * jax.nn.log_sigmoid(-margin)), weights)


def dpo_population_loss(log_pi, log_pi_t, A, eta):
    r"""`dpo_loss` on pairs y, y' ~ π_t labelled by P, in expectation (weights π_t(y)π_t(y'),
    labels P(y ≻ y')). Its minimizer is π_t exp(η r̂), r̂ the Bradley-Terry fit
    (`updates.iterative_dpo_update`)."""
    i, j = _all_pairs(log_pi.shape[-1])
    pi_t = jnp.exp(log_pi_t)
    return dpo_loss(log_pi, log_pi_t, eta, i, j, 0.5 + A[i, j], pi_t[i] * pi_t[j])


def optimistic_dpo_loss(theta, log_ref, tau, wins, optimism):
    r"""XPO's / VPO's objective on the comparisons so far, as sufficient statistics, per pair:

        [−Σ_{y,y'} wins_yy' log σ(β(h_y − h_y')) + Σ_y optimism_y log π_θ(y)] / (Σ wins / 1),
        h = log π_θ − log π_ref, β = τ,

    wins_yy' the (weighted) count of comparisons y won against y' (with a soft oracle, the
    probabilities), `optimism` the optimism term's weights: XPO α·(count of ỹ = y), ỹ ~ π_ref
    (Xie et al. 2024, Alg. 1); VPO αβ·π_ref (Cen et al. 2024, π_cal = π_ref, once). Divided by the
    number of pairs Σ wins so that an optax learning rate does not shrink as data accumulate.
    """
    log_pi = jax.nn.log_softmax(theta)
    h = tau * (log_pi - log_ref)
    margin = h[..., :, None] - h[..., None, :]
    total = jnp.maximum(jnp.sum(wins), 1.0)
    return (-jnp.sum(wins * jax.nn.log_sigmoid(margin)) + jnp.sum(optimism * log_pi)) / total
