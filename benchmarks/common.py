"""What the benchmark scripts share: their command line and the machine they ran on."""

import argparse
import os
import platform

import numpy as np


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def setup(doc: str):
    """Parse --quick and --json, print the machine line; returns (args, machine dict)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations (well under a minute)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args()
    import jax

    machine = {"cpu": cpu_model(), "cores": os.cpu_count(), "jax": jax.__version__,
               "numpy": np.__version__, "dtype": "float64", "quick": args.quick}
    print(f"{machine['cpu']}, {machine['cores']} cores | jax {machine['jax']}, numpy {machine['numpy']}"
          f" | float64{' | --quick' if args.quick else ''}")
    return args, machine


def log_softmax_and_sums(logits, log_ref, sums):
    """The plain-numpy tail of a step: log π = log-softmax(logits), and the engine's running sums
    (Σπ, ΣKL(π‖π_ref), Σlog(π/π_ref)) updated with it. Returns (log π, π, sums)."""
    m = logits.max(-1, keepdims=True)
    log_pi = logits - m - np.log(np.exp(logits - m).sum(-1, keepdims=True))
    pi = np.exp(log_pi)
    sum_pi, sum_kl, sum_log = sums
    return log_pi, pi, (sum_pi + pi, sum_kl + (pi * (log_pi - log_ref)).sum(-1), sum_log + log_pi - log_ref)


def mark(ratio, at_most=None, at_least=None):
    """A ratio as text, with ✗ when it misses its target; "—" when there is no ratio."""
    if ratio is None:
        return "—"
    missed = (at_most is not None and ratio > at_most) or (at_least is not None and ratio < at_least)
    return f"{ratio:.3g}x{' ✗' if missed else ''}"
