r"""Figures of studies, in one publication style: Okabe-Ito colour-blind-safe colours, a fixed
colour per algorithm across figures, labelled axes, and the measured quantity defined in the caption.

A study's `[[panel]]` tables each draw one axes, laid out `layout = [rows, cols]`:

- kind = "curves": `metric` against x = "iteration" (default) or "queries" (cumulative preference
  queries), one line per value of `hue` (default "algorithm"); the line is the mean over the
  axes left free (games, seeds), or their median with `center = "median"`; the band their
  min–max, or their interquartile range with `spread = "quartiles"` (`spread = "none"` drops
  it). Each algorithm has its own colour, line style and marker, so a line drawn over another
  stays visible; `labels = { name = "legend text" }` renames hue values (or groups).
- kind = "final": the metric's last record against x = an axis of the group (e.g. "iterations",
  "pairs") or "queries" (queries per iteration); error bars min–max; `slope = true` fits the
  log-log slope of the mean.
- kind = "queries-to": sample efficiency, Q_ε (the preference queries a run needs to reach `metric`
  ≤ ε and stay there, `gamesim.core.efficiency`) against ε on log axes, one line per hue value:
  the median over the axes left free (seeds, games) with its distribution-free 95% confidence
  interval as a band; `targets = [largest, smallest, count]` (log-spaced; default from half the
  median initial value down by a factor 300, 13 targets), `sustained = false` for the first
  passage. A target not reached by half the runs within the run length has no point, nor has one
  that π₀ already meets (Q_ε = 0); the dotted line marks the run length, where an open band ends.
- kind = "simplex": the recorded policies of 3-response games as paths in the probability
  simplex; `equilibria = [τ, …]` marks solve(game, τ).
- kind = "heatmap": the final metric over two axes `x` and `y` (mean over the rest); NaN cells
  (runs outside the algorithm's valid range) hatched; `outline = "inpo-theorem4"` outlines the cells
  that meet INPO Theorem 4's condition ητ ≤ 1 and those where its bound is not vacuous (the bounds'
  constants are a priori: `theory.assumption_a_bound`).

On log axes, values below FLOOR (rounding level, exact zeros included) are drawn at FLOOR, so a
line that reaches its limit ends on the axis instead of vanishing.

Common keys: group (or groups, a list), metric, select = {axis = value | "first" | "last"}, hue,
hue_symbol (the legend's name for the hue axis),
title, xlabel, ylabel, logx, logy, ylim, legend (a matplotlib loc, or false), overlays (the papers'
bounds and reference slopes, drawn dashed in the line's colour: see OVERLAYS; a list for every
line, or a table from hue value to list, e.g. { inpo = ["inpo-theorem4"] }), reference_group
(a group drawn dashed beside each line, e.g. exact feedback beside sampled), reference_label.
"""

from __future__ import annotations

import math
import textwrap
import warnings
from pathlib import Path

import numpy as np

from gamesim.core.errors import GamesimError
from gamesim.core.files import atomic_open
from gamesim.core.games import load_game
from gamesim.core.names import check_keys
from gamesim.dynamics import theory

OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442")
ALGORITHM_STYLE = {  # label, colour, line style, marker: the same in every figure
    "sppo": ("SPPO (Hedge)", "#E69F00", "-", "o"), "omd": ("OMD", "#0072B2", "-", "s"),
    "inpo": ("INPO", "#0072B2", "-", "s"), "nash-md": ("Nash-MD", "#009E73", "-", "^"),
    "nash-md-pg": ("Nash-MD-PG", "#009E73", "--", "v"), "optimistic-omd": ("optimistic OMD", "#CC79A7", "-", "D"),
    "extragradient": ("extragradient", "#D55E00", "--", "x"), "comal": ("COMAL", "#000000", "-", "P"),
    "mpo": ("MPO", "#000000", "--", "*"), "mmd": ("MMD", "#0072B2", "-.", "d"),
    "iterative-dpo": ("iterative DPO (BT reward)", "#56B4E9", "-", "<"),
    "iterative-ipo": ("iterative IPO", "#56B4E9", "--", ">"), "online-ipo": ("online IPO", "#CC79A7", "--", "o"),
    "ipo-md": ("IPO-MD", "#009E73", ":", "h"), "dno": ("DNO", "#D55E00", "--", "p"),
    "fictitious-play": ("fictitious play", "#000000", ":", "1"), "replicator": ("replicator", "#E69F00", "--", "2"),
    "mmd-moving-magnet": ("MMD, moving magnet", "#D55E00", "-", "*"), "apmd": ("APMD (slingshot)", "#0072B2", "-", "P"),
    "mwu": ("MWU", "#E69F00", "-", "o"), "omwu": ("optimistic MWU", "#009E73", "--", "D"),
    "xpo": ("XPO", "#CC79A7", "-", "v"), "vpo": ("VPO", "#D55E00", "-", "^"),
    "apo": ("APO (DPO, momentum)", "#56B4E9", "--", "D"), "apo-sppo": ("APO (SPPO, momentum)", "#E69F00", "--", "D"),
    "sea": ("SEA (Thompson)", "#000000", "-", "*"), "sparring": ("Sparring (EXP3)", "#009E73", ":", "x"),
    "zpg": ("ZPG", "#000000", ":", "+"), "omd-forward-kl": ("OMD, forward KL", "#0072B2", "--", "s"),
    "omd-js": ("OMD, Jensen-Shannon", "#0072B2", ":", "s"), "omd-alpha": ("OMD, α-divergence", "#0072B2", "-.", "s"),
    # EGPO's methods by its own names (gamesim.lm.mlp, mode = "mlp")
    "online-ipo-1": ("Online IPO 1 (OMD)", "#0072B2", "-", "s"), "online-ipo-2": ("Online IPO 2", "#CC79A7", "--", "o"),
    "egpo": ("EGPO", "#D55E00", "--", "x"),
}
FLOOR = 1e-18
"""Log axes draw values below this (rounding level for gaps of order 1; exact zeros) at it."""
MARKERS_PER_LINE = 8
SYMBOLS = {"tau": "τ", "alpha": "α", "eta": "η", "beta": "β", "pairs": "N", "iterations": "T", "schedule": "schedule"}
STYLE = {"font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "legend.fontsize": 7.5,
         "legend.frameon": False, "axes.spines.top": False, "axes.spines.right": False,
         "axes.grid": True, "grid.alpha": 0.3, "lines.linewidth": 1.6, "savefig.bbox": "tight"}
AXIS_LABELS = {"gap": "duality gap (original game)", "gap_avg": "duality gap of the average iterate",
               "gap_reg": "duality gap of the τ-regularized game", "gap_reg_avg": "τ-reg. gap of the average iterate",
               "kl_to_eq": "KL(π* ‖ π_t)", "regret": "regret", "queries": "preference queries"}
OVERLAYS = {
    "slope:S": "a reference power law x^S through the line's first point",
    "contraction": "KL_0 (1 − ητ)^t",
    "inpo-theorem3": "INPO Theorem 3: 2[D/(ηT) + (4τ²B² + 1)η], T plays, B a priori",
    "inpo-theorem4": "INPO Theorem 4: its recursion from KL_0 at constant η; 32C²/(τ²(t+1)) on the theorem schedule",
    "nash-md-theorem1": "Nash-MD Theorem 1: its recursion from KL_0 at constant η; 8/(τ²(t+1)) on the theorem schedule",
    "mmd-theorem34": "MMD Theorem 3.4: KL_0 (1 + ητ)^(−t)",
}
OVERLAY_LABELS = {"inpo-theorem3": "Theorem 3 bound", "inpo-theorem4": "Theorem 4 bound",
                  "nash-md-theorem1": "Nash-MD Theorem 1 bound", "mmd-theorem34": "MMD Theorem 3.4 bound",
                  "contraction": "(1 − ητ)^t KL₀"}
KINDS = {"curves": ("x", "spread", "center", "overlays", "reference_group", "reference_label", "metric", "labels"),
         "final": ("x", "slope", "overlays", "reference_group", "reference_label", "metric"),
         "queries-to": ("metric", "targets", "sustained", "labels"),
         "simplex": ("equilibria",),
         "heatmap": ("x", "y", "outline", "metric")}
COMMON = ("kind", "group", "groups", "select", "hue", "hue_symbol", "title", "xlabel", "ylabel", "logx", "logy", "ylim", "legend")


