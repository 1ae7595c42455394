"""Looking at run directories: `gamesim plot RUN …` and `gamesim compare RUN …`.

A run directory of `gamesim run` (metrics.csv, policies.npy, run.json) or of `gamesim lm run`
(metrics.csv, run.json) is read through `rundir.read`, so every file is checked against its
manifest first. A run saved at a checkpoint or interrupted is read like a finished one: its
records stop where it stopped, and its label says so. Runs are labelled by the settings in which
they differ (all of them when there is one run), so that lines and rows name what was varied.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gamesim.core.errors import GamesimError
from gamesim.core.files import atomic_open
from gamesim.core.games import load_game
from gamesim.core.metrics import METRICS, SAMPLED_METRICS
from gamesim.core.names import check_keys
from gamesim.core.rundir import read
from gamesim.studies.plots import AXIS_LABELS, OKABE_ITO, STYLE, positive, simplex

DEFAULT_METRICS = ("gap", "gap_reg", "kl_to_eq")
"""What `plot` and `compare` show when no --metric is given (those every run records)."""
CI_SUFFIX = "_ci95"
"""A transformer-mode run's Monte-Carlo metrics come with the half-width of their 95% interval."""
LABEL_ORDER = ("game", "algorithm", "eta", "tau", "schedule", "feedback", "pairs", "iterations", "seed", "init")


@dataclass
class Run:
    """One run directory, read: flat settings, status and the recorded columns."""
    path: Path
    mode: str                 # "exact", "sampled" (gamesim run) or "transformer" (gamesim lm run)
    settings: dict            # the command's settings, flattened (a model's fields as model.NAME)
    status: str               # "complete", "interrupted", or "running" (saved at a checkpoint)
    iterations: np.ndarray    # (R,)
    metrics: dict             # name → (R,)
    policies: np.ndarray | None  # (R, n) or (R, C, n) for tabular runs

    @property
    def done(self) -> int:
        return int(self.iterations[-1]) if len(self.iterations) else 0

    def final(self, name: str) -> float:
        return float(self.metrics[name][-1]) if name in self.metrics and len(self.iterations) else math.nan


def load_run(path) -> Run:
    """Read and check the run directory `path` (see the module docstring)."""
    path = Path(path)
    if not path.is_dir():
        raise GamesimError(f"{path} is not a directory; give the --out directory of `gamesim run` or `gamesim lm run`")
    info, files = read(path)
    if "metrics.csv" not in files:
        raise GamesimError(f"{path} holds no metrics.csv; it is not a run directory of gamesim")
    try:
        lines = files["metrics.csv"].read_text().splitlines()
        names = lines[0].split(",")
        table = np.array([[float(x) for x in line.split(",")] for line in lines[1:]], float).reshape(-1, len(names))
        policies = np.load(files["policies.npy"]) if "policies.npy" in files else None
    except (OSError, ValueError, IndexError) as exc:
        raise GamesimError(f"cannot read the records in {path} ({type(exc).__name__}); it was not written by this "
                           "gamesim version") from None
    config = info.get("config", {})
    if "settings" in config:  # gamesim lm run
        mode = "transformer"
        settings = {**config["settings"], **{f"model.{k}": v for k, v in config.get("model", {}).items()}}
    else:
        settings = dict(config)
        mode = "sampled" if settings.get("feedback") == "sampled" else "exact"
    metrics = {name: table[:, i] for i, name in enumerate(names) if name != "iteration"}
    return Run(path, mode, settings, info.get("status", "complete"), table[:, names.index("iteration")].astype(int),
               metrics, policies)


def labels(runs: list[Run]) -> list[str]:
    """Each run's label: the settings that differ among the runs (the main ones for one run, or
    when none differ), its status when it did not finish, its directory when labels would repeat."""
    keys = list(differences(runs)) if len(runs) > 1 else []
    keys = sorted(keys or [k for k in LABEL_ORDER[:7] if k in runs[0].settings],
                  key=lambda k: (LABEL_ORDER.index(k) if k in LABEL_ORDER else len(LABEL_ORDER), k))
    out = []
    for r in runs:
        label = ", ".join(f"{k}={_text(r.settings.get(k))}" for k in keys if r.settings.get(k) is not None)
        out.append((label or r.path.name) + ("" if r.status == "complete" else f" ({r.status} at {r.done})"))
    if len(set(out)) < len(out):
        out = [f"{label} [{r.path.name}]" for label, r in zip(out, runs)]
    return out


def differences(runs: list[Run]) -> dict:
    """Setting → its value in each run, for the settings that are not the same in all."""
    keys = sorted({k for r in runs for k in r.settings})
    return {k: [r.settings.get(k) for r in runs] for k in keys if len({_text(r.settings.get(k)) for r in runs}) > 1}


