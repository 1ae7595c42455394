"""Iterations per second of gamesim's sampled-feedback (bandit) mode against a plain numpy loop.

One "iteration" is one sampled INPO update of one run on `random:n=10,seed=0` (eta=0.5, tau=0.1,
hard oracle, exact fitter): draw N pairs (y, y') i.i.d. from pi_t, label each by a Bernoulli(P[y, y'])
answer, fit theta = c + pinv(L) b (minimum-norm least squares; c = (1 - eta tau) log pi_t +
eta tau log pi_ref, L the comparison graph's Laplacian, b the signed targets eta (label - 1/2)), and
set log pi_{t+1} = log_softmax(theta); plus the engine's running sums of pi, KL(pi||pi_ref) and
log(pi/pi_ref). Rates: run-iterations per second = batch * T / seconds (batch: runs, different seeds).

gamesim: one `simulate_batch(..., feedback="sampled", pairs=N, iterations=T, record_every=T)` call,
timed after a warm-up call with the same shapes, N and T (JAX compiles once per shape and loop
length) on the game loaded once; it includes the call's small fixed cost (first and last records).

numpy: the loop a researcher would write, vectorized over the batch: inverse-CDF sampling (searchsorted),
`rng.random() < P` labels, np.add.at for the graph, a stacked np.linalg.pinv(hermitian=True), all
in float64; T is calibrated so that each timing takes ~1 s (~0.2 s --quick).

compiled: the same step hand-written as the fastest loop we could write, `numba.njit` (serial for
batch 1, `prange` over runs for 256): numpy's generator inside numba (inverse-CDF draws, Bernoulli
labels), the Laplacian and b built in place, L⁺b from one LAPACK eigendecomposition (the
eigenvectors applied to b, no pseudo-inverse formed; the cutoff of jnp.linalg.pinv), the
log-softmax and the running sums; compiled by a first call, then timed as gamesim is.
Targets: gamesim ≥ 10× numpy and ≤ 2× the compiled loop (ratios in the last columns).
The last line checks that both loops are the same process: the mean regularized duality gap
after 200 iterations with N = 1024 over CHECK_SEEDS seeds, with its standard error.

    python benchmarks/sampled.py [--quick] [--json PATH]

--quick is a smoke test (20-35 s on 2 cores, mostly compilation) and skips the check.
"""

import functools
import json
import time

import numpy as np

import common
from common import mark
import gamesim

GAME, ETA, TAU, CHECK_SEEDS = "random:n=10,seed=0", 0.5, 0.1, 32
# (N, batch) -> gamesim iterations T, sized for ~1-2 s per timed call on a 2-core machine.
GAMESIM_T = {(64, 1): 16_000, (64, 256): 100, (1024, 1): 2_000, (1024, 256): 8}


@functools.cache
def loaded():
    """The game, loaded once: its equilibria (for the metrics) are solved once, not in every timed call."""
    return gamesim.load_game(GAME)


def gamesim_run(N, seeds, T):
    return gamesim.simulate_batch(loaded(), "inpo", eta=ETA, tau=TAU, iterations=T, record_every=T, seeds=seeds,
                                  feedback="sampled", pairs=N, fit="exact", oracle="hard", progress=False)


def gamesim_rate(N, batch, T):
    gamesim_run(N, list(range(batch)), T)  # warm-up: compiles this shape, N and loop length
    t0 = time.perf_counter()
    gamesim_run(N, list(range(batch)), T)
    return batch * T / (time.perf_counter() - t0)


def numpy_loop(A, log_ref, batch, N, T, seed=0):
    """T sampled INPO updates of `batch` runs (one generator, so every run draws its own numbers)."""
    n = A.shape[-1]
    rng, P, rows = np.random.default_rng(seed), 0.5 + A, np.arange(batch)[:, None]
    log_pi = np.broadcast_to(log_ref, (batch, n)).copy()
    pi = np.exp(log_pi)
    sums = pi.copy(), (pi * (log_pi - log_ref)).sum(-1), log_pi - log_ref
    for _ in range(T):
        cdf = np.cumsum(pi, -1)
        cdf /= cdf[:, -1:]
        # one searchsorted for the whole batch: run b's CDF and uniforms are shifted by b
        u = rng.random((batch, 2 * N)) + rows
        y = (cdf + rows).ravel().searchsorted(u.ravel(), side="right").reshape(batch, 2 * N) - n * rows
        first, second = np.minimum(y[:, :N], n - 1), np.minimum(y[:, N:], n - 1)
        label = rng.random((batch, N)) < P[first, second]
        # counts[b, y, y'] = pairs (y, y'); the Laplacian is deg - counts - counts^T
        counts, signed = np.zeros((batch, n, n)), np.zeros((batch, n, n))
        np.add.at(counts, (rows, first, second), 1.0)
        np.add.at(signed, (rows, first, second), ETA * (label - 0.5))
        L = -counts - counts.transpose(0, 2, 1)
        L[:, np.arange(n), np.arange(n)] += counts.sum(1) + counts.sum(2)
        b = signed.sum(2) - signed.sum(1)
        theta = (1 - ETA * TAU) * log_pi + ETA * TAU * log_ref \
            + np.einsum("bij,bj->bi", np.linalg.pinv(L, hermitian=True), b)
        log_pi, pi, sums = common.log_softmax_and_sums(theta, log_ref, sums)
    return log_pi


