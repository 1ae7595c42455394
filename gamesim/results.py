"""A run directory: metrics.csv, policies.npy, run.json and state.npz, each written atomically.

metrics.csv has a row per record: `iteration`, then one column per metric (metrics.METRICS).
policies.npy holds the recorded policies (float64, (records, n) or (records, C, n)). run.json
holds the configuration, versions, timing, status and final metrics; state.npz the engine state
that `gamesim run --resume` continues from.
"""

from __future__ import annotations

import json
import platform
from pathlib import Path

import numpy as np

from .errors import GamesimError
from .files import atomic_open


def versions(gamesim_version: str) -> dict:
    import jax
    import scipy

    return {"gamesim": gamesim_version, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "jax": jax.__version__}


def write_run(out: Path, traj, config: dict, versions: dict) -> None:
    names = list(traj.metrics)
    with atomic_open(out / "metrics.csv") as f:
        f.write(",".join(["iteration", *names]) + "\n")
        for r, it in enumerate(traj.iterations):
            f.write(",".join([str(int(it)), *(repr(float(traj.metrics[m][r])) for m in names)]) + "\n")
    with atomic_open(out / "policies.npy", "wb") as f:
        np.save(f, traj.policies)
    with atomic_open(out / "state.npz", "wb") as f:
        np.savez(f, *traj.state)
    done = int(traj.iterations[-1])
    info = {"config": config, "status": "interrupted" if traj.interrupted else "complete",
            "iterations_done": done, "versions": versions,
            "timing": {"seconds": traj.elapsed, "iterations_per_second": done / traj.elapsed if traj.elapsed else None},
            "final": traj.final(), "equilibrium": np.asarray(traj.equilibrium).tolist()}
    with atomic_open(out / "run.json") as f:
        json.dump(info, f, indent=2)
        f.write("\n")


def read_run(out: Path, config: dict, game):
    """The Trajectory saved in `out`, checked to come from the same configuration."""
    from .engine import Trajectory

    try:
        info = json.loads((out / "run.json").read_text())
        policies = np.load(out / "policies.npy")
        with np.load(out / "state.npz") as z:
            state = [z[f"arr_{i}"] for i in range(len(z.files))]
        table = np.loadtxt(out / "metrics.csv", delimiter=",", skiprows=1, ndmin=2)
        names = (out / "metrics.csv").read_text().splitlines()[0].split(",")[1:]
    except (OSError, ValueError, KeyError) as exc:
        raise GamesimError(f"cannot resume from {out}: its results are missing or malformed ({exc})") from None
    changed = {k: (info["config"].get(k), v) for k, v in config.items()
               if k != "iterations" and info["config"].get(k) != v}
    if changed:
        raise GamesimError(f"cannot resume: settings differ from the saved run (saved, given): {changed}")
    if info["status"] == "complete" and info["iterations_done"] >= config["iterations"]:
        raise GamesimError(f"{out} holds a complete run of {info['iterations_done']} iterations; "
                           "raise --iterations to extend it")
    metrics = {name: table[:, i + 1] for i, name in enumerate(names)}
    return Trajectory(table[:, 0].astype(int), policies, metrics, np.asarray(info["equilibrium"]),
                      info["config"], state, info["status"] == "interrupted")
