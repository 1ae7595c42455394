"""gamesim's exact engine against a plain numpy loop and hand-written JAX and numba loops, in one run.

    python benchmarks/run.py [--quick] [--json PATH]

Header: the machine line, then its measured limits (9): numpy float64 matmul GFLOP/s (2048³, best of
3) and np.exp throughput (1e7 float64 elements, ns per element).

1-4. Engine. One "iteration" is one OMD update of one game in log space,
    log π ← normalize((1 − ητ) log π + ητ log π_ref + η A π),  A = P − 1/2, τ = 0.1, η = 0.5,
in float64, timed in ns per game-iteration (lower is better) for each (n, batch). Batch 256 is
256 different random games for n ≤ 100, and one shared game with 256 learning rates
(linspace(0.05, 0.5)) for n = 1000. Columns:
  numpy    the loop a researcher writes, vectorized over the batch, with the engine's running sums
           (as benchmarks/engine.py); its length is calibrated so a timing takes ~1 s (~0.2 s --quick);
  jax      the update in `lax.scan` under `jit` (vmap over the batch; for the shared game the vmap
           of the matvec is a matmul), recording only the final policy; compiled ahead, then timed
           (jax and numba normalize with one exp per entry, π = w/Σw, w = exp(logits − max));
  numba    `njit(fastmath=False)` loops: serial for batch 1, `prange` over games (each run to
           completion) for 256 games, `prange` over row blocks of the matmul for the shared game;
           compiled by the 50-step check below, then timed; "—" when numba is not installed;
  gs jax, gs numba  `simulate_batch(..., "omd", tau=0.1, iterations=T, record_every=T,
           backend=...)` on each of gamesim's paths, with every metric at π_0 and π_T and the
           running sums every iteration, timed after a warm-up call of the same shapes and T (as
           benchmarks/engine.py); "auto" is the path backend="auto" takes, and "gs loop" its time
           less the fixed per-call cost (a call with iterations=0; "—" when it is most of the call).
jax, numba and gamesim run the same T (engine.py's, /20 with --quick). Ratios: gamesim (its auto
path) / the best compiled baseline (raw and loop; target ≤ 1.5×) and numpy / gamesim (loop; target ≥ 100× for
n ≤ 100); "✗" marks a miss. Checks: JAX's and numba's policies after 50 steps equal the numpy
loop's to 1e-12 (else the script exits with an error), and both gamesim paths' final policies are
compared to JAX's after the T timed steps (the larger difference shown, ✗ above 1e-12).

5. Recording: gamesim on 256 games of n = 10, T = 2000, with every metric every iteration
(record_every=1) against record_every=T; best of 3 each; target ≤ 2× on the path backend="auto" takes.
6. τ = 0 equilibrium of a generic antisymmetric game (A = L − Lᵀ, L the strict lower triangle of
a U[−1, 1] matrix, seed 0; the game P = (A + 1)/2): `gamesim.solve` against scipy's `linprog`
(highs-ds, highs-ipm) on max v s.t. Aᵀx ≥ v, Σx = 1, x ≥ 0, and nashpy's `linear_program` (two
LPs, row and column player; skipped at n = 1000 with --quick). Seconds (best of 3 for n ≤ 100,
one run at n = 1000; each solve on a fresh game object, since games cache their solutions),
exploitability max_i (Ax)_i (target ≤ 1e-10), best scipy / gamesim (target ≥ 10× at n = 1000).
Two degenerate games (several equilibria, n ≈ 300: a game with copied responses, a rank-2
payoff), one solve each: gamesim never slower than HiGHS (target ≥ 1×).
Then `gamesim.solve` at τ = 0.1 on random:n=2000, best of 3 (target < 1 s).
7. Start-up: `python -m gamesim.cli --help` and `games` (best of 3, target < 1 s), and
`run cycle3 --algorithm inpo --eta 0.1 --tau 0.1 --iterations 1000` in a fresh process (best of
3, one with --quick; target < 3 s), once with an empty JAX compilation cache (GAMESIM_CACHE_DIR,
the command line's persistent cache: a first run) and once with the cache the first run filled.
Then a first run of a small study: `study run experiments/egpo.toml --quick --force` (five
algorithms on ten n = 10 games, three τ) in a fresh process with an empty cache against a warm one,
with --jobs 1 (the default) and 2 (target ≤ 2×); without --quick, `reproduce --quick` from an empty
cache with the default --jobs (every study's small form; target < 3 min).
Every cache and output lives in a temporary directory.
8. Memory: peak resident memory of a fresh process running `simulate_batch` on 256 random
n = 10 games for 1,000,000 iterations (100,000 with --quick), record_every=1000 (target < 1 GB).
The peak is the child's VmHWM (/proc/self/status): on Linux the child's getrusage ru_maxrss also
holds the parent's peak RSS (the kernel folds the old address space's high-water mark into it at
exec), so it reports this benchmark's own ~1 GB; it is shown alongside.
10. Replicator dynamics against nashpy's `replicator_dynamics` (scipy odeint of the continuous
dynamics, which the discrete step π(1 + ηAπ) is the Euler scheme of) on random:n=10 from π_ref:
K = 10,000 steps of η = 0.01 against K + 1 time points on [0, Kη]. gamesim is shown cold (first
call: compilation and the equilibrium solve) and warm; "Δπ" is the final policies' difference
(the Euler error, O(η), not a rounding check).
11. Sampled feedback: benchmarks/sampled.py's table (gamesim against a numpy loop and a hand-written
numba loop of the same sampled INPO step; targets ≥ 10× numpy, ≤ 2× the compiled loop) and the
n = 1024 table's least-squares fit against the n×n one it replaced (target ≥ 5×).
12. GPU: the devices JAX sees; the GPU measurements are a separate prepared script, run where a GPU is lent.
"""

