"""Iterations per second of gamesim's engine against a plain numpy loop.

One "iteration" is one OMD update (log pi <- (1 - eta tau) log pi + eta tau log pi_ref + eta A pi,
normalized) of one game, with the engine's bookkeeping: running sums of pi, KL(pi||pi_ref) and
log(pi/pi_ref) every iteration, and every metric at the first and last iterate (record_every = T). Rates are game-iterations per second = batch * T / seconds, in float64.

gamesim: one `simulate_batch(..., "omd", tau=0.1, iterations=T, record_every=T)` call, timed
after a warm-up call with the same shapes and T (JAX compiles once per shape and loop length).
The timed call includes the engine's fixed per-call cost (mostly solving each game's equilibrium,
for the kl_to_eq and winrate_vs_eq metrics), shown as "fixed s" (a call with iterations=0);
"loop it/s" is the rate with it subtracted (nan when it dominates the call).
Batch 256 is 256 different random games for n <= 100, and one shared game with 256 learning
rates for n = 1000 (a shared game is not copied, so the batch becomes a matmul).

numpy: the loop a researcher would write, vectorized over the batch (einsum over B games, or
pi @ A.T for a shared game); T is calibrated so that each timing takes ~1.5 s (~0.3 s --quick).

    python benchmarks/engine.py [--quick] [--json PATH]

--quick is a smoke test (~25 s): its short gamesim calls are dominated by the fixed cost at batch 256.
"""

import json
import time

import numpy as np

import common
import gamesim

TAU = 0.1
# (n, batch) -> gamesim iterations T, sized for ~1-2 s per timed call on a 2-core machine.
GAMESIM_T = {(3, 1): 4_000_000, (10, 1): 1_500_000, (100, 1): 400_000, (1000, 1): 8_000,
             (3, 256): 200_000, (10, 256): 60_000, (100, 256): 2_000, (1000, 256): 200}


def setup(n, batch):
    """(games argument, eta argument) for simulate_batch, as described in the docstring."""
    if batch == 1:
        return gamesim.load_game(f"random:n={n},seed=0"), 0.5
    if n <= 100:
        return [gamesim.load_game(f"random:n={n},seed={s}") for s in range(batch)], 0.5
    return gamesim.load_game(f"random:n={n},seed=0"), np.linspace(0.05, 0.5, batch).tolist()


def gamesim_time(games, eta, T):
    """Seconds of a timed simulate_batch call, and of a call with iterations=0."""
    run = lambda iters, k: gamesim.simulate_batch(  # noqa: E731
        games, "omd", eta=eta, tau=TAU, iterations=iters, record_every=k, progress=False)
    run(T, T)  # warm-up: compiles this shape and loop length
    t0 = time.perf_counter()
    run(T, T)
    seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    run(0, 1)  # the fixed per-call cost alone
    return seconds, time.perf_counter() - t0


def numpy_loop(A, log_ref, log_pi, eta, T, shared):
    """T OMD updates in log space with the engine's running sums; A is (n, n) or (B, n, n)."""
    pi = np.exp(log_pi)
    sums = pi.copy(), (pi * (log_pi - log_ref)).sum(-1), log_pi - log_ref
    for _ in range(T):
        Api = pi @ A.T if shared else np.einsum("bij,bj->bi", A, pi)
        logits = (1 - eta * TAU) * log_pi + eta * TAU * log_ref + eta * Api
        log_pi, pi, sums = common.log_softmax_and_sums(logits, log_ref, sums)
    return sums


def numpy_rate(games, eta, batch, target):
    games = games if isinstance(games, list) else [games]
    shared = len(games) == 1
    A = games[0].payoff[0] if shared else np.stack([g.payoff[0] for g in games])
    log_ref = np.log(games[0].stacked_reference[0] if shared
                     else np.stack([g.stacked_reference[0] for g in games]))
    eta = np.asarray(eta, np.float64)[:, None] if np.ndim(eta) else float(eta)
    log_pi0 = np.broadcast_to(log_ref, (batch, log_ref.shape[-1]) if batch > 1 else log_ref.shape).copy()
    T = 1
    while True:  # grow T until one timing takes `target` seconds
        t0 = time.perf_counter()
        numpy_loop(A, log_ref, log_pi0, eta, T, shared)
        seconds = time.perf_counter() - t0
        if seconds >= target:
            return batch * T / seconds, T
        T = max(2 * T, int(T * 1.2 * target / max(seconds, 1e-6)))


def main():
    args, machine = common.setup(__doc__)
    print("one iteration = one OMD update of one game, with the engine's metric bookkeeping "
          f"(tau={TAU}, record_every=T)")
    header = f"{'n':>5} | {'batch':>5} | {'T gamesim':>9} | {'T numpy':>8} | {'gamesim it/s':>12} | " \
             f"{'numpy it/s':>10} | {'speedup':>7} | {'fixed s':>7} | {'loop it/s':>9}"
    print(header + "\n" + "-" * len(header), flush=True)
    rows = []
    for batch in (1, 256):
        for n in (3, 10, 100, 1000):
            games, eta = setup(n, batch)
            T = GAMESIM_T[n, batch] // (20 if args.quick else 1)
            seconds, fixed = gamesim_time(games, eta, T)
            gs = batch * T / seconds
            loop = batch * T / (seconds - fixed) if seconds > 1.1 * fixed else None
            npr, T_np = numpy_rate(games, eta, batch, 0.3 if args.quick else 1.5)
            rows.append({"n": n, "batch": batch, "gamesim_T": T, "numpy_T": T_np, "gamesim_s": seconds,
                         "gamesim_fixed_s": fixed, "gamesim_it_per_s": gs, "gamesim_loop_it_per_s": loop,
                         "numpy_it_per_s": npr, "speedup": gs / npr})
            print(f"{n:>5} | {batch:>5} | {T:>9} | {T_np:>8} | {gs:>12.3g} | {npr:>10.3g} | "
                  f"{gs / npr:>6.1f}x | {fixed:>7.3f} | {loop or float('nan'):>9.3g}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "results": rows}, f, indent=2)


if __name__ == "__main__":
    main()
