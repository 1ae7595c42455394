"""The `gamesim` command line: games, solve, run, plot, compare, algorithms, verify, study, reproduce, lm, demo,
explore.

User errors print one line on stderr and exit with code 2. The commands' modules (the engine,
studies, claims, the transformer mode) are imported inside the commands, so `gamesim --help`,
`gamesim games` and `gamesim algorithms` start without JAX. `gamesim run`'s flags for the
hyperparameters and the sampled feedback are built from the registries (`hyperparameter_flags`,
`recipes.OPTIONS`) when `run` is parsed, so that the other commands start without reading them:
registering an algorithm with a new `Param` adds its flag.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np

from gamesim.core import VERSION as __version__
from gamesim.core.errors import GamesimError
from gamesim.core.games import describe_builtins

RESULT_FILES = ("run.json", "metrics.csv", "policies.npy", "state.npz")


def hyperparameter_flags() -> dict[str, tuple[type, str]]:
    """The hyperparameters `gamesim run` takes as flags: name → (type, help), from every registered
    algorithm's `Param`s and the sampled feedback's (`recipes.PARAMS`), read when `run` is parsed.

    A name several algorithms share is one flag; its help lists each meaning with the algorithms
    that have it (e.g. refresh_every: MPO's and COMAL's magnet, APMD's slingshot). The flag parses an
    int when every meaning is an integer."""
    from gamesim.bandit.recipes import PARAMS  # the registries load for `run` only (see `_Parser.late`)
    from gamesim.dynamics.algorithms import ALGORITHMS

    meanings: dict[str, dict] = {}
    for alg in ALGORITHMS.values():
        for key, param in alg.params.items():
            meanings.setdefault(key, {}).setdefault(param, []).append(alg.name)
    for key, param in PARAMS.items():
        meanings.setdefault(key, {}).setdefault(param, []).append("--feedback sampled")
    return {key: (int if all(p.integer for p in by_param) else float,
                  "; ".join(f"{', '.join(names)}: {p.doc} (default {p.default:g})" for p, names in by_param.items()))
            for key, by_param in meanings.items()}


class _Parser(argparse.ArgumentParser):
    """Errors as one line (exit 2). `late(parser)`, if given, adds the flags a subcommand builds from
    the registries, when that subcommand is parsed (its --help included): `gamesim --help` and the
    other commands start without reading the registries."""

    def __init__(self, *args, late=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.late = late

    def parse_known_args(self, args=None, namespace=None):
        if self.late is not None:
            late, self.late = self.late, None
            late(self)
        return super().parse_known_args(args, namespace)

    def error(self, message):  # one line, exit 2
        raise GamesimError(f"{message} (see `{self.prog} --help`)")


def _run_flags(r: _Parser) -> None:
    """`gamesim run`'s flags from the registries: the sampled feedback's options and every hyperparameter."""
    from gamesim.bandit.recipes import OPTIONS  # the registries load for `run` only (see `_Parser.late`)

    for name, option in OPTIONS.items():
        default = "" if option.default is None else f" (default {option.default})"
        r.add_argument(f"--{option.flag or name.replace('_', '-')}", dest=name, type=option.type,
                       help=f"--feedback sampled: {option.doc}{default}")
    hyperparameters = []
    for name, (kind, doc) in hyperparameter_flags().items():
        try:
            r.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, help=doc.replace("%", "%%"))
        except argparse.ArgumentError:  # a name the run already has a flag for: --param NAME=VALUE reaches it
            continue
        hyperparameters.append(name)
    r.set_defaults(sampling=tuple(OPTIONS), hyperparameters=tuple(hyperparameters))


def _lm_run_flags(lr_: _Parser) -> None:
    """`gamesim lm run --algorithm`, whose help lists the transformer mode's algorithms (`recipes`)."""
    from gamesim.bandit.recipes import TRANSFORMER_ALGORITHMS  # the registries load for `lm run` only

    lr_.add_argument("--algorithm", required=True, help=f"one of {', '.join(TRANSFORMER_ALGORITHMS)}")


def main(argv=None) -> int:
    """Run the command line `argv` (default: this process's own, which also makes SIGTERM stop any
    command within SIGTERM_GRACE seconds, see `_honour_sigterm`); returns the exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        _honour_sigterm(own_process=argv is None)
        _use_compilation_cache()
        if getattr(args, "plugin", None):
            from gamesim.studies.plugins import load_plugin  # only with --plugin: hashlib stays out of start-up

            for path in args.plugin:
                load_plugin(path)
        return args.command(args)
    except GamesimError as exc:
        print(f"gamesim: error: {exc}", file=sys.stderr)
        return 2


SIGTERM_GRACE = 30.0
"""Seconds a command has to save its work after SIGTERM before the process ends anyway."""


def _honour_sigterm(own_process: bool) -> None:
    """SIGTERM stops every command like Ctrl-C: the command saves what it has and exits (130).

    A handler raises KeyboardInterrupt in the main thread at its next bytecode. In its own process,
    gamesim also has a watcher thread woken through the signal wakeup fd (whichever thread the
    kernel delivered SIGTERM to, numpy's BLAS threads included): if the main thread is still inside
    one long computation (a compilation, a large solve) SIGTERM_GRACE seconds later, it ends the
    process (exit 143), and a run keeps its last checkpoint. Called from Python (tests), it only
    installs the handler.
    """
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _raise_interrupt)
    if not own_process:
        return
    import socket  # only a command run from the shell needs the watcher's wakeup socket

    wake, signalled = socket.socketpair()
    signalled.setblocking(False)
    signal.set_wakeup_fd(signalled.fileno(), warn_on_full_buffer=False)

    def watch():
        with wake, signalled:  # the wakeup end lives with the watcher: collected, its fd would close (and be reused)
            while signal.SIGTERM not in wake.recv(64):
                pass
        time.sleep(SIGTERM_GRACE)
        os._exit(143)

    threading.Thread(target=watch, name="gamesim-sigterm", daemon=True).start()


def _use_compilation_cache() -> None:
    """JAX's persistent compilation cache, so that a command's compiled loops are reused by the
    next command: $GAMESIM_CACHE_DIR, else $XDG_CACHE_HOME/gamesim/jax or ~/.cache/gamesim/jax
    (GAMESIM_CACHE_DIR= empty turns it off). Only the command line sets it; library users choose.
    Set through JAX's environment variables, so a command that never computes never imports JAX."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "gamesim" / "jax"
    directory = os.environ.get("GAMESIM_CACHE_DIR", str(default))
    settings = {"jax_compilation_cache_dir": directory, "jax_persistent_cache_min_compile_time_secs": 0.0,
                "jax_persistent_cache_min_entry_size_bytes": 0}
    if not directory:
        return
    if "jax" not in sys.modules:
        for name, value in settings.items():
            os.environ.setdefault(name.upper(), str(value))
        return
    jax = sys.modules["jax"]
    if not jax.config.jax_compilation_cache_dir:  # in-process callers (tests): set once
        for name, value in settings.items():
            jax.config.update(name, value)


def _build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gamesim", description="Exact simulation of game-theoretic RLHF on preference games.")
    sub = p.add_subparsers(required=True, metavar="COMMAND", parser_class=_Parser)

    g = sub.add_parser("games", help="list the built-in games")
    g.set_defaults(command=cmd_games)

    s = sub.add_parser("solve", help="the equilibrium of a game (von Neumann winner at tau = 0)")
    s.add_argument("game", help="a built-in spec (e.g. cycle3, random:n=10,seed=3) or a CSV file")
    s.add_argument("--tau", type=float, default=0.0, help="KL weight to the reference policy")
    s.add_argument("--json", action="store_true", help="print JSON")
    _yes_flag(s)
    s.set_defaults(command=cmd_solve)

    r = sub.add_parser("run", help="run a self-play algorithm exactly and record its metrics", late=_run_flags)
    r.add_argument("game", help="a built-in spec or a CSV file")
    r.add_argument("--algorithm", required=True, help="one of `gamesim algorithms`")
    r.add_argument("--eta", type=float, help="learning rate (gamesim's convention: see the README)")
    r.add_argument("--tau", type=float, default=0.0, help="KL weight to the reference policy")
    r.add_argument("--schedule", default="constant", help="constant, or theorem: eta_t = 2/(tau(t+2))")
    r.add_argument("--iterations", type=int, required=True)
    r.add_argument("--seed", type=int, default=0, help="seeds --init random")
    r.add_argument("--init", help="reference, uniform or random (default: the algorithm's, pi_ref for most)")
    r.add_argument("--record-every", type=int, default=1, help="record metrics every K iterations")
    r.add_argument("--float32", action="store_true", help="compute in float32 instead of float64")
    r.add_argument("--out", required=True, help="directory for metrics.csv, policies.npy, run.json")
    r.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    r.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    r.add_argument("--json", action="store_true", help="also print the final metrics as JSON")
    r.add_argument("--feedback", default="exact", help="exact (full information, default) or sampled")
    r.add_argument("--backend", default="auto", help="auto (default), jax or numba: the engine's path, same numbers")
    r.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                   help="any hyperparameter of the algorithm, e.g. a plugin algorithm's own (repeatable)")
    r.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                   help="save the run so far at least this often (default 60 s); a crash loses at most that")
    _yes_flag(r)
    _plugin_flag(r)
    r.set_defaults(command=cmd_run)

    v = sub.add_parser("verify", help="check the papers' claims by measurement; exit 1 on any FAIL")
    v.add_argument("claims", nargs="*", metavar="CLAIM", help="claims to check (default: all)")
    v.add_argument("--quick", action="store_true", help="fewer games and iterations (CI)")
    v.add_argument("--json", action="store_true", help="print JSON")
    v.add_argument("--mutants", action="store_true",
                   help="also run every claim against wrong variants of its algorithms and print the kill matrix")
    v.add_argument("--first-kill", action="store_true", help="with --mutants: stop at a mutant's first killing claim")
    v.add_argument("--substitute", action="append", default=[], metavar="NAME=ALGORITHM",
                   help="run ALGORITHM (e.g. a plugin's) where the claims run the registered NAME (repeatable)")
    _plugin_flag(v)
    v.set_defaults(command=cmd_verify)

    pl = sub.add_parser("plot", help="draw the recorded metrics of run directories on shared axes")
    pl.add_argument("runs", nargs="+", metavar="RUN_DIR", help="--out directories of `gamesim run` or `gamesim lm run`")
    pl.add_argument("--metric", action="append", metavar="NAME", help="a metric to draw (repeatable; default: "
                    "gap, gap_reg and kl_to_eq where every run records them)")
    pl.add_argument("--x", default="iteration", choices=["iteration", "queries"],
                    help="x axis: iteration, or queries (sampled-feedback runs)")
    pl.add_argument("--out", default="plot.png", help="the figure file, .png, .pdf or .svg (default plot.png)")
    pl.set_defaults(command=cmd_plot)

    cp = sub.add_parser("compare", help="a table of run directories' final metrics and their differing settings")
    cp.add_argument("runs", nargs="+", metavar="RUN_DIR", help="--out directories of `gamesim run` or `gamesim lm run`")
    cp.add_argument("--metric", action="append", metavar="NAME", help="a metric to show (repeatable; default as plot)")
    cp.add_argument("--json", action="store_true", help="print JSON")
    cp.set_defaults(command=cmd_compare)

    a = sub.add_parser("algorithms", help="list the algorithms, their sources and hyperparameters")
    _plugin_flag(a)
    a.set_defaults(command=cmd_algorithms)

    st = sub.add_parser("study", help="run a study spec (experiments/*.toml) or plot its figure")
    st_sub = st.add_subparsers(required=True, metavar="ACTION", parser_class=_Parser)
    for action, doc, command in (
            ("run", "run the spec's sweep (finished cells are reused) and save its results", cmd_study_run),
            ("merge", "merge the shards of `study run --shard K/N` into the study's results", cmd_study_merge),
            ("plot", "draw figures/NAME.pdf and .png from the saved results", cmd_study_plot)):
        sp = st_sub.add_parser(action, help=doc)
        sp.add_argument("spec", help="a study spec, e.g. experiments/cycling.toml")
        _study_flags(sp)
        if action == "run":
            sp.add_argument("--force", action="store_true", help="recompute every cell")
            sp.add_argument("--shard", metavar="K/N", help="run only the K-th of N disjoint shares of the cells "
                            "(one per machine or process; then `gamesim study merge`)")
            _jobs_flag(sp, 1)
        if action == "merge":
            sp.add_argument("--from", dest="sources", action="append", default=[], metavar="DIR",
                            help="another results directory holding shards (repeatable; default: --results only)")
        sp.set_defaults(command=command)

    rp = sub.add_parser("reproduce", help="run and plot every study in experiments/")
    rp.add_argument("--experiments", default="experiments", help="directory of study specs (default: experiments)")
    _study_flags(rp)
    _jobs_flag(rp, DEFAULT_JOBS)
    rp.set_defaults(command=cmd_reproduce)

    lm = sub.add_parser("lm", help="transformer mode: a small language model as the policy")
    lm_sub = lm.add_subparsers(required=True, metavar="ACTION", parser_class=_Parser)
    lr_ = lm_sub.add_parser("run", help="run an algorithm with a transformer policy", late=_lm_run_flags)
    lr_.add_argument("--config", default="tiny", help="tiny, small, medium or a TOML file of model settings")
    lr_.add_argument("--oracle", default="features", help="features[:rank=4,scale=2.0,seed=0], bt[:scale=..,seed=..] "
                     "or lift:GAME (a tabular game with V^L responses)")
    lr_.add_argument("--eta", type=float, required=True, help="learning rate (gamesim's convention)")
    lr_.add_argument("--tau", type=float, default=0.0, help="KL weight to pi_ref (the initial model)")
    lr_.add_argument("--iterations", type=int, required=True)
    lr_.add_argument("--pairs", type=int, default=64, help="preference pairs sampled per iteration")
    lr_.add_argument("--steps", type=int, default=20, help="Adam steps on each iteration's loss")
    lr_.add_argument("--lr", type=float, default=3e-3, help="Adam's learning rate")
    lr_.add_argument("--record-every", type=int, default=1)
    lr_.add_argument("--seed", type=int, default=0, help="seed of the sampling")
    lr_.add_argument("--init-seed", type=int, default=0, help="seed of the initial model, which is pi_ref")
    lr_.add_argument("--metrics", default="auto", choices=["auto", "exact", "sampled"],
                     help="exact (enumerate all V^L responses), sampled (95%% confidence intervals); "
                     "auto: exact when V^L <= 4096")
    lr_.add_argument("--eval-samples", type=int, default=4096, help="samples per record for sampled metrics")
    lr_.add_argument("--devices", type=int, default=None, help="devices to split the batch over (default: all)")
    lr_.add_argument("--out", required=True, help="directory for metrics.csv, run.json, checkpoint.npz")
    lr_.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    lr_.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    lr_.add_argument("--checkpoint-every", type=float, default=60.0, metavar="SECONDS",
                     help="save the run at a record at least this often (default 60 s)")
    _yes_flag(lr_)
    lr_.set_defaults(command=cmd_lm_run)

    d = sub.add_parser("demo", help="INPO, Nash-MD and SPPO on the 3-cycle game, side by side")
    d.add_argument("--iterations", type=int, default=3000)
    d.set_defaults(command=cmd_demo)

    e = sub.add_parser("explore", help="an interactive page in your browser: a 3-response game, an algorithm, "
                                       "eta and tau, and the run's trajectory and gaps")
    e.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default 0: any free one; the URL is printed)")
    e.add_argument("--no-browser", action="store_true", help="print the URL only, do not open a browser")
    _plugin_flag(e)
    e.set_defaults(command=cmd_explore)
    return p