import functools
import importlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common
from common import mark
import engine
import sampled
import numpy as np

import gamesim
from gamesim.dynamics.algorithms import get_algorithm
from gamesim.engine.simulation import choose_backend

ROOT = Path(__file__).resolve().parents[1]
TAU = engine.TAU
STEPS_CHECKED = 50
ROWS = [(n, batch) for batch in (1, 256) for n in (3, 10, 100, 1000)]


# --- helpers ------------------------------------------------------------------------------------
def optional(name):
    """The module `name`, or None when it is not installed (nashpy: benchmark-only)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def best_of(repeats, fn):
    """Smallest wall time of `repeats` calls of fn() (seconds), and fn's last result."""
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def ns(x):
    return "—" if x is None else f"{x:.3g}"


def print_header(header, widths=None, min_width=9):
    """Print a table header; returns the column widths for print_row (by default the header's)."""
    widths = widths or [max(len(h), min_width) for h in header]
    line = print_row(header, widths)
    print("-" * len(line), flush=True)
    return widths


def print_row(cells, widths):
    line = " | ".join(str(c).rjust(w) for c, w in zip(cells, widths))
    print(line, flush=True)
    return line


def table(header, rows):
    widths = print_header(header, [max(len(str(c)) for c in col) for col in zip(header, *rows)])
    for cells in rows:
        print_row(cells, widths)


# --- machine limits -----------------------------------------------------------------------------
def machine_limits():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 2048, 2048))
    seconds, _ = best_of(3, lambda: a @ b)
    x = rng.standard_normal(10_000_000)
    y = np.empty_like(x)
    exp_s, _ = best_of(3, lambda: np.exp(x, out=y))
    return {"matmul_gflops": 2 * 2048 ** 3 / seconds / 1e9, "exp_ns_per_element": exp_s / x.size * 1e9}


# --- the engine rows: one case as arrays ---------------------------------------------------------
def case_arrays(games, eta, batch):
    """(mode, A, log_ref, log_pi0, eta): mode "single" (A (n, n), eta a float), "games"
    (A (B, n, n), log_ref (B, n), eta (B,)) or "shared" (A (n, n), log_ref (n,), eta (B,))."""
    if batch == 1:
        A, log_ref = games.payoff[0], np.log(games.stacked_reference[0])
        return "single", A, log_ref, log_ref.copy(), float(eta)
    if isinstance(games, list):
        A = np.stack([g.payoff[0] for g in games])
        log_ref = np.log(np.stack([g.stacked_reference[0] for g in games]))
        return "games", A, log_ref, log_ref.copy(), np.full(batch, float(eta))
    A, log_ref = games.payoff[0], np.log(games.stacked_reference[0])
    return "shared", A, log_ref, np.tile(log_ref, (batch, 1)), np.asarray(eta, np.float64)


def numpy_loop(mode, A, log_ref, log_pi, eta, T):
    """T updates with the engine's running sums (benchmarks/engine.py's loop); the final π."""
    e = eta if mode == "single" else eta[:, None]
    pi = np.exp(log_pi)
    sums = pi.copy(), (pi * (log_pi - log_ref)).sum(-1), log_pi - log_ref
    for _ in range(T):
        Api = np.einsum("bij,bj->bi", A, pi) if mode == "games" else pi @ A.T
        logits = (1 - e * TAU) * log_pi + e * TAU * log_ref + e * Api
        log_pi, pi, sums = common.log_softmax_and_sums(logits, log_ref, sums)
    return pi