def check_panel(panel: dict, groups: dict, where: str) -> None:
    """Raise GamesimError for an unknown key, kind, group, axis, metric or overlay in a panel."""
    check_keys([panel.get("kind", "?")], list(KINDS), f"panel kind in {where}")
    kind = panel["kind"]
    check_keys(panel, COMMON + KINDS[kind], f"key in {where} (kind {kind!r})")
    names = _group_names(panel, groups)
    check_keys(names, list(groups), f"group in {where}")
    for name in names:
        g = groups[name]
        dims = list(g.axes)
        check_keys([d for d in panel.get("select", {}) if all(d not in groups[n].axes for n in names)], dims,
                   f"select axis in {where}")
        if kind != "simplex":
            if "metric" not in panel:
                raise GamesimError(f"{where} needs a metric")
            if g.metrics is not None:
                check_keys([panel["metric"]], g.metrics, f"metric in {where} (not recorded by group {name!r})")
            elif g.fixed.get("mode", "tabular") == "tabular":
                from gamesim.core.metrics import METRICS, SAMPLED_METRICS  # JAX loads with core.metrics: only a tabular group needs it

                check_keys([panel["metric"]], [*METRICS, *SAMPLED_METRICS], f"metric in {where}")
        for key in ("hue",) + (("x", "y") if kind == "heatmap" else ()):
            if key in panel:
                check_keys([panel[key]], dims + (["group"] if kind == "curves" and key == "hue" else []),
                           f"{key} axis in {where}")
        if kind == "final" and panel.get("x") != "queries":
            check_keys([panel.get("x")], dims + ["queries"], f"x in {where}")
        if kind == "curves":
            check_keys([panel.get("x", "iteration")], ["iteration", "queries"], f"x in {where}")
            check_keys([panel.get("center", "mean")], ["mean", "median"], f"center in {where}")
            check_keys([panel.get("spread", "range")], ["range", "quartiles", "none"], f"spread in {where}")
        for overlay in _all_overlays(panel):
            check_keys([overlay.split(":")[0] + (":S" if ":" in overlay else "")], list(OVERLAYS), f"overlay in {where}")
        if kind == "queries-to":
            if g.metrics is not None and "queries" not in g.metrics:
                raise GamesimError(f"{where}: a queries-to panel needs the queries; add \"queries\" to the metrics "
                                   f"of group {name!r} (a sampled-feedback group)")
            targets = panel.get("targets", [1.0, 0.5, 2])
            if not (isinstance(targets, list) and len(targets) == 3 and all(isinstance(t, (int, float)) for t in targets)
                    and targets[0] > targets[1] > 0 and targets[2] >= 2 and targets[2] == int(targets[2])):
                raise GamesimError(f"{where}: targets is [largest ε, smallest ε, count], largest > smallest > 0 and an "
                                   f"integer count ≥ 2, e.g. [0.3, 1e-3, 13]; got {targets!r}")
        if kind == "simplex" and not g.policies:
            raise GamesimError(f"{where}: a {kind} panel needs the policies; set policies = true in group {name!r}")
    if ref := panel.get("reference_group"):
        check_keys([ref], list(groups), f"reference_group in {where}")


def _all_overlays(panel) -> list:
    o = panel.get("overlays", [])
    return [name for names in o.values() for name in names] if isinstance(o, dict) else list(o)


def _overlays(panel, value) -> list:
    o = panel.get("overlays", [])
    return o.get(str(value), []) if isinstance(o, dict) else o


def _line_select(panel, value) -> dict:
    """The panel's select plus the line's own hue value: the runs one line shows."""
    hue = panel.get("hue", "algorithm")
    return panel.get("select", {}) | ({hue: value} if value is not None else {})


def _group_names(panel, groups) -> list:
    names = panel.get("groups") or [panel.get("group")] if panel.get("group") or panel.get("groups") else list(groups)[:1]
    return [names] if isinstance(names, str) else list(names)


def draw(study, results: dict, base: Path) -> list[Path]:
    """Draw the study's panels into one figure; write base.pdf and base.png."""
    import matplotlib  # matplotlib loads when a figure is drawn, not when a spec is checked

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): no display needed

    spec = study.spec
    rows, cols = spec.get("layout", [1, len(study.panels)])
    if rows * cols < len(study.panels):
        raise GamesimError(f"{study.path.name}: layout {rows}×{cols} has fewer places than its {len(study.panels)} panels")
    w, h = spec.get("panel_size", [5.0, 3.8])
    with matplotlib.rc_context(STYLE), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean over lines that reached exact 0
        fig, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
        for ax, panel in zip(axes.flat, study.panels):
            {"curves": _curves, "final": _final, "simplex": _simplex, "heatmap": _heatmap,
             "queries-to": _queries_to}[panel["kind"]](
                ax, panel, study, results)
        for ax in list(axes.flat)[len(study.panels):]:
            ax.set_visible(False)
        if "title" in spec:
            fig.suptitle(spec["title"], fontsize=11)
        fig.tight_layout()
        if "caption" in spec:
            width = int(18 * w * cols)
            text = "\n".join(textwrap.fill(p, width) for p in spec["caption"].strip().split("\n\n"))
            fig.text(0.01, 0.0, text, ha="left", va="top", fontsize=8, wrap=False)
        paths = [base.with_suffix(".pdf"), base.with_suffix(".png")]
        for path in paths:
            with atomic_open(path, "wb") as f:
                fig.savefig(f, format=path.suffix[1:], dpi=150)
        plt.close(fig)
    return paths