def _compiled_loop():
    """The hand-written compiled loop (numba), built on first use so that numba loads only here."""
    import numba

    @numba.njit(cache=False)
    def one_run(A, log_ref, N, T, seed, eta, tau):
        np.random.seed(seed)
        n = A.shape[0]
        log_pi = log_ref.copy()
        pi = np.exp(log_pi)
        sum_pi, sum_kl, sum_log = pi.copy(), 0.0, log_pi - log_ref
        cutoff_scale = 10.0 * n * np.finfo(np.float64).eps
        cdf, L, b, theta = np.empty(n), np.empty((n, n)), np.empty(n), np.empty(n)
        for _ in range(T):
            total = 0.0
            for i in range(n):
                total += pi[i]
                cdf[i] = total
            L[:] = 0.0
            b[:] = 0.0
            for _k in range(N):
                y = min(np.searchsorted(cdf, np.random.random() * total, side="right"), n - 1)
                y2 = min(np.searchsorted(cdf, np.random.random() * total, side="right"), n - 1)
                target = eta * ((1.0 if np.random.random() < 0.5 + A[y, y2] else 0.0) - 0.5)
                L[y, y] += 1.0
                L[y2, y2] += 1.0
                L[y, y2] -= 1.0
                L[y2, y] -= 1.0
                b[y] += target
                b[y2] -= target
            w, V = np.linalg.eigh(L)
            cutoff = cutoff_scale * np.abs(w).max()
            coef = V.T @ b
            for i in range(n):
                coef[i] = coef[i] / w[i] if abs(w[i]) > cutoff else 0.0
            step = V @ coef
            top = -np.inf
            for i in range(n):
                theta[i] = (1 - eta * tau) * log_pi[i] + eta * tau * log_ref[i] + step[i]
                top = max(top, theta[i])
            norm = 0.0
            for i in range(n):
                norm += np.exp(theta[i] - top)
            norm = top + np.log(norm)
            for i in range(n):
                log_pi[i] = theta[i] - norm
                pi[i] = np.exp(log_pi[i])
                sum_pi[i] += pi[i]
                sum_kl += pi[i] * (log_pi[i] - log_ref[i])
                sum_log[i] += log_pi[i] - log_ref[i]
        return log_pi, sum_pi, sum_kl, sum_log

    @numba.njit(parallel=True, cache=False)
    def runs(A, log_ref, batch, N, T, eta, tau):
        out = np.empty((batch, A.shape[0]))
        for r in numba.prange(batch):
            out[r] = one_run(A, log_ref, N, T, r, eta, tau)[0]
        return out

    return one_run, runs


def compiled_rate(A, log_ref, N, batch, T):
    one_run, runs = _compiled_loop()
    call = (lambda: one_run(A, log_ref, N, T, 0, ETA, TAU)) if batch == 1 else \
        (lambda: runs(A, log_ref, batch, N, T, ETA, TAU))
    call()  # compiles
    t0 = time.perf_counter()
    call()
    return batch * T / (time.perf_counter() - t0)


def numpy_rate(A, log_ref, N, batch, target):
    T = 1
    while True:  # grow T until one timing takes `target` seconds
        t0 = time.perf_counter()
        numpy_loop(A, log_ref, batch, N, T)
        seconds = time.perf_counter() - t0
        if seconds >= target:
            return batch * T / seconds, T
        T = max(2 * T, int(T * 1.2 * target / max(seconds, 1e-6)))


def check(A, log_ref, seeds, N=1024, T=200):
    """(mean, standard error) of gap_reg after T iterations over `seeds` runs: gamesim, numpy, compiled."""
    gs = gamesim_run(N, list(range(seeds)), T).metrics["gap_reg"][:, -1]
    gap = lambda log_pis: np.array([gamesim.duality_gap(GAME, np.exp(lp), TAU) for lp in log_pis])
    npy, compiled = gap(numpy_loop(A, log_ref, seeds, N, T)), gap(_compiled_loop()[1](A, log_ref, seeds, N, T, ETA, TAU))
    return [(float(g.mean()), float(g.std(ddof=1) / np.sqrt(seeds))) for g in (gs, npy, compiled)]