def numpy_ns(case, batch, target):
    """ns per game-iteration of the numpy loop, growing T until one timing takes `target` s."""
    T = 1
    while True:
        t0 = time.perf_counter()
        numpy_loop(*case, T)
        seconds = time.perf_counter() - t0
        if seconds >= target:
            return seconds / (batch * T) * 1e9, T
        T = max(2 * T, int(T * 1.2 * target / max(seconds, 1e-6)))


def jax_compiled(case, T):
    """The JAX baseline for `case`, compiled for T steps: a function of no arguments → final π."""
    import jax
    import jax.numpy as jnp

    mode, A, log_ref, log_pi0, eta = case

    def run(A, log_ref, log_pi, eta):
        def step(carry, _):
            log_pi, pi = carry
            logits = (1 - eta * TAU) * log_pi + eta * TAU * log_ref + eta * (A @ pi)
            z = logits - logits.max()
            w = jnp.exp(z)
            s = w.sum()
            return (z - jnp.log(s), w / s), None

        return jax.lax.scan(step, (log_pi, jnp.exp(log_pi)), length=T)[0][1]

    axes = {"single": None, "games": (0, 0, 0, 0), "shared": (None, None, 0, 0)}[mode]
    fn = jax.jit(run if axes is None else jax.vmap(run, in_axes=axes))
    with jax.enable_x64(True):
        compiled = fn.lower(A, log_ref, log_pi0, eta).compile()

    def call():
        with jax.enable_x64(True):
            return np.asarray(compiled(A, log_ref, log_pi0, eta))

    return call


@functools.cache
def numba_kernels():
    """(serial, over games, shared) numba kernels, each → final π; None without numba."""
    numba = optional("numba")
    if numba is None:
        return None
    jit = functools.partial(numba.njit, fastmath=False, cache=False)

    @jit
    def serial(AT, log_ref, log_pi0, eta, T):
        """One game (n,): A π as Σ_j π_j Aᵀ[j] (contiguous rows, vectorizable without fastmath)."""
        n = log_pi0.shape[0]
        log_pi = log_pi0.copy()
        pi = np.exp(log_pi)
        api = np.empty(n)
        for _ in range(T):
            api[:] = 0.0
            for j in range(n):
                pj = pi[j]
                for i in range(n):
                    api[i] += AT[j, i] * pj
            m = -np.inf
            for i in range(n):
                log_pi[i] = (1 - eta * TAU) * log_pi[i] + eta * TAU * log_ref[i] + eta * api[i]
                m = max(m, log_pi[i])
            s = 0.0
            for i in range(n):
                pi[i] = math.exp(log_pi[i] - m)
                s += pi[i]
            lse = m + math.log(s)
            for i in range(n):
                log_pi[i] -= lse
                pi[i] /= s
        return pi

    @jit(parallel=True)
    def over_games(AT, log_ref, log_pi0, eta, T):
        out = np.empty_like(log_pi0)
        for b in numba.prange(log_pi0.shape[0]):
            out[b] = serial(AT[b], log_ref[b], log_pi0[b], eta[b], T)
        return out

    @jit(parallel=True)
    def shared(A, log_ref, log_pi0T, eta, T):
        """One game, B learning rates; policies as (n, B) columns; prange over blocks of 8 rows
        of A, each block streaming π one row at a time (vectorized over the batch)."""
        n, B = log_pi0T.shape
        log_pi = log_pi0T.copy()
        pi = np.exp(log_pi)
        api = np.empty((n, B))
        m, s = np.empty(B), np.empty(B)
        blocks = (n + 7) // 8
        for _ in range(T):
            for blk in numba.prange(blocks):
                lo, hi = 8 * blk, min(8 * blk + 8, n)
                api[lo:hi] = 0.0
                for j in range(n):
                    for i in range(lo, hi):
                        a = A[i, j]
                        for b in range(B):
                            api[i, b] += a * pi[j, b]
                for i in range(lo, hi):
                    for b in range(B):
                        log_pi[i, b] = ((1 - eta[b] * TAU) * log_pi[i, b] + eta[b] * TAU * log_ref[i]
                                        + eta[b] * api[i, b])
            m[:] = -np.inf
            for i in range(n):
                for b in range(B):
                    m[b] = max(m[b], log_pi[i, b])
            for i in numba.prange(n):
                for b in range(B):
                    pi[i, b] = math.exp(log_pi[i, b] - m[b])
            s[:] = 0.0
            for i in range(n):
                for b in range(B):
                    s[b] += pi[i, b]
            for i in numba.prange(n):
                for b in range(B):
                    log_pi[i, b] -= m[b] + math.log(s[b])
                    pi[i, b] /= s[b]
        return pi

    return serial, over_games, shared