def _yes_flag(p) -> None:
    p.add_argument("--yes", action="store_true",
                   help="start even when the estimate is above 10 minutes or 256 MB of results (see the README)")


def _plugin_flag(p) -> None:
    p.add_argument("--plugin", action="append", default=[], metavar="FILE.py",
                   help="run this Python file first, to register your algorithms and claims (repeatable)")


def _study_flags(p) -> None:
    _plugin_flag(p)
    _yes_flag(p)
    p.add_argument("--allow-plugins", action="store_true",
                   help="run the Python files a spec lists under plugins = [...] (they execute code)")
    p.add_argument("--quick", action="store_true", help="the specs' [quick] settings (CI): small grids, short runs")
    p.add_argument("--results", help="results directory (default: results/ beside the spec, results/quick with --quick)")
    p.add_argument("--figures", help="figure directory (default: figures/ in the checkout; RESULTS/figures with --quick)")


DEFAULT_JOBS = min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
"""`reproduce`'s worker processes: one per core this process may use, at most 4 (each holds its
own JAX, about 0.5-1.5 GB)."""


def _jobs_flag(p, default: int) -> None:
    p.add_argument("--jobs", type=_positive_int, default=default, metavar="N",
                   help=f"compute the cells in N worker processes, side by side (default: {default})")


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number ≥ 1, not {text!r}")
    return int(text)


