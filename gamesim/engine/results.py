"""The run directory of `gamesim run`: metrics.csv, policies.npy, state.npz and run.json, one unit.

metrics.csv has a row per record: `iteration`, then one column per metric (metrics.METRICS).
policies.npy holds the recorded policies (float64, (records, n) or (records, C, n)). state.npz
holds the engine state that `--resume` continues from. run.json holds the format, the command's
settings ("config"), the engine's fingerprint of everything that determines the trajectory, the
status ("running" at a checkpoint, "interrupted", "complete"), versions, timing, the final metrics,
the equilibrium, and the manifest of the other files' sizes and SHA-256 (`rundir`). JSON numbers
that are not finite are written as the strings "nan", "inf" and "-inf" (`json_ready`).
"""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import numpy as np

from gamesim.core.errors import GamesimError
from gamesim.core.rundir import RunDirectory, read


def versions(gamesim_version: str) -> dict:
    """The library versions a run's provenance records."""
    import jax  # only provenance needs these: `gamesim solve` prints its JSON without loading JAX
    import scipy

    return {"gamesim": gamesim_version, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "jax": jax.__version__}


def json_ready(value):
    """`value` with numpy types as Python ones and non-finite floats as "nan", "inf", "-inf", so
    that json.dumps(..., allow_nan=False) writes strict JSON."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_ready(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else ("nan" if math.isnan(value) else "inf" if value > 0 else "-inf")
    return value


def dumps(value, **kwargs) -> str:
    """Strict JSON of `value` (see `json_ready`)."""
    return json.dumps(json_ready(value), allow_nan=False, **kwargs)


def write_run(run: RunDirectory, traj, config: dict, versions: dict | None = None, final: bool = True) -> None:
    """Commit the Trajectory `traj` of the command `config` to the run directory, as one unit;
    final=False marks a checkpoint taken while the run goes on."""
    names = list(traj.metrics)

    def metrics_csv(path):
        with open(path, "w") as f:
            f.write(",".join(["iteration", *names]) + "\n")
            for r, it in enumerate(traj.iterations):
                f.write(",".join([str(int(it)), *(repr(float(traj.metrics[m][r])) for m in names)]) + "\n")

    done = int(traj.iterations[-1])
    status = "complete" if not traj.interrupted else "interrupted" if final else "running"
    info = {"config": config, "fingerprint": traj.config["fingerprint"], "status": status, "iterations_done": done,
            "versions": versions or {},
            "timing": {"seconds": traj.elapsed, "iterations_per_second": done / traj.elapsed if traj.elapsed else None},
            "final": traj.final(), "equilibrium": np.asarray(traj.equilibrium)}
    run.commit({"metrics.csv": metrics_csv,
                "policies.npy": lambda path: np.save(path, traj.policies),
                "state.npz": lambda path: np.savez(path, *traj.state)}, json_ready(info))


SETTING_NAMES = {"game": "the game", "algorithm": "--algorithm", "eta": "--eta", "tau": "--tau",
                 "schedule": "--schedule", "seed": "--seed", "init": "--init", "record_every": "--record-every",
                 "dtype": "--float32", "feedback": "--feedback", "plugins": "the plugins (--plugin)"}


def read_run(out: Path, config: dict):
    """The Trajectory saved in the run directory `out` (every file checked against its manifest),
    refused with a one-line error when the command's settings differ from the saved ones (the
    engine then checks the fingerprint: the game's content, the algorithm's code, π_0, …)."""
    from gamesim.engine.simulation import Trajectory  # loads JAX, which dumps() and versions() callers need not

    info, files = read(out)
    changed = [SETTING_NAMES.get(k, f"--{k.replace('_', '-')}") for k in sorted(set(config) | set(info["config"]))
               if k != "iterations" and info["config"].get(k) != json_ready(config.get(k))]
    if changed:
        raise GamesimError(f"cannot resume: {', '.join(changed)} differ{'s' if len(changed) == 1 else ''} from the run "
                           f"saved in {out}; resume with its settings, or start a new run (--overwrite or another --out)")
    if info["status"] == "complete" and info["iterations_done"] >= config["iterations"]:
        raise GamesimError(f"{out} holds a complete run of {info['iterations_done']} iterations; "
                           "raise --iterations to extend it")
    try:
        table = np.loadtxt(files["metrics.csv"], delimiter=",", skiprows=1, ndmin=2)
        names = files["metrics.csv"].read_text().splitlines()[0].split(",")[1:]
        policies = np.load(files["policies.npy"])
        with np.load(files["state.npz"]) as z:
            state = [z[f"arr_{i}"] for i in range(len(z.files))]
    except (OSError, ValueError, KeyError) as exc:  # the checksums matched, so gamesim wrote these files
        raise GamesimError(f"cannot read the run saved in {out} ({type(exc).__name__}); rerun with --overwrite") from None
    metrics = {name: table[:, i + 1] for i, name in enumerate(names)}
    return Trajectory(table[:, 0].astype(int), policies, metrics, np.asarray(info["equilibrium"]),
                      {"fingerprint": info["fingerprint"]}, state, info["status"] != "complete")