def numba_call(case, T):
    """The numba baseline for `case` and T steps, as a function of no arguments → final π."""
    kernels = numba_kernels()
    if kernels is None:
        return None
    serial, over_games, shared = kernels
    mode, A, log_ref, log_pi0, eta = case
    if mode == "shared":
        log_pi0T = np.ascontiguousarray(log_pi0.T)
        return lambda: shared(A, log_ref, log_pi0T, eta, T).T
    AT = np.ascontiguousarray(np.swapaxes(A, -1, -2))
    return lambda: (serial if mode == "single" else over_games)(AT, log_ref, log_pi0, eta, T)


def check_baselines(case, n, batch):
    """Exit unless JAX's and numba's policies after STEPS_CHECKED steps equal numpy's to 1e-12."""
    reference = numpy_loop(*case, STEPS_CHECKED)
    errors = {"jax": np.abs(jax_compiled(case, STEPS_CHECKED)() - reference).max()}
    nb = numba_call(case, STEPS_CHECKED)
    if nb is not None:
        errors["numba"] = np.abs(nb() - reference).max()
    for name, err in errors.items():
        if not err <= 1e-12:
            sys.exit(f"error: n={n}, batch={batch}: the {name} baseline's policy after {STEPS_CHECKED} "
                     f"steps differs from the numpy loop's by {err:.3g} > 1e-12")
    return float(max(errors.values()))


def gamesim_time(games, eta, T, backend):
    """Seconds of a timed simulate_batch call on `backend` (after a warm-up one), of a call with
    iterations=0, and the final policies (B, n)."""
    def run(iters, k):
        return gamesim.simulate_batch(games, "omd", eta=eta, tau=TAU, iterations=iters, record_every=k,
                                      progress=False, backend=backend)

    final = run(T, T).policies[:, -1]  # warm-up: compiles this shape and loop length
    run(0, 1)  # and the zero-iteration call's own shapes
    seconds, _ = best_of(1, lambda: run(T, T))
    fixed, _ = best_of(1, lambda: run(0, 1))
    return seconds, fixed, final


def engine_row(n, batch, quick):
    games, eta = engine.setup(n, batch)
    case = case_arrays(games, eta, batch)
    T = engine.GAMESIM_T[n, batch] // (20 if quick else 1)
    per_it = 1e9 / (batch * T)
    row = {"n": n, "batch": batch, "shared": n == 1000 and batch > 1, "T": T,
           "baseline_check_err": check_baselines(case, n, batch)}
    row["numpy_ns"], row["numpy_T"] = numpy_ns(case, batch, 0.2 if quick else 1.0)
    jax_s, jax_pi = best_of(1, jax_compiled(case, T))
    row["jax_ns"] = jax_s * per_it
    nb = numba_call(case, T)  # compiled by check_baselines: T is a runtime argument
    row["numba_ns"] = best_of(1, nb)[0] * per_it if nb is not None else None
    first = games[0] if isinstance(games, list) else games
    row["auto"] = choose_backend("auto", get_algorithm("omd"), first, dtype="float64", runs=batch, iterations=T,
                                 record_every=T)
    for backend in ("jax", "numba") if nb is not None else ("jax",):
        seconds, fixed, final = gamesim_time(games, eta, T, backend)
        loop = (seconds - fixed) * per_it if seconds > 1.1 * fixed else None
        row[backend] = {"ns": seconds * per_it, "fixed_s": fixed, "loop_ns": loop,
                        "vs_jax_err": float(np.abs(final.reshape(jax_pi.shape) - jax_pi).max())}
    chosen = row[row["auto"]]
    best = min(x for x in (row["jax_ns"], row["numba_ns"]) if x is not None)
    per_iteration = chosen["loop_ns"] or chosen["ns"]
    row.update(best_compiled_ns=best, gamesim_over_best=chosen["ns"] / best,
               gamesim_loop_over_best=chosen["loop_ns"] and chosen["loop_ns"] / best,
               numpy_over_gamesim=row["numpy_ns"] / per_iteration,
               gamesim_vs_jax_err=max(row[b]["vs_jax_err"] for b in ("jax", "numba") if b in row))
    return row