# --- helpers --------------------------------------------------------------------------------------
def _hue_label(group, dim, value, symbol=None) -> str:
    if dim != "algorithm":
        return f"{symbol or SYMBOLS.get(dim, dim)} = {_fmt(value)}"
    label = ALGORITHM_STYLE.get(value, (value,))[0]
    over = group.per_algorithm.get(value, {})
    if over:
        label += " (" + ", ".join(f"{SYMBOLS.get(k, k)} = {_fmt(v)}" for k, v in over.items()) + ")"
    return label


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _color(dim, value, i) -> tuple:
    """(colour, line style) of a hue value."""
    return _style(dim, value, i)[:2]


def _style(dim, value, i) -> tuple:
    """(colour, line style, marker) of a hue value: the algorithm's own, else the i-th of the palette."""
    if dim == "algorithm" and value in ALGORITHM_STYLE:
        return ALGORITHM_STYLE[value][1:]
    return OKABE_ITO[i % 7], ("-", "--", "-.", ":")[i // 7 % 4], "osD^vx*"[i % 7]


def _lines(panel, study, results, name, group_name, extra_free=()):
    """(hue values, data (H, [X,] M, R…), iteration (same)) with select applied: M flattens the axes
    averaged over, X the `extra_free` axes kept apart (one point each)."""
    group, res = study.groups[group_name], results[group_name]
    hue = panel.get("hue", "algorithm")
    data, dims = res.select(name, **panel.get("select", {}))
    it, _ = res.select("iteration", **panel.get("select", {}))
    if hue not in dims:  # one line
        data, it, dims = data[None], it[None], (hue, *dims)
    keep = [hue, *extra_free]
    order = [dims.index(d) for d in keep] + [i for i, d in enumerate(dims) if d not in keep and d != "record"] \
        + [dims.index("record")]
    data, it = np.transpose(data, order + list(range(len(dims), data.ndim))), np.transpose(it, order)
    lead = [data.shape[0]] + ([math.prod(data.shape[1:len(keep)])] if extra_free else [])  # free axes: one
    data = data.reshape(*lead, -1, *data.shape[len(order) - 1:])
    it = it.reshape(*lead, -1, it.shape[-1])
    return list(res.coords[hue]) if hue in res.dims and hue not in panel.get("select", {}) else [None], data, it, group


def _run_params(group, hue, value, panel, extra=None) -> dict:
    """η, τ, schedule, T of the runs on one line (the selected or single values of their axes)."""
    alg = value if hue == "algorithm" else panel.get("select", {}).get("algorithm", group.axes["algorithm"][0])
    params = dict(group.fixed) | group.per_algorithm.get(alg, {}) | {"algorithm": alg}
    for dim, values in group.axes.items():
        if dim in ("game", "seed", "algorithm"):
            continue
        chosen = (extra or {}).get(dim, value if dim == hue else panel.get("select", {}).get(dim, values[0]))
        params[dim] = values[-1] if chosen == "last" else values[0] if chosen == "first" else chosen
    return params


def _line_game(group, select: dict):
    """The game of a line (its selected game, else the group's first)."""
    return load_game(select.get("game", group.axes["game"][0]))


def _constants(game, params) -> tuple[float, float]:
    """The bounds' a-priori constants for a run: D = log(1/min π_ref) and INPO's Assumption A bound
    B from π_0 and τ (`theory.assumption_a_bound`), never measured on the run."""
    from gamesim.engine.simulation import initial_policy  # the engine (JAX, scipy.optimize) loads for a bound's constants only

    D = float(np.log(1 / game.stacked_reference.min()))
    tau = params.get("tau", 0.0)
    if not tau:
        return D, 0.0
    init = params.get("init") or "reference"
    init = list(init) if isinstance(init, tuple) else init
    return D, theory.assumption_a_bound(game, tau, initial_policy(game, init, params.get("seed", 0)))


def _theory(name, t, params, game, y0):
    D, B = _constants(game, params)
    tau, eta = params.get("tau", 0.0), params.get("eta")
    t = np.asarray(t, float)
    if eta == "theorem3":
        eta = theory.inpo_theorem3_eta(params["iterations"], tau, D, 0.0)
    if name == "inpo-theorem3":
        return theory.inpo_theorem3_bound(t + 1, eta, tau, D, B)
    if name == "contraction":
        return y0 * (1 - eta * tau) ** t
    if name == "mmd-theorem34":
        return theory.mmd_rate(t, eta, tau, y0)
    step = {"inpo-theorem4": lambda kl, e: theory.inpo_theorem4_step(kl, e, tau, B),
            "nash-md-theorem1": lambda kl, e: theory.nash_md_step(kl, e, tau)}[name]
    if params.get("schedule") == "theorem":
        rate = theory.inpo_theorem4_rate(t, tau, B) if name == "inpo-theorem4" else theory.nash_md_rate(t, tau)
        return np.where(t >= 1, rate, np.nan)
    bound, kl = np.empty(int(t.max()) + 1), y0
    for s in range(len(bound)):  # the recursion unrolled from the measured KL_0
        bound[s] = kl
        kl = step(kl, eta)
    return bound[t.astype(int)]


def _finish(ax, panel, xlabel, ylabel, logx=False, logy=True):
    ax.set_xlabel(panel.get("xlabel", xlabel))
    ax.set_ylabel(panel.get("ylabel", ylabel))
    if panel.get("logx", logx):
        ax.set_xscale("log")
    if panel.get("logy", logy):
        ax.set_yscale("log")
    if "ylim" in panel:
        ax.set_ylim(*panel["ylim"])
    if "title" in panel:
        ax.set_title(panel["title"])
    if panel.get("legend", "best"):
        from matplotlib.lines import Line2D  # matplotlib loads when a figure is drawn (see `draw`)

        handles, labels = ax.get_legend_handles_labels()
        unique = {}
        for handle, label in zip(handles, labels):  # a bound drawn per line is listed once, in grey
            if label in unique and isinstance(handle, Line2D):
                handle = Line2D([], [], color="0.35", ls=handle.get_linestyle(), lw=handle.get_linewidth())
            unique[label] = handle
        ax.legend(unique.values(), unique.keys(), loc=panel.get("legend", "best"))


def positive(y):
    """Values for a log axis: below FLOOR (rounding level, zeros) drawn at FLOOR; NaN stays NaN."""
    y = np.asarray(y, float)
    return np.where(np.isnan(y), np.nan, np.maximum(y, FLOOR))


# --- kinds ----------------------------------------------------------------------------------------
def _curves(ax, panel, study, results):
    """Lines of `metric` against iteration (or queries), one per hue value; hue = "group" draws
    one line per group (labelled by `labels`, else the group's name) to compare groups."""
    metric, x_name = panel["metric"], panel.get("x", "iteration")
    for g, gname in enumerate(_group_names(panel, study.groups)):
        hues, data, it, group = _lines(panel, study, results, metric, gname)
        if x_name == "queries":
            it = _lines(panel, study, results, "queries", gname)[1]
        for i, value in enumerate(hues):
            game = _line_game(group, _line_select(panel, value))
            if panel.get("hue") == "group":
                (color, ls, marker), label = _style("group", None, g), panel.get("labels", {}).get(gname, gname)
            else:
                color, ls, marker = _style(panel.get("hue", "algorithm"), value, i)
                label = panel.get("labels", {}).get(str(value)) or _hue_label(
                    group, panel.get("hue", "algorithm"), value, panel.get("hue_symbol"))
            x = np.nanmean(it[i], axis=0)
            y = positive(data[i])
            center = np.nanmedian(y, 0) if panel.get("center") == "median" else np.nanmean(y, 0)
            ax.plot(x, center, color=color, ls=ls, label=label, marker=marker, ms=3.5, mfc="none",
                    markevery=(i % MARKERS_PER_LINE / MARKERS_PER_LINE / MARKERS_PER_LINE, 1 / MARKERS_PER_LINE))
            spread = panel.get("spread", "range")
            if spread != "none" and y.shape[0] > 1:
                low, high = ((np.nanquantile(y, 0.25, 0), np.nanquantile(y, 0.75, 0)) if spread == "quartiles"
                             else (np.nanmin(y, 0), np.nanmax(y, 0)))
                ax.fill_between(x, low, high, color=color, alpha=0.18, lw=0)
            params = _run_params(group, panel.get("hue", "algorithm"), value, panel)
            for name in _overlays(panel, value):
                _overlay(ax, name, x, center, params, game, color)
        if ref := panel.get("reference_group"):
            _reference_curves(ax, panel, study, results, ref, hues, x_name)
    _finish(ax, panel, "preference queries" if x_name == "queries" else "iteration t",
            AXIS_LABELS.get(metric, metric))


def _overlay(ax, name, x, y, params, game, color):
    if name.startswith("slope:"):
        s = float(name.split(":")[1])
        ok = np.flatnonzero(np.isfinite(y) & (x > 0))
        if ok.size:
            x0, y0 = x[ok[0]], y[ok[0]]
            ax.plot(x[ok], y0 * (x[ok] / x0) ** s, color="0.4", ls=":", lw=1.2, label=f"slope {s:g}")
        return
    bound = _theory(name, x, params, game, y[0])
    ax.plot(x, bound, color=color, ls="-." if name == "contraction" else "--", lw=1.1, label=OVERLAY_LABELS[name])


def _reference_curves(ax, panel, study, results, ref, hues, x_name):
    label = panel.get("reference_label", "exact feedback")
    sub = {k: v for k, v in panel.items() if k not in ("group", "groups")} | {"group": ref}
    rhues, data, it, _ = _lines(sub, study, results, panel["metric"], ref)
    for i, value in enumerate(rhues):
        if value not in hues:
            continue
        color, _ = _color(panel.get("hue", "algorithm"), value, hues.index(value))
        y = np.nanmean(positive(data[i]), 0)
        if panel["kind"] == "final":
            ax.axhline(y[-1], color=color, ls="--", lw=1.1)
        else:
            ax.plot(np.nanmean(it[i], 0), y, color=color, ls="--", lw=1.1)
    ax.plot([], [], color="0.3", ls="--", lw=1.1, label=f"dashed: {label}")


def _final(ax, panel, study, results):
    metric, x_name = panel["metric"], panel["x"]
    for gname in _group_names(panel, study.groups):
        hue, group = panel.get("hue", "algorithm"), study.groups[gname]
        free = (x_name,) if x_name != "queries" else tuple(  # every grid axis not averaged or selected
            d for d in group.axes if d not in (hue, "game", "seed", *panel.get("select", {})))
        hues, data, it, group = _lines(panel, study, results, metric, gname, free)
        if x_name == "queries":
            queries = _lines(panel, study, results, "queries", gname, free)[1]
        for i, value in enumerate(hues):
            game = _line_game(group, _line_select(panel, value))
            color, ls = _color(hue, value, i)
            final = positive(data[i][..., -1])  # (X, M)
            if x_name == "queries":  # queries per iteration, averaged over the runs of each point
                x = np.nanmean(queries[i][..., -1] / it[i][..., -1], -1)
            else:
                x = np.asarray(group.axes[x_name], float)
            mean = np.nanmean(final, -1)
            label = _hue_label(group, hue, value, panel.get("hue_symbol"))
            if panel.get("slope") and len(x) > 1:
                slope = np.polyfit(np.log(x), np.log(mean), 1)[0]
                label += f": slope {slope:+.2f}"
            ax.errorbar(x, mean, yerr=(mean - np.nanmin(final, -1), np.nanmax(final, -1) - mean), fmt="o",
                        ls=ls, color=color, capsize=3, label=label, ms=4)
            for name in _overlays(panel, value):
                if name.startswith("slope:"):
                    _overlay(ax, name, x, mean, {}, game, color)
                    continue
                bound = [float(_theory(name, [t[-1]], _run_params(group, hue, value, panel, {x_name: xv}), game,
                                       np.nanmean(data[i][j, :, 0]))[0])
                         for j, (xv, t) in enumerate(zip(group.axes[x_name], it[i][:, 0]))]
                ax.plot(x, bound, color=color, ls="--", lw=1.1, label=OVERLAY_LABELS[name])
        if ref := panel.get("reference_group"):
            _reference_curves(ax, panel, study, results, ref, hues, x_name)
    xlabel = "preference queries per iteration" if x_name == "queries" else SYMBOLS.get(x_name, x_name)
    _finish(ax, panel, xlabel, f"{AXIS_LABELS.get(metric, metric)}, final", logx=True)


DEFAULT_RANGE, DEFAULT_COUNT = 300.0, 13
"""A "queries-to" panel's default ε grid: 13 log-spaced targets from half the median initial value
of the metric down by a factor 300."""


def _queries_to(ax, panel, study, results):
    """Q_ε (median over the free axes, 95% interval as a band) against ε, one line per hue value."""
    from gamesim.core.efficiency import median_interval, queries_to_reach  # scipy.stats loads with a drawn panel

    metric, hue = panel["metric"], panel.get("hue", "algorithm")
    lines = [(gname, *_lines(panel, study, results, metric, gname), _lines(panel, study, results, "queries", gname)[1])
             for gname in _group_names(panel, study.groups)]
    if "targets" in panel:
        high, low, count = panel["targets"]
    else:
        high = 0.5 * float(np.nanmedian(np.concatenate([data[..., 0].ravel() for _, _, data, *_ in lines])))
        low, count = high / DEFAULT_RANGE, DEFAULT_COUNT
    eps = np.geomspace(high, low, int(count))
    longest = 0.0
    for gname, hues, data, _, group, queries in lines:
        for i, value in enumerate(hues):
            color, ls, marker = _style(hue, value, i)
            q = queries_to_reach(queries[i], data[i], eps, panel.get("sustained", True))  # (M, E)
            median, lo, hi = median_interval(q, axis=0)
            end = float(np.nanmax(queries[i][..., -1]))
            longest = max(longest, end)
            ok = np.isfinite(median) & (median > 0)
            ax.plot(eps[ok], median[ok], color=color, ls=ls, marker=marker, ms=3.5, mfc="none",
                    label=panel.get("labels", {}).get(str(value)) or _hue_label(group, hue, value, panel.get("hue_symbol")))
            band = np.isfinite(lo)
            ax.fill_between(eps[band], lo[band], np.where(np.isfinite(hi), hi, end)[band], color=color, alpha=0.15, lw=0)
    if longest:
        ax.axhline(longest, color="0.4", ls=":", lw=1.0, label="run length (not reached above)")
    _finish(ax, panel, f"target ε ({AXIS_LABELS.get(metric, metric)})", "preference queries to reach ε",
            logx=True)
    from matplotlib.ticker import NullFormatter  # matplotlib loads when a figure is drawn (see `draw`)

    ax.xaxis.set_minor_formatter(NullFormatter())  # decades only: minor labels collide on a short range
    ax.set_xlim(eps[0] * 1.2, eps[-1] / 1.2)  # inverted: smaller targets, harder, to the right


SIMPLEX_CORNERS = np.array([[0.0, 0.0], [1.0, 0.0], [0.5, math.sqrt(3) / 2]])
"""Where the three pure policies sit: a policy π is drawn at πᵀ SIMPLEX_CORNERS."""


def draw_simplex(ax, names=None) -> np.ndarray:
    """The probability simplex of 3 responses as an equilateral triangle on `ax`, its corners
    labelled by `names`; returns SIMPLEX_CORNERS."""
    corners = SIMPLEX_CORNERS
    ax.plot(*np.vstack([corners, corners[:1]]).T, color="0.3", lw=0.8)
    for name, (cx, cy), dy in zip(names or "012", corners, (-0.06, -0.06, 0.03)):
        ax.text(cx, cy + dy, name, ha="center", fontsize=9)
    ax.set_aspect("equal")
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.1, 0.93)
    ax.axis("off")
    return corners


