r"""The engine's numba path: trajectories of the mirror-step algorithms as numba loops on CPU.

The algorithms whose update is a chain of KL mirror steps (`algorithms.numba_chain`), with
m(x, s, τ) = log_softmax(`updates.mirror_logits`(x, log π_ref, s, η, τ)):

    "omd"      log π_{t+1} = m(log π_t, Aπ_t, τ)                       OMD, INPO
    "hedge"    log π_{t+1} = m(log π_t, Aπ_t, 0)                       SPPO, DNO, iterative IPO
    "nash-md"  log μ_t = m(log π_t, 0, τ), log π_{t+1} = m(log μ_t, Aμ_t, 0)   Nash-MD

`updates.mirror_logits` is the one definition of the formula: the JAX updates apply it to
arrays, and this module compiles the same function with numba and applies it entry by entry.
The loop keeps the engine's running sums (`metrics.Accumulators`) and stores the state at every
record; the engine then computes the metrics from the stored states with the JAX
`metrics.record`, vectorized over runs and records, so no metric is written twice.

Why a second path: each run to completion on its own thread, entry by entry with no
temporaries, beats XLA's small batched operations at small n (benchmarks/run.py measures both).
The state is the JAX engine's carry, leaf for leaf, so a run started on one path resumes on the
other. float64 only; compiled once per machine (numba's cache).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from gamesim.dynamics.updates import mirror_logits
from gamesim.engine.state import MirrorCarry

CHAINS = {"omd": (False, True), "hedge": (False, False), "nash-md": (True, False)}
"""numba_chain → (a geometric-mixture step first, τ in the scored step)."""

_logits = numba.njit(cache=True)(mirror_logits)


@numba.njit(cache=True)
def _mirror_into(out, p, base, log_ref, scores, eta, tau):
    """out ← log_softmax(mirror_logits(base, log_ref, scores, η, τ)), as jax.nn.log_softmax rounds
    it ((x − max) − log Σ exp(x − max)), and p ← exp(out) from the same exponentials; `out` may
    be `base`."""
    n = out.shape[0]
    top = -np.inf
    for i in range(n):
        out[i] = _logits(base[i], log_ref[i], scores[i], eta, tau)
        top = max(top, out[i])
    total = 0.0
    for i in range(n):
        out[i] -= top
        p[i] = math.exp(out[i])
        total += p[i]
    log_total = math.log(total)
    for i in range(n):
        out[i] -= log_total
        p[i] /= total


@numba.njit(cache=True)
def _scores_into(scores, AT, p):
    """scores ← Ap, streaming the stored Aᵀ by contiguous rows."""
    n = scores.shape[0]
    scores[:] = 0.0
    for j in range(n):
        pj = p[j]
        for i in range(n):
            scores[i] += AT[j, i] * pj


@numba.njit(cache=True)
def _accumulate(sum_pi, sum_log_ratio, sum_weighted_pi, weight, log_pi, p, log_ref):
    """Σπ += π, Σlog(π/π_ref) += log(π/π_ref), Σwπ += weight·π in place; returns KL(π‖π_ref),
    clipped at 0 (`metrics.accumulate`)."""
    kl = 0.0
    for i in range(log_pi.shape[0]):
        d = log_pi[i] - log_ref[i]
        sum_pi[i] += p[i]
        sum_log_ratio[i] += d
        sum_weighted_pi[i] += weight * p[i]
        if p[i] > 0:
            kl += p[i] * d
    return max(kl, 0.0)


@numba.njit(cache=True, parallel=True)
def _advance(log_pi, sum_pi, sum_kl, sum_log_ratio, sum_weighted_pi, t, AT, log_ref, game, eta0, decay, tau, mix,
             regularized, k, out_log_pi, out_sum_pi, out_sum_kl, out_sum_log_ratio, out_sum_weighted_pi):
    """Advance the B runs' (B, C, n) policies and running sums in place by R records of k steps
    (R = out_log_pi.shape[1]), writing their values at each record to out_*. Contexts are
    independent games, so each (run, context) goes to completion on one thread in its own arrays.
    AT (G, C, n, n) and log_ref (G, C, n) hold G = 1 shared game or B games, run b plays game[b];
    η_t = η_0/(1 + decay·t) from the runs' iteration counts t."""
    B, C, n = log_pi.shape
    R = out_log_pi.shape[1]
    for q in numba.prange(B * C):
        b, c = q // C, q % C
        A_T, ref = AT[game[b], c], log_ref[game[b], c]
        lp, s_pi, s_log, s_kl = log_pi[b, c].copy(), sum_pi[b, c].copy(), sum_log_ratio[b, c].copy(), sum_kl[b, c]
        s_wpi = sum_weighted_pi[b, c].copy()
        p = np.exp(lp)
        mixed, p_mixed, scores, zeros = np.empty(n), np.empty(n), np.empty(n), np.zeros(n)
        step_tau = tau[b] if regularized else 0.0
        steps = t[b]
        for r in range(R):
            for _ in range(k):
                eta = eta0[b] / (1 + decay[b] * steps)
                if mix:
                    _mirror_into(mixed, p_mixed, lp, ref, zeros, eta, tau[b])
                    _scores_into(scores, A_T, p_mixed)
                    _mirror_into(lp, p, mixed, ref, scores, eta, 0.0)
                else:
                    _scores_into(scores, A_T, p)
                    _mirror_into(lp, p, lp, ref, scores, eta, step_tau)
                s_kl += _accumulate(s_pi, s_log, s_wpi, steps + 2.0, lp, p, ref)  # π_{s+1} weighs s + 2
                steps += 1
            out_log_pi[b, r, c], out_sum_pi[b, r, c] = lp, s_pi
            out_sum_kl[b, r, c], out_sum_log_ratio[b, r, c], out_sum_weighted_pi[b, r, c] = s_kl, s_log, s_wpi
        log_pi[b, c], sum_pi[b, c], sum_kl[b, c], sum_log_ratio[b, c] = lp, s_pi, s_kl, s_log
        sum_weighted_pi[b, c] = s_wpi