ENGINE_HEADER = ["n", "batch", "T", "numpy", "jax", "numba", "gs jax", "gs numba", "auto", "gs loop",
                 "gs/best", "gs loop/best", "numpy/gs", f"|Δπ| {STEPS_CHECKED} steps", "|Δπ| gs-jax"]


def engine_cells(r):
    gs = r[r["auto"]]
    return [r["n"], f"{r['batch']}{' shared' if r['shared'] else ''}", r["T"],
            *(ns(r[k]) for k in ("numpy_ns", "jax_ns", "numba_ns")),
            *(ns(r[b]["ns"]) if b in r else "—" for b in ("jax", "numba")), r["auto"], ns(gs["loop_ns"]),
            mark(r["gamesim_over_best"], at_most=1.5), mark(r["gamesim_loop_over_best"], at_most=1.5),
            mark(r["numpy_over_gamesim"], at_least=100 if r["n"] <= 100 else None),
            f"{r['baseline_check_err']:.0e}",
            f"{r['gamesim_vs_jax_err']:.0e}{'' if r['gamesim_vs_jax_err'] <= 1e-12 else ' ✗'}"]


def engine_section(quick):
    print(f"\n1-4. Engine: ns per game-iteration (lower is better), OMD, tau = {TAU}. Targets: gs/best ≤ 1.5x, "
          "numpy/gs (loop) ≥ 100x for n ≤ 100")
    widths = print_header(ENGINE_HEADER)
    rows = []
    for n, batch in ROWS:
        rows.append(engine_row(n, batch, quick))
        print_row(engine_cells(rows[-1]), widths)
    return rows


# --- 5. recording cost ---------------------------------------------------------------------------
def recording_section(quick):
    games, eta = engine.setup(10, 256)
    T = 2000
    out = {"n": 10, "batch": 256, "T": T}
    fixed, _ = best_of(3, lambda: gamesim.simulate_batch(games, "omd", eta=eta, tau=TAU, iterations=0,
                                                         record_every=1, progress=False))
    for k, name in ((T, "record_T"), (1, "record_1")):
        def run(k=k):
            return gamesim.simulate_batch(games, "omd", eta=eta, tau=TAU, iterations=T, record_every=k,
                                          progress=False)
        run()  # warm-up: compiles
        out[f"{name}_s"] = best_of(3, run)[0]
        out[f"{name}_loop_s"] = out[f"{name}_s"] - fixed
    out["fixed_s"] = fixed
    out["ratio"] = out["record_1_s"] / out["record_T_s"]
    out["loop_ratio"] = out["record_1_loop_s"] / out["record_T_loop_s"]
    out["path"] = {k: choose_backend("auto", get_algorithm("omd"), games[0], dtype="float64", runs=256, iterations=T,
                                     record_every=k) for k in (T, 1)}
    print(f"\n5. Recording cost: gamesim, 256 games of n = 10, T = {T}, best of 3 (fixed per-call cost "
          f"{fixed:.3f} s); the auto path: {out['path'][T]} for record_every={T}, {out['path'][1]} for 1")
    table(["record_every", "seconds", "loop seconds", "ns/game-it (loop)"],
          [[k, f"{out[f'{name}_s']:.3f}", f"{out[f'{name}_loop_s']:.3f}",
            ns(out[f"{name}_loop_s"] / (256 * T) * 1e9)] for k, name in ((T, "record_T"), (1, "record_1"))])
    print(f"every iteration / every T: {mark(out['ratio'], at_most=2)} raw, "
          f"{mark(out['loop_ratio'], at_most=2)} loop (target ≤ 2x, on the path auto takes)")
    return out


# --- 6. equilibria --------------------------------------------------------------------------------
def antisymmetric(n):
    L = np.tril(np.random.default_rng(0).uniform(-1, 1, (n, n)), -1)
    return L - L.T


def scipy_lp(A, method):
    """The symmetric zero-sum game's LP: max v s.t. Aᵀx ≥ v·1, Σx = 1, x ≥ 0; returns x."""
    from scipy.optimize import linprog

    n = len(A)
    res = linprog(np.r_[np.zeros(n), -1.0], A_ub=np.c_[-A.T, np.ones(n)], b_ub=np.zeros(n),
                  A_eq=np.r_[np.ones(n), 0.0][None], b_eq=[1.0], bounds=[(0, None)] * n + [(None, None)],
                  method=method)
    if res.status != 0:
        raise RuntimeError(f"linprog({method}) failed at n={n}: {res.message}")
    return res.x[:n]