def _study_dirs(args, spec_dir: Path) -> tuple[Path, Path]:
    results = Path(args.results) if args.results else spec_dir / "results" / ("quick" if args.quick else "")
    figures = Path(args.figures) if args.figures else results / "figures" if args.quick else spec_dir.parent / "figures"
    return results, figures


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _interruptible(run) -> int:
    """Exit code 0 once run() returns, 130 when it is interrupted (its finished cells kept)."""
    try:
        run()
        return 0
    except KeyboardInterrupt:
        print("gamesim: interrupted; finished runs are saved and a rerun continues from them", file=sys.stderr)
        return 130


def cmd_study_run(args) -> int:
    from gamesim.studies.study import load_spec, run_study  # a command's own module: parsing starts without it

    study = load_spec(args.spec, args.quick, args.allow_plugins)
    results, _ = _study_dirs(args, Path(args.spec).resolve().parent)
    if args.shard is not None:
        from gamesim.studies.shards import parse_shard, run_shard  # only with --shard

        shard = parse_shard(args.shard)
        return _interruptible(lambda: run_shard(study, results, shard, force=args.force, log=_log, yes=args.yes))
    return _interruptible(lambda: run_study(study, results, force=args.force, log=_log, yes=args.yes, jobs=args.jobs))


def cmd_study_merge(args) -> int:
    from gamesim.studies.shards import merge  # a command's own module (as above)
    from gamesim.studies.study import load_spec

    study = load_spec(args.spec, args.quick, args.allow_plugins)
    results, _ = _study_dirs(args, Path(args.spec).resolve().parent)
    merge(study, results, args.sources, log=_log)
    print(results / f"{study.name}.npz")
    return 0


