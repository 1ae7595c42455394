r"""Transformer mode: the bandit-mode algorithms with a small language model as the policy.

Each iteration t (the papers' practical loop, with π_t and π_ref frozen):

1. sample N pairs (y, y') per iteration from π_t (Nash-MD: from the token-wise geometric mixture
   π_t^{1−ητ} π_ref^{ητ}, NLHF §7), prompts c uniform over the contexts;
2. ask the sequence-level oracle (`sequences`) for Bernoulli answers ℓ ~ P(y ≻ y');
3. take `steps` optax (Adam) steps on the algorithm's loss over that batch, written with the same
   functions as the tabular bandit mode (`losses`), the batch's 2N sequences playing the table:

   | algorithm | loss on the batch (h = log π_θ − anchor) | anchor | target |
   |---|---|---|---|
   | inpo | (h(y) − h(y') − target)², INPO eq. 8 | (1 − ητ) log π_t + ητ log π_ref | η(ℓ − 1/2) |
   | nash-md | the same regression, Nash-MD's step as a loss | log of the token-wise mixture | η(ℓ − 1/2) |
   | online-ipo | the same regression, IPO's loss | log π_ref | (ℓ − 1/2)/τ |
   | sppo | (log π_θ/π_t(y) − η(P̂(y ≻ π_t) − 1/2))², SPPO eq. 4.7, P̂ = one answer | — | — |
   | iterative-dpo | DPO's loss with reference π_t, β = 1/η | — | — |

4. record the metrics: the policy is enumerated over all responses and the exact duality gaps,
   KL and win rate of the LM policy on the true P are computed (`metrics`). This needs
   V^L ≤ `sequences.DENSE_LIMIT`; the `small` and `medium` configs are not enumerable, and their
   sampled metrics are not built yet.

Step sizes are gamesim's learning rate η (see the README's table). The run is a directory like
`gamesim run`'s: metrics.csv, run.json, and checkpoint.npz (parameters, optimizer state, the
PRNG key and the iteration), written atomically after every record, so an interrupted run
resumes exactly: every iteration's randomness is fold_in(key, t).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
import tomllib
from pathlib import Path

import numpy as np

from .errors import GamesimError
from .files import atomic_open
from .transformer import CONFIGS, ModelConfig

LM_ALGORITHMS = ("inpo", "nash-md", "online-ipo", "sppo", "iterative-dpo")


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

    def __post_init__(self):
        if self.algorithm not in LM_ALGORITHMS:
            import difflib

            close = difflib.get_close_matches(self.algorithm, LM_ALGORITHMS, n=1)
            raise GamesimError(f"transformer mode runs {', '.join(LM_ALGORITHMS)}; not {self.algorithm!r}"
                               + (f" (did you mean {close[0]!r}?)" if close else ""))
        for name in ("iterations", "pairs", "steps", "record_every"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise GamesimError(f"{name} must be an integer ≥ 1, got {getattr(self, name)!r}")
        if self.iterations % self.record_every:
            raise GamesimError(f"record_every = {self.record_every} must divide iterations = {self.iterations}")
        if not self.eta > 0 or not self.lr > 0 or not self.temperature > 0:
            raise GamesimError("eta, lr and temperature must be > 0")
        if not self.tau >= 0 or (self.algorithm == "online-ipo" and not self.tau > 0):
            raise GamesimError(f"tau must be ≥ 0 ({self.algorithm} needs tau > 0)" if self.algorithm == "online-ipo"
                               else "tau must be ≥ 0")
        if self.algorithm in ("inpo", "nash-md") and self.eta * self.tau > 1:
            raise GamesimError(f"{self.algorithm} needs eta·tau ≤ 1, got {self.eta * self.tau:g}; use eta ≤ {1 / self.tau:g}")


def load_model_config(name: str) -> ModelConfig:
    """`tiny`, `small`, `medium` or a TOML file of ModelConfig fields."""
    if name in CONFIGS:
        return CONFIGS[name]
    path = Path(name)
    if not path.exists():
        raise GamesimError(f"--config is tiny, small, medium or a TOML file; {name!r} is neither")
    try:
        fields = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise GamesimError(f"{path}: not valid TOML ({exc})") from None
    valid = [f.name for f in dataclasses.fields(ModelConfig)]
    from .study import check_keys

    check_keys(fields, valid, f"model config key in {path.name}")
    return ModelConfig(**fields)


# --- one iteration --------------------------------------------------------------------------------
def _batch_loss(params, model, s: LMSettings, contexts, seqs, labels, log_t, anchor):
    from . import losses, transformer

    theta = transformer.log_prob(params, model, contexts, seqs)
    N = labels.shape[0]
    first, second = np.arange(N), np.arange(N, 2 * N)
    if s.algorithm == "iterative-dpo":
        return losses.dpo_loss(theta, log_t, s.eta, first, second, labels)
    if s.algorithm == "sppo":
        import jax.numpy as jnp

        return losses.sppo_loss(theta, log_t, s.eta, np.arange(2 * N), jnp.concatenate([labels, 1 - labels]))
    scale = 1 / s.tau if s.algorithm == "online-ipo" else s.eta
    return losses.pair_regression_loss(theta, anchor, first, second, scale * (labels - 0.5))


def _iteration(model: ModelConfig, s: LMSettings):
    """The compiled iteration, shared by runs that differ only in length, recording or seed."""
    return _compiled_iteration(model, dataclasses.replace(s, iterations=1, record_every=1, seed=0, oracle=""))


@functools.cache
def _compiled_iteration(model: ModelConfig, s: LMSettings):
    """The compiled iteration (params, opt_state, params_ref, P, key) → (params, opt_state, loss)."""
    import jax
    import jax.numpy as jnp
    import optax

    from . import transformer

    optimizer = optax.adam(s.lr)
    beta = s.eta * s.tau

    def step(params, opt_state, ref, prob_table, key):
        k_ctx, k1, k2, k_label = jax.random.split(key, 4)
        contexts = jax.random.randint(k_ctx, (s.pairs,), 0, model.contexts)
        mix = (ref, beta) if s.algorithm == "nash-md" else None
        y1 = transformer.sample(params, model, k1, contexts, s.temperature, mix=mix)
        y2 = transformer.sample(params, model, k2, contexts, s.temperature, mix=mix)
        i1, i2 = transformer.tokens_to_index(y1, model), transformer.tokens_to_index(y2, model)
        p = prob_table[i1, i2]
        labels = jax.random.bernoulli(k_label, p).astype(p.dtype)
        seqs, ctx2 = jnp.concatenate([y1, y2]), jnp.concatenate([contexts, contexts])
        frozen = jax.lax.stop_gradient(params)
        log_t = transformer.log_prob(frozen, model, ctx2, seqs)
        if s.algorithm == "nash-md":
            anchor = transformer.mixture_log_prob(frozen, ref, model, beta, ctx2, seqs)
        elif s.algorithm == "online-ipo":
            anchor = transformer.log_prob(ref, model, ctx2, seqs)
        else:
            anchor = (1 - beta) * log_t + beta * transformer.log_prob(ref, model, ctx2, seqs)

        def one(carry, _):
            theta, state = carry
            loss, grad = jax.value_and_grad(_batch_loss)(theta, model, s, ctx2, seqs, labels, log_t, anchor)
            updates, state = optimizer.update(grad, state, theta)
            return (optax.apply_updates(theta, updates), state), loss

        (params, opt_state), losses_ = jax.lax.scan(one, (params, opt_state), None, length=s.steps)
        return params, opt_state, losses_[0]

    return jax.jit(step), optimizer


# --- metrics ------------------------------------------------------------------------------------------
def exact_metrics(game, log_probs, tau: float, eq_tau) -> dict:
    """Exact metrics of the enumerated LM policy (log-probs (C, |Y|)) on the dense game, whose π_ref
    is the initial model: the duality gaps, KL(π*_τ‖π), KL(π‖π_ref) and P(π ≻ π_ref)."""
    from .metrics import duality_gap

    logp = np.asarray(log_probs, np.float64)
    pi = np.exp(logp - logp.max(-1, keepdims=True))
    pi /= pi.sum(-1, keepdims=True)  # (C, n), renormalized in float64
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


# --- the run ----------------------------------------------------------------------------------------
def run(model: ModelConfig, s: LMSettings, out: Path | None = None, resume: bool = False,
        progress: bool | None = None, stop_after: int | None = None) -> dict:
    """Run and return {"iterations": (R,), metric: (R,), "params": final params}; see the module doc.

    `out` receives metrics.csv, run.json and checkpoint.npz after every record; `resume=True`
    continues the run saved there. `stop_after` ends the run early after that many iterations as
    an interruption would (for tests).
    """
    import jax

    from . import __version__, transformer
    from .results import versions
    from .sequences import DENSE_LIMIT, load_oracle

    oracle = load_oracle(s.oracle, model.vocab, model.length)
    key = jax.random.PRNGKey(s.seed)
    k_init, k_run = jax.random.split(key)
    ref = transformer.init(k_init, model)
    enumerable = model.num_responses <= DENSE_LIMIT
    if enumerable:
        base = oracle.dense()
        from .equilibria import solve
        from .games import PreferenceGame

        ref_pi = np.asarray(transformer.enumerate_log_probs(ref, model), np.float64)
        ref_pi = np.exp(ref_pi - ref_pi.max(-1, keepdims=True))
        ref_pi /= ref_pi.sum(-1, keepdims=True)
        P = np.broadcast_to(base.P, (model.contexts, *base.P.shape)) if model.contexts > 1 else base.P
        game = PreferenceGame(np.array(P), ref_pi if model.contexts > 1 else ref_pi[0], label=oracle.label)
        eq_tau = solve(game, s.tau).policy if s.tau > 0 else None
        prob_table = jax.numpy.asarray(base.P, dtype=model.dtype)
    else:
        raise GamesimError(f"|Y| = {model.num_responses} is above {DENSE_LIMIT}: the oracle's table is not built; "
                           "non-enumerable configs need the sampled oracle, not yet in this mode")
    step, optimizer = _iteration(model, s)
    params, opt_state, start = ref, optimizer.init(ref), 0
    rows = []
    config = {"model": dataclasses.asdict(model), "settings": dataclasses.asdict(s)}
    if resume:
        params, opt_state, start, rows = _load_checkpoint(out, config, ref, optimizer.init(ref))

    def record(t, params):
        metrics = exact_metrics(game, transformer.enumerate_log_probs(params, model), s.tau, eq_tau)
        rows.append({"iteration": t, **metrics})

    if not rows:
        record(0, params)
    from .engine import _progress_bar

    bar = _progress_bar(progress, s.iterations, start, s.iterations * s.steps * s.pairs > 1e5)
    t0, t, interrupted = time.perf_counter(), start, False
    try:
        while t < s.iterations:
            params, opt_state, _ = step(params, opt_state, ref, prob_table, jax.random.fold_in(k_run, t))
            t += 1
            if bar is not None:
                bar.update(1)
            if t % s.record_every == 0:
                record(t, params)
                if out is not None:
                    _save(out, config, params, opt_state, t, rows, time.perf_counter() - t0, False)
            if stop_after is not None and t - start >= stop_after:
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        interrupted = True
        t = rows[-1]["iteration"]  # the state saved with the last record
    finally:
        if bar is not None:
            bar.close()
    if out is not None and not interrupted:
        _save(out, config, params, opt_state, t, rows, time.perf_counter() - t0, False, versions(__version__))
    result = {k: np.array([r[k] for r in rows]) for k in rows[0]}
    result["params"], result["interrupted"] = params, interrupted
    return result


def _save(out: Path, config, params, opt_state, t, rows, seconds, interrupted, versions=None):
    import jax

    out.mkdir(parents=True, exist_ok=True)
    leaves = jax.tree_util.tree_leaves((params, opt_state))
    with atomic_open(out / "checkpoint.npz", "wb") as f:
        np.savez(f, iteration=np.array(t), **{f"leaf_{i}": np.asarray(x) for i, x in enumerate(leaves)})
    names = list(rows[0])
    with atomic_open(out / "metrics.csv") as f:
        f.write(",".join(names) + "\n")
        for r in rows:
            f.write(",".join(repr(float(r[k])) if k != "iteration" else str(r[k]) for k in names) + "\n")
    info = {"config": config, "iterations_done": t, "status": "complete" if t >= config["settings"]["iterations"]
            else "interrupted", "seconds": seconds, "final": rows[-1]}
    if versions:
        info["versions"] = versions
    with atomic_open(out / "run.json") as f:
        json.dump(info, f, indent=1, default=float)
        f.write("\n")


def _load_checkpoint(out: Path, config, params_like, opt_like):
    import jax

    try:
        info = json.loads((out / "run.json").read_text())
        with np.load(out / "checkpoint.npz") as z:
            t = int(z["iteration"])
            leaves = [z[f"leaf_{i}"] for i in range(len(z.files) - 1)]
        table = (out / "metrics.csv").read_text().splitlines()
    except (OSError, ValueError, KeyError) as exc:
        raise GamesimError(f"cannot resume from {out}: its checkpoint is missing or malformed ({exc})") from None
    saved = {**info["config"]["settings"], "iterations": config["settings"]["iterations"]}
    if info["config"]["model"] != config["model"] or saved != config["settings"]:
        raise GamesimError(f"cannot resume: the model or settings differ from the run saved in {out}")
    treedef = jax.tree_util.tree_structure((params_like, opt_like))
    if treedef.num_leaves != len(leaves):
        raise GamesimError(f"cannot resume from {out}: the checkpoint holds another model")
    params, opt_state = jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])
    names = table[0].split(",")
    rows = [{k: (int(v) if k == "iteration" else float(v)) for k, v in zip(names, line.split(","))}
            for line in table[1:]]
    rows = [r for r in rows if r["iteration"] <= t]
    return params, opt_state, t, rows