def _simplex(ax, panel, study, results):
    gname = _group_names(panel, study.groups)[0]
    group = study.groups[gname]
    game = load_game(panel.get("select", {}).get("game", group.axes["game"][0]))
    hues, pol, _, _ = _lines(panel, study, results, "policy", gname)
    hue = panel.get("hue", "algorithm")
    paths = [(pol[i, 0, :, 0, :], *_color(hue, value, i), _hue_label(group, hue, value))  # first run on the line; context 0
             for i, value in enumerate(hues)]
    simplex(ax, game, paths, panel.get("equilibria", [0.0]))
    ax.set_title(panel.get("title", game.label))
    if panel.get("legend", True):
        ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7.5)


def simplex(ax, game, paths, taus=(0.0,)) -> None:
    """Draw policies of a 3-response game as paths in the probability simplex: each path
    (policies (R, 3), colour, line style, label) from a circle at its π_0 (the first path's,
    labelled) to a square at its end, and a star at solve(game, τ) for each τ in `taus`."""
    from gamesim.core.equilibria import solve  # scipy.optimize loads when a simplex marks equilibria

    if game.n != 3:
        raise GamesimError(f"a simplex draws 3-response games; {game.label} has {game.n}")
    corners = draw_simplex(ax, game.names)
    for policies, color, ls, label in paths:
        xy = np.asarray(policies) @ corners
        ax.plot(*xy.T, color=color, ls=ls, lw=1.0, alpha=0.85, label=label)
        ax.plot(*xy[-1], "s", color=color, ms=5)
    if paths:
        ax.plot(*(np.asarray(paths[0][0])[0] @ corners), "o", color="0.2", ms=5, mfc="none", label="start π₀")
    for tau in taus:
        xy = solve(game, tau).policy @ corners
        ax.plot(*xy, "*", color="k" if tau == 0 else "0.5", ms=11, label=f"π*_τ, τ = {tau:g}" if tau else "von Neumann winner")