def cmd_study_plot(args) -> int:
    from gamesim.studies.study import load_results, load_spec, plot_study  # a command's own module (as above)

    study = load_spec(args.spec, args.quick, args.allow_plugins)
    results, figures = _study_dirs(args, Path(args.spec).resolve().parent)
    for path in plot_study(study, load_results(study, results), figures):
        print(path)
    return 0


def cmd_reproduce(args) -> int:
    from gamesim.studies.study import reproduce  # a command's own module (as above)

    experiments = Path(args.experiments).resolve()
    results, figures = _study_dirs(args, experiments)
    t0 = time.perf_counter()
    code = _interruptible(lambda: reproduce(experiments, results, figures, args.quick, log=_log,
                                            allow_plugins=args.allow_plugins, yes=args.yes, jobs=args.jobs))
    if code == 0:
        print(f"every figure written to {figures} in {time.perf_counter() - t0:.0f} s")
    return code


def cmd_plot(args) -> int:
    from gamesim.studies.runs import choose_metrics, load_run, plot_runs  # a command's own module (matplotlib)

    runs = [load_run(path) for path in args.runs]
    print(plot_runs(runs, choose_metrics(runs, args.metric), args.out, x=args.x))
    return 0


def cmd_compare(args) -> int:
    from gamesim.studies.runs import choose_metrics, compare_table, differences, load_run  # a command's own module

    runs = [load_run(path) for path in args.runs]
    metrics = choose_metrics(runs, args.metric)
    if args.json:
        from gamesim.engine.results import dumps  # JSON output only (as in `cmd_verify`)

        print(dumps({"runs": [{"path": str(r.path), "status": r.status, "iterations": r.done, "mode": r.mode,
                               "final": {m: r.final(m) for m in metrics}} for r in runs],
                     "differences": differences(runs)}, indent=1))
        return 0
    print(compare_table(runs, metrics))
    return 0


