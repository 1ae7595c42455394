"""Guards on expensive work: estimate a job's memory and time before starting it.

A job that cannot fit in memory (more than MEMORY_SHARE of the machine's physical memory) is
refused. Above CONFIRM_SECONDS of estimated time or CONFIRM_BYTES of results it needs consent:
the command line asks for `--yes`, the Python API warns (`GamesimWarning`) and goes on. The
estimates are rough (within a factor of a few on a 2-core CPU: benchmarks/run.py measures the
real rates) and say so; they exist to catch the slip of an extra zero, not to predict run times.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from gamesim.core.errors import GamesimError

MEMORY_SHARE = 0.5
"""Refuse a job whose estimated memory exceeds this share of the physical memory."""

CONFIRM_SECONDS = 600.0
"""Ask for consent above this estimated time (10 minutes)."""

CONFIRM_BYTES = 256e6
"""Ask for consent above this estimated size of the results kept or written (256 MB)."""

FLOPS_PER_SECOND = 1e9
"""The throughput the time estimates assume (a 2-core CPU; the engine's measured rates are
0.5–3 GFLOP/s on the benchmark's shapes)."""

MAX_ITERATIONS = 10 ** 10
"""More iterations than any run could finish: refused outright."""


class GamesimWarning(UserWarning):
    """A job above a consent threshold, run from Python (the command line asks for --yes instead)."""


@dataclass(frozen=True)
class Estimate:
    what: str
    seconds: float
    bytes: float

    def describe(self) -> str:
        return f"{self.what}: about {_duration(self.seconds)} and {_size(self.bytes)} (rough estimate)"


def physical_memory() -> float:
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8e9


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def _size(nbytes: float) -> str:
    for unit, size in (("EB", 1e18), ("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes / 1e3:.0f} kB"


def confirm(estimate: Estimate, yes: bool | None) -> None:
    """Refuse what cannot fit in memory; above the thresholds, refuse unless `yes` (the command
    line's --yes), or warn when `yes` is None (the Python API)."""
    if estimate.bytes > MEMORY_SHARE * physical_memory():
        raise GamesimError(f"{estimate.describe()}, more than {MEMORY_SHARE:.0%} of this machine's "
                           f"{_size(physical_memory())} of memory; make it smaller (fewer records: raise --record-every; "
                           "fewer iterations, runs or pairs)")
    if estimate.seconds <= CONFIRM_SECONDS and estimate.bytes <= CONFIRM_BYTES:
        return
    if yes is None:
        warnings.warn(estimate.describe(), GamesimWarning, stacklevel=3)
    elif not yes:
        raise GamesimError(f"{estimate.describe()}; pass --yes to start it anyway (the limits are "
                           f"{_duration(CONFIRM_SECONDS)} and {_size(CONFIRM_BYTES)})")


def check_seed(seed, what: str = "a seed") -> int:
    """`seed` if it is an integer in [0, 2**63) (numpy's and JAX's seeds), else a GamesimError."""
    if not (isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and 0 <= seed < 2 ** 63):
        raise GamesimError(f"{what} is an integer in [0, 2**63), got {seed!r}; seeds are not negative")
    return int(seed)


def check_matrix_memory(n: int, contexts: int, what: str) -> None:
    """Refuse, before allocating, a game of `contexts` n × n float64 matrices that cannot fit in
    memory (MEMORY_SHARE of it; its construction holds a few copies)."""
    need = 3 * 8.0 * contexts * n * n
    if need > MEMORY_SHARE * physical_memory():
        raise GamesimError(f"{what}: {contexts} × {n} × {n} float64 matrices need about {_size(need)}, more than "
                           f"{MEMORY_SHARE:.0%} of this machine's {_size(physical_memory())} of memory; use a smaller n")


def check_iterations(iterations) -> None:
    if isinstance(iterations, (int,)) and iterations > MAX_ITERATIONS:
        raise GamesimError(f"iterations = {iterations} is more than any run could finish (the limit is "
                           f"{MAX_ITERATIONS:.0e}); use fewer")


def run_estimate(n: int, contexts: int, runs: int, iterations: int, record_every: int, queries_per_step: int = 0,
                 what: str = "this run") -> Estimate:
    """A batch of `runs` runs of `iterations` steps on n responses and C contexts, recording
    every `record_every`: each step ~ 4n² + 40n flops per context (a record, ~4 steps), sampled
    feedback ~ 100 flops and 64 bytes per query; the records hold the policies and 12 metrics in
    float64 (the CSV about three times that)."""
    records = iterations // record_every + 1
    step = contexts * (4 * n * n + 40 * n + 100 * queries_per_step)
    flops = runs * (iterations * step + records * 4 * step)
    kept = runs * records * (contexts * n + 12) * 8
    working = runs * contexts * queries_per_step * 64  # an iteration's samples, answers and fit
    return Estimate(what, flops / FLOPS_PER_SECOND, 3 * kept + working)


def solve_estimate(n: int, contexts: int, tau: float) -> Estimate:
    """τ = 0: about 20 interior-point iterations, each a dense LU (2n³/3 flops); τ > 0: about 20
    Newton steps, and up to 200 continuation steps in τ below τ = 1e-4 (each an LU)."""
    steps = 20 if tau == 0 or tau >= 1e-4 else 200
    return Estimate(f"solving a game with n = {n} at τ = {tau:g}", contexts * steps * (2 * n ** 3 / 3) / FLOPS_PER_SECOND,
                    contexts * 4 * n * n * 8)


def lm_estimate(model, settings, exact_metrics: bool) -> Estimate:
    """A transformer-mode run: per iteration, sampling 2·pairs responses of L tokens without a
    KV cache (L·F FLOPs per token) and `steps` optimizer steps on them (3F per token, forward and
    backward); per record the metrics (every response's L tokens when exact, else eval_samples
    samples). Memory: parameters with Adam's two moments, and a step's activations."""
    N, F = model.flops_per_token()
    L, pairs = model.length, settings.pairs
    per_iteration = 2 * pairs * L * (L * F + settings.steps * 3 * F)
    records = settings.iterations // settings.record_every + 1
    per_record = (model.num_responses * L * F) if exact_metrics else settings.eval_samples * L * L * F
    flops = settings.iterations * per_iteration + records * per_record
    activations = 2 * pairs * L * (model.n_layers * (16 * model.d_model + model.n_heads * L) + model.vocab) * 4
    return Estimate("this transformer-mode run", flops / FLOPS_PER_SECOND, 4 * 3 * N + activations)


def study_estimate(cells: list) -> Estimate:
    """The sum of a study's cells' run estimates."""
    return Estimate(f"this study's {len(cells)} cells", sum(c.seconds for c in cells), sum(c.bytes for c in cells))


def progress_bar(progress: bool | None, total: float, done: float = 0, long: bool = True, unit: str = "it"):
    """A tqdm bar on stderr, or None: progress=True always, False never, None when the work is
    `long` and stderr is a terminal."""
    if progress is False or (progress is None and not (long and sys.stderr.isatty())):
        return None
    from tqdm import tqdm  # only a terminal run draws a bar; the CLI starts without it

    return tqdm(total=total, initial=done, unit=unit, unit_scale=True, file=sys.stderr, leave=False)
