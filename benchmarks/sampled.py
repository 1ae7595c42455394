"""Iterations per second of gamesim's sampled-feedback (bandit) mode against a plain numpy loop.

One "iteration" is one sampled INPO update of one run on `random:n=10,seed=0` (eta=0.5, tau=0.1,
hard oracle, exact fitter): draw N pairs (y, y') i.i.d. from pi_t, label each by a Bernoulli(P[y, y'])
answer, fit theta = c + pinv(L) b (minimum-norm least squares; c = (1 - eta tau) log pi_t +
eta tau log pi_ref, L the comparison graph's Laplacian, b the signed targets eta (label - 1/2)), and
set log pi_{t+1} = log_softmax(theta); plus the engine's running sums of pi, KL(pi||pi_ref) and
log(pi/pi_ref). Rates: run-iterations per second = batch * T / seconds (batch: runs, different seeds).

gamesim: one `simulate_batch(..., feedback="sampled", pairs=N, iterations=T, record_every=T)` call,
timed after a warm-up call with the same shapes, N and T (JAX compiles once per shape and loop
length); it includes the call's small fixed cost (equilibria, first and last records).

numpy: the loop a researcher would write, vectorized over the batch: inverse-CDF sampling (searchsorted),
`rng.random() < P` labels, np.add.at for the graph, a stacked np.linalg.pinv(hermitian=True), all
in float64; T is calibrated so that each timing takes ~1 s (~0.2 s --quick).
The last line checks that both loops are the same process: the mean regularized duality gap
after 200 iterations with N = 1024 over CHECK_SEEDS seeds, with its standard error.

    python benchmarks/sampled.py [--quick] [--json PATH]

--quick is a smoke test (20-35 s on 2 cores, mostly compilation) and skips the check.
"""

import json
import time

import numpy as np

import common
import gamesim

GAME, ETA, TAU, CHECK_SEEDS = "random:n=10,seed=0", 0.5, 0.1, 32
# (N, batch) -> gamesim iterations T, sized for ~1-2 s per timed call on a 2-core machine.
GAMESIM_T = {(64, 1): 16_000, (64, 256): 100, (1024, 1): 2_000, (1024, 256): 8}


def gamesim_run(N, seeds, T):
    return gamesim.simulate_batch(GAME, "inpo", eta=ETA, tau=TAU, iterations=T, record_every=T, seeds=seeds,
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
    """(mean, standard error) of gap_reg after T iterations over `seeds` runs: gamesim, numpy."""
    gs = gamesim_run(N, list(range(seeds)), T).metrics["gap_reg"][:, -1]
    npy = np.array([gamesim.duality_gap(GAME, np.exp(lp), TAU) for lp in numpy_loop(A, log_ref, seeds, N, T)])
    return [(float(g.mean()), float(g.std(ddof=1) / np.sqrt(seeds))) for g in (gs, npy)]


def main():
    args, machine = common.setup(__doc__)
    print(f"one iteration = one sampled INPO update of one run on {GAME}: N pairs from pi_t, hard-oracle "
          f"labels, exact min-norm least-squares fit (eta={ETA}, tau={TAU}, record_every=T)")
    header = f"{'N':>5} | {'batch':>5} | {'T gamesim':>9} | {'T numpy':>7} | {'gamesim it/s':>12} | " \
             f"{'numpy it/s':>10} | {'speedup':>7}"
    print(header + "\n" + "-" * len(header), flush=True)
    game = gamesim.load_game(GAME)
    A, log_ref = game.payoff[0], np.log(game.stacked_reference[0])
    rows = []
    for batch in (1, 256):
        for N in (64, 1024):
            T = max(1, GAMESIM_T[N, batch] // (10 if args.quick else 1))
            gs = gamesim_rate(N, batch, T)
            npr, T_np = numpy_rate(A, log_ref, N, batch, 0.2 if args.quick else 1.0)
            rows.append({"N": N, "batch": batch, "gamesim_T": T, "numpy_T": T_np, "gamesim_it_per_s": gs,
                         "numpy_it_per_s": npr, "speedup": gs / npr})
            print(f"{N:>5} | {batch:>5} | {T:>9} | {T_np:>7} | {gs:>12.3g} | {npr:>10.3g} | "
                  f"{gs / npr:>6.2f}x", flush=True)
    gaps = None if args.quick else check(A, log_ref, CHECK_SEEDS)
    if gaps:
        print(f"check: mean gap_reg after 200 iterations, N=1024, {CHECK_SEEDS} seeds: gamesim "
              f"{gaps[0][0]:.3g} ± {gaps[0][1]:.1g}, numpy {gaps[1][0]:.3g} ± {gaps[1][1]:.1g}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "results": rows, "check_gap_reg_gamesim_numpy": gaps}, f, indent=2)


if __name__ == "__main__":
    main()
