"""Studies: a TOML spec → a sweep of runs → results with named axes and provenance → a figure.

A spec (one per study in `experiments/`, read with `files.read_toml`) holds a title and caption, one or
more `[[group]]` tables of runs and the `[[panel]]` tables of the figure drawn from them (see
`plots`). A group is a grid: every list-valued key among

    games, algorithms, eta, tau, iterations, seeds, and the algorithms' hyperparameters

is an axis of the results (seeds = S means seeds 0..S−1), in the order (game, algorithm, the other
list keys in spec order, seed, record). Scalar keys hold for every run; `[group.per_algorithm.NAME]`
overrides scalar keys for one algorithm (INPO at τ > 0 beside Hedge at τ = 0). `eta = "theorem3"`
is INPO Theorem 3's step √D/√T for each run's T. `records = R` records R + 1 points (needed when
`iterations` is an axis); `record_every = k` records every k. `policies = true` keeps the
recorded policies. `skip_invalid = true` leaves runs outside an algorithm's valid range
(e.g. ητ > 1) as NaN and lists them in the provenance instead of stopping. A `[quick]` table
overrides keys of every group (and `[quick.group.NAME]` of one) for `--quick`; where it narrows a
group's algorithms, the `per_algorithm` tables of those it leaves out are dropped. `mode = "lm"`
runs the group in transformer mode (`lm.run`, keys LM_KEYS, games `sequence:…`, algorithms
`recipes.TRANSFORMER_ALGORITHMS`): the same game as a tabular group on that spec, with the
language model in place of the table. `mode = "mlp"`
runs EGPO's neural-policy study (`mlp.run`, keys MLP_KEYS, algorithms `algorithms.EGPO_METHODS`,
tau its β): each seed one network shared by the group's games, one run per game.

A cell, the unit of work and of caching, is one `simulate_batch` over all games of one shape ×
seeds for one point of the other axes. Each cell is saved atomically under
`RESULTS/NAME/cells/` with a hash of everything that determines it (its settings and a
fingerprint of gamesim's source, so a code change recomputes), so an interrupted sweep
resumes where it stopped and a spec edit recomputes only the cells it changes. The stacked
results go to `RESULTS/NAME.npz` (arrays `GROUP/METRIC`) and `RESULTS/NAME.json` (dims, coords,
the resolved spec and its hash, versions, git commit, timings).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
import math
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gamesim.bandit.recipes import OPTIONS, PARAMS, TRANSFORMER_ALGORITHMS
from gamesim.core import VERSION as __version__
from gamesim.core.errors import GamesimError
from gamesim.core.files import atomic_open, read_toml, sha256
from gamesim.core.games import load_game, parse_spec
from gamesim.core.guards import Estimate, check_iterations, confirm, run_estimate, study_estimate
from gamesim.core.metrics import METRICS, SAMPLED_METRICS
from gamesim.core.names import check_keys, check_name
from gamesim.dynamics.algorithms import ALGORITHMS, EGPO_METHODS, get_algorithm
from gamesim.engine.results import versions
from gamesim.lm.sequences import oracle_spec
from gamesim.studies.plots import check_panel, draw
from gamesim.studies.plugins import fingerprint, load_plugin

AXIS_KEYS = ("games", "algorithms", "eta", "tau", "iterations", "seeds")
RUN_KEYS = AXIS_KEYS + ("record_every", "records", "init", "schedule", "feedback", "dtype", "metrics",
                        "policies", "skip_invalid", "per_algorithm", "mode")
LM_KEYS = AXIS_KEYS + ("record_every", "records", "metrics", "skip_invalid", "per_algorithm", "mode", "pairs",
                       "steps", "lr")
"""The keys of a `mode = "lm"` group (transformer mode, `lm`): its games are `sequence` games."""
MLP_PARAMS = ("hidden", "depth")
MLP_KEYS = ("games", "algorithms", "tau", "iterations", "seeds", "record_every", "records", "metrics", "skip_invalid",
            "mode", "lr") + MLP_PARAMS
"""The keys of a `mode = "mlp"` group (EGPO's neural policy, `mlp.run`): tau is EGPO's β."""
SPEC_KEYS = ("title", "caption", "layout", "panel_size", "defaults", "group", "panel", "quick", "plugins")


def _hyperparameter_keys() -> tuple:
    """The keys a group takes besides RUN_KEYS: every registered algorithm's hyperparameters (read
    now, so that a plugin's are included), the sampled feedback's options and hyperparameters
    (`recipes.OPTIONS`, `recipes.PARAMS`) and the MLP's."""
    names = {k for a in ALGORITHMS.values() for k in a.params}
    return tuple(sorted(names)) + tuple(OPTIONS) + tuple(PARAMS) + MLP_PARAMS


# --- the spec ----------------------------------------------------------------------------------------
@dataclass
class Group:
    name: str
    axes: dict          # dim name → list of values, in result order (game, algorithm, …, seed)
    fixed: dict         # scalar run keys
    per_algorithm: dict  # algorithm → {key: value}
    metrics: list | None
    policies: bool
    skip_invalid: bool

    @property
    def dims(self) -> tuple:
        return (*self.axes, "record")


@dataclass
class Study:
    name: str
    path: Path
    spec: dict           # the resolved spec ([quick] applied), as saved with the results
    groups: dict         # name → Group
    panels: list
    quick: bool

    @property
    def hash(self) -> str:
        """Hash of what determines the results (the resolved groups and gamesim's code): a caption
        or panel edit redraws the figure without rerunning anything."""
        text = json.dumps({"groups": self.spec["group"], "code": code_fingerprint()}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


PACKAGE = Path(__file__).resolve().parents[1]
UNFINGERPRINTED = ("studies/plots.py", "studies/explore.py", "cli.py")
"""Sources that cannot change a result (the drawing, the explore page and the command line), left out of the fingerprint."""


def fingerprinted_sources() -> list[Path]:
    """gamesim's Python sources whose edit recomputes a cached cell: every layer's, less UNFINGERPRINTED."""
    return [path for path in sorted(PACKAGE.rglob("*.py"))
            if path.relative_to(PACKAGE).as_posix() not in UNFINGERPRINTED]


@functools.cache
def _source_fingerprint() -> str:
    digest = hashlib.sha1()
    for path in fingerprinted_sources():
        digest.update(path.relative_to(PACKAGE).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:12]


def code_fingerprint() -> str:
    """A hash of gamesim's source (less the drawing and the command line, which do not change
    results) and of every plugin loaded: a cached cell or study is reused only by the code that made it."""
    plugins = fingerprint()
    if not plugins:
        return _source_fingerprint()
    return hashlib.sha1((_source_fingerprint() + json.dumps(plugins, sort_keys=True)).encode()).hexdigest()[:12]


def load_spec(path, quick: bool = False, allow_plugins: bool = False) -> Study:
    """Read and validate a study spec; GamesimError names any unknown key or bad value.

    A spec's `plugins = ["my_method.py", …]` (paths relative to the spec) are Python files that
    register algorithms; they run only with allow_plugins=True (`--allow-plugins`), else the spec
    is refused, so that reading a spec never runs code by itself.
    """
    path = Path(path)
    raw = read_toml(path, "study spec")
    where = path.name
    check_keys(raw, SPEC_KEYS, f"key in {where}")
    _load_plugins(raw.get("plugins", []), path, allow_plugins)
    if not raw.get("group"):
        raise GamesimError(f"{where} has no [[group]] of runs; add at least one")
    if not raw.get("panel"):
        raise GamesimError(f"{where} has no [[panel]] to draw; add at least one")
    hyper = _hyperparameter_keys()
    defaults = raw.get("defaults", {})
    check_keys(defaults, RUN_KEYS + hyper, f"key in {where} [defaults]")
    quick_table = raw.get("quick", {}) if quick else {}
    check_keys(raw.get("quick", {}), RUN_KEYS + hyper + ("group",), f"key in {where} [quick]")
    names = [g.get("name", f"group{i}") for i, g in enumerate(raw["group"])]
    for name in [path.stem, *names]:
        check_name(name, f"{where}: a study or group name")
    if len(set(names)) != len(names):
        raise GamesimError(f"{where}: group names repeat ({names}); give each [[group]] its own name")
    check_keys(raw.get("quick", {}).get("group", {}), names, f"group in {where} [quick.group]")
    groups = {}
    resolved_groups = []
    for name, table in zip(names, raw["group"]):
        check_keys(table, RUN_KEYS + hyper + ("name",), f"key in {where} [[group]] {name!r}")
        merged = {**defaults, **{k: v for k, v in table.items() if k != "name"}}
        merged |= {k: v for k, v in quick_table.items() if k != "group"}
        merged |= quick_table.get("group", {}).get(name, {})
        check_keys(merged, RUN_KEYS + hyper, f"key in {where} [quick.group.{name}]")
        if quick and "per_algorithm" in merged:  # a quick grid's narrower algorithms drop the others' overrides
            full = {**defaults, **table}.get("algorithms", [])
            check_keys(merged["per_algorithm"], [full] if isinstance(full, str) else full,
                       f"per_algorithm entry in {where} group {name!r} (not in its algorithms)")
            kept = [merged["algorithms"]] if isinstance(merged["algorithms"], str) else merged["algorithms"]
            merged["per_algorithm"] = {a: v for a, v in merged["per_algorithm"].items() if a in kept}
        groups[name] = _group(name, merged, f"{where} group {name!r}")
        resolved_groups.append({"name": name, **merged})
    panels = raw["panel"]
    for i, panel in enumerate(panels):
        check_panel(panel, groups, f"{where} panel {i + 1}")
    spec = {k: v for k, v in raw.items() if k not in ("quick", "defaults", "group")} | {"group": resolved_groups}
    return Study(path.stem, path, spec, groups, panels, quick)


def _load_plugins(plugins, spec_path: Path, allowed: bool) -> None:
    """Run the spec's plugin files (relative to the spec), or refuse the spec when not allowed."""
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise GamesimError(f"{spec_path.name}: plugins is a list of Python files, e.g. plugins = [\"my_method.py\"]")
    if plugins and not allowed:
        raise GamesimError(f"{spec_path.name} lists plugins ({', '.join(plugins)}), which run Python code; "
                           "pass --allow-plugins to run them (or load them yourself with --plugin FILE)")
    for plugin in plugins:
        load_plugin(spec_path.parent / plugin)


def _group(name: str, table: dict, where: str) -> Group:
    for key in ("games", "algorithms", "iterations"):
        if key not in table:
            raise GamesimError(f"{where} lacks {key!r}")
    table = copy.deepcopy(table)
    per_algorithm = table.pop("per_algorithm", {})
    metrics = table.pop("metrics", None)
    policies = bool(table.pop("policies", False))
    skip_invalid = bool(table.pop("skip_invalid", False))
    if not isinstance(table.get("seeds", 1), (int, list)):
        raise GamesimError(f"{where}: seeds is a count S (seeds 0..S−1) or a list of seeds")
    if isinstance(table.get("seeds", 1), int):
        table["seeds"] = list(range(table.get("seeds", 1)))
    for key in ("games", "algorithms"):
        if isinstance(table[key], str):
            table[key] = [table[key]]
    if isinstance(table.get("init"), list) and table["init"] and isinstance(table["init"][0], (int, float)):
        table["init"] = tuple(table["init"])  # a policy, not an axis
    if table.get("mode", "tabular") not in ("tabular", "lm", "mlp"):
        raise GamesimError(f"{where}: mode is 'tabular' (the default), 'lm' (transformer mode) or 'mlp' "
                           f"(EGPO's neural policy), not {table['mode']!r}")
    valid_algorithms = ALGORITHMS
    if table.get("mode") == "mlp":
        from gamesim.lm.mlp import METRICS as MLP_METRICS, check_games  # loads optax: only for an MLP group

        check_keys(table, MLP_KEYS, f"key in {where} (a mode = 'mlp' group)")
        for key in ("lr", "tau"):
            if key not in table:
                raise GamesimError(f"{where}: a mode = 'mlp' group needs {key!r} (EGPO's exact neural runs: "
                                   "lr = 0.003, tau = 0.01)")
        if policies or per_algorithm:
            raise GamesimError(f"{where}: a mode = 'mlp' group takes neither policies nor per_algorithm")
        check_keys(metrics or [], MLP_METRICS, f"metric in {where} (a mode = 'mlp' group)")
        check_games(table["games"])
        valid_algorithms = EGPO_METHODS
    lm_mode = table.get("mode") == "lm"
    if lm_mode:
        check_keys(table, LM_KEYS, f"key in {where} (a mode = 'lm' group)")
        if policies:
            raise GamesimError(f"{where}: policies = true needs tabular policies; a mode = 'lm' group has none")
        for spec in table["games"]:
            game_name, kwargs = parse_spec(spec) if isinstance(spec, str) else (None, {})
            if game_name != "sequence" or kwargs.get("ref_seed") is not None:
                raise GamesimError(f"{where}: a mode = 'lm' group plays sequence games "
                                   f"(e.g. 'sequence:model=tiny,oracle=bt'), without ref_seed; not {spec!r}")
    for alg in table["algorithms"]:
        check_keys([alg], list(TRANSFORMER_ALGORITHMS if lm_mode else valid_algorithms), f"algorithm in {where}")
    check_keys(per_algorithm, table["algorithms"], f"per_algorithm entry in {where} (not in its algorithms)")
    for alg, over in per_algorithm.items():
        check_keys(over, RUN_KEYS + _hyperparameter_keys(), f"key in {where} per_algorithm.{alg}")
        for key, value in over.items():
            if isinstance(value, list) or key in AXIS_KEYS[:2] + ("iterations", "seeds"):
                raise GamesimError(f"{where} per_algorithm.{alg}.{key}: overrides are scalars of "
                                   "eta, tau, init, schedule or hyperparameters")
    for spec in table["games"]:
        load_game(spec)  # a bad spec fails here, with its own message
    valid_metrics = list(METRICS) + list(SAMPLED_METRICS)
    if metrics is not None:
        check_keys(metrics, valid_metrics, f"metric in {where}")
    if "record_every" in table and "records" in table:
        raise GamesimError(f"{where}: give records or record_every, not both")
    for key in ("iterations", "records", "record_every"):
        for value in (table[key] if isinstance(table.get(key), list) else [table.get(key, 1)]):
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= (0 if key == "iterations" else 1)):
                raise GamesimError(f"{where}: {key} is a whole number (write 1000000, not 1e6), got {value!r}")
            if key == "iterations":
                check_iterations(value)
    if isinstance(table["iterations"], list) and "records" not in table:
        raise GamesimError(f"{where}: iterations is an axis, so the runs differ in length; give "
                           "records = R (each run records R + 1 points) instead of record_every")
    if isinstance(table.get("eta"), str) and table["eta"] != "theorem3":
        raise GamesimError(f"{where}: eta is a number, a list of numbers, or 'theorem3' (INPO Theorem 3's "
                           f"step for each run's T), not {table['eta']!r}")
    axes = {"game": table.pop("games"), "algorithm": table.pop("algorithms")}
    for key, value in list(table.items()):
        if key != "seeds" and isinstance(value, list):
            axes[key] = table.pop(key)
    axes["seed"] = table.pop("seeds")
    for alg, over in per_algorithm.items():
        if clash := [k for k in over if k in axes]:
            raise GamesimError(f"{where} per_algorithm.{alg} sets {clash}, which are axes of the group")
    for dim, values in axes.items():
        if not values:
            raise GamesimError(f"{where}: the {dim} axis is empty")
    return Group(name, axes, table, per_algorithm, metrics, policies, skip_invalid)


# --- cells ----------------------------------------------------------------------------------------
@dataclass
class Cell:
    group: str
    index: tuple           # indices along the axes other than game and seed
    game_index: list       # which games (same shape) it batches
    config: dict           # everything that determines the result

    @property
    def key(self) -> str:
        text = json.dumps({**self.config, "code": code_fingerprint()}, sort_keys=True, default=str)
        slug = "-".join(str(v) for v in (self.config["algorithm"], *self.index))
        return f"{slug}_{hashlib.sha1(text.encode()).hexdigest()[:12]}"


def cells(group: Group) -> list[Cell]:
    """The group's cells: one per point of the non-game, non-seed axes and per shape of game."""
    games = [load_game(g) for g in group.axes["game"]]
    shapes: dict = {}
    for i, g in enumerate(games):
        shapes.setdefault((g.num_contexts, g.n), []).append(i)
    inner = [d for d in group.axes if d not in ("game", "seed")]
    out = []
    for index in itertools.product(*(range(len(group.axes[d])) for d in inner)):
        point = {d: group.axes[d][i] for d, i in zip(inner, index)}
        alg = point["algorithm"]
        run = {**group.fixed, **group.per_algorithm.get(alg, {}), **{k: v for k, v in point.items() if k != "algorithm"}}
        for members in shapes.values():
            config = {"algorithm": alg, "games": [group.axes["game"][i] for i in members],
                      "seeds": group.axes["seed"], **run}
            out.append(Cell(group.name, index, members, config))
    return out


def _simulate_cell(cell: Cell, group: Group, load=load_game):
    """simulate_batch over (games × seeds) of the cell, its games from `load`; returns the
    Trajectory (batch G·S)."""
    from gamesim.dynamics import theory  # computing only: `study plot` reads a spec without the engine or SciPy
    from gamesim.engine import simulation as engine
    c = dict(cell.config)
    mode = c.pop("mode", "tabular")
    if mode == "lm":
        return _lm_cell(c)
    if mode == "mlp":
        return _mlp_cell(c)
    alg = get_algorithm(c.pop("algorithm"))
    games = [load(g) for g in c.pop("games")]
    seeds = c.pop("seeds")
    T = int(c.pop("iterations"))
    records = c.pop("records", None)
    k = c.pop("record_every", None) or (T // records if records else 1)
    if records and T % records:
        raise GamesimError(f"group {cell.group!r}: records = {records} must divide iterations = {T}")
    tau = c.pop("tau", 0.0)
    eta = c.pop("eta", None)
    if not alg.learning_rate or c.get("schedule") == "theorem":
        eta = None
    pairs = [(g, s) for g in games for s in seeds]
    if eta == "theorem3":
        etas = [float(theory.inpo_theorem3_eta(T, tau, np.log(1 / g.reference.min()), 0.0)) for g, _ in pairs]
    else:
        etas = [eta] * len(pairs)
    init = c.pop("init", None)
    init = list(init) if isinstance(init, tuple) else init
    return engine.simulate_batch([g for g, _ in pairs], alg, eta=etas, tau=tau, iterations=T,
                                 seeds=[s for _, s in pairs], inits=[init] * len(pairs), record_every=k,
                                 progress=False, **c)


def _lm_cell(c: dict):
    """A mode = "lm" cell: one `lm.run` per (sequence game, seed), stacked like a batch Trajectory."""
    from gamesim.engine.simulation import Trajectory  # computing only, and the transformer mode loads optax
    from gamesim.lm import training as lm
    from gamesim.lm.transformer import CONFIGS

    T, records = int(c["iterations"]), c.get("records")
    if records and T % records:
        raise GamesimError(f"records = {records} must divide iterations = {T}")
    hyper = {k: c[k] for k in ("pairs", "steps", "lr") if k in c}
    runs = []
    for spec in c["games"]:
        _, kw = parse_spec(spec)
        model = CONFIGS[kw["model"]]
        for seed in c["seeds"]:
            s = lm.LMSettings(c["algorithm"], c["eta"], c.get("tau", 0.0), T,
                              oracle_spec(kw["oracle"], kw["rank"], kw["scale"], kw["seed"]),
                              record_every=c.get("record_every") or (T // records if records else 1), seed=seed,
                              init_seed=kw["init_seed"], **hyper)
            runs.append(lm.run(model, s, progress=False))
    names = [k for k in runs[0] if k not in ("iteration", "params", "interrupted")]
    return Trajectory(runs[0]["iteration"], None, {k: np.stack([r[k] for r in runs]) for k in names}, None,
                      {"mode": "lm"}, None, any(r["interrupted"] for r in runs))


def _mlp_cell(c: dict):
    """A mode = "mlp" cell: `mlp.run` of one EGPO method, each seed one network over the cell's games."""
    from gamesim.lm import mlp  # computing only: loads optax

    T, records = int(c["iterations"]), c.get("records")
    if records and T % records:
        raise GamesimError(f"records = {records} must divide iterations = {T}")
    return mlp.run(c["games"], c["algorithm"], lr=c["lr"], beta=c["tau"], iterations=T, seeds=c["seeds"],
                   record_every=c.get("record_every") or (T // records if records else 1),
                   **{k: c[k] for k in MLP_PARAMS if k in c})


@dataclass
class GroupResults:
    """Arrays of one group with named axes: dims (game, algorithm, …, seed, record)."""

    dims: tuple
    coords: dict
    arrays: dict          # metric → ndarray over dims; "iteration" too; "policy": dims + (C, n)
    skipped: list = field(default_factory=list)

    def select(self, name: str, **where) -> tuple[np.ndarray, tuple]:
        """The array `name` with the given dims fixed (by value, or 'first'/'last'), and its dims."""
        data, dims = self.arrays[name], list(self.dims)
        for dim, value in where.items():
            if dim not in dims:
                continue
            values = self.coords[dim]
            i = {"first": 0, "last": len(values) - 1}.get(value) if isinstance(value, str) and value in (
                "first", "last") else _index(values, value, dim)
            data = np.take(data, i, axis=dims.index(dim))
            dims.remove(dim)
        return data, tuple(dims)


def _index(values, value, dim) -> int:
    for i, v in enumerate(values):
        if v == value or (isinstance(v, float) and isinstance(value, (int, float)) and math.isclose(v, value)):
            return i
    raise GamesimError(f"{value!r} is not on the {dim} axis {values}")


def _cell_estimate(cell: Cell):
    """The guards' estimate of a cell (one batched run, plus about a second of compilation)."""
    c = cell.config
    if c.get("mode") == "lm":
        return Estimate("", 5.0, 0.0)
    (n, contexts), T = _shape(c["games"][0]), int(c["iterations"])
    k = c.get("record_every") or (T // c["records"] if c.get("records") else 1)
    e = run_estimate(n, contexts, len(c["games"]) * len(c["seeds"]), T, k)
    return Estimate("", e.seconds + 1.0, e.bytes)


@functools.lru_cache(maxsize=256)
def _shape(spec: str) -> tuple[int, int]:
    game = load_game(spec)
    return game.n, game.num_contexts


def run_study(study: Study, results_dir, force: bool = False, log=print, yes: bool | None = None,
              jobs: int = 1) -> dict:
    """Run every cell not already saved (in `jobs` processes, see `compute_cells`), stack the
    results, write NAME.npz and NAME.json.

    Returns {group name: GroupResults}. When NAME.json holds this spec's hash the saved results
    are returned without running anything (force=True recomputes every cell).
    """
    results_dir = Path(results_dir)
    if not force and (saved := load_results(study, results_dir, missing_ok=True)) is not None:
        log(f"{study.name}: results up to date ({results_dir / study.name}.npz)")
        return saved
    started = time.time()
    compute_cells(study, results_dir, all_cells(study), force=force, log=log, yes=yes, jobs=jobs)
    return stack_cells(study, results_dir, time.time() - started, log=log, compute_missing=True)


def all_cells(study: Study) -> list[Cell]:
    """Every cell of the study, group by group, in one fixed order (shards split this list)."""
    return [cell for group in study.groups.values() for cell in cells(group)]


def cell_path(study: Study, results_dir, cell: Cell) -> Path:
    """Where a cell is saved: its key hashes its settings and gamesim's code (`Cell.key`)."""
    return Path(results_dir) / study.name / "cells" / f"{cell.group}_{cell.key}.npz"


def compute_cells(study: Study, results_dir, todo: list[Cell], force: bool = False, log=print,
                  yes: bool | None = None, jobs: int = 1) -> None:
    """Compute and save (atomically) each cell of `todo` not already saved (every one with force),
    in this process or, with jobs > 1, in `jobs` worker processes (`compute_in_pool`). A cell's
    result depends on its settings alone (its seeds are among them), never on which cells run
    beside it or in which process: the basis of `shards` and of the pool."""
    pending = pending_cells(study, results_dir, todo, force, yes)
    if jobs > 1 and len(pending) > 1:
        with worker_pool(jobs) as pool:
            compute_in_pool([(study, cell) for cell in pending], results_dir, pool, log)
        return
    load = functools.cache(load_game)  # the cells share their games, and the equilibria each game caches
    for i, cell in enumerate(pending):
        _compute_and_save(study, results_dir, cell, log, f"{i + 1}/{len(pending)}", load)


def pending_cells(study: Study, results_dir, todo: list[Cell], force: bool = False,
                  yes: bool | None = None) -> list[Cell]:
    """The cells of `todo` not saved yet (all with force), once their estimate is confirmed."""
    pending = [cell for cell in todo if force or not cell_path(study, results_dir, cell).exists()]
    confirm(study_estimate([_cell_estimate(cell) for cell in pending]), yes)
    (Path(results_dir) / study.name / "cells").mkdir(parents=True, exist_ok=True)
    return pending


def worker_pool(jobs: int):
    """`jobs` fresh worker processes for `compute_in_pool` and `reproduce` (a context manager).
    Spawned (JAX's threads do not survive a fork), they load the plugin files this process loaded
    (algorithms registered without a file are unknown to them), share its persistent JAX
    compilation cache and ignore Ctrl-C, which stops the parent, which stops them."""
    import multiprocessing  # only with jobs > 1

    import jax  # the compilation-cache settings the workers inherit (imported by the engine anyway)

    from gamesim.studies import plugins

    cache = {name: getattr(jax.config, name) for name in COMPILATION_CACHE_SETTINGS}
    return multiprocessing.get_context("spawn").Pool(jobs, _worker_start, ([str(p) for p in plugins.LOADED], cache))


def compute_in_pool(work: list[tuple[Study, Cell]], results_dir, pool, log=print) -> dict[str, float]:
    """Compute and save the (study, cell) pairs of `work` in the `worker_pool`, the cells of
    several studies mixed, so that their compilations run side by side (XLA compiles on one core;
    a first run of small studies is mostly compilation). Each worker saves its cells as
    `compute_cells` does, bit for bit the same files (a cell depends on its settings alone;
    tests/test_shards.py, tests/test_study.py). Returns each study's seconds of computation (its
    cells' own times, summed)."""
    tasks, spent = [(study, str(results_dir), cell) for study, cell in work], {}
    for i, (name, label, seconds) in enumerate(pool.imap_unordered(_worker_cell, tasks)):
        log(f"{name} cell {i + 1}/{len(tasks)} done in a worker: {label} ({seconds:.1f} s)")
        spent[name] = spent.get(name, 0.0) + seconds
    return spent


COMPILATION_CACHE_SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
                              "jax_persistent_cache_min_entry_size_bytes")
"""The JAX settings a worker copies from the process that starts it."""


def _worker_start(plugin_files: list[str], cache: dict) -> None:
    import signal  # a worker's own setup

    import jax  # as in compute_in_pool

    from gamesim.studies.plugins import load_plugin

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the pool
    for name, value in cache.items():
        jax.config.update(name, value)
    for path in plugin_files:
        load_plugin(path)


_worker_games = functools.cache(load_game)
"""A worker's games, loaded once across the cells it computes (with their cached equilibria)."""


def _worker_cell(task) -> tuple[str, str, float]:
    study, results_dir, cell = task
    data = _compute_and_save(study, results_dir, cell, lambda *_: None, "", _worker_games)
    return study.name, f"[{cell.group}] {cell.config['algorithm']} {_describe(cell, study.groups[cell.group])}", \
        float(data["seconds"])


def _compute_and_save(study: Study, results_dir, cell: Cell, log, position: str, load=load_game) -> dict:
    group = study.groups[cell.group]
    log(f"{study.name} [{cell.group}] cell {position}: {cell.config['algorithm']} {_describe(cell, group)}")
    t0 = time.perf_counter()
    data = _compute_cell(cell, group, load)
    data["seconds"] = np.array(time.perf_counter() - t0)
    with atomic_open(cell_path(study, results_dir, cell), "wb") as f:
        np.savez(f, config=np.array(json.dumps(cell.config, default=str)), **data)
    return data


def stack_cells(study: Study, results_dir, seconds: float, log=print, compute_missing: bool = False) -> dict:
    """Stack every saved cell into the study's results and write NAME.npz and NAME.json. A cell
    that is missing or damaged is computed with compute_missing, else named in a GamesimError."""
    results_dir = Path(results_dir)
    timings, out = {}, {}
    for gname, group in study.groups.items():
        done, skipped = [], []
        for cell in cells(group):
            path = cell_path(study, results_dir, cell)
            data = _read_cell(path, log) if path.exists() else None
            if data is None and compute_missing:
                data = _compute_and_save(study, results_dir, cell, log, "(again)")
            elif data is None:
                raise GamesimError(f"{study.name}: the cell {cell.config['algorithm']} {_describe(cell, group)} of "
                                   f"group {gname!r} is not in {path.parent}; run `gamesim study run {study.path}` "
                                   "(or the shard that holds it) first")
            timings[f"{gname}/{cell.key}"] = float(data["seconds"])
            if "skipped" in data:
                skipped.append({"cell": f"{cell.config['algorithm']} {_describe(cell, group)}",
                                "reason": str(data["skipped"])})
            done.append((cell, data))
        out[gname] = _stack(group, done, skipped)
    _write_results(study, results_dir, out, timings, seconds)
    return out


def _describe(cell: Cell, group: Group) -> str:
    inner = [d for d in group.axes if d not in ("game", "seed", "algorithm")]
    parts = [f"{d}={group.axes[d][i]}" for d, i in zip(inner, cell.index[1:])]
    games = cell.config["games"]
    return " ".join(parts + [f"games={games[0]}" + (f"+{len(games) - 1}" if len(games) > 1 else "")])


def _compute_cell(cell: Cell, group: Group, load=load_game) -> dict:
    try:
        traj = _simulate_cell(cell, group, load)
    except GamesimError as exc:
        if not group.skip_invalid:
            raise GamesimError(f"group {group.name!r}, {cell.config['algorithm']} {_describe(cell, group)}: {exc}") from None
        return {"skipped": np.array(str(exc))}
    if traj.interrupted:
        raise KeyboardInterrupt
    names = group.metrics or list(traj.metrics)
    missing = [m for m in names if m not in traj.metrics]
    if missing:
        raise GamesimError(f"group {group.name!r}: metrics {missing} are not recorded in this mode")
    data = {f"metric_{m}": traj.metrics[m] for m in names}
    data["iteration"] = np.broadcast_to(traj.iterations, traj.metrics[names[0]].shape).copy()
    if group.policies:  # (B, R, C, n)
        policies = np.asarray(traj.policies)
        data["policy"] = policies[:, :, None] if policies.ndim == 3 else policies
    return data


def _read_cell(path: Path, log) -> dict | None:
    """A saved cell, or None (it is then recomputed) when the file is damaged: cells are written
    atomically, so that takes a disk error or an edit."""
    try:
        with np.load(path) as z:
            return {k: z[k] for k in z.files if k != "config"}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        log(f"{path.name} is damaged; computing that cell again")
        return None


def _stack(group: Group, done: list, skipped: list) -> GroupResults:
    """The cells' (G·S, R, …) arrays placed into group arrays over (game, …, seed, R, …); NaN where skipped."""
    computed = [(c, d) for c, d in done if "skipped" not in d]
    if not computed:
        raise GamesimError(f"group {group.name!r}: every run was skipped as invalid ({skipped[0]['reason']})")
    G, S = len(group.axes["game"]), len(group.axes["seed"])
    inner_shape = tuple(len(v) for d, v in group.axes.items() if d not in ("game", "seed"))
    arrays = {}
    for name in computed[0][1]:
        if name != "seconds":  # policies of games of different sizes: NaN-padded to the largest
            trailing = np.max([d[name].shape[1:] for _, d in computed], axis=0)
            arrays[name] = np.full((G, *inner_shape, S, *trailing), np.nan)
    for cell, data in computed:
        for name, array in arrays.items():
            value = data[name].reshape(len(cell.game_index), S, *data[name].shape[1:])
            for j, g in enumerate(cell.game_index):
                array[(g, *cell.index, slice(None), *(slice(0, m) for m in value.shape[2:]))] = value[j]
    arrays = {name.removeprefix("metric_"): a for name, a in arrays.items()}
    records = list(range(arrays["iteration"].shape[group.dims.index("record")]))
    return GroupResults(group.dims, {**group.axes, "record": records}, arrays, skipped)


def git_commit(where: Path) -> str | None:
    """The commit checked out in the git repository holding `where`, read from its files without
    running git (git would run the repository's own hooks and commands: core.fsmonitor, filters),
    or None outside a repository. Whether the checkout has local changes is not known this way;
    the spec's own content is recorded instead (its SHA-256)."""
    where = Path(where).resolve()
    for directory in (where, *where.parents):
        dot_git = directory / ".git"
        try:
            if dot_git.is_file():  # a worktree or submodule: "gitdir: PATH"
                text = dot_git.read_text().strip()
                dot_git = (directory / text.removeprefix("gitdir:").strip()).resolve()
            if not dot_git.is_dir():
                continue
            return _resolve_ref(dot_git, (dot_git / "HEAD").read_text().strip())
        except (OSError, UnicodeDecodeError):
            return None
    return None


def _resolve_ref(git_dir: Path, head: str) -> str | None:
    if not head.startswith("ref:"):
        return head if len(head) in (40, 64) and all(c in "0123456789abcdef" for c in head) else None
    ref = head.removeprefix("ref:").strip()
    common = git_dir
    if (git_dir / "commondir").is_file():  # a linked worktree keeps its refs in the main repository
        common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
    for base in (git_dir, common):
        loose = base / ref
        if loose.is_file():
            return _resolve_ref(git_dir, loose.read_text().strip())
        packed = base / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref:
                    return sha
    return None


def _write_results(study: Study, results_dir: Path, out: dict, timings: dict, seconds: float) -> None:
    arrays = {f"{g}/{name}": a for g, r in out.items() for name, a in r.arrays.items()}
    with atomic_open(results_dir / f"{study.name}.npz", "wb") as f:
        np.savez(f, **arrays)
    info = {"study": study.name, "spec_file": study.path.name, "spec_hash": study.hash,
            "npz_sha256": sha256(results_dir / f"{study.name}.npz"),
            "code_fingerprint": code_fingerprint(), "quick": study.quick,
            "spec": study.spec, "groups": {g: {"dims": r.dims, "coords": r.coords, "skipped": r.skipped,
                                                "arrays": sorted(r.arrays)} for g, r in out.items()},
            "versions": versions(__version__), "git_commit": git_commit(study.path.parent),
            "spec_sha256": sha256(study.path),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "seconds": seconds, "cell_seconds": timings}
    with atomic_open(results_dir / f"{study.name}.json") as f:
        json.dump(info, f, indent=1, default=str)
        f.write("\n")


def load_results(study: Study, results_dir, missing_ok: bool = False) -> dict | None:
    """The saved results of this exact spec (matching hash), or None / an error if there are none."""
    results_dir = Path(results_dir)
    meta, npz = results_dir / f"{study.name}.json", results_dir / f"{study.name}.npz"
    rerun = f"run `gamesim study run {study.path}`" + (" --quick" if study.quick else "")
    try:
        info = json.loads(meta.read_text())
        ok = info.get("spec_hash") == study.hash and npz.exists()
    except (OSError, ValueError, UnicodeDecodeError):
        ok = False
    if ok and info.get("npz_sha256") != sha256(npz):
        if missing_ok:
            return None
        raise GamesimError(f"{npz} does not match {meta.name} (damaged, or left by another run); {rerun} again")
    if not ok:
        if missing_ok:
            return None
        raise GamesimError(f"no results of this spec in {results_dir}; {rerun} first")
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    out = {}
    for g, meta_g in info["groups"].items():
        coords = {d: [tuple(v) if isinstance(v, list) else v for v in vals] for d, vals in meta_g["coords"].items()}
        out[g] = GroupResults(tuple(meta_g["dims"]), coords,
                              {k.split("/", 1)[1]: a for k, a in arrays.items() if k.startswith(f"{g}/")},
                              meta_g["skipped"])
    return out


# --- the commands ------------------------------------------------------------------------------------
def plot_study(study: Study, results: dict, figures_dir) -> list[Path]:
    figures_dir = Path(figures_dir)
    figures_dir.mkdir(parents=True, exist_ok=True)
    return draw(study, results, figures_dir / study.name)


def reproduce(experiments_dir, results_dir, figures_dir, quick: bool = False, log=print,
              allow_plugins: bool = False, yes: bool | None = None, jobs: int = 1) -> list[Path]:
    """Run and plot every study in `experiments_dir`; check that every figure has ink on it. With
    jobs > 1 the cells of all the studies, then the figures, are computed in `jobs` processes."""
    specs = sorted(Path(experiments_dir).glob("*.toml"))
    if not specs:
        raise GamesimError(f"no study specs (*.toml) in {experiments_dir}; run from a gamesim checkout "
                           "or pass --experiments DIR")
    studies = [load_spec(path, quick, allow_plugins) for path in specs]
    if jobs == 1:
        return [f for study in studies for f in _draw(study, results_dir, figures_dir, log, yes)]
    t0, work, spent = time.perf_counter(), [], {}
    for study in studies:
        if load_results(study, results_dir, missing_ok=True) is None:
            work += [(study, cell) for cell in pending_cells(study, results_dir, all_cells(study), yes=yes)]
            spent[study.name] = 0.0
    with worker_pool(jobs) as pool:
        spent.update(compute_in_pool(work, results_dir, pool, log))
        log(f"the studies' cells computed in {time.perf_counter() - t0:.1f} s by {jobs} processes")
        written = []
        for files, lines in pool.imap(_worker_draw, [(s, results_dir, figures_dir, spent.get(s.name)) for s in studies]):
            for line in lines:
                log(line)
            written += files
        return written


def _draw(study: Study, results_dir, figures_dir, log=print, yes=None, seconds: float | None = None) -> list[Path]:
    """Run (or, given the seconds its pooled cells took, stack) one study, draw its figures, check
    their ink; returns the files."""
    t0 = time.perf_counter()
    if seconds is None:
        results = run_study(study, results_dir, log=log, yes=yes)
    else:
        results = stack_cells(study, results_dir, seconds, log=log, compute_missing=True)
    files = plot_study(study, results, figures_dir)
    for f in files:
        if f.suffix == ".png" and not has_ink(f):
            raise GamesimError(f"{f} came out blank")
    log(f"{study.name}: {', '.join(str(f) for f in files)} ({time.perf_counter() - t0:.1f} s)")
    return files


def _worker_draw(task) -> tuple[list[Path], list[str]]:
    study, results_dir, figures_dir, seconds = task
    lines: list[str] = []
    return _draw(study, results_dir, figures_dir, lines.append, seconds=seconds), lines


def has_ink(png: Path, min_fraction: float = 0.01) -> bool:
    """Whether at least `min_fraction` of the image's pixels are not background white."""
    import matplotlib.image  # matplotlib loads only to draw or check a figure

    image = matplotlib.image.imread(png)[..., :3]
    return float(np.mean(np.any(image < 0.9, axis=-1))) >= min_fraction
