r"""The engine: a whole trajectory as one compiled loop, vmapped over a batch of runs.

A run starts from π_0 (π_ref by default, as in the papers) and applies T updates. Every
`record_every` iterations, inside the compiled loop, it records the policy and every metric of
`metrics.METRICS`; record 0 is π_0. The "average iterate" at iteration t is the uniform mean of
π_0..π_t, the t + 1 policies the learner has played, and the regret sums those t + 1 rounds.

The loop is `jax.lax.scan` over records of a `scan` over `record_every` updates, vmapped over the
batch (seeds, initial policies, games of one shape, η, τ; a game shared by the whole batch is not
copied). Long runs go in chunks of records, each one compiled call: a progress bar advances per
chunk, and Ctrl-C returns the completed chunks (`Trajectory.interrupted`) with the engine state,
from which `resume_from=` continues bit for bit.

float64 by default, inside `jax.enable_x64` only, so the user's own JAX setting is left alone.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import time
import types
import weakref
from dataclasses import dataclass, field
from typing import Any

import importlib.util
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gamesim.bandit.recipes import OPTIONS
from gamesim.bandit.sampled import sampled_algorithm
from gamesim.core import VERSION
from gamesim.core.divergences import Divergence
from gamesim.core.equilibria import check_tau, solve
from gamesim.core.errors import GamesimError
from gamesim.core.games import PreferenceGame, load_game
from gamesim.core.guards import check_iterations, check_seed, confirm, progress_bar, run_estimate
from gamesim.core.metrics import BEST, METRICS, Accumulators, accumulate, best_so_far, record
from gamesim.dynamics.algorithms import Algorithm, get_algorithm, numba_chain, step_sizes
from gamesim.engine.state import Carry, Games, Hyper, MirrorCarry

RECORDED = [name for name in METRICS if name not in BEST]
"""The metrics computed at each record (the best-iterate ones are running minima of these)."""

CHUNK_WORK = 2e9
"""Target floating-point work of one compiled chunk (≈ a second): the progress and interrupt grain."""


@dataclass
class Trajectory:
    """Recorded iterates of one run, or of a batch of runs (leading batch axis B).

    iterations: (R,) iteration of each record, 0 first. policies: (R, n) — (R, C, n) for a
    contextual game, with a leading B for a batch. metrics: name → (R,) (or (B, R)).
    equilibrium: π* used by `kl_to_eq`/`winrate_vs_eq`. state: the engine state after the
    last record (a list of arrays), for `resume_from`. interrupted: stopped by Ctrl-C before `iterations`.
    """

    iterations: np.ndarray
    policies: np.ndarray
    metrics: dict
    equilibrium: np.ndarray
    config: dict
    state: Any = field(repr=False, default=None)
    interrupted: bool = False
    elapsed: float = 0.0

    def final(self) -> dict:
        """The metrics at the last record: floats for one run, (B,) arrays for a batch.

        Examples:
            >>> traj = simulate("cycle3", "inpo", eta=0.5, tau=0.1, iterations=1000, record_every=500)
            >>> round(traj.final()["gap"], 4)               # … whose gap in the original game is not 0
            0.0245
        """
        return {k: (float(v[-1]) if v.ndim == 1 else v[:, -1]) for k, v in self.metrics.items()}


SAMPLING_OPTIONS = tuple(OPTIONS)
"""Keywords of `simulate` that set up feedback="sampled" (`bandit.recipes.OPTIONS`, `bandit.sampled_algorithm`)."""


def simulate(game, algorithm, *, eta=None, tau=0.0, iterations: int, seed: int = 0, init=None,
             record_every: int = 1, schedule: str = "constant", dtype: str = "float64",
             progress: bool | None = None, resume_from: Trajectory | None = None,
             feedback: str = "exact", backend: str = "auto", checkpoint=None, checkpoint_every: float = 60.0,
             yes: bool | None = None, **hyperparameters) -> Trajectory:
    """Run `algorithm` on `game` for `iterations` exact updates.

    game: a PreferenceGame or a spec string. algorithm: a name of `algorithms.ALGORITHMS`.
    eta: learning rate (omit with schedule="theorem", η_t = 2/(τ(t+2))). tau: KL weight to π_ref.
    init: None (the algorithm's default, π_ref for most), "reference", "uniform", "random"
    (logits ~ N(0,1) from `seed`), or a policy.
    record_every: record every k iterations (k must divide `iterations`).
    resume_from: a Trajectory this call continues up to `iterations`; everything that determines
    the trajectory (`Trajectory.config["fingerprint"]`: the game, algorithm, hyperparameters, η,
    τ, schedule, dtype, seed, π_0, record_every, feedback) must be the same, or it is refused.
    checkpoint: called with the Trajectory so far (interrupted=True until the end) at least every
    `checkpoint_every` seconds of running, between chunks (`gamesim run` saves it).
    yes: consent to a run whose estimated time or size is above the `guards` thresholds (None,
    the default, warns and runs; False refuses); a run that cannot fit in memory is refused.
    hyperparameters: the algorithm's own (e.g. beta=, refresh_every=); `gamesim.dynamics.algorithms`
    lists them with their defaults.
    feedback: "exact" (full information) or "sampled": learn from sampled preference queries,
    set up by pairs=, recipe=, samples=, fit=, steps=, batch=, oracle= and the hyperparameters
    lr=, flip=, position_bias= (see `gamesim.bandit.sampled`); `seed` seeds the draws.
    backend: "auto", "jax" or "numba" (see `choose_backend`).

    Examples:
        >>> traj = simulate("cycle3", "inpo", eta=0.5, tau=0.1, iterations=1000, record_every=500)
        >>> traj.iterations, traj.policies.shape
        (array([   0,  500, 1000]), (3, 3))
        >>> bool(traj.metrics["gap_reg"][-1] < 1e-12)       # the last iterate reaches π*_τ …
        True
    """
    batch = simulate_batch([game], algorithm, eta=[eta], tau=[tau], iterations=iterations,
                           seeds=[seed], inits=[init], record_every=record_every, schedule=schedule,
                           dtype=dtype, progress=progress, resume_from=resume_from and _as_batch(resume_from),
                           feedback=feedback, backend=backend, yes=yes,
                           checkpoint=checkpoint and (lambda b: checkpoint(_one_run(b))),
                           checkpoint_every=checkpoint_every, **{k: v if k in SAMPLING_OPTIONS else [v]
                                                                  for k, v in hyperparameters.items()})
    return _one_run(batch)


def _one_run(batch: Trajectory) -> Trajectory:
    return Trajectory(batch.iterations, batch.policies[0], {k: v[0] for k, v in batch.metrics.items()},
                      batch.equilibrium[0], batch.config, batch.state, batch.interrupted, batch.elapsed)


def simulate_batch(games, algorithm, *, eta=None, tau=0.0, iterations: int, seeds=0, inits=None,
                   record_every: int = 1, schedule: str = "constant", dtype: str = "float64",
                   progress: bool | None = None, resume_from: Trajectory | None = None,
                   feedback: str = "exact", devices: int | None = None, backend: str = "auto",
                   checkpoint=None, checkpoint_every: float = 60.0, yes: bool | None = None,
                   **hyperparameters) -> Trajectory:
    """Run a batch of B runs as one vmapped loop; every argument is one value or B values.

    games: one game (shared, not copied) or B games of one shape. eta, tau, seeds, inits and each
    hyperparameter: one value or B values.
    The result has a leading batch axis. The runs are independent: each equals its own `simulate`.
    The sampling options (pairs=, fit=, …) are one value for the whole batch.
    devices: how many local devices the batch axis is split over with `jax.sharding` (default:
    the largest count ≤ jax.local_device_count() that divides B; 1 turns it off). Runs are
    independent, so the split changes where they run, not their numbers.
    backend: "jax", "numba" (the mirror-step algorithms in float64: `numba_engine`) or "auto"
    (`choose_backend`); both give the same numbers to rounding.
    resume_from, checkpoint, checkpoint_every, yes: as for `simulate`.
    """
    sampling = {k: hyperparameters.pop(k) for k in SAMPLING_OPTIONS if k in hyperparameters}
    if feedback == "sampled":
        alg = sampled_algorithm(getattr(algorithm, "name", algorithm), **sampling)
    elif feedback == "exact":
        if sampling:
            raise GamesimError(f"{', '.join(sampling)} set up sampled feedback: add feedback='sampled' (--feedback sampled)")
        alg = get_algorithm(algorithm)
    else:
        raise GamesimError(f"feedback must be 'exact' or 'sampled', not {feedback!r}")
    T, k = _check_counts(iterations, record_every)
    if dtype not in ("float64", "float32"):
        raise GamesimError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    games = [load_game(g) for g in (games if isinstance(games, (list, tuple)) else [games])]
    if not games:
        raise GamesimError("simulate_batch needs at least one game")
    policy_ndim = 1 + games[0].contextual
    values = {"games": games, "eta": eta, "tau": tau, "seeds": seeds, "inits": inits, **hyperparameters}
    seqs = {name: games if name == "games" else _as_seq(v, policy_ndim + 1 if name == "inits" else 1)
            for name, v in values.items()}
    sizes = {name: len(v) for name, v in seqs.items() if v is not None and len(v) != 1}
    if len(set(sizes.values())) > 1:
        raise GamesimError(f"batch arguments have different lengths {sizes}; give one value or B values each")
    B = next(iter(sizes.values()), 1)
    per_run = {name: [values[name]] * B if seq is None else seq * B if len(seq) == 1 else seq
               for name, seq in seqs.items()}
    games_b, etas, seeds_b, inits_b = (per_run[k] for k in ("games", "eta", "seeds", "inits"))
    for seed in seeds_b:
        check_seed(seed)
    taus = [check_tau(t) for t in per_run["tau"]]
    for e, t in zip(etas, taus):
        alg.check(e, t, schedule)
    params = [alg.resolve_params({k: per_run[k][i] for k in hyperparameters}) for i in range(B)]
    if alg.check_game is not None:
        for game, tau_i, params_i in zip(per_run["games"], taus, params):
            alg.check_game(game, tau_i, params_i)
    shape = (games[0].num_contexts, games[0].n)
    if any((g.num_contexts, g.n) != shape for g in games):
        raise GamesimError("games in one batch must have the same number of responses and contexts")

    done = 0 if resume_from is None else int(resume_from.iterations[-1])
    confirm(run_estimate(games[0].n, games[0].num_contexts, B, T - done, k, max(alg.queries(p) for p in params)), yes)
    backend = choose_backend(backend, alg, games[0], dtype=dtype, runs=B, iterations=T, record_every=k,
                             devices=devices, params=params)
    if not (isinstance(checkpoint_every, (int, float)) and checkpoint_every > 0):
        raise GamesimError(f"checkpoint_every is a number of seconds > 0, got {checkpoint_every!r}")
    with jax.enable_x64(dtype == "float64"):
        return _run(alg, games, games_b, etas, taus, seeds_b, inits_b, params, T, k, schedule, dtype,
                    progress, resume_from, backend, None if backend == "numba" else _batch_sharding(B, devices),
                    {"feedback": feedback, **sampling}, checkpoint, checkpoint_every, yes)


NUMBA_MAX_N = 100
"""The largest n at which "auto" takes the numba path (benchmarks/run.py: numba's per-run loop
is faster up to here; from n ≈ 1000 every loop streams A from memory and XLA's is as fast)."""

NUMBA_MIN_UPDATES = 100_000
"""The fewest run-iterations (B·T) for which "auto" takes the numba path: below it a run takes
milliseconds either way, and JAX's persistent compilation cache makes a first run cheaper than
loading numba."""

NUMBA_MIN_RECORD_EVERY = 10
"""The densest recording at which "auto" takes the numba path: it stores the state at every record
and computes the metrics afterwards, which at record_every = 1 costs as much as JAX's in-loop
recording and gains nothing (benchmarks/run.py, section 5)."""


def choose_backend(backend: str, alg: Algorithm, game: PreferenceGame, *, dtype: str, runs: int,
                   iterations: int, record_every: int, devices: int | None = None, params=()) -> str:
    """The path a run takes: "jax" or "numba".

    "auto" takes numba when the algorithm is provably a registered chain of mirror steps
    (`algorithms.numba_chain`: OMD/INPO, Nash-MD, SPPO, DNO, iterative IPO; never a modified copy
    or a user's own step, and with the chain's hyperparameters `params`) with exact feedback in float64, numba is installed, JAX computes on the CPU
    (no accelerator) over one device, n ≤ NUMBA_MAX_N, the batch makes at least
    NUMBA_MIN_UPDATES run-iterations and records at most every NUMBA_MIN_RECORD_EVERY; JAX
    otherwise. "numba" insists (an error where it cannot).
    """
    if backend not in ("auto", "jax", "numba"):
        raise GamesimError(f"backend must be 'auto', 'jax' or 'numba', not {backend!r}")
    if backend == "jax":
        return "jax"
    problem = None
    if numba_chain(alg, params) is None:
        problem = (f"{alg.name} has no numba path (it runs only the registered mirror-step algorithms with exact "
                   "feedback and their chain's hyperparameters, never a modified or user-defined step)")
    elif dtype != "float64":
        problem = "the numba path computes in float64 only"
    elif devices not in (None, 1):
        problem = "the numba path runs on the CPU's threads; devices= splits JAX's batch"
    elif backend == "auto":
        usable = importlib.util.find_spec("numba") is not None and jax.default_backend() == "cpu"
        worth_it = (game.n <= NUMBA_MAX_N and runs * iterations >= NUMBA_MIN_UPDATES
                    and record_every >= NUMBA_MIN_RECORD_EVERY)
        return "numba" if usable and worth_it else "jax"
    if problem is None:
        return "numba"
    if backend == "auto":
        return "jax"
    raise GamesimError(f"backend='numba': {problem}; use backend='jax' or 'auto'")


def _batch_sharding(B: int, devices: int | None):
    """(sharding of arrays with a leading batch axis, replicated sharding), or None on one device."""
    available = jax.local_device_count()
    if devices is None:
        devices = max(d for d in range(1, available + 1) if B % d == 0)
    if not (isinstance(devices, int) and 1 <= devices <= available and B % devices == 0):
        raise GamesimError(f"devices = {devices!r}: give an integer between 1 and the {available} local devices "
                           f"that divides the batch size {B}")
    if devices == 1:
        return None
    mesh = Mesh(np.array(jax.local_devices()[:devices]), ("batch",))
    return NamedSharding(mesh, PartitionSpec("batch")), NamedSharding(mesh, PartitionSpec())


def _place(tree, sharding, B: int, split: bool = True):
    """Put a pytree's arrays on the devices: a leading axis B split (if `split`), the rest replicated."""
    if sharding is None:
        return tree
    batch, replicated = sharding
    return jax.tree_util.tree_map(
        lambda x: jax.device_put(x, batch if split and np.ndim(x) and np.shape(x)[0] == B else replicated), tree)


def _run(alg, games, games_b, etas, taus, seeds, inits, params, T, k, schedule, dtype, progress, resume_from,
         backend="jax", sharding=None, feedback=None, checkpoint=None, checkpoint_every=60.0, yes=None):
    t0 = time.perf_counter()
    ftype = np.float64 if dtype == "float64" else np.float32
    shared = len(games) == 1
    stack = lambda xs: np.stack(xs).astype(ftype)
    game_arrays = [(g.payoff.astype(ftype), np.log(g.stacked_reference).astype(ftype)) for g in games]
    A, log_ref = game_arrays[0] if shared else map(stack, zip(*game_arrays))
    weights = stack([g.weights for g in games_b])
    target_taus = [t if alg.target == "regularized" else 0.0 for t in taus]
    pi_star = np.stack([g.stack_policy(solve(g, t, yes=yes, divergence=_target_divergence(alg, p)).policy)
                        for g, t, p in zip(games_b, target_taus, params)])
    sampled = alg.queries_per_step > 0
    pi_vn = stack([g.stack_policy(solve(g, 0.0, yes=yes).policy) for g in games_b]) if sampled else None
    with np.errstate(divide="ignore"):
        log_pi_star = np.log(pi_star).astype(ftype)
    eta0, decay = (np.array(x, ftype) for x in zip(*(step_sizes(schedule, e, t) for e, t in zip(etas, taus))))
    hyper = Hyper(eta0, decay, np.array(taus, ftype), weights, log_pi_star, pi_vn,
                  {key: np.array([p[key] for p in params], ftype) for key in alg.params})
    consts = Games(A, log_ref)

    log_pi0 = stack([initial_policy(g, alg.default_init if init is None else init, s)
                     for g, init, s in zip(games_b, inits, seeds)])
    B = len(taus)
    fingerprint = run_fingerprint(alg, games_b, etas, taus, seeds, log_pi0, params, schedule, dtype, k, feedback)
    if resume_from is not None:
        check_resume(resume_from.config, fingerprint)
    done = 0 if resume_from is None else int(resume_from.iterations[-1])
    if done > T or done % k:
        raise GamesimError(f"cannot resume from iteration {done} towards {T} in steps of {k}")
    records = [] if resume_from is None else [(resume_from.metrics, _stacked_policies(resume_from, games[0]))]
    if backend == "numba":
        from gamesim.engine import numba_backend  # numba loads only when its path is taken (about 0.5 s)

        log_ref_g = log_ref if not shared else log_ref[None]
        AT = np.ascontiguousarray(np.swapaxes(A if not shared else A[None], -1, -2))
        carry = numba_backend.start(log_pi0, log_ref_g) if resume_from is None else MirrorCarry(*resume_from.state)
        if resume_from is None:
            records.append(_replay(alg, shared, [x[:, None] for x in carry.records], consts, hyper))

        def advance(state, r):
            state, stored = numba_backend.advance(numba_chain(alg), state, AT, log_ref_g, hyper.eta0, hyper.decay,
                                                  hyper.tau, k, r)
            return state, _replay(alg, shared, stored, consts, hyper)
    else:
        start = _start(alg, shared)
        keys = np.stack([jax.random.key_data(jax.random.key(int(s))) for s in seeds])
        consts, hyper = _place(consts, sharding, B, split=not shared), _place(hyper, sharding, B)
        if resume_from is None:
            carry, (metrics0, policy0) = jax.device_get(start(consts, hyper, *_place((log_pi0, keys), sharding, B)))
            records = [({k: v[:, None] for k, v in metrics0.items()}, policy0[:, None])]
        else:
            structure = jax.tree_util.tree_structure(jax.eval_shape(start, consts, hyper, log_pi0, keys)[0])
            carry = jax.tree_util.tree_unflatten(structure, [np.asarray(x) for x in resume_from.state])

        def advance(state, r):
            return jax.device_get(_chunk(alg, shared, k, r)(_place(state, sharding, B), consts, hyper))

    work = CHUNK_WORK * (min(1.0, checkpoint_every / 2) if checkpoint else 1.0)
    per_chunk = max(1, int(work // (k * len(taus) * _shape_work(games[0]))))
    sizes = [per_chunk] * ((T - done) // k // per_chunk) + [(T - done) // k % per_chunk]
    bar = progress_bar(progress, T, done, len(sizes) > 2)
    config = {"algorithm": alg.name, "eta": etas, "tau": taus, "schedule": schedule, "seeds": seeds,
              "hyperparameters": params, "iterations": T, "record_every": k, "dtype": dtype,
              "games": [g.label for g in games_b], "fingerprint": fingerprint}
    chunks = []  # (state, records) of each finished chunk, appended in one step so they never disagree

    def assemble() -> Trajectory:
        state = chunks[-1][0] if chunks else carry
        parts = records + [out for _, out in chunks]
        metrics = {name: np.concatenate([m[name] for m, _ in parts], axis=1).astype(np.float64)
                   for name in [*RECORDED, *(["dueling_regret"] if sampled else [])]}
        metrics = best_so_far(metrics)  # over every record, a resumed run's earlier ones included
        policies = np.concatenate([p for _, p in parts], axis=1).astype(np.float64)
        if not games[0].contextual:
            policies = policies[..., 0, :]
        iterations = np.arange(policies.shape[1]) * k
        if sampled:
            per_run = np.array([alg.queries(p) for p in params])[:, None] * iterations[None, :]  # (B, records)
            extra = metrics["gap"].ndim - 2  # the per-context axis, if any
            metrics["queries"] = np.broadcast_to(per_run.reshape(per_run.shape + (1,) * extra), metrics["gap"].shape).copy()
        return Trajectory(iterations, policies, metrics, games[0].unstack(pi_star), config,
                          jax.tree_util.tree_leaves(jax.device_get(state)), int(iterations[-1]) < T,
                          time.perf_counter() - t0)

    saved, todo = time.perf_counter(), [r for r in sizes if r]
    if bar is not None and todo:
        bar.set_description_str("compiling and running the first chunk")  # compilation has no progress of its own
    try:
        for i, r in enumerate(todo):
            chunks.append(advance(chunks[-1][0] if chunks else carry, r))
            if bar is not None:
                bar.set_description_str("")
                bar.update(r * k)
            if checkpoint and i + 1 < len(todo) and time.perf_counter() - saved >= checkpoint_every:
                checkpoint(assemble())
                saved = time.perf_counter()
    except KeyboardInterrupt:
        pass
    finally:
        if bar is not None:
            bar.close()
    return assemble()


FINGERPRINT_NAMES = {
    "game": "the game (its preference matrix, reference policy or context weights)",
    "algorithm": "the algorithm (its name or its update's code)", "hyperparameters": "the hyperparameters",
    "eta": "the learning rate eta", "tau": "the KL weight tau", "schedule": "the step-size schedule",
    "dtype": "the dtype", "seed": "the seed", "initial policy": "the initial policy",
    "record_every": "record_every", "feedback": "the feedback settings", "gamesim": "the gamesim version",
}
"""What determines a trajectory: the keys of `run_fingerprint` and how an error names them."""


def _digest(*arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float64)
        h.update(str(a.shape).encode() + a.tobytes())
    return h.hexdigest()[:16]


def code_digest(*functions) -> str:
    """A hash of functions' code: bytecode, constants, closures, defaults and the module functions
    they call by name, followed recursively. Two algorithms with the same name but different steps
    (a user's modified copy) get different digests."""
    h, seen = hashlib.sha256(), set()

    def visit(x, depth=0):
        if depth > 12 or id(x) in seen:
            return
        seen.add(id(x))
        if isinstance(x, types.FunctionType):
            visit(x.__code__, depth + 1)
            for cell in x.__closure__ or ():
                with contextlib.suppress(ValueError):
                    visit(cell.cell_contents, depth + 1)
            visit(x.__defaults__, depth + 1)
            for name in x.__code__.co_names:
                if isinstance(x.__globals__.get(name), types.FunctionType):
                    visit(x.__globals__[name], depth + 1)
        elif isinstance(x, types.CodeType):
            h.update(x.co_code + repr(x.co_names).encode())
            for c in x.co_consts:
                visit(c, depth + 1)
        elif isinstance(x, functools.partial):
            visit((x.func, x.args, x.keywords), depth + 1)
        elif isinstance(x, (tuple, list)):
            for e in x:
                visit(e, depth + 1)
        elif isinstance(x, dict):
            visit(sorted(x.items(), key=repr), depth + 1)
        elif isinstance(x, np.ndarray):
            h.update(x.tobytes())
        elif isinstance(x, (bool, int, float, complex, str, bytes, type(None))):
            h.update(repr(x).encode())
        else:
            h.update(type(x).__qualname__.encode())

    for f in functions:
        visit(f)
    return h.hexdigest()[:16]


def run_fingerprint(alg, games_b, etas, taus, seeds, log_pi0, params, schedule, dtype, k, feedback) -> dict:
    """Everything that determines a (batch of) trajectories, as short JSON values (`FINGERPRINT_NAMES`)."""

    return {"game": [_digest(g.P, g.stacked_reference, g.weights) for g in games_b],
            "algorithm": f"{alg.name}:{code_digest(alg.step, alg.init, alg.log_policy)}",
            "hyperparameters": params, "eta": [None if e is None else float(e) for e in etas],
            "tau": [float(t) for t in taus], "schedule": schedule, "dtype": dtype, "seed": [int(x) for x in seeds],
            "initial policy": _digest(log_pi0), "record_every": int(k),
            "feedback": {key: v for key, v in sorted((feedback or {}).items())}, "gamesim": VERSION}


def check_resume(saved: dict, fingerprint: dict) -> None:
    """Refuse to continue a run whose saved fingerprint differs from this run's, naming what differs."""
    old = (saved or {}).get("fingerprint")
    if old is None:
        raise GamesimError("cannot resume: the saved run records no fingerprint of its settings (it was made by an "
                           "older gamesim); start it again")
    differs = [FINGERPRINT_NAMES.get(key, key) for key in fingerprint if old.get(key) != fingerprint[key]]
    if differs:
        raise GamesimError(f"cannot resume: {', '.join(differs)} differ{'s' if len(differs) == 1 else ''} from the "
                           "saved run's; continue it with its own settings, or start a new run")


def _replay(alg, shared, stored, consts, hyper):
    """(metrics, policies) of the numba path's stored states (leaves with axes (B, R, …)), computed
    by the JAX `metrics.record` on blocks of about REPLAY_BLOCK policies: one compiled shape, and
    blocks that stay in cache (a block is 2× faster than the whole record axis at once)."""
    B, R = stored[0].shape[:2]
    block = min(R, max(1, REPLAY_BLOCK // (B * stored[0].shape[2])))
    snapshots, parts = _snapshots(alg, shared), []
    for lo in range(0, R, block):
        rows = np.minimum(np.arange(lo, lo + block), R - 1)  # the last block repeats the last record
        metrics, policies = jax.device_get(snapshots(*(x[:, rows] for x in stored), consts, hyper))
        keep = min(block, R - lo)
        parts.append(({k: v[:, :keep] for k, v in metrics.items()}, policies[:, :keep]))
    return ({k: np.concatenate([m[k] for m, _ in parts], axis=1) for k in parts[0][0]},
            np.concatenate([p for _, p in parts], axis=1))


REPLAY_BLOCK = 16_384
"""Policies per call when the numba path's records are turned into metrics."""


def _shape_work(game: PreferenceGame) -> float:
    """Rough floating-point work of one update and its bookkeeping on `game`."""
    return game.num_contexts * (4 * game.n ** 2 + 40 * game.n)


def _stacked_policies(traj: Trajectory, game: PreferenceGame) -> np.ndarray:
    p = np.asarray(traj.policies)
    return p if game.contextual else p[..., None, :]


def _as_batch(traj: Trajectory) -> Trajectory:
    return Trajectory(traj.iterations, traj.policies[None], {k: v[None] for k, v in traj.metrics.items()},
                      traj.equilibrium[None], traj.config, traj.state, traj.interrupted, traj.elapsed)


def _check_counts(iterations, record_every) -> tuple[int, int]:
    if not (isinstance(iterations, (int, np.integer)) and not isinstance(iterations, bool) and iterations >= 0):
        raise GamesimError(f"iterations must be an integer ≥ 0, got {iterations!r}")
    if not (isinstance(record_every, (int, np.integer)) and not isinstance(record_every, bool) and record_every >= 1):
        raise GamesimError(f"record_every must be an integer ≥ 1, got {record_every!r}")
    iterations, record_every = int(iterations), int(record_every)
    check_iterations(iterations)
    if record_every > iterations > 0:
        raise GamesimError(f"record_every ({record_every}) is larger than iterations ({iterations}); record every "
                           f"{iterations} (only the last iterate) or fewer")
    if iterations % record_every:
        lo = iterations - iterations % record_every
        raise GamesimError(f"iterations ({iterations}) must be a multiple of record_every ({record_every}), "
                           f"so that the last iterate is recorded: use {lo} or {lo + record_every} iterations")
    return iterations, record_every


def _as_seq(x, batch_ndim: int) -> list | None:
    """`x` as a list of per-run values if it is a batch (a list, or an array of `batch_ndim` axes)."""
    if isinstance(x, (list, tuple)):
        return list(x)
    if isinstance(x, np.ndarray) and x.ndim == batch_ndim:
        return list(x)
    return None


def _target_divergence(alg: Algorithm, params: dict):
    """The `Divergence` of the game an f-divergence algorithm's target and metrics refer to (None: KL)."""
    spec = alg.divergence_of(params)
    return None if spec is None else Divergence(*spec)


def initial_policy(game: PreferenceGame, init, seed) -> np.ndarray:
    """log π_0 as a (C, n) stack."""
    if isinstance(init, str) and init == "reference":
        return np.log(game.stacked_reference)
    if isinstance(init, str) and init == "uniform":
        return np.full((game.num_contexts, game.n), -math.log(game.n))
    if isinstance(init, str) and init == "random":
        logits = np.random.default_rng(seed).standard_normal((game.num_contexts, game.n))
        return logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    if isinstance(init, str):
        raise GamesimError(f"init must be 'reference', 'uniform', 'random' or a policy, not {init!r}")
    stack = game.stack_policy(init, "the initial policy")
    if np.any(stack <= 0):
        raise GamesimError("the initial policy must give every response positive probability: "
                           "softmax dynamics can never revive a response of probability 0")
    return np.log(stack)


# --- compiled pieces (cached per algorithm, shape flags and loop lengths) ---------------------------
def _per_run(init, step, log_policy, divergence=None):
    """The single-run functions the batch vmaps: start (π_0 → carry, record), a chunk, and the
    records of stored states (the numba path's). They close over the algorithm's functions, not
    the Algorithm, so that its compiled loops (`_compiled`) die with it."""

    def spec(hyper: Hyper):
        """(name, α) of an f-divergence run's regularizer (`metrics.record`), or None for KL."""
        return None if divergence is None else (divergence, hyper.params.get("alpha"))

    def snapshot(state, acc, consts: Games, hyper: Hyper):
        log_pi = log_policy(state)
        return (record(acc, consts.A, consts.log_ref, hyper.weights, log_pi, hyper.tau, hyper.log_pi_star, hyper.pi_vn,
                       spec(hyper)), jnp.exp(log_pi))

    def snapshots(log_pi, plays, sum_pi, sum_kl_ref, sum_log_ratio, sum_weighted_pi, consts, hyper):
        """The records of the numba path's stored states (mirror chains: the state is log π)."""
        return snapshot(log_pi, Accumulators(plays, sum_pi, sum_kl_ref, sum_log_ratio, sum_weighted_pi),
                        consts, hyper)

    def start(consts: Games, hyper: Hyper, log_pi0, key):
        state = init(log_pi0, consts.A, consts.log_ref, key)
        acc = accumulate(None, log_policy(state), consts.log_ref, spec(hyper))
        return Carry(state, acc, jnp.zeros((), log_pi0.dtype)), snapshot(state, acc, consts, hyper)

    def chunk(carry: Carry, consts: Games, hyper: Hyper, k, r):
        A, log_ref = consts

        def update(c: Carry, _):
            eta = hyper.eta0 / (1 + hyper.decay * c.t)
            state = step(c.state, A, log_ref, eta, hyper.tau, c.t, hyper.params)
            return Carry(state, accumulate(c.acc, log_policy(state), log_ref, spec(hyper)), c.t + 1), None

        def one_record(c: Carry, _):
            c, _ = jax.lax.scan(update, c, None, length=k)
            return c, snapshot(c.state, c.acc, consts, hyper)

        return jax.lax.scan(one_record, carry, None, length=r)

    return start, chunk, snapshots


_COMPILED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
"""Algorithm → {(piece, flags…): jitted function}. Weak: an algorithm's compiled loops are freed
with it, so a process that makes many throwaway algorithms (a user's sweep over variants,
`mutants.kill_matrix`) does not pile up compiled code until the system refuses more memory maps."""


def _compiled(alg: Algorithm, key: tuple, build):
    per_alg = _COMPILED.setdefault(alg, {})
    if key not in per_alg:
        per_alg[key] = build(_per_run(alg.init, alg.step, alg.log_policy, alg.divergence))
    return per_alg[key]


def _start(alg: Algorithm, shared: bool):
    game_axis = None if shared else 0
    return _compiled(alg, ("start", shared),
                     lambda pieces: jax.jit(jax.vmap(pieces[0], in_axes=(Games(game_axis, game_axis), 0, 0, 0))))


def _chunk(alg: Algorithm, shared: bool, k: int, r: int):
    game_axis = None if shared else 0
    return _compiled(alg, ("chunk", shared, k, r), lambda pieces: jax.jit(
        jax.vmap(functools.partial(pieces[1], k=k, r=r), in_axes=(0, Games(game_axis, game_axis), 0))))


def _snapshots(alg: Algorithm, shared: bool):
    game_axis = None if shared else 0

    def build(pieces):
        over_records = jax.vmap(pieces[2], in_axes=(0, 0, 0, 0, 0, 0, None, None))
        return jax.jit(jax.vmap(over_records, in_axes=(0, 0, 0, 0, 0, 0, Games(game_axis, game_axis), 0)))

    return _compiled(alg, ("snapshots", shared), build)
