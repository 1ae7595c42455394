r"""Transformer mode: the bandit-mode algorithms with a small language model as the policy.

Each iteration t (the papers' practical loop, with π_t and π_ref frozen):

1. sample N pairs (y, y') per iteration from π_t (Nash-MD: from the token-wise geometric mixture
   π_t^{1−ητ} π_ref^{ητ}, NLHF §7), prompts c uniform over the contexts;
2. ask the sequence-level oracle (`sequences`) for Bernoulli answers ℓ ~ P(y ≻ y');
3. take `steps` optax (Adam) steps on the algorithm's loss over that batch, its `recipes.Recipe`'s
   loss and anchor as in the tabular bandit mode (`losses`), the batch's 2N sequences playing the table:

   | algorithm | loss on the batch (h = log π_θ − anchor) | anchor | target |
   |---|---|---|---|
   | inpo | (h(y) − h(y') − target)², INPO eq. 8 | (1 − ητ) log π_t + ητ log π_ref | η(ℓ − 1/2) |
   | nash-md | the same regression, Nash-MD's step as a loss | log of the token-wise mixture | η(ℓ − 1/2) |
   | online-ipo | the same regression, IPO's loss | log π_ref | (ℓ − 1/2)/τ |
   | sppo | (log π_θ/π_t(y) − η(P̂(y ≻ π_t) − 1/2))², SPPO eq. 4.7, P̂ = one answer | — | — |
   | iterative-dpo | DPO's loss with reference π_t, β = 1/η | — | — |

4. record the metrics. When V^L ≤ `sequences.DENSE_LIMIT` (the `tiny` config) the policy is
   enumerated over all responses and the exact duality gaps, KL and win rate of the LM policy on
   the true P are computed (`metrics`); otherwise (`small`, `medium`) the win rate against π_ref
   and KL(π‖π_ref) are estimated from samples, with 95% confidence intervals (`sampled_metrics`).

π_ref is the initial model (`transformer.initial_params`, from `init_seed`); `seed` drives the sampling.
With several local devices (GPUs, or CPU host devices forced with XLA_FLAGS) each iteration's
pairs are split over them and the parameters replicated, through `jax.sharding` (`data_sharding`).

Step sizes are gamesim's learning rate η (see the README's table). The run is a directory like
`gamesim run`'s: metrics.csv, run.json, and checkpoint.npz (parameters, optimizer state, the
PRNG key and the iteration), written atomically after every record, so an interrupted run
resumes exactly: every iteration's randomness is fold_in(key, t).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from gamesim.bandit.recipes import RECIPES, TRANSFORMER_ALGORITHMS
from gamesim.core import VERSION
from gamesim.core.equilibria import duality_gap, solve
from gamesim.core.errors import GamesimError
from gamesim.core.files import read_toml
from gamesim.core.guards import check_seed, confirm, lm_estimate, progress_bar
from gamesim.core.names import check_keys, did_you_mean
from gamesim.core.rundir import RunDirectory, read
from gamesim.dynamics import losses
from gamesim.dynamics.algorithms import get_algorithm
from gamesim.dynamics.updates import geometric_logits
from gamesim.engine.results import json_ready, versions
from gamesim.lm import transformer
from gamesim.lm.sequences import DENSE_LIMIT, load_oracle, preference, reference_game
from gamesim.lm.transformer import CONFIGS, ModelConfig

LM_ALGORITHMS = TRANSFORMER_ALGORITHMS
"""The algorithms transformer mode runs: those whose `recipes.Recipe` has a loss of its own."""
METRIC_MODES = ("auto", "exact", "sampled")
"""auto: exact when V^L ≤ sequences.DENSE_LIMIT, else sampled (see `sampled_metrics`)."""
Z95 = 1.959963984540054
"""The normal quantile of a two-sided 95% confidence interval."""


@dataclasses.dataclass(frozen=True)
class LMSettings:
    """One transformer-mode run (the model is a `transformer.ModelConfig`)."""
    algorithm: str
    eta: float
    tau: float
    iterations: int
    oracle: str = "features"
    pairs: int = 64
    steps: int = 20
    lr: float = 3e-3
    record_every: int = 1
    seed: int = 0
    temperature: float = 1.0
    init_seed: int = 0
    metrics: str = "auto"
    eval_samples: int = 4096

    def __post_init__(self):
        if self.algorithm not in LM_ALGORITHMS:
            raise GamesimError(f"transformer mode runs {', '.join(LM_ALGORITHMS)}; not {self.algorithm!r}"
                               + did_you_mean(self.algorithm, LM_ALGORITHMS))
        if self.metrics not in METRIC_MODES:
            raise GamesimError(f"metrics is one of {', '.join(METRIC_MODES)}, not {self.metrics!r}")
        for name in ("iterations", "pairs", "steps", "record_every", "eval_samples"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise GamesimError(f"{name} must be an integer ≥ 1, got {getattr(self, name)!r}")
        check_seed(self.seed, "seed")
        check_seed(self.init_seed, "init_seed")
        if self.iterations % self.record_every:
            raise GamesimError(f"record_every = {self.record_every} must divide iterations = {self.iterations}")
        if not self.eta > 0 or not self.lr > 0 or not self.temperature > 0:
            raise GamesimError("eta, lr and temperature must be > 0")
        needs_tau = RECIPES[self.algorithm].needs_tau
        if not self.tau >= 0 or (needs_tau and not self.tau > 0):
            raise GamesimError(f"tau must be ≥ 0 ({self.algorithm} needs tau > 0)" if needs_tau else "tau must be ≥ 0")
        if get_algorithm(self.algorithm).kl_bounded and self.eta * self.tau > 1:
            raise GamesimError(f"{self.algorithm} needs eta·tau ≤ 1, got {self.eta * self.tau:g}; use eta ≤ {1 / self.tau:g}")


def load_model_config(name: str) -> ModelConfig:
    """`tiny`, `small`, `medium` or a TOML file of ModelConfig fields."""
    if name in CONFIGS:
        return CONFIGS[name]
    path = Path(name)
    if not path.exists():
        raise GamesimError(f"--config is tiny, small, medium or a TOML file; {name!r} is neither")
    fields = read_toml(path, "model config")
    valid = [f.name for f in dataclasses.fields(ModelConfig)]

    check_keys(fields, valid, f"model config key in {path.name}")
    return ModelConfig(**fields)


# --- one iteration --------------------------------------------------------------------------------
LOSSES = {
    "pair-regression": lambda theta, first, second, labels, anchor, scale: losses.pair_regression_loss(
        theta, anchor, first, second, scale * (labels - 0.5)),
    "sppo": lambda theta, first, second, labels, anchor, scale: losses.sppo_loss(  # P̂ = the one answer
        theta, anchor, scale, np.concatenate([first, second]), jnp.concatenate([labels, 1 - labels])),
    "dpo": lambda theta, first, second, labels, anchor, scale: losses.dpo_loss(
        theta, anchor, scale, first, second, labels),
}
"""`recipes.Recipe.loss` → its loss on the batch's sequence log-probabilities θ (pairs (k, N + k))."""


