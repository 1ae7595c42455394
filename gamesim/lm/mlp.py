r"""EGPO's neural-policy study: the five exact losses of EGPO's tabular study, minimized by plain
SGD on a small MLP that parametrizes the policies of a batch of runs (Zhou et al. 2025, code
`zhourunlong/EGPO`).

Transcribed from EGPO's code (in JAX, float64; EGPO computes in float32):

- simulations/policies.py, `NeuralPolicy`: one network shared by the R runs of a batch (one run
  per game), each run with its own learned "virtual input" x_r ~ N(0, I_D). `depth` linear
  layers: depth − 1 of D → D, each followed by ReLU, then D → n, so the logits of run r are
  z_r = W_out h(x_r) + b_out (depth 3, D = 10 in its runs). Weights xavier-normal
  (N(0, 2/(fan_in + fan_out)), untruncated), biases zero.
- simulations/run.py and grid_search.py: π_ref is such a network, frozen; the trained policy
  starts as a copy of it (π_0 = π_ref); torch.optim.SGD at learning rate lr on every parameter
  (weights, biases, virtual inputs); the loss is the sum over the runs, so the shared weights
  move along the sum of the runs' gradients. The runs' games are random (n = 100 for the neural
  runs): gamesim's `random:n=100,seed=S` here.
- simulations/loss_funcs.py, the exact losses (`egpo_loss`), with ω = 2 lr/n, EGPO's
  true_lr·β, the mixture weight of Nash-MD and Nash-MD-PG; the extragradient's
  extract/restore-gradient trick is the step below.
- simulations/configs.py, "exact"/"neural": β = 0.01, lr = 3e-3, 10⁴ iterations.

The metric is gamesim's, on each run's policy with π_ref the reference network's:
DualGap_β(π) = 2β KL(π‖BR_β(π)) (`metrics.duality_gaps`), as EGPO's `dual_gap` measures it.
PyTorch's random streams are not reproduced: the networks are drawn from the same distributions
with JAX keys (one per seed), so they differ from EGPO's in draw, not in distribution.
"""

from __future__ import annotations

import functools
import numbers

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gamesim.dynamics import losses
from gamesim.dynamics.algorithms import EGPO_METHODS
from gamesim.core.errors import GamesimError
from gamesim.core.games import load_game
from gamesim.core.metrics import duality_gaps, kl, matvec
from gamesim.engine.simulation import Trajectory

METRICS = ("gap_reg", "gap", "kl_to_ref")
"""What `run` records (their definitions: `metrics.METRICS`), τ = β for gap_reg."""

_xavier_normal = jax.nn.initializers.variance_scaling(1.0, "fan_avg", "normal")
"""torch.nn.init.xavier_normal_: N(0, 2/(fan_in + fan_out)), not truncated (JAX's glorot_normal is)."""


# --- the network ------------------------------------------------------------------------------------
def init_mlp(key, runs: int, n: int, hidden: int = 10, depth: int = 3) -> dict:
    """EGPO's `NeuralPolicy` after `random_init`: {"layers": [(W, b), …] (depth of them, W of shape
    (in, out)), "inputs": the runs' virtual inputs (runs, hidden) ~ N(0, 1)}, in float64."""
    keys = jax.random.split(key, depth + 1)
    widths = [hidden] * (depth - 1) + [n]
    layers = [(_xavier_normal(k, (hidden, w), jnp.float64), jnp.zeros(w, jnp.float64)) for k, w in zip(keys, widths)]
    return {"layers": layers, "inputs": jax.random.normal(keys[-1], (runs, hidden), jnp.float64)}


def mlp_logits(params: dict):
    """The runs' logits (runs, n): ReLU hidden layers on the virtual inputs, then the linear output."""
    x = params["inputs"]
    for W, b in params["layers"][:-1]:
        x = jax.nn.relu(x @ W + b)
    W, b = params["layers"][-1]
    return x @ W + b