def _heatmap(ax, panel, study, results):
    from matplotlib.colors import LogNorm  # matplotlib loads when a figure is drawn (see `draw`)
    from matplotlib.patches import Rectangle

    gname = _group_names(panel, study.groups)[0]
    group, res = study.groups[gname], results[gname]
    xd, yd, metric = panel["x"], panel["y"], panel["metric"]
    data, dims = res.select(metric, **panel.get("select", {}))
    data = np.moveaxis(data[..., -1], [dims.index(yd), dims.index(xd)], [0, 1])
    grid = np.nanmean(data.reshape(data.shape[0], data.shape[1], -1), -1)
    xs, ys = group.axes[xd], group.axes[yd]
    floor = 1e-16  # rounding level: float64 gaps below it (or rounded negative) are shown as "<1e-16"
    shown = np.where(np.isnan(grid), np.nan, np.maximum(grid, floor))
    image = ax.imshow(shown, origin="lower", cmap="viridis", aspect="auto",
                      norm=LogNorm(np.nanmin(shown), max(np.nanmax(shown), 10 * floor)))
    ax.figure.colorbar(image, ax=ax, label=f"{AXIS_LABELS.get(metric, metric)}, final (mean)")
    for (r, c), v in np.ndenumerate(shown):
        if np.isnan(v):
            ax.add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, facecolor="0.85", hatch="///", edgecolor="0.6", lw=0))
        else:
            ax.text(c, r, "<1e-16" if v <= floor else f"{v:.0e}", ha="center", va="center", fontsize=6.5,
                    color="w" if image.norm(v) < 0.6 else "k")
    ax.plot([], [], "s", color="0.85", label="outside the valid range (not run)")
    if panel.get("outline") == "inpo-theorem4":
        condition, useful = _theorem4_regions(group, res, panel, xd, yd)
        _outline(ax, condition, "k", 1.2)
        _outline(ax, useful, "#D55E00", 2.2)
        ax.plot([], [], color="k", lw=1.2, label="Theorem 4's condition ητ ≤ 1")
        ax.plot([], [], color="#D55E00", lw=2.2, label="… and its bound non-vacuous" +
                ("" if useful.any() else ": no cell of this grid"))
    ax.set_xticks(range(len(xs)), [_fmt(v) for v in xs])
    ax.set_yticks(range(len(ys)), [_fmt(v) for v in ys])
    ax.grid(False)
    _finish(ax, panel | {"logy": False, "legend": False}, SYMBOLS.get(xd, xd), SYMBOLS.get(yd, yd), logy=False)
    if panel.get("legend", True):
        ax.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), ncol=2)