@numba.njit(cache=True)
def _start(log_pi, log_ref, game, sum_pi, sum_kl, sum_log_ratio, sum_weighted_pi):
    """The running sums of π_0 alone (weight 1), into the zeroed sum_*."""
    B, C, _ = log_pi.shape
    for b in range(B):
        for c in range(C):
            sum_kl[b, c] = _accumulate(sum_pi[b, c], sum_log_ratio[b, c], sum_weighted_pi[b, c], 1.0, log_pi[b, c],
                                       np.exp(log_pi[b, c]), log_ref[game[b], c])


def start(log_pi0: np.ndarray, log_ref: np.ndarray) -> MirrorCarry:
    """The engine state at π_0, (B, C, n) with log_ref (G, C, n): the leaves of the JAX engine's
    `Carry` for a mirror chain."""
    B, C, n = log_pi0.shape
    state = MirrorCarry(np.array(log_pi0, np.float64), np.ones(B), np.zeros((B, C, n)), np.zeros((B, C)),
                        np.zeros((B, C, n)), np.zeros((B, C, n)), np.zeros(B))
    _start(state.log_pi, np.asarray(log_ref, np.float64), _game_of_run(B, log_ref), state.sum_pi, state.sum_kl_ref,
           state.sum_log_ratio, state.sum_weighted_pi)
    return state


def advance(chain: str, state: MirrorCarry, AT, log_ref, eta0, decay, tau, k: int, records: int):
    """`records` records of k steps of the chain from `state` (not modified). Returns the new state
    and the state at each record, [log π (B, R, C, n), plays (B, R), Σπ, ΣKL (B, R, C), Σlog ratio, Σ(s+1)π_s]."""
    log_pi, plays, sum_pi, sum_kl, sum_log_ratio, sum_weighted_pi, t = (np.array(x, np.float64) for x in state)
    B, C, n = log_pi.shape
    out = [np.empty((B, records, C, n)), np.empty((B, records, C, n)), np.empty((B, records, C)),
           np.empty((B, records, C, n)), np.empty((B, records, C, n))]
    _advance(log_pi, sum_pi, sum_kl, sum_log_ratio, sum_weighted_pi, t, AT, log_ref, _game_of_run(B, log_ref), eta0,
             decay, tau, *CHAINS[chain], k, *out)
    steps = k * np.arange(1, records + 1)
    new_state = MirrorCarry(log_pi, plays + k * records, sum_pi, sum_kl, sum_log_ratio, sum_weighted_pi, t + k * records)
    return new_state, [out[0], plays[:, None] + steps, *out[1:]]


def _game_of_run(B: int, log_ref) -> np.ndarray:
    """Which of the G stored games each of the B runs plays (G = 1: all the first)."""
    return np.arange(B) if log_ref.shape[0] > 1 else np.zeros(B, np.int64)