def cmd_games(args) -> int:
    print("\n".join(describe_builtins()))
    print("any other spec: a path to a CSV file (optional header row of names, then n rows of n numbers);")
    print("every spec takes ref_seed=K for a reference policy with logits ~ N(0, 1)")
    return 0


def cmd_verify(args) -> int:
    from gamesim.studies.claims import select, verify  # a command's own module (loads JAX and SciPy)

    algorithms = {}
    for item in args.substitute:
        name, eq, alg = item.partition("=")
        if not eq or not name or not alg:
            raise GamesimError(f"--substitute takes NAME=ALGORITHM (e.g. inpo=my-inpo), not {item!r}")
        algorithms[name.strip()] = alg.strip()
    if args.mutants and algorithms:
        raise GamesimError("--mutants mutates the registered algorithms; run it without --substitute")
    claims = select(args.claims)
    results = verify([c.name for c in claims], quick=args.quick, algorithms=algorithms)
    rows = None
    if args.mutants:
        from gamesim.studies.mutants import kill_matrix  # only with --mutants

        rows = kill_matrix(args.quick, claims=[c.name for c in claims], first_kill=args.first_kill, log=_log)
    ok = all(r.passed for r in results) and all(row.killed for row in rows or [])
    if args.json:
        out = [_result_json(r) for r in results]
        if rows is not None:
            out = {"claims": out, "mutants": [{"algorithm": row.mutant.algorithm, "mutant": row.mutant.name,
                                               "killed": row.killed, "verdicts": row.verdicts,
                                               "seconds": row.seconds} for row in rows],
                   "score": {"killed": sum(row.killed for row in rows), "mutants": len(rows)}}
        from gamesim.engine.results import dumps  # JSON output only; hashlib and json stay out of start-up

        print(dumps(out, indent=2))
        return 0 if ok else 1
    for r in results:
        print(f"{r.claim.name}  {'PASS' if r.passed else 'FAIL'}  ({r.claim.kind}: {r.claim.source}; "
              f"{len(r.ratios)} games, {r.seconds:.1f} s)")
        for label, per_game in r.checks.items():
            worst = max(per_game.values(), key=lambda c: c.ratio if np.isfinite(c.ratio) else np.inf)
            print(f"  {worst.kind:<5} {worst.ratio:>9.3g} {'ok  ' if worst.passed else 'FAIL'} {label}")
    print("ratio = measured/bound (bound) or error/tolerance (sharp), worst over the games; ≤ 1 passes. "
          "Statements: `gamesim verify --json`")
    if rows is not None:
        _print_kill_matrix(results, rows, args.quick)
    return 0 if ok else 1