def _batch_loss(params, model, s: LMSettings, contexts, seqs, labels, anchor):
    recipe = RECIPES[s.algorithm]
    theta = transformer.log_prob(params, model, contexts, seqs)
    N = labels.shape[0]
    first, second = np.arange(N), np.arange(N, 2 * N)
    return LOSSES[recipe.loss](theta, first, second, labels, anchor, recipe.target_scale(s.eta, s.tau))


def _anchor(kind: str, frozen, ref, model: ModelConfig, beta, contexts, seqs, log_t):
    """The anchor c of `recipes.Recipe.anchor` on the batch's sequences, log π_t = log_t."""
    if kind == "mixture":
        return transformer.mixture_log_prob(frozen, ref, model, beta, contexts, seqs)
    if kind == "policy":
        return log_t
    log_ref = transformer.log_prob(ref, model, contexts, seqs)
    return log_ref if kind == "reference" else geometric_logits(log_t, log_ref, beta)


def _iteration(model: ModelConfig, s: LMSettings, devices: int = 1):
    """The compiled iteration, shared by runs that differ only in length, recording, seeds or oracle."""
    fixed = dataclasses.replace(s, iterations=1, record_every=1, seed=0, oracle="", init_seed=0, metrics="auto",
                                eval_samples=1)
    return _compiled_iteration(model, fixed, devices)