def choose_metrics(runs: list[Run], wanted: list[str] | None) -> list[str]:
    """The metrics to show: `wanted` (each checked: known, and recorded by every run), else those of
    DEFAULT_METRICS every run records."""
    if not wanted:
        chosen = [m for m in DEFAULT_METRICS if all(m in r.metrics for r in runs)]
        if not chosen:
            common = [m for m in runs[0].metrics if all(m in r.metrics for r in runs)]
            raise GamesimError("the runs record no common metric among " + ", ".join(DEFAULT_METRICS)
                               + f"; choose with --metric (recorded by all: {', '.join(common) or 'none'})")
        return chosen
    known = {*METRICS, *SAMPLED_METRICS, *(m for r in runs for m in r.metrics)}
    check_keys(wanted, sorted(known), "metric")
    for m in wanted:
        lacking = [str(r.path) for r in runs if m not in r.metrics]
        if lacking:
            raise GamesimError(f"{m} is not recorded in {', '.join(lacking)} (a {_mode(runs, lacking[0])} run); "
                               "choose a metric every run records")
    return list(wanted)


def plot_runs(runs: list[Run], metrics: list[str], out, x: str = "iteration") -> Path:
    """`figure` of the runs, written atomically to `out` (.png, .pdf or .svg)."""
    out = Path(out)
    if out.suffix.lower() not in (".png", ".pdf", ".svg"):
        raise GamesimError(f"--out {out} names no figure format; end it in .png, .pdf or .svg")
    fig = figure(runs, metrics, x)
    import matplotlib.pyplot as plt  # loaded by `figure` (with the Agg backend) already
    with atomic_open(out, "wb") as f:
        fig.savefig(f, format=out.suffix[1:].lower(), dpi=150)
    plt.close(fig)
    return out


def figure(runs: list[Run], metrics: list[str], x: str = "iteration"):
    """One panel per metric (log y where the values are ≥ 0 and span more than a decade; a
    transformer run's 95% interval as a band), one line per run, and the simplex trajectory when
    every run played the same 3-response game; returns the matplotlib Figure."""
    import matplotlib  # matplotlib loads when a figure is drawn

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display needed

    if x == "queries" and not all("queries" in r.metrics for r in runs):
        raise GamesimError("--x queries needs sampled-feedback runs (`--feedback sampled`), which count their queries")
    game = _shared_game(runs) if all(r.policies is not None and r.policies.ndim == 2 for r in runs) else None
    simplex = game is not None and game.n == 3
    names = labels(runs)
    panels = len(metrics) + simplex
    with matplotlib.rc_context(STYLE), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fig, axes = plt.subplots(1, panels, figsize=(4.6 * panels, 3.6), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            _metric_panel(ax, runs, names, metric, x)
        if simplex:
            _simplex_panel(axes[0][-1], runs, names, game)
        fig.tight_layout()
    return fig


def _metric_panel(ax, runs, names, metric, x):
    ys = [r.metrics[metric] for r in runs]
    finite = np.concatenate([y[np.isfinite(y)] for y in ys])
    pos = finite[finite > 0]
    log = finite.size > 0 and finite.min() >= 0 and pos.size > 0 and pos.max() > 10 * pos.min()
    for i, (r, y, name) in enumerate(zip(runs, ys, names)):
        xs = r.metrics["queries"] if x == "queries" else r.iterations
        line, = ax.plot(xs, positive(y) if log else y, label=name, lw=1.4, color=OKABE_ITO[i % len(OKABE_ITO)],
                        ls=("-", "--", "-.", ":")[i // len(OKABE_ITO) % 4])
        if metric + CI_SUFFIX in r.metrics:
            half = r.metrics[metric + CI_SUFFIX]
            ax.fill_between(xs, y - half, y + half, color=line.get_color(), alpha=0.2, lw=0)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("preference queries" if x == "queries" else "iteration")
    ax.set_ylabel(AXIS_LABELS.get(metric, metric))
    ax.legend(fontsize=7)


def _simplex_panel(ax, runs, names, game):
    """The runs' paths in the simplex of their (shared) game, with π*_τ at each of their τs."""
    paths = [(r.policies, OKABE_ITO[i % len(OKABE_ITO)], "-", name) for i, (r, name) in enumerate(zip(runs, names))]
    simplex(ax, game, paths, sorted({float(r.settings.get("tau") or 0.0) for r in runs}))
    ax.set_title("π_t on the simplex (○ start, ■ last record)")


def _shared_game(runs: list[Run]):
    """The runs' game when they all played the same one and its spec still loads (a CSV may have
    moved), else None: the simplex panel marks that game's equilibria."""
    specs = {r.settings.get("game") for r in runs}
    if len(specs) != 1 or None in specs:
        return None
    try:
        return load_game(specs.pop())
    except GamesimError:
        return None


def compare_table(runs: list[Run], metrics: list[str]) -> str:
    """The final metrics of each run as a table, then the settings that differ between them."""
    head = ["run", "status", "iterations", *metrics]
    rows = [[str(r.path), r.status, str(r.done), *(f"{r.final(m):.6g}" for m in metrics)] for r in runs]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]

    def line(cells):
        return "  ".join(c.ljust(w) if i < 3 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines = [line(head), *(line(row) for row in rows)]
    if len(runs) > 1:
        diff = differences(runs)
        lines += ["", "settings that differ:" if diff else "the runs have the same settings"]
        lines += [f"  {key}: " + " | ".join(_text(v) for v in values) for key, values in diff.items()]
    return "\n".join(lines)


def _mode(runs, path) -> str:
    return next(r.mode for r in runs if str(r.path) == path)


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)