def _result_json(r) -> dict:
    def number(x):
        return float(x) if np.isfinite(x) else str(x)

    return {"claim": r.claim.name, "source": r.claim.source, "statement": r.claim.statement, "kind": r.claim.kind,
            "observation": r.claim.kind == "observation", "algorithms": list(r.claim.algorithms),
            "ratios": {g: number(v) for g, v in r.ratios.items()}, "worst": number(r.worst), "passed": r.passed,
            "seconds": r.seconds,
            "checks": [{"label": label, "kind": next(iter(per_game.values())).kind,
                        "passed": all(c.passed for c in per_game.values()),
                        "games": {g: {"ratio": number(c.ratio), "measured": number(c.measured),
                                      "allowed": number(c.allowed), "note": c.note} for g, c in per_game.items()}}
                       for label, per_game in r.checks.items()]}


def _print_kill_matrix(results, rows, quick: bool) -> None:
    """Per algorithm: its claims as columns, the correct update's verdicts, then one row per mutant."""
    passed = {r.claim.name: r.passed for r in results}
    mark = {"killed": "K", "survived": ".", "not run": "-"}
    print(f"\nmutation matrix{' (--quick)' if quick else ''}: K killed, . survived, - not run (killed before), "
          "E the claim crashed on it; first row: the correct update, P passes")
    for alg in dict.fromkeys(row.mutant.algorithm for row in rows):
        block = [row for row in rows if row.mutant.algorithm == alg]
        claims = list(block[0].verdicts)
        print(f"\n{alg}: " + "  ".join(f"[{i + 1}] {c}" for i, c in enumerate(claims)))
        width = max(len(row.mutant.name) for row in block) + 2
        print(f"  {'(correct update)':<{width}}" + "".join(f"{('P' if passed.get(c) else 'F'):>4}" for c in claims))
        for row in block:
            cells = "".join(f"{mark.get(row.verdicts[c], 'E'):>4}" for c in claims)
            print(f"  {row.mutant.name:<{width}}{cells}{'' if row.killed else '   SURVIVED'}")
    killed = sum(row.killed for row in rows)
    print(f"\nscore: {killed} of {len(rows)} mutants killed; the correct updates pass "
          f"{sum(passed.values())} of {len(passed)} claims")