def tau0_solvers(A, nashpy, repeats):
    """name → function of no arguments returning an equilibrium x of A, to be called `repeats` times
    (gamesim's on a fresh game object each time: games cache their solutions)."""
    fresh = iter([gamesim.PreferenceGame((A + 1) / 2) for _ in range(repeats)])
    solvers = {"gamesim": lambda: gamesim.solve(next(fresh), 0.0).policy,
               "highs-ds": lambda: scipy_lp(A, "highs-ds"), "highs-ipm": lambda: scipy_lp(A, "highs-ipm")}
    if nashpy is not None:
        solvers["nashpy"] = lambda: nashpy.Game(A).linear_program()[0]
    return solvers


def solver_cell(result):
    """"seconds (exploitability)", ✗ when the exploitability misses 1e-10; "—" when not run."""
    if result is None:
        return "—"
    if "failed" in result:
        return "failed ✗"
    e = result["exploitability"]
    return f"{result['s']:.3g} ({e:.0e}{'' if e <= 1e-10 else ' ✗'})"


def equilibrium_section(quick):
    nashpy = optional("nashpy")
    print("\n6. tau = 0 equilibrium of a generic antisymmetric game: seconds (exploitability max_i (Ax)_i, "
          "target ≤ 1e-10)")
    widths = print_header(["n", "gamesim", "scipy highs-ds", "scipy highs-ipm", "nashpy",
                           "best scipy/gamesim (≥10x at 1000; ≥1x degenerate)"], min_width=16)
    rows = []
    for n in (10, 100, 1000):
        A = antisymmetric(n)
        P = (A + 1) / 2
        assert np.abs(P + P.T - 1).max() <= 1e-15
        gamesim.duality_gap(gamesim.PreferenceGame(P), np.full(n, 1 / n))  # warm-up of the gap's JAX ops
        row = {"n": n}
        repeats = 3 if n <= 100 else 1
        for name, solver in tau0_solvers(A, nashpy if not (quick and n == 1000) else None, repeats).items():
            seconds, x = best_of(repeats, solver)
            row[name] = {"s": seconds, "exploitability": float((A @ x).max())}
        row["best_scipy_over_gamesim"] = min(row["highs-ds"]["s"], row["highs-ipm"]["s"]) / row["gamesim"]["s"]
        rows.append(row)
        print_row([n, *(solver_cell(row.get(k)) for k in ("gamesim", "highs-ds", "highs-ipm", "nashpy")),
                   mark(row["best_scipy_over_gamesim"], at_least=10 if n == 1000 else None)], widths)
    degenerate = []
    for name, A in degenerate_games():
        row = {"game": name, "n": len(A)}
        for solver, run in tau0_solvers(A, None, 1).items():
            try:
                seconds, x = best_of(1, run)
                row[solver] = {"s": seconds, "exploitability": float((A @ x).max())}
            except RuntimeError as exc:  # a solver that gives up (HiGHS: numerical trouble)
                row[solver] = {"failed": str(exc)[:80]}
        times = [row[k]["s"] for k in ("highs-ds", "highs-ipm") if "s" in row[k]]
        row["best_highs_over_gamesim"] = min(times) / row["gamesim"]["s"] if times and "s" in row["gamesim"] else None
        degenerate.append(row)
        print_row([name, *(solver_cell(row.get(k)) for k in ("gamesim", "highs-ds", "highs-ipm")), "—",
                   mark(row["best_highs_over_gamesim"], at_least=1)], widths)
        for solver in ("gamesim", "highs-ds", "highs-ipm"):
            if "failed" in row[solver]:
                print(f"  {solver} on {name}: {row[solver]['failed']}")
    fresh = iter([gamesim.load_game("random:n=2000,seed=0") for _ in range(4)])
    gamesim.duality_gap(next(fresh), np.full(2000, 1 / 2000), 0.1)  # warm-up of the gap's JAX ops
    seconds, eq = best_of(3, lambda: gamesim.solve(next(fresh), 0.1))
    print(f"gamesim.solve(random:n=2000, tau=0.1), best of 3: {seconds:.3g} s{'' if seconds < 1 else ' ✗'} (target < 1 s), "
          f"duality gap {eq.duality_gap:.1e}, {eq.method}")
    return {"tau0": rows, "degenerate": degenerate, "tau_0.1_n2000": {"s": seconds, "duality_gap": eq.duality_gap}}


