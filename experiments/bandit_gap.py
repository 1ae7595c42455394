"""Bandit-mode study: how close to equilibrium do INPO, SPPO, Nash-MD and online IPO get when they
learn from N sampled preference queries per iteration instead of the exact preference matrix?

For each game, algorithm and N it runs gamesim's feedback="sampled" mode (exact empirical fit, hard
Bernoulli oracle) for T iterations over several seeds, and compares the last iterate's duality gap
of the τ-regularized game, gap_reg = 2τ·KL(π‖BR_τ(π)), with the same update under exact feedback
(N = ∞). N counts preference queries per iteration: N pairs for inpo, nash-md and online-ipo;
round(N/10) prompts × K = 5 samples (10 queries each) for sppo. The spec is bandit_gap.toml.

    python experiments/bandit_gap.py                       # full study, ~4 min on 2 cores
    python experiments/bandit_gap.py --quick --out-dir DIR # CI size; the figure goes into DIR

Results: DIR/bandit_gap.npz (stacked arrays and the resolved spec as JSON), and one npz per
configuration in DIR/bandit_gap/, saved as each finishes and reused by later runs (so an interrupted
run resumes). Figure: figures/bandit_gap.{pdf,png} (with --quick: DIR/bandit_gap.{pdf,png}).
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import re
import sys
import tomllib
from pathlib import Path

import numpy as np

import gamesim
from gamesim.bandit import SAMPLED, sampled_algorithm
from gamesim.files import atomic_open

HERE = Path(__file__).resolve().parent
KEYS = ("games", "algorithms", "tau", "N", "T", "record_every", "seeds", "fit", "oracle")
COLORS = {"inpo": "#0072B2", "sppo": "#E69F00", "nash-md": "#009E73", "online-ipo": "#CC79A7"}  # Okabe-Ito
LABELS = {"inpo": "INPO", "sppo": "SPPO", "nash-md": "Nash-MD", "online-ipo": "online IPO"}


def _check(keys, valid, where):
    for key in keys:
        if key not in valid:
            close = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(valid)}"
            raise ValueError(f"unknown key {key!r} in {where}; {hint}")


def load_spec(path, quick=False) -> dict:
    """The study spec, with the [quick] table applied if `quick`; unknown keys raise ValueError."""
    raw = tomllib.loads(Path(path).read_text())
    _check(raw, KEYS + ("quick",), path)
    _check(raw.get("quick", {}), KEYS, f"{path} [quick]")
    for table, where in ((raw, ""), (raw.get("quick", {}), "quick.")):
        for name, options in table.get("algorithms", {}).items():
            _check([name], SAMPLED, f"{path} [{where}algorithms]")
            _check(options, ("eta",), f"{path} [{where}algorithms.{name}]")
    spec = {k: v for k, v in raw.items() if k != "quick"} | (raw.get("quick", {}) if quick else {})
    if missing := [k for k in KEYS if k not in spec]:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    return spec


def configurations(spec):
    """(game, algorithm, N) runs; pairs=None is the exact-feedback reference of (game, algorithm)."""
    common = {k: spec[k] for k in ("tau", "T", "record_every", "seeds", "fit", "oracle")}
    for game in spec["games"]:
        for alg, options in spec["algorithms"].items():
            per_unit = sampled_algorithm(alg, pairs=1).queries_per_step
            for pairs in [max(1, round(n / per_unit)) for n in spec["N"]] + [None]:
                yield {"game": game, "algorithm": alg, "eta": options["eta"], "pairs": pairs, **common}


def run(c) -> dict:
    T, k, tau = c["T"], c["record_every"], c["tau"]
    if c["pairs"] is None:
        traj = gamesim.simulate(c["game"], c["algorithm"], eta=c["eta"], tau=tau, iterations=T, record_every=k)
        return {"iterations": traj.iterations, "gap_reg": traj.metrics["gap_reg"], "gap": traj.metrics["gap"]}
    traj = gamesim.simulate_batch(c["game"], c["algorithm"], eta=c["eta"], tau=tau, iterations=T, record_every=k,
                                  seeds=list(range(c["seeds"])), feedback="sampled", pairs=c["pairs"],
                                  fit=c["fit"], oracle=c["oracle"], progress=False)
    return {"iterations": traj.iterations, **{m: traj.metrics[m] for m in ("gap_reg", "gap", "queries")}}


def save_npz(path, **arrays):
    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def cached_run(c, cache: Path) -> dict:
    """The run's arrays from cache/<config>.npz, computed and saved first if missing."""
    text = json.dumps(c, sort_keys=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{c['game']}_{c['algorithm']}_{c['pairs'] or 'exact'}")
    path = cache / f"{slug}_{hashlib.sha1(text.encode()).hexdigest()[:10]}.npz"
    if path.exists():
        with np.load(path) as data:
            return {k: data[k] for k in data.files if k != "config"}
    print(f"running {c['game']} {c['algorithm']} pairs={c['pairs'] or 'exact'}", file=sys.stderr, flush=True)
    result = run(c)
    save_npz(path, config=np.array(text), **result)
    return result


def collect(spec, out_dir: Path) -> dict:
    """Every configuration's arrays, stacked: gap_reg, gap (game, alg, N, seed, record), exact_*."""
    cache = out_dir / "bandit_gap"
    cache.mkdir(parents=True, exist_ok=True)
    G, A, M = len(spec["games"]), len(spec["algorithms"]), len(spec["N"])
    runs = [cached_run(c, cache) for c in configurations(spec)]
    sampled = [r for r in runs if "queries" in r]
    exact = [r for r in runs if "queries" not in r]
    R = len(runs[0]["iterations"])
    stack = lambda rs, m, shape: np.stack([r[m] for r in rs]).reshape(shape)  # noqa: E731
    results = {"iterations": runs[0]["iterations"],
               "queries_per_iteration": stack(sampled, "queries", (G, A, M, -1, R))[:, :, :, 0, -1] / spec["T"],
               **{m: stack(sampled, m, (G, A, M, -1, R)) for m in ("gap_reg", "gap")},
               **{f"exact_{m}": stack(exact, m, (G, A, R)) for m in ("gap_reg", "gap")}}
    save_npz(out_dir / "bandit_gap.npz", spec=np.array(json.dumps(spec)), **results)
    return results


def plot(spec, res, out_base: Path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    algs, it = list(spec["algorithms"]), res["iterations"]
    fig, axes = plt.subplots(len(spec["games"]), 2, figsize=(12, 4.2 * len(spec["games"])), squeeze=False)
    for g, game in enumerate(spec["games"]):
        ax_n, ax_t = axes[g]
        for a, alg in enumerate(algs):
            color, final = COLORS.get(alg, "k"), res["gap_reg"][g, a, :, :, -1]  # (N, seeds)
            q, mean = res["queries_per_iteration"][g, a], final.mean(1)
            slope = np.polyfit(np.log(q), np.log(mean), 1)[0] if len(q) > 1 else np.nan
            x = q * 1.06 ** (a - (len(algs) - 1) / 2)  # dodged, so that the seed ranges do not overlap
            ax_n.errorbar(x, mean, yerr=(mean - final.min(1), final.max(1) - mean), fmt="o-", color=color,
                          capsize=3, label=f"{LABELS.get(alg, alg)}: slope {slope:+.2f}")
            ax_n.axhline(res["exact_gap_reg"][g, a, -1], color=color, ls="--", lw=1.2)
            curve = res["gap_reg"][g, a, -1]  # largest N: (seeds, records)
            ax_t.plot(it, curve.mean(0), color=color, label=f"{LABELS.get(alg, alg)}, N = {q[-1]:.0f}")
            ax_t.fill_between(it, curve.min(0), curve.max(0), color=color, alpha=0.2, lw=0)
            ax_t.plot(it, res["exact_gap_reg"][g, a], color=color, ls="--", lw=1.2)
        final, curves = res["gap_reg"][g, :, :, :, -1], res["gap_reg"][g, :, -1, :, 1:]
        for ax, lo, hi in ((ax_n, final.min() / 5, final.max()), (ax_t, curves.min() / 5, curves.max())):
            ax.set_yscale("log")  # data from the seeds' minimum up, with room for the legend on top
            ax.set_ylim(lo, hi * (hi / lo) ** 0.35)
        for a, alg in enumerate(algs):  # exact values below the axis: in the legend
            if (value := res["exact_gap_reg"][g, a, -1]) < ax_n.get_ylim()[0]:
                ax_n.plot([], [], ls="--", color=COLORS.get(alg, "k"), label=f"{LABELS.get(alg, alg)}, N = ∞: "
                          f"{value:.0e} (off scale)")
        ax_n.set_xscale("log")
        ax_n.set_xticks(spec["N"], [str(n) for n in spec["N"]])
        ax_n.minorticks_off()
        ax_n.set(xlabel="N = preference queries per iteration (SPPO: N/10 prompts × 5 samples)",
                 ylabel="gap_reg (final iterate)", title=f"(a) {game}: gap_reg at T = {spec['T']} vs N")
        ax_t.set(xlabel="iteration t", ylabel="gap_reg", title=f"(b) {game}: gap_reg vs iteration, largest N")
        handles, labels = ax_n.get_legend_handles_labels()  # the sampled runs first, then off-scale N = ∞
        order = sorted(range(len(labels)), key=lambda i: "off scale" in labels[i])
        ax_n.legend([handles[i] for i in order], [labels[i] for i in order], fontsize=8, ncol=2, loc="upper center", title="log-log slope of the mean", title_fontsize=8)
        ax_t.legend(fontsize=8, ncol=2, loc="upper center")
        for ax in (ax_n, ax_t):
            ax.grid(True, which="major", alpha=0.3)
    etas = {o["eta"] for o in spec["algorithms"].values()}
    eta = f"η = {etas.pop():g}" if len(etas) == 1 else ", ".join(
        f"η_{LABELS.get(a, a)} = {o['eta']:g}" for a, o in spec["algorithms"].items())
    fig.suptitle("Learning from sampled preferences: last-iterate duality gap of the τ-regularized game, "
                 f"gap_reg = 2τ·KL(π‖BR_τ(π)), τ = {spec['tau']}, {eta}\nsolid: sampled feedback, {spec['fit']} fit, "
                 f"{spec['oracle']} oracle, mean over {spec['seeds']} seeds, bars/bands: min–max; "
                 "dashed: the exact-feedback update (N = ∞)", fontsize=10)
    fig.tight_layout()
    for ext in ("pdf", "png"):
        fig.savefig(out_base.with_suffix(f".{ext}"), dpi=150)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the spec's [quick] settings (CI)")
    parser.add_argument("--out-dir", type=Path, default=HERE / "results", help="results directory")
    parser.add_argument("--spec", type=Path, default=HERE / "bandit_gap.toml")
    args = parser.parse_args(argv)
    try:  # a bad spec (unknown key, TOML syntax, a value gamesim refuses): one line, exit code 2
        spec = load_spec(args.spec, args.quick)
        results = collect(spec, args.out_dir)
    except (ValueError, tomllib.TOMLDecodeError) as error:
        print(f"bandit_gap: {error}", file=sys.stderr)
        return 2
    fig_dir = args.out_dir if args.quick else HERE.parent / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    plot(spec, results, fig_dir / "bandit_gap")
    print(f"wrote {args.out_dir / 'bandit_gap.npz'} and {fig_dir / 'bandit_gap'}.{{pdf,png}}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