def cmd_algorithms(args) -> int:
    from gamesim.dynamics.algorithms import ALGORITHMS  # the registry loads for this command (no JAX)

    for a in ALGORITHMS.values():
        params = ", ".join(f"{k}={p.default:g}" for k, p in a.params.items())
        print(f"{a.name:<16} {a.citation}{' [' + params + ']' if params else ''}\n{'':<16} → {a.converges_to}")
    return 0


def cmd_solve(args) -> int:
    from gamesim.core.equilibria import solve  # loads SciPy's optimizers and JAX: only this command needs them
    from gamesim.core.games import load_game
    from gamesim.engine.results import dumps

    game = load_game(args.game)
    eq = solve(game, args.tau, yes=args.yes)
    if args.json:
        print(dumps({"n": game.n, "tau": args.tau, "policy": eq.policy, "value": eq.value,
                     "duality_gap": eq.duality_gap}))
        return 0
    names = game.names or [str(i) for i in range(game.n)]
    stack = game.stack_policy(eq.policy)
    for c, pi in enumerate(stack):
        if game.contextual:
            print(f"context {c} (weight {game.weights[c]:.4g})")
        for name, p in zip(names, pi):
            if p > 0:
                print(f"  {name:<24} {p:.10f}")
    print(f"value {eq.value:.12g}   duality gap {eq.duality_gap:.3g}   ({eq.method})")
    return 0


def cmd_run(args) -> int:
    from gamesim.core.games import load_game  # the engine loads JAX: only the computing commands import it
    from gamesim.core.rundir import RunDirectory
    from gamesim.engine.results import dumps, read_run, versions, write_run
    from gamesim.engine.simulation import simulate

    if args.resume and args.overwrite:
        raise GamesimError("--resume continues the run in --out and --overwrite replaces it; choose one")
    hyper = {k: getattr(args, k) for k in args.hyperparameters if getattr(args, k) is not None}
    for item in args.param:
        key, eq, value = item.partition("=")
        try:
            hyper[key.strip()] = float(value)
        except ValueError:
            raise GamesimError(f"--param takes KEY=NUMBER (e.g. momentum=0.5), not {item!r}") from None
        if not eq or not key.strip():
            raise GamesimError(f"--param takes KEY=NUMBER (e.g. momentum=0.5), not {item!r}")
    sampling = {k: getattr(args, k) for k in args.sampling if getattr(args, k) is not None}
    config = {"game": args.game, "algorithm": args.algorithm, "eta": args.eta, "tau": args.tau,
              "schedule": args.schedule, "iterations": args.iterations, "seed": args.seed,
              "init": args.init, "record_every": args.record_every,
              "dtype": "float32" if args.float32 else "float64", "feedback": args.feedback, **hyper, **sampling}
    if args.plugin:
        from gamesim.studies.plugins import fingerprint  # only with --plugin (as in `main`)

        config["plugins"] = fingerprint()
    mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    with RunDirectory.open(args.out, mode) as run:  # checked and locked before any computation
        game = load_game(args.game)
        previous = read_run(run.path, config) if args.resume else None
        stamp = versions(__version__)
        traj = simulate(game, args.algorithm, eta=args.eta, tau=args.tau, iterations=args.iterations,
                        seed=args.seed, init=args.init, record_every=args.record_every,
                        schedule=args.schedule, dtype=config["dtype"], resume_from=previous,
                        feedback=args.feedback, backend=args.backend, yes=args.yes,
                        checkpoint=lambda t: write_run(run, t, config, stamp, final=False),
                        checkpoint_every=args.checkpoint_every, **hyper, **sampling)
        write_run(run, traj, config, stamp)
    if traj.interrupted:
        print(f"gamesim: interrupted at iteration {int(traj.iterations[-1])}; results so far are in {args.out}; "
              "rerun with --resume to continue", file=sys.stderr)
        return 130
    if args.json:
        print(dumps(traj.final()))
    return 0