# --- EGPO's exact losses and its SGD step -------------------------------------------------------------
def egpo_loss(method: str, logits, log_ref, A, beta, log_opponent):
    r"""One run's exact loss of EGPO's `method` (simulations/loss_funcs.py) at logits z (n,),
    d = log softmax(z) − log π_ref, with the opponent (or sampler) π' = exp(log_opponent) held
    fixed (EGPO detaches it), s = Aπ' (EGPO's Pπ' = 1/2 + Aπ' enters only through differences):

    - "online-ipo-1", "egpo", "nash-md": (1/n²) Σ_{y,y'} (d_y − d_{y'} − (s_y − s_{y'})/β)², π' = π
      (online IPO 1), the extragradient's half-step policy (EGPO), the mixture π^ω (Nash-MD);
    - "online-ipo-2": Σ_{y,y'} π'_y π'_{y'} (d_y − d_{y'} − A_{yy'}/β)², π' = π (`losses.ipo_loss`);
    - "nash-md-pg": −Σ_y π_y (P(y ≻ π^ω) − β d_y) log π_y, π and d held fixed in the weights
      (`losses.nash_md_pg_loss`).
    """
    log_pi = jax.nn.log_softmax(logits)
    if method == "online-ipo-2":
        return losses.ipo_loss(log_pi, log_ref, A, beta, log_opponent)
    if method == "nash-md-pg":
        return losses.nash_md_pg_loss(logits, log_ref, A, beta, log_opponent)
    s = matvec(A, jnp.exp(log_opponent))
    i, j = jnp.indices(A.shape).reshape(2, -1)
    return losses.pair_regression_loss(log_pi, log_ref, i, j, (s[i] - s[j]) / beta)


def opponent(method: str, log_pi, log_ref, omega):
    """The log-policy EGPO's loss plays against at π_t: the geometric mixture
    π^ω ∝ π_t^{1−ω} π_ref^ω for Nash-MD and Nash-MD-PG, π_t itself otherwise."""
    if method in ("nash-md", "nash-md-pg"):
        return jax.nn.log_softmax((1 - omega) * log_pi + omega * log_ref)
    return log_pi


def sgd_step(method: str, logits_fn, params, log_ref, A, beta, lr):
    r"""One step of EGPO's training loop (run.py) on any parametrization: logits_fn(params) → the
    runs' logits (R, n); log_ref (R, n); A (R, n, n). Plain SGD (optax.sgd) at lr on
    L(params) = Σ_r egpo_loss(r), the opponent a constant computed from the current policy
    (EGPO detaches it), ω = 2 lr/n.

    "egpo", the extragradient (loss_funcs.py `extragradient`): a step from θ_t gives θ_{t+1/2};
    EGPO then restores θ_t (a step along the negated gradient) and steps from θ_t with the
    opponent π_{θ_{t+1/2}}. Here the second step starts from θ_t itself.
    """
    optimizer = optax.sgd(lr)
    per_run = jax.vmap(functools.partial(egpo_loss, method), in_axes=(0, 0, 0, None, 0))

    def step_against(log_opponent):
        grad = jax.grad(lambda p: jnp.sum(per_run(logits_fn(p), log_ref, A, beta, log_opponent)))(params)
        updates, _ = optimizer.update(grad, optimizer.init(params))
        return optax.apply_updates(params, updates)

    log_pi = jax.nn.log_softmax(logits_fn(params))
    new = step_against(opponent(method, log_pi, log_ref, 2 * lr / A.shape[-1]))
    if method == "egpo":
        new = step_against(jax.nn.log_softmax(logits_fn(new)))
    return new


# --- runs -------------------------------------------------------------------------------------------
def _measure(A, log_ref, logits, beta) -> dict:
    log_pi = jax.nn.log_softmax(logits)
    return {"gap_reg": duality_gaps(A, log_ref, log_pi, beta), "gap": duality_gaps(A, log_ref, log_pi, 0.0),
            "kl_to_ref": kl(log_pi, log_ref)}


@functools.partial(jax.jit, static_argnames=("method", "record_every", "blocks"))
def _trajectories(refs, A, lr, beta, *, method, record_every, blocks):
    """Per reference network (a seed; `refs` stacked over seeds), `blocks` × `record_every` SGD
    steps from it, the metrics recorded before and after each block: name → (seeds, runs, blocks + 1)."""

    def one(ref):
        log_ref = jax.nn.log_softmax(mlp_logits(ref))
        step = functools.partial(sgd_step, method, mlp_logits, log_ref=log_ref, A=A, beta=beta, lr=lr)

        def block(params, _):
            params = jax.lax.fori_loop(0, record_every, lambda _, p: step(params=p), params)
            return params, _measure(A, log_ref, mlp_logits(params), beta)

        _, recorded = jax.lax.scan(block, ref, None, length=blocks)
        first = _measure(A, log_ref, mlp_logits(ref), beta)
        return {k: jnp.concatenate([first[k][:, None], recorded[k].T], axis=1) for k in first}

    return jax.vmap(one)(refs)