def timed(call):
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def table_fit(quick):
    """The n = 1024 table of experiments/transformer.toml (N = 128): seconds per sampled iteration
    (the game loaded once, so its equilibria are solved once), and its least-squares fit against the
    n×n pseudo-inverse it replaced (same data, one process)."""
    import jax
    import jax.numpy as jnp

    from gamesim.bandit import feedback, sampled

    game, T = gamesim.load_game("sequence:model=tiny,oracle=bt,scale=2.0"), 5 if quick else 20
    run = lambda: gamesim.simulate(game, "inpo", eta=2.0, tau=0.05, iterations=T, record_every=T, pairs=128,
                                   feedback="sampled", progress=False)
    run()  # compiles, and solves the game's equilibria once
    per_iteration = timed(run) / T
    n, rng = game.n, np.random.default_rng(0)

    def full(data, anchor):  # the fit as it was: L over every response
        f, s, w = data.first, data.second, data.weight
        L = jnp.zeros((n, n)).at[f, f].add(w).at[s, s].add(w).at[f, s].add(-w).at[s, f].add(-w)
        t = w * (data.label - 0.5)
        return anchor + jnp.linalg.pinv(L, hermitian=True) @ jnp.zeros(n).at[f].add(t).at[s].add(-t)

    seconds, fitted = {}, {}
    with jax.enable_x64(True):
        data = feedback.Pairs(*(jnp.asarray(rng.integers(0, n, 128)) for _ in range(2)),
                              jnp.asarray(rng.integers(0, 2, 128), float), jnp.ones(128))
        anchor = jnp.asarray(rng.normal(size=n))
        fits = {"now": jax.jit(lambda d, a: sampled._least_squares_fit("inpo", d, a, 1.0, None)[0]),
                "n×n": jax.jit(full)}
        for name, fit in fits.items():
            fitted[name] = fit(data, anchor).block_until_ready()  # compiles
            seconds[name] = min(timed(lambda fit=fit: fit(data, anchor).block_until_ready()) for _ in range(3))
    return {"n": n, "N": 128, "iteration_s": per_iteration, "fit_s": seconds["now"], "fit_nxn_s": seconds["n×n"],
            "fit_speedup": seconds["n×n"] / seconds["now"],
            "fit_difference": float(jnp.abs(fitted["now"] - fitted["n×n"]).max())}


def section(quick):
    """Print the table (and, without --quick, the check); returns the results."""
    print(f"one iteration = one sampled INPO update of one run on {GAME}: N pairs from pi_t, hard-oracle "
          f"labels, exact min-norm least-squares fit (eta={ETA}, tau={TAU}, record_every=T). "
          f"Targets: gamesim/numpy ≥ 10x, compiled/gamesim (time ratio gamesim/compiled) ≤ 2x")
    header = f"{'N':>5} | {'batch':>5} | {'T gamesim':>9} | {'T numpy':>7} | {'gamesim it/s':>12} | " \
             f"{'numpy it/s':>10} | {'compiled it/s':>13} | {'gs/numpy':>8} | {'gs time/compiled':>16}"
    print(header + "\n" + "-" * len(header), flush=True)
    game = loaded()
    A, log_ref = game.payoff[0], np.log(game.stacked_reference[0])
    rows = []
    for batch in (1, 256):
        for N in (64, 1024):
            T = max(2, GAMESIM_T[N, batch] // (5 if quick else 1))
            gs = gamesim_rate(N, batch, T)
            npr, T_np = numpy_rate(A, log_ref, N, batch, 0.2 if quick else 1.0)
            cr = compiled_rate(A, log_ref, N, batch, T)
            rows.append({"N": N, "batch": batch, "gamesim_T": T, "numpy_T": T_np, "gamesim_it_per_s": gs,
                         "numpy_it_per_s": npr, "compiled_it_per_s": cr, "speedup": gs / npr,
                         "time_over_compiled": cr / gs})
            print(f"{N:>5} | {batch:>5} | {T:>9} | {T_np:>7} | {gs:>12.3g} | {npr:>10.3g} | {cr:>13.3g} | "
                  f"{mark(gs / npr, at_least=10):>8} | {mark(cr / gs, at_most=2):>16}", flush=True)
    table = table_fit(quick)
    print(f"the n = {table['n']} table of experiments/transformer.toml, N = {table['N']}: "
          f"{table['iteration_s']:.3g} s per sampled iteration; its fit {table['fit_s'] * 1e3:.3g} ms against "
          f"{table['fit_nxn_s'] * 1e3:.3g} ms for the n×n pseudo-inverse it replaced "
          f"({mark(table['fit_speedup'], at_least=5)}, target ≥ 5x; largest difference {table['fit_difference']:.1g})")
    gaps = None if quick else check(A, log_ref, CHECK_SEEDS)
    if gaps:
        print(f"check: mean gap_reg after 200 iterations, N=1024, {CHECK_SEEDS} seeds: gamesim "
              f"{gaps[0][0]:.3g} ± {gaps[0][1]:.1g}, numpy {gaps[1][0]:.3g} ± {gaps[1][1]:.1g}, "
              f"compiled {gaps[2][0]:.3g} ± {gaps[2][1]:.1g}")
    return {"results": rows, "table_n1024": table, "check_gap_reg_gamesim_numpy_compiled": gaps}


def main():
    args, machine = common.setup(__doc__)
    out = section(args.quick)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, **out}, f, indent=2)


if __name__ == "__main__":
    main()