def data_sharding(devices: int):
    """(batch sharding, replicated sharding) over the first `devices` local devices, or (None, None)
    for one: the sampled pairs are split over the devices, parameters replicated (data parallelism)."""
    if devices == 1:
        return None, None

    if devices > jax.local_device_count():
        raise GamesimError(f"devices = {devices} but JAX sees {jax.local_device_count()} local devices")
    mesh = Mesh(np.array(jax.local_devices()[:devices]), ("data",))
    return NamedSharding(mesh, PartitionSpec("data")), NamedSharding(mesh, PartitionSpec())


def _shard(x, sharding):
    return x if sharding is None else jax.lax.with_sharding_constraint(x, sharding)


@functools.cache
def _compiled_iteration(model: ModelConfig, s: LMSettings, devices: int):
    """The compiled iteration (params, opt_state, params_ref, oracle arrays, key) → (params, opt_state, loss)."""

    optimizer = optax.adam(s.lr)
    beta = s.eta * s.tau
    recipe = RECIPES[s.algorithm]
    batch, _ = data_sharding(devices)

    def step(params, opt_state, ref, oracle, key):
        k_ctx, k1, k2, k_label = jax.random.split(key, 4)
        contexts = _shard(jax.random.randint(k_ctx, (s.pairs,), 0, model.contexts), batch)
        mix = (ref, beta) if recipe.sampler == "mixture" else None
        y1 = _shard(transformer.sample(params, model, k1, contexts, s.temperature, mix=mix), batch)
        y2 = _shard(transformer.sample(params, model, k2, contexts, s.temperature, mix=mix), batch)
        p = preference(oracle, model.vocab, model.length, y1, y2, jnp)
        labels = jax.random.bernoulli(k_label, p).astype(p.dtype)
        seqs, ctx2 = jnp.concatenate([y1, y2]), jnp.concatenate([contexts, contexts])
        frozen = jax.lax.stop_gradient(params)
        log_t = transformer.log_prob(frozen, model, ctx2, seqs)
        anchor = _anchor(recipe.anchor, frozen, ref, model, beta, ctx2, seqs, log_t)

        def one(carry, _):
            theta, state = carry
            loss, grad = jax.value_and_grad(_batch_loss)(theta, model, s, ctx2, seqs, labels, anchor)
            updates, state = optimizer.update(grad, state, theta)
            return (optax.apply_updates(theta, updates), state), loss

        (params, opt_state), losses_ = jax.lax.scan(one, (params, opt_state), None, length=s.steps)
        return params, opt_state, losses_[0]

    return jax.jit(step), optimizer


# --- metrics ------------------------------------------------------------------------------------------
def exact_metrics(game, log_probs, tau: float, eq_tau) -> dict:
    """Exact metrics of the enumerated LM policy (log-probs (C, |Y|)) on the dense game, whose π_ref
    is the initial model: the duality gaps, KL(π*_τ‖π), KL(π‖π_ref) and P(π ≻ π_ref)."""
    pi = transformer.normalize(log_probs)  # (C, n), renormalized in float64
    w, A = game.weights, game.payoff

    def kl(p, q):
        p, q = game.stack_policy(p), game.stack_policy(q)
        return float(np.sum(w[:, None] * p * (np.log(p) - np.log(q))))

    def beats(p, q):
        return float(np.sum(w * (0.5 + np.einsum("ci,cij,cj->c", game.stack_policy(p), A, game.stack_policy(q)))))

    policy = game.unstack(pi)
    return {"gap_reg": duality_gap(game, policy, tau), "gap": duality_gap(game, policy, 0.0),
            "kl_to_eq": kl(eq_tau, policy) if tau > 0 else float("nan"), "kl_to_ref": kl(policy, game.reference),
            "winrate_vs_ref": beats(policy, game.reference)}


@functools.cache
def _compiled_samples(model: ModelConfig, samples: int, devices: int):
    batch, _ = data_sharding(devices)

    def draws(params, ref, oracle, key):
        k_ctx, k1, k2 = jax.random.split(key, 3)
        contexts = _shard(jax.random.randint(k_ctx, (samples,), 0, model.contexts), batch)
        y = _shard(transformer.sample(params, model, k1, contexts), batch)
        y_ref = _shard(transformer.sample(ref, model, k2, contexts), batch)
        win = preference(oracle, model.vocab, model.length, y, y_ref, jnp)
        log_ratio = transformer.log_prob(params, model, contexts, y) - transformer.log_prob(ref, model, contexts, y)
        return win, log_ratio

    return jax.jit(draws)


