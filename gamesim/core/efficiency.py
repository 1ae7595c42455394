r"""Sample efficiency: how many preference queries a run needs to reach a target accuracy.

For one run with records (q_k, m_k), k = 0, …, K (q_k the queries made so far, m_k a recorded metric
such as a duality gap), the queries to reach ε are

    Q_ε = q_k* ,  k* = min{k : m_j ≤ ε for every j ≥ k}          (sustained, the default)
    Q_ε = q_k* ,  k* = min{k : m_k ≤ ε}                          (first passage, sustained=False)

and Q_ε = ∞ when no such record exists (the run is censored at its length). The sustained form is
the honest one for sampled runs, whose last iterate fluctuates: a single lucky record below ε does
not count. Q_ε is known to the records' resolution (record_every × queries per iteration): it is
the first record at which the target holds, an upper bound on the first iteration at which it does.

Across seeds, Q_ε is summarized by its median with the distribution-free confidence interval of a
median (order statistics whose binomial coverage is at least the level: `scipy.stats.quantile_test`),
which needs no assumption on the distribution of Q_ε and is valid with censored runs (∞ sorts last).
With too few seeds for the level (fewer than 6 at 95%) the interval is undetermined (NaN).
"""

from __future__ import annotations

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
"""The default level of the median's confidence interval."""


def queries_to_reach(queries, values, targets, sustained: bool = True) -> np.ndarray:
    """Q_ε for each run and target ε (module docstring).

    Args:
        queries: the cumulative queries at each record, (…, K+1), non-decreasing along the last axis.
        values: the recorded metric, same shape; NaN (a run outside its valid range) counts as not
            reached.
        targets: the ε values, (E,).
        sustained: whether the metric must stay ≤ ε from that record to the end of the run.

    Returns:
        Q_ε, shape (…, E), ∞ where ε is not reached.
    """
    queries = np.asarray(queries, float)
    values = np.asarray(values, float)
    if queries.shape != values.shape:
        raise ValueError(f"queries {queries.shape} and values {values.shape} must have one shape")
    eps = np.asarray(targets, float).reshape(-1)
    below = values[..., None, :] <= eps[:, None]  # (…, E, K+1); NaN compares False
    if sustained:  # below from record k to the end: a reversed running AND
        below = np.flip(np.logical_and.accumulate(np.flip(below, -1), axis=-1), -1)
    reached = below.any(-1)
    first = np.argmax(below, axis=-1)
    q = np.take_along_axis(np.broadcast_to(queries[..., None, :], below.shape), first[..., None], -1)[..., 0]
    return np.where(reached, q, np.inf)


def median_interval(samples, confidence: float = CONFIDENCE, axis: int = -1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median, low, high) along `axis`: the sample median and the distribution-free confidence
    interval of the median at `confidence` (order statistics, `scipy.stats.quantile_test`); ∞
    entries (censored runs) are allowed, NaN bounds mean too few samples for the level.

    Args:
        samples: e.g. Q_ε over seeds.
        confidence: the coverage level, in (0, 1).
        axis: the axis of the samples (seeds).

    Returns:
        Three arrays with `axis` removed.
    """
    x = np.moveaxis(np.asarray(samples, float), axis, -1)
    flat = x.reshape(-1, x.shape[-1])
    median = np.median(flat, axis=-1)  # ∞ when half or more of the runs never reach the target
    low, high = np.empty_like(median), np.empty_like(median)
    for i, row in enumerate(flat):
        ci = stats.quantile_test(row, q=0.0, p=0.5).confidence_interval(confidence)
        low[i], high[i] = ci.low, ci.high
    return tuple(a.reshape(x.shape[:-1]) for a in (median, low, high))