def degenerate_games():
    """(label, A) of games with several equilibria, where gamesim's LP path may take over: the
    n = 300 generic game with 3 copies of its first response, and a rank-2 payoff (n = 300)."""
    A = antisymmetric(300)
    copies = np.r_[np.arange(300), 0, 0, 0]
    u = np.random.default_rng(1).standard_normal((2, 300))
    return [("300 + 3 copies", A[np.ix_(copies, copies)]),
            ("rank 2, 300", 0.5 * np.tanh(np.outer(u[0], u[1]) - np.outer(u[1], u[0])))]


# --- 7. start-up ----------------------------------------------------------------------------------
def cli_seconds(args, caches):
    """Best wall time of fresh `python -m gamesim.cli ARGS` processes, one per JAX compilation
    cache directory in `caches` (GAMESIM_CACHE_DIR: the command line's persistent cache)."""
    cmd = [sys.executable, "-m", "gamesim.cli", *args]

    def once(cache):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env={**os.environ, "GAMESIM_CACHE_DIR": cache})
        return time.perf_counter() - t0

    return min(once(cache) for cache in caches)


def startup_section(quick):
    repeats = 1 if quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        run = ["run", "cycle3", "--algorithm", "inpo", "--eta", "0.1", "--tau", "0.1", "--iterations", "1000",
               "--out", f"{tmp}/out", "--overwrite"]
        cold = [f"{tmp}/cache{i}" for i in range(repeats)]
        out = {"help": cli_seconds(["--help"], cold[:1] * 3), "games": cli_seconds(["games"], cold[:1] * 3),
               "run_cold_cache": cli_seconds(run, cold), "run_warm_cache": cli_seconds(run, cold[:1] * repeats)}
        for jobs in (1, 2):  # EGPO's five algorithms on ten n = 10 games, three τ, its quick form
            study = ["study", "run", str(ROOT / "experiments" / "egpo.toml"), "--quick", "--force", "--jobs", str(jobs),
                     "--results", f"{tmp}/study{jobs}"]
            caches = [f"{tmp}/study_cache{jobs}_{i}" for i in range(repeats)]
            out[f"study_jobs{jobs}_cold_cache"] = cli_seconds(study, caches)
            out[f"study_jobs{jobs}_warm_cache"] = cli_seconds(study, caches[:1] * repeats)
            out[f"study_jobs{jobs}_ratio"] = out[f"study_jobs{jobs}_cold_cache"] / out[f"study_jobs{jobs}_warm_cache"]
        if not quick:  # every study's quick form from an empty cache, the default --jobs (minutes)
            out["reproduce_quick_cold_cache"] = cli_seconds(
                ["reproduce", "--quick", "--experiments", str(ROOT / "experiments"), "--results", f"{tmp}/reproduce"],
                [f"{tmp}/reproduce_cache"])
    print(f"\n7. Start-up: wall time of a fresh `python -m gamesim.cli ...` process, best of 3{'' if repeats == 3 else f' ({repeats} for run)'}")
    table(["command", "seconds", "target"],
          [[name, f"{out[key]:.2f}{'' if out[key] < limit else ' ✗'}", f"< {limit} s"]
           for name, key, limit in (("--help", "help", 1), ("games", "games", 1),
                                    ("run cycle3 inpo 1000 it, empty JAX cache", "run_cold_cache", 3),
                                    ("run cycle3 inpo 1000 it, warm JAX cache", "run_warm_cache", 3),
                                    ("reproduce --quick, empty JAX cache", "reproduce_quick_cold_cache", 180))
           if key in out])
    print("first run of a study (egpo.toml --quick: 5 algorithms × 10 games of n = 10 × 3 τ), fresh process: "
          "empty JAX cache / warm cache (target ≤ 2x)")
    table(["--jobs", "empty cache s", "warm cache s", "ratio"],
          [[jobs, f"{out[f'study_jobs{jobs}_cold_cache']:.2f}", f"{out[f'study_jobs{jobs}_warm_cache']:.2f}",
            mark(out[f"study_jobs{jobs}_ratio"], at_most=2)] for jobs in (1, 2)])
    return out


# --- 8. memory ------------------------------------------------------------------------------------
MEMORY_SCRIPT = """
import resource, sys, time
import gamesim
games = [gamesim.load_game(f"random:n=10,seed={s}") for s in range(256)]
t0 = time.perf_counter()
gamesim.simulate_batch(games, "omd", eta=0.5, tau=0.1, iterations=int(sys.argv[1]), record_every=1000,
                       progress=False)
seconds = time.perf_counter() - t0
maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // (1024 if sys.platform == "darwin" else 1)
try:
    with open("/proc/self/status") as f:
        own = int(next(line.split()[1] for line in f if line.startswith("VmHWM:")))
except OSError:
    own = maxrss
print(seconds, own, maxrss)
"""