def _theorem4_regions(group, res, panel, xd, yd) -> tuple[np.ndarray, np.ndarray]:
    """INPO Theorem 4's condition ητ ≤ 1, and the cells where its constant-step recursion
    promises KL_T < KL_0 at all: 8C²η/τ < KL_0 (its fixed point below the start)."""
    kl, dims = res.select("kl_to_eq", **panel.get("select", {}))
    kl0 = np.moveaxis(kl[..., 0], [dims.index(yd), dims.index(xd)], [0, 1])
    kl0 = np.nanmin(kl0.reshape(kl0.shape[0], kl0.shape[1], -1), -1)
    condition, useful = np.zeros(kl0.shape, bool), np.zeros(kl0.shape, bool)
    for (r, c), k0 in np.ndenumerate(kl0):
        cell = {xd: group.axes[xd][c], yd: group.axes[yd][r]}
        p = _run_params(group, None, None, panel, cell)
        condition[r, c] = p["eta"] * p["tau"] <= 1
        if not condition[r, c]:
            continue
        _, B = _constants(_line_game(group, panel.get("select", {}) | cell), p)  # a priori, from π_0 and τ
        useful[r, c] = condition[r, c] and 8 * max(B * p["tau"], 1.0) ** 2 * p["eta"] / p["tau"] < k0
    return condition, useful


def _outline(ax, region, color, lw):
    rows, cols = region.shape
    for (r, c), inside in np.ndenumerate(region):
        if not inside:
            continue
        for dr, dc, seg in ((1, 0, ([c - .5, c + .5], [r + .5] * 2)), (-1, 0, ([c - .5, c + .5], [r - .5] * 2)),
                            (0, 1, ([c + .5] * 2, [r - .5, r + .5])), (0, -1, ([c - .5] * 2, [r - .5, r + .5]))):
            rr, cc = r + dr, c + dc
            if not (0 <= rr < rows and 0 <= cc < cols and region[rr, cc]):
                ax.plot(*seg, color=color, lw=lw)