def sampled_metrics(params, ref, model: ModelConfig, oracle: dict, key, samples: int, devices: int = 1) -> dict:
    """Monte-Carlo metrics with 95% confidence intervals, for Y too large to enumerate.

    With y ~ π_θ, y' ~ π_ref (contexts uniform), K = `samples` independent draws:
    P(π ≻ π_ref) = E[P(y ≻ y')] (the oracle's probability, not a Bernoulli answer) and
    KL(π‖π_ref) = E[log π(y) − log π_ref(y)]; each reported as the sample mean and the half-width
    Z95 · sd/√K of its normal-approximation interval (columns NAME and NAME_ci95). The duality gaps
    need max_y P(y ≻ π) over all of Y and have no such unbiased estimate; they are exact-only."""
    win, log_ratio = (np.asarray(x, np.float64) for x in _compiled_samples(model, samples, devices)(
        params, ref, oracle, key))
    out = {}
    for name, x in (("winrate_vs_ref", win), ("kl_to_ref", log_ratio)):
        out[name], out[f"{name}_ci95"] = float(x.mean()), float(Z95 * x.std(ddof=1) / np.sqrt(samples))
    return out


# --- the run ----------------------------------------------------------------------------------------
def run(model: ModelConfig, s: LMSettings, out=None, resume: bool = False,
        progress: bool | None = None, stop_after: int | None = None, devices: int | None = None,
        checkpoint_every: float = 60.0, yes: bool | None = None) -> dict:
    """Run and return {"iterations": (R,), metric: (R,), "params": final params}; see the module doc.

    `out` (a path, or a `rundir.RunDirectory` the caller opened) receives metrics.csv, run.json
    and checkpoint.npz as one unit, at a record at least every `checkpoint_every` seconds and at
    the end; a path is replaced, or continued with `resume=True` (same model and settings).
    `stop_after` ends the run early after that many iterations as an interruption would (for
    tests). `devices` (default: every local device) splits each iteration's pairs and the
    metrics' samples over that many devices (`data_sharding`). `yes`: consent to a run estimated
    above the `guards` thresholds (None: warn).
    """
    if out is not None and not isinstance(out, RunDirectory):
        with RunDirectory.open(out, "resume" if resume else "overwrite") as directory:
            return run(model, s, directory, resume, progress, stop_after, devices, checkpoint_every, yes)


    devices = _check_devices(s, devices)
    exact = s.metrics == "exact" or (s.metrics == "auto" and model.num_responses <= DENSE_LIMIT)
    if exact and model.num_responses > DENSE_LIMIT:
        raise GamesimError(f"exact metrics enumerate all V^L = {model.num_responses} responses, above "
                           f"{DENSE_LIMIT}; use metrics='sampled' (confidence intervals) or a smaller model")
    confirm(lm_estimate(model, s, exact), yes)
    oracle = load_oracle(s.oracle, model.vocab, model.length)
    k_run = jax.random.split(jax.random.PRNGKey(s.seed))[1]
    k_eval = jax.random.fold_in(jax.random.PRNGKey(s.seed), 1)
    ref = transformer.initial_params(model, s.init_seed)
    if exact:
        game = reference_game(oracle, transformer.normalize(transformer.enumerate_log_probs(ref, model)))

        eq_tau = solve(game, s.tau).policy if s.tau > 0 else None
    arrays = {k: jax.numpy.asarray(v, dtype=model.dtype) for k, v in oracle.arrays.items()}
    step, optimizer = _iteration(model, s, devices)
    params, opt_state, start = ref, optimizer.init(ref), 0
    rows = []
    config = {"model": dataclasses.asdict(model), "settings": dataclasses.asdict(s)}
    if resume:
        params, opt_state, start, rows = _load_checkpoint(out.path, config, ref, optimizer.init(ref))
    _, replicated = data_sharding(devices)
    if replicated is not None:
        params, opt_state, ref, arrays = jax.device_put((params, opt_state, ref, arrays), replicated)

    def record(t, params):
        if exact:
            metrics = exact_metrics(game, transformer.enumerate_log_probs(params, model), s.tau, eq_tau)
        else:
            metrics = sampled_metrics(params, ref, model, arrays, jax.random.fold_in(k_eval, t), s.eval_samples,
                                      devices)
        rows.append({"iteration": t, **metrics})

    if not rows:
        record(0, params)

    bar = progress_bar(progress, s.iterations, start, s.iterations * s.steps * s.pairs > 1e5)
    t0, t, interrupted = time.perf_counter(), start, False
    at_record = (params, opt_state, t)  # the state of the last record, which a save holds
    saved = time.perf_counter()
    try:
        while t < s.iterations:
            params, opt_state, _ = step(params, opt_state, ref, arrays, jax.random.fold_in(k_run, t))
            t += 1
            if bar is not None:
                bar.update(1)
            if t % s.record_every == 0:
                record(t, params)
                at_record = (params, opt_state, t)
                if out is not None and t < s.iterations and time.perf_counter() - saved >= checkpoint_every:
                    _save(out, config, *at_record, rows, time.perf_counter() - t0)
                    saved = time.perf_counter()
            if stop_after is not None and t - start >= stop_after:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if bar is not None:
            bar.close()
    params, opt_state, t = at_record
    rows = [r for r in rows if r["iteration"] <= t]
    if out is not None:
        _save(out, config, params, opt_state, t, rows, time.perf_counter() - t0, versions(VERSION))
    result = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    result["params"], result["interrupted"] = params, interrupted
    return result