def memory_section(quick):
    """Peak RSS of a fresh process: VmHWM, its own address space's high-water mark. (On Linux the
    child's getrusage ru_maxrss also counts the parent's peak, folded in at fork/exec: shown too.)"""
    iterations = 100_000 if quick else 1_000_000
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, str(iterations)], check=True,
                            capture_output=True, text=True)
    seconds, own_kb, maxrss_kb = result.stdout.split()
    out = {"iterations": iterations, "batch": 256, "n": 10, "record_every": 1000, "seconds": float(seconds),
           "peak_rss_mb": int(own_kb) / 1024, "ru_maxrss_mb": int(maxrss_kb) / 1024}
    print(f"\n8. Memory: simulate_batch, 256 games of n = 10, {iterations:,} iterations, record_every=1000 "
          f"({out['seconds']:.1f} s): peak RSS {out['peak_rss_mb']:.0f} MB"
          f"{'' if out['peak_rss_mb'] < 1024 else ' ✗'} (target < 1 GB; the child's ru_maxrss, "
          f"{out['ru_maxrss_mb']:.0f} MB, includes this process's own peak)")
    return out


# --- 9. replicator dynamics ---------------------------------------------------------------------------
def replicator_section(quick):
    nashpy = optional("nashpy")
    if nashpy is None:
        print("\n10. Replicator dynamics: — (nashpy is not installed)")
        return None
    game = gamesim.load_game("random:n=10,seed=0")
    y0 = game.stacked_reference[0]
    K, eta = 10_000, 0.01

    def run():
        return gamesim.simulate(game, "replicator", eta=eta, iterations=K, record_every=K, init=y0,
                                progress=False).policies[-1]

    cold, _ = best_of(1, run)
    warm, pi = best_of(3, run)
    timepoints = np.linspace(0, K * eta, K + 1)
    nash_s, xs = best_of(3, lambda: nashpy.Game(game.payoff[0]).replicator_dynamics(y0=y0, timepoints=timepoints))
    out = {"n": 10, "K": K, "eta": eta, "nashpy_s": nash_s, "gamesim_cold_s": cold, "gamesim_s": warm,
           "nashpy_over_gamesim": nash_s / warm, "final_policy_diff": float(np.abs(xs[-1] - pi).max())}
    print(f"\n10. Replicator dynamics on random:n=10, K = {K:,} steps of eta = {eta} (nashpy: odeint, K + 1 time "
          "points); seconds, best of 3")
    table(["nashpy", "gamesim cold", "gamesim", "nashpy/gamesim", "Δπ (Euler vs ODE)"],
          [[f"{nash_s:.3g}", f"{cold:.3g}", f"{warm:.3g}", f"{out['nashpy_over_gamesim']:.3g}x",
            f"{out['final_policy_diff']:.1e}"]])
    return out


def sampled_section(quick):
    print("\n11. Sampled feedback (benchmarks/sampled.py):")
    return sampled.section(quick)


def gpu_section():
    """The GPU targets are measured by a prepared script on a lent GPU; this machine has none."""
    import jax

    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    print(f"\n12. GPU: {'devices ' + str(gpus) + ' (run the GPU script)' if gpus else 'none on this machine: not measured'}")
    return {"gpus": [str(d) for d in gpus]}


def main():
    args, machine = common.setup(__doc__)
    machine.update(machine_limits())
    print(f"limits: numpy float64 matmul {machine['matmul_gflops']:.0f} GFLOP/s (2048^3, best of 3), "
          f"np.exp {machine['exp_ns_per_element']:.2f} ns/element (1e7 float64)")
    machine.update({name: getattr(optional(name), "__version__", None) for name in ("numba", "nashpy")})
    t0 = time.perf_counter()
    results = {"engine": engine_section(args.quick), "recording": recording_section(args.quick),
               "equilibrium": equilibrium_section(args.quick), "startup": startup_section(args.quick),
               "memory": memory_section(args.quick), "replicator": replicator_section(args.quick),
               "sampled": sampled_section(args.quick), "gpu": gpu_section()}
    results["total_s"] = time.perf_counter() - t0
    print(f"\ntotal {results['total_s']:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