def _whole(value, name: str, low: int) -> int:
    if not (isinstance(value, numbers.Integral) and not isinstance(value, bool) and value >= low):
        raise GamesimError(f"mlp: {name} must be a whole number ≥ {low}, got {value!r}")
    return int(value)


def check_games(games) -> list:
    """The games of one batch of runs (loaded), or GamesimError: single-context games of one size
    n ≥ 2 (the network's output layer), without a reference of their own (π_ref is the network's)."""
    if isinstance(games, str) or not games:
        raise GamesimError("mlp: games is a non-empty list of games, one per run (EGPO: 10 random games)")
    games = [load_game(g) for g in games]
    for g in games:
        if g.num_contexts != 1:
            raise GamesimError(f"mlp: game {g.label!r} has {g.num_contexts} contexts; the network's runs are "
                               "single-context games")
        if not np.all(g.reference == g.reference[0]):
            raise GamesimError(f"mlp: game {g.label!r} has its own reference policy, which the run would ignore "
                               "(π_ref is the reference network's); drop ref_seed")
    if len({g.n for g in games}) > 1:
        raise GamesimError(f"mlp: the runs share one network, so their games need one size n; got sizes "
                           f"{sorted({g.n for g in games})}")
    return games


def run(games, method: str, *, lr: float, beta: float, iterations: int, record_every: int = 1,
        hidden: int = 10, depth: int = 3, seeds=(0,)):
    r"""EGPO's neural run of `method` (one of `algorithms.EGPO_METHODS`): for each seed, a reference
    network drawn from that seed (jax.random.PRNGKey) over the runs `games` (one run per game,
    all of one size n), trained by `iterations` SGD steps at `lr` with KL weight `beta`.

    Returns an `engine.Trajectory` of the batch (runs × seeds, game-major: run g of seed s is row
    g·len(seeds) + s) recording `METRICS` every `record_every` iterations, π_0 = π_ref first.
    EGPO's exact neural config: lr = 3e-3, beta = 0.01, iterations = 10000, hidden = 10, depth = 3,
    10 games `random:n=100`.
    """
    if method not in EGPO_METHODS:
        raise GamesimError(f"mlp: EGPO's methods are {', '.join(EGPO_METHODS)}; got {method!r}")
    for name, value in (("lr", lr), ("beta", beta)):
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < value < np.inf):
            raise GamesimError(f"mlp: {name} must be a finite number > 0, got {value!r}")
    iterations, record_every = _whole(iterations, "iterations", 1), _whole(record_every, "record_every", 1)
    hidden, depth = _whole(hidden, "hidden", 1), _whole(depth, "depth", 1)
    if iterations % record_every:
        raise GamesimError(f"mlp: record_every = {record_every} must divide iterations = {iterations}")
    seeds = [_whole(s, "a seed", 0) for s in ([seeds] if isinstance(seeds, numbers.Integral) else seeds)]
    if not seeds:
        raise GamesimError("mlp: seeds is a non-empty list of whole numbers")
    games = check_games(games)
    with jax.enable_x64(True):
        A = jnp.asarray(np.stack([g.payoff[0] for g in games]))
        nets = [init_mlp(jax.random.PRNGKey(s), len(games), A.shape[-1], hidden, depth) for s in seeds]
        out = _trajectories(jax.tree_util.tree_map(lambda *x: jnp.stack(x), *nets), A, float(lr), float(beta),
                            method=method, record_every=record_every, blocks=iterations // record_every)
        metrics = {k: np.asarray(v).transpose(1, 0, 2).reshape(len(games) * len(seeds), -1) for k, v in out.items()}
    config = {"mode": "mlp", "algorithm": method, "lr": lr, "beta": beta, "hidden": hidden, "depth": depth,
              "seeds": seeds, "games": [g.label for g in games]}
    return Trajectory(np.arange(iterations // record_every + 1) * record_every, None, metrics, None, config)