def cmd_lm_run(args) -> int:
    from gamesim.core.rundir import RunDirectory  # the transformer mode loads JAX and optax: only this command
    from gamesim.engine.results import dumps
    from gamesim.lm import training as lm

    model = lm.load_model_config(args.config)
    settings = lm.LMSettings(args.algorithm, args.eta, args.tau, args.iterations, args.oracle, args.pairs,
                             args.steps, args.lr, args.record_every, args.seed, init_seed=args.init_seed,
                             metrics=args.metrics, eval_samples=args.eval_samples)

    if args.resume and args.overwrite:
        raise GamesimError("--resume continues the run in --out and --overwrite replaces it; choose one")
    mode = "resume" if args.resume else "overwrite" if args.overwrite else "new"
    with RunDirectory.open(args.out, mode) as out:
        result = lm.run(model, settings, out, resume=args.resume, devices=args.devices,
                        checkpoint_every=args.checkpoint_every, yes=args.yes)
    if result["interrupted"]:
        print(f"gamesim: interrupted; the run up to iteration {int(result['iteration'][-1])} is in {args.out}; "
              "rerun with --resume to continue", file=sys.stderr)
        return 130
    final = {k: float(v[-1]) for k, v in result.items() if k not in ("params", "interrupted", "iteration")}
    print(dumps(final))
    return 0


def cmd_explore(args) -> int:
    from gamesim.studies.explore import serve  # a command's own module (loads JAX and matplotlib)

    return serve(args.port, open_browser=not args.no_browser)


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


def cmd_demo(args) -> int:
    from gamesim.core.equilibria import duality_gap, solve  # the engine loads JAX: only this command
    from gamesim.engine.simulation import simulate

    game, tau = "cycle3", 0.1
    eq0, eqt = solve(game), solve(game, tau)
    print(f"cycle3 (COMAL's 3-cycle): von Neumann winner {eq0.policy.round(4)} = (4, 3, 4)/11;")
    print(f"tau = {tau}: regularized equilibrium {eqt.policy.round(4)}, whose original-game gap is "
          f"{duality_gap(game, eqt.policy, 0.0):.4f}")
    runs = [("sppo (Hedge)", "sppo", {"eta": 0.5}),
            ("inpo / omd", "inpo", {"eta": 0.5, "tau": tau}),
            ("nash-md, eta_t = 2/(tau(t+2))", "nash-md", {"tau": tau, "schedule": "theorem"}),
            ("nash-md, constant eta", "nash-md", {"eta": 0.5, "tau": tau})]
    print(f"\nafter {args.iterations} iterations from pi_0 = (0.6, 0.3, 0.1); gaps are duality gaps "
          "(exploitability = gap/2):")
    print(f"{'algorithm':<32}{'gap last':>12}{'gap avg':>12}{'reg. gap last':>15}{'KL(pi*|pi_t)':>15}")
    for label, name, kw in runs:
        t = simulate(game, name, iterations=args.iterations, record_every=args.iterations,
                     init=[0.6, 0.3, 0.1], **kw).final()
        print(f"{label:<32}{t['gap']:>12.3g}{t['gap_avg']:>12.3g}{t['gap_reg']:>15.3g}{t['kl_to_eq']:>15.3g}")
    print("\nsppo's last iterate cycles away from the equilibrium (its average converges); inpo and the "
          "theorem-scheduled nash-md converge to pi*_tau; constant-step nash-md stalls at a biased point.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