def _check_devices(s: LMSettings, devices: int | None) -> int:
    if devices is None:
        devices = jax.local_device_count()
    if not (isinstance(devices, int) and devices >= 1):
        raise GamesimError(f"devices must be an integer ≥ 1, got {devices!r}")
    for name in ("pairs", "eval_samples"):
        if getattr(s, name) % devices:
            raise GamesimError(f"{name} = {getattr(s, name)} must be divisible by the {devices} devices it is split "
                               f"over; choose a multiple of {devices} or pass devices=1")
    return devices


def _save(out, config, params, opt_state, t, rows, seconds, versions=None):
    """Commit the run so far (the state at record t) to the run directory `out`, as one unit."""
    leaves = jax.tree_util.tree_leaves((params, opt_state))
    names = list(rows[0])

    def metrics_csv(path):
        with open(path, "w") as f:
            f.write(",".join(names) + "\n")
            for r in rows:
                f.write(",".join(repr(float(r[k])) if k != "iteration" else str(r[k]) for k in names) + "\n")

    done = t >= config["settings"]["iterations"]
    info = {"config": config, "iterations_done": t, "status": "complete" if done else "interrupted",
            "seconds": seconds, "final": rows[-1], "versions": versions or {}}
    out.commit({"checkpoint.npz": lambda path: np.savez(path, iteration=np.array(t),
                                                        **{f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)}),
                "metrics.csv": metrics_csv}, json_ready(info))


def _load_checkpoint(out: Path, config, params_like, opt_like):
    info, files = read(out)
    try:
        with np.load(files["checkpoint.npz"]) as z:
            t = int(z["iteration"])
            leaves = [z[f"leaf_{i}"] for i in range(len(z.files) - 1)]
        table = files["metrics.csv"].read_text().splitlines()
    except (OSError, ValueError, KeyError) as exc:
        raise GamesimError(f"cannot resume from {out}: its checkpoint is malformed ({type(exc).__name__}); rerun "
                           "with --overwrite") from None
    saved = {**info["config"]["settings"], "iterations": config["settings"]["iterations"]}
    if info["config"]["model"] != config["model"] or saved != config["settings"]:
        differs = sorted(k for k in config["settings"] if saved.get(k) != config["settings"][k])
        what = ", ".join(differs) if differs else "the model"
        raise GamesimError(f"cannot resume: {what} differ from the run saved in {out}; resume with its settings, "
                           "or start a new run")
    treedef = jax.tree_util.tree_structure((params_like, opt_like))
    if treedef.num_leaves != len(leaves):
        raise GamesimError(f"cannot resume from {out}: the checkpoint holds another model")
    params, opt_state = jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])
    names = table[0].split(",")
    rows = [{k: (int(v) if k == "iteration" else float(v)) for k, v in zip(names, line.split(","))}
            for line in table[1:]]
    rows = [r for r in rows if r["iteration"] <= t]
    return params, opt_state, t, rows
