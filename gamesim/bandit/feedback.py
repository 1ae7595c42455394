r"""Sampled preference feedback: oracles and the data recipes of the papers' LLM runs.

An oracle answers "does y beat y'?" for a pair shown in that order. Its probability is
p = clip(P[y, y'] + b, 0, 1) with b the position bias (the first response is favoured by b),
then each answer is flipped with probability ε: p̃ = (1 − ε)p + ε(1 − p). A hard oracle returns a
Bernoulli(p̃) draw, a soft one returns p̃ itself. Everything is a pure function of a JAX PRNG
key, so a seed reproduces a run bit for bit. Arrays are per context: log-policy (n,), A (n, n).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class Oracle(NamedTuple):
    """hard: 1.0 for Bernoulli answers, 0.0 for soft (probability) answers; flip: ε; bias: b."""

    hard: float = 1.0
    flip: float = 0.0
    bias: float = 0.0


def answer(key, A, y, y2, oracle: Oracle):
    """The oracle's answers, as labels in [0, 1] (1: y won), for the pairs (y[k], y2[k])."""
    p = jnp.clip(0.5 + A[y, y2] + oracle.bias, 0.0, 1.0)
    p = (1 - oracle.flip) * p + oracle.flip * (1 - p)
    draw = jax.random.bernoulli(key, p).astype(p.dtype)
    return jnp.where(oracle.hard > 0, draw, p)


class Pairs(NamedTuple):
    """Labelled comparisons: first responses, second responses, labels in [0, 1], weights."""

    first: jnp.ndarray
    second: jnp.ndarray
    label: jnp.ndarray
    weight: jnp.ndarray


COMPARE_ALL_MAX_N = 32
"""Up to this n a draw compares its uniform with all n CDF values (one vectorized pass, 2-4× faster
than the binary search's loop on CPU at n = 10); above it, the binary search. Both return the same
index: the CDF of nonnegative terms is nondecreasing in floating point too."""


def sample(key, log_pi, shape):
    """Responses drawn i.i.d. from π by inverting its CDF: one uniform per draw (the Gumbel trick
    of `jax.random.categorical` needs n, and was the bottleneck of the sampled loop)."""
    cdf = jnp.cumsum(jnp.exp(log_pi))
    u = jax.random.uniform(key, shape, dtype=cdf.dtype) * cdf[-1]
    method = "compare_all" if log_pi.shape[-1] <= COMPARE_ALL_MAX_N else "scan"
    return jnp.minimum(jnp.searchsorted(cdf, u, side="right", method=method), log_pi.shape[-1] - 1)


def pairs(key, log_pi, A, oracle: Oracle, N: int, log_pi_second=None) -> Pairs:
    """N pairs y ~ π, y' ~ π' (π' = π by default), one query each (INPO Alg. 1, online IPO, DPO)."""
    k1, k2, k3 = jax.random.split(key, 3)
    y = sample(k1, log_pi, (N,))
    y2 = sample(k2, log_pi if log_pi_second is None else log_pi_second, (N,))
    return Pairs(y, y2, answer(k3, A, y, y2, oracle), jnp.ones(N, log_pi.dtype))


def best_vs_worst(key, log_pi, A, oracle: Oracle, groups: int, K: int = 8) -> Pairs:
    """INPO's recipe (§4, App. B): per prompt, K samples; the best by a knockout (K − 1 queries),
    the worst by a knockout among the first-round losers (K/2 − 1), and one final query of best
    against worst: the pair is kept (weight 1) only if the best wins it. K + K/2 − 1 queries
    (11 for K = 8). Needs a hard oracle; K a power of two."""
    def knockout(key, players, keep_winner):
        while players.shape[-1] > 1:
            key, sub = jax.random.split(key)
            a, b = players[..., 0::2], players[..., 1::2]
            won = answer(sub, A, a, b, oracle) > 0.5
            players = jnp.where(won == keep_winner, a, b)
        return players[..., 0]

    k_sample, k_best, k_first, k_worst, k_final = jax.random.split(key, 5)
    y = sample(k_sample, log_pi, (groups, K))
    a, b = y[:, 0::2], y[:, 1::2]
    first_won = answer(k_first, A, a, b, oracle) > 0.5
    best = knockout(k_best, jnp.where(first_won, a, b), True)
    worst = knockout(k_worst, jnp.where(first_won, b, a), False)
    kept = answer(k_final, A, best, worst, oracle)
    return Pairs(best, worst, jnp.ones(groups, log_pi.dtype), kept)


def best_vs_worst_queries(K: int) -> int:
    return K + K // 2 - 1


class WinRates(NamedTuple):
    """Responses and their estimated win rates P̂(y ≻ π_t), with weights."""

    response: jnp.ndarray
    win_rate: jnp.ndarray
    weight: jnp.ndarray


def win_rates(key, log_pi, A, oracle: Oracle, groups: int, K: int = 5) -> WinRates:
    """SPPO's recipe (§5): per prompt, K samples, each pair compared once (K(K−1)/2 queries);
    P̂(y_i ≻ π_t) = (1/K) Σ_k P̂(y_i ≻ y_k), with P̂(y ≻ y) = 1/2 as the paper's sum includes k = i.
    So E[P̂] − 1/2 = ((K−1)/K)(P(y_i ≻ π_t) − 1/2): at large N the sampled SPPO step is Hedge with
    η(K−1)/K (0.8η for K = 5), not η (derived; seen in experiments/bandit_gap)."""
    k_sample, k_query = jax.random.split(key)
    y = sample(k_sample, log_pi, (groups, K))
    i, j = jnp.triu_indices(K, 1)
    labels = answer(k_query, A, y[:, i], y[:, j], oracle)
    table = jnp.full((groups, K, K), 0.5, log_pi.dtype).at[:, i, j].set(labels).at[:, j, i].set(1 - labels)
    return WinRates(y.ravel(), table.mean(-1).ravel(), jnp.ones(groups * K, log_pi.dtype))


def best_and_worst(rates: WinRates, K: int) -> WinRates:
    """SPPO's official recipe (`uclaml/SPPO`, scripts/compute_prob.py and its trainer): of each
    prompt's K samples keep only the one with the highest estimated win rate and the one with the
    lowest (the first on ties), each regressed on its own P̂(y ≻ π_t); the other weights are 0."""
    table = rates.win_rate.reshape(-1, K)
    rows = jnp.arange(table.shape[0])
    keep = jnp.zeros_like(table).at[rows, table.argmax(-1)].set(1.0).at[rows, table.argmin(-1)].set(1.0)
    return rates._replace(weight=keep.ravel())


def win_rates_queries(K: int) -> int:
    return K * (K - 1) // 2
