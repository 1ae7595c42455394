"""Values stored before a behaviour-preserving change, to prove it changed no number.

`compute()` runs a fixed set of trajectories through the public API only (`gamesim.simulate`,
`simulate_batch`, `solve`, `duality_gap`, the CLI), so the same script runs on the code before and
after a refactor: every exact algorithm on both engine backends, batches, the theorem schedule,
every sampled-feedback recipe, the transformer mode, equilibria, and a study's results.
tests/test_stored_values.py compares them with tests/data/stored_values.npz bit for bit.

Regenerate only at a commit whose numbers are the reference (`python tests/stored_values.py
--write`), and say so in the commit: a deliberate change of behaviour regenerates it, a refactor
never does.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np

STORE = Path(__file__).parent / "data" / "stored_values.npz"
GAMES = ("biased_rps:ref_seed=1", "random:n=3,seed=2,ref_seed=3")
TAUS = (0.1, 0.0)
NUMBA = ("omd", "inpo", "nash-md", "sppo", "dno", "iterative-ipo")
SAMPLED = (("inpo", "pairs"), ("inpo", "best-worst"), ("nash-md", "pairs"), ("nash-md", "egpo"),
           ("online-ipo", "pairs"), ("online-ipo", "egpo"), ("sppo", "win-rates"), ("sppo", "best-worst"),
           ("iterative-dpo", "pairs"), ("omd", "egpo"), ("extragradient", "egpo"), ("nash-md-pg", "egpo"),
           ("apo", "pairs"), ("apo-sppo", "win-rates"), ("xpo", "pairs"), ("vpo", "pairs"), ("omd-js", "pairs"),
           ("omd-alpha", "pairs"))
SAMPLED_OPTIONS = {"xpo": {"fit": "sgd", "eta": None}, "vpo": {"fit": "sgd", "eta": None}}
"""Options a sampled recipe needs besides the defaults (XPO and VPO: no exact fit, no learning rate)."""


def machine() -> str:
    """What the numbers' last bits may depend on: library versions and the CPU's vector width."""
    import jax
    import numba

    flags = ""
    if Path("/proc/cpuinfo").exists():
        info = Path("/proc/cpuinfo").read_text()
        flags = "avx512f" if " avx512f" in info else ("avx2" if " avx2" in info else "")
    return f"numpy {np.__version__}, jax {jax.__version__}, numba {numba.__version__}, {platform.machine()} {flags}"


def _trajectory(out: dict, key: str, traj) -> None:
    for name, values in traj.metrics.items():
        out[f"{key}/metrics/{name}"] = np.asarray(values)
    out[f"{key}/policies"] = np.asarray(traj.policies)
    out[f"{key}/iterations"] = np.asarray(traj.iterations)


def _algorithms() -> list[str]:
    """The built-ins `gamesim algorithms` lists, so that a new one is noticed (not algorithms another
    test registered in this process, e.g. a plugin's)."""
    import contextlib
    import io

    from gamesim.cli import main
    from gamesim.dynamics.algorithms import BUILTIN

    text = io.StringIO()
    with contextlib.redirect_stdout(text):
        main(["algorithms"])
    return [name for name in (line.split()[0] for line in text.getvalue().splitlines() if line and not line[0].isspace())
            if name in BUILTIN]


def compute() -> dict[str, np.ndarray]:
    import gamesim
    from gamesim.cli import main
    from gamesim.dynamics.algorithms import get_algorithm

    out: dict[str, np.ndarray] = {}
    names = _algorithms()
    out["algorithms"] = np.array(names)
    for name in names:
        eta = 0.3 if get_algorithm(name).learning_rate else None  # fictitious play, XPO, VPO, SEA: no η
        for game in GAMES:
            for tau in TAUS:
                for backend in ("jax", "numba") if name in NUMBA else ("jax",):
                    try:
                        traj = gamesim.simulate(game, name, eta=eta, tau=tau, iterations=40, record_every=4,
                                                backend=backend)
                    except gamesim.GamesimError as exc:  # e.g. an algorithm that needs tau > 0
                        out[f"simulate/{name}/{game}/tau={tau}/{backend}/refused"] = np.array(str(exc).split(";")[0])
                        continue
                    _trajectory(out, f"simulate/{name}/{game}/tau={tau}/{backend}", traj)
    batch = gamesim.simulate_batch("random:n=3,seed=2,ref_seed=3", "inpo", eta=[0.1, 0.3, 0.6], tau=0.1,
                                   iterations=40, seeds=[0, 1, 2], inits="random", record_every=4)
    _trajectory(out, "batch/inpo/random-init", batch)
    theorem = gamesim.simulate("biased_rps:ref_seed=1", "nash-md", tau=0.1, iterations=40, record_every=4,
                               schedule="theorem")
    _trajectory(out, "simulate/nash-md/theorem-schedule", theorem)
    for name, recipe in SAMPLED:
        options = {"eta": 0.3, **SAMPLED_OPTIONS.get(name, {})}
        traj = gamesim.simulate("random:n=3,seed=2,ref_seed=3", name, tau=0.1, iterations=12, seed=5,
                                record_every=4, feedback="sampled", recipe=recipe, pairs=32, **options)
        _trajectory(out, f"sampled/{name}/{recipe}", traj)
    for spec in ("cycle3", "biased_rps", "rps:ref_seed=1", "random:n=10,seed=7", "kuhn:strategies=undominated"):
        for tau in (0.0, 0.05):
            eq = gamesim.solve(spec, tau)
            out[f"solve/{spec}/tau={tau}/policy"] = np.asarray(eq.policy)
            out[f"solve/{spec}/tau={tau}/duality_gap"] = np.asarray(eq.duality_gap)
            uniform = np.full(gamesim.load_game(spec).n, 1 / gamesim.load_game(spec).n)
            out[f"duality_gap/{spec}/tau={tau}/uniform"] = np.asarray(gamesim.duality_gap(spec, uniform, tau))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "lm"
        assert main(["lm", "run", "--config", "tiny", "--algorithm", "inpo", "--eta", "0.5", "--tau", "0.1",
                     "--iterations", "3", "--pairs", "16", "--out", str(run), "--yes"]) == 0
        out["lm/inpo/metrics.csv"] = np.array((run / "metrics.csv").read_text())
        spec_dir = Path(tmp) / "experiments"
        spec_dir.mkdir()
        spec = Path(__file__).parents[1] / "experiments" / "cycling.toml"
        (spec_dir / spec.name).write_text(spec.read_text())
        assert main(["study", "run", str(spec_dir / spec.name), "--quick", "--results", str(Path(tmp) / "results"),
                     "--yes"]) == 0
        for path in sorted((Path(tmp) / "results").rglob("*.npz")):  # a cell's file: NAME_CODEHASH.npz
            with np.load(path) as data:
                for k in sorted(set(data.files) - {"seconds", "config"}):  # wall time; the code's hash
                    out[f"study/cycling/{path.stem.rsplit('_', 1)[0]}/{k}"] = data[k]
    return out


if __name__ == "__main__":
    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/stored_values.py --write   (at the reference commit only)")
    values = compute()
    values["machine"] = np.array(machine())
    STORE.parent.mkdir(exist_ok=True)
    tmp = STORE.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **values)
    os.replace(tmp, STORE)
    print(json.dumps({"keys": len(values), "bytes": STORE.stat().st_size}))
