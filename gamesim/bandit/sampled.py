r"""Bandit mode: the algorithms as they run on LLMs, from sampled preference feedback.

Each iteration, per context: sample responses from π_t (Nash-MD: from its geometric mixture),
ask the oracle (`feedback`), and fit the next policy on that finite data by minimizing the
algorithm's loss over tabular logits θ (log π_{t+1} = θ − logsumexp θ). What each algorithm
samples, its loss, anchor and scale, are its `recipes.Recipe` (the table is in `recipes`):
`collect`, `data_loss` and `exact_fit` read them, so an algorithm is added there, not here.

`recipe="egpo"` runs EGPO's sampled losses as its code does (Zhou et al. 2025, `zhourunlong/EGPO`,
simulations/loss_funcs.py, the `*_sample` functions; `recipes.Egpo`), one plain SGD step per
iteration from θ_t = log π_t on N samples, with the learning rate that makes the expected step the
exact algorithm's step at the same η (the inverse of `algorithms.egpo_settings`). ℓ is the
oracle's answer; EGPO reads P itself, which is `oracle="soft"`.

Two fitters. "exact": the empirical minimizer — for the pair regressions the minimum-norm
least-squares solution θ = c + L⁺b (L the comparison graph's Laplacian), for DPO the
Bradley-Terry maximum likelihood (ridge 1e-9), for SPPO 100 L-BFGS iterations from θ_t (its
loss pins only the sampled responses' probabilities). "sgd"/"adam": `steps` optax steps from
θ_t = log π_t with learning rate `lr` on minibatches of `batch` data points — the practical recipe.

The exact fit of online IPO ignores η: it jumps to the empirical IPO optimum of each iteration's
data (an iterated best response, which oscillates), and is named so ("online-ipo[sampled, exact
fit: iterated best response]"). Calandriello et al.'s online IPO is the gradient method:
`fit="sgd"`, one step (`steps=1`) at lr = ητ/4 is the step the exact mode's `online-ipo` takes in
expectation. Sampled SPPO's estimator shrinks its step to
η(K−1)/K (see `feedback.win_rates`).

Responses never sampled in an iteration: the exact pair regressions leave them at the anchor c
(INPO: (1 − ητ) log π_t + ητ log π_ref, the KL part of the step with no preference signal;
online IPO: log π_ref, a reset to the reference; Nash-MD: the mixture); DPO leaves their logit
at log π_t; gradient fitters leave their logits unchanged (no gradient reaches them), so their
probability moves only through the normalization.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from gamesim.bandit import feedback
from gamesim.bandit.recipes import DATA, FITS, OPTIONS, ORACLE_PARAMS, ORACLES, PARAMS, RECIPES
from gamesim.core.divergences import f_prime_log
from gamesim.core.errors import GamesimError
from gamesim.core.names import did_you_mean
from gamesim.dynamics import losses
from gamesim.dynamics.algorithms import get_algorithm
from gamesim.dynamics.updates import (bradley_terry_fit, f_omd_update, geometric_logits, geometric_mixture,
                                      nesterov_extrapolation)

LBFGS_STEPS = 100
"""L-BFGS iterations of SPPO's exact fit: its loss pins only the sampled responses' probabilities."""
QUERIES = {"pairs": lambda K: 1, "tournament": feedback.best_vs_worst_queries, "win-rates": feedback.win_rates_queries,
           "best-and-worst": feedback.win_rates_queries}
"""Oracle queries per prompt of each data kind (`recipes.DATA`), given K."""


@functools.cache
def sampled_algorithm(name: str, pairs: int = OPTIONS["pairs"].default, recipe: str | None = None,
                      samples: int | None = None, fit: str = OPTIONS["fit"].default,
                      steps: int = OPTIONS["steps"].default, batch: int | None = None,
                      oracle: str = OPTIONS["oracle"].default):
    """The engine Algorithm running `name` from sampled feedback (cached: one object per setting).

    Its hyperparameters (per run, batchable) are the oracle's label-flip rate `flip` and position
    bias `position_bias`, the optax fitter's learning rate `lr` (fit "sgd" or "adam"), and with
    recipe="egpo" the exact algorithm's own (`recipes.PARAMS`).

    Args:
        name: an algorithm of `recipes.RECIPES`.
        pairs: N, pairs per iteration and context (prompts, for the K-sample recipes).
        recipe: the data recipe, a name of the algorithm's `Recipe.data` (None: its first).
        samples: K for the K-sample recipes (None: INPO's best-vs-worst tournament 8, SPPO's win
            rates and best-and-worst 5).
        fit: "exact" (the empirical minimizer), "sgd" or "adam" (`steps` optax steps on
            minibatches of `batch` data points, default all).
        steps, batch: the optax fitter's step count and minibatch size.
        oracle: "hard" (Bernoulli answers) or "soft" (P itself).

    Returns:
        An `Algorithm` named "NAME[sampled…]" whose state is (log π, PRNG key, Bradley-Terry
        scores) and whose `queries_per_step` counts the oracle's answers.

    Raises:
        GamesimError: an algorithm without a recipe, or settings the recipe does not take.

    References:
        Each `recipes.Recipe.source`; the module docstring for the fitters.
    """
    if name not in RECIPES:
        raise GamesimError(f"sampled feedback is available for {', '.join(RECIPES)}, not {name!r}"
                           + did_you_mean(name, RECIPES))
    spec = RECIPES[name]
    recipe = recipe or next(iter(spec.data))
    if recipe not in spec.data:
        raise GamesimError(f"{name} takes recipe {' or '.join(spec.data)}, not {recipe!r}")
    if fit not in FITS:
        raise GamesimError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    if oracle not in ORACLES:
        raise GamesimError(f"oracle must be 'hard' or 'soft', not {oracle!r}")
    kind = spec.data[recipe]
    data = DATA[kind]
    if data.hard_oracle and oracle != "hard":
        raise GamesimError("the best-vs-worst tournament needs a hard oracle (answers, not probabilities)")
    K = samples or data.samples
    if data.power_of_two and (K < 2 or K & (K - 1)):
        raise GamesimError(f"the best-vs-worst tournament needs K a power of two ≥ 2, got {K}")
    if data.per_sample and K < data.min_samples:
        raise GamesimError(f"win rates need K ≥ 2 samples per prompt, got {K}")
    for what, value in (("pairs", pairs), ("steps", steps), ("batch", batch or 1)):
        if not (isinstance(value, int) and value >= 1):
            raise GamesimError(f"{what} must be an integer ≥ 1, got {value!r}")
    size = pairs * K if data.per_sample else pairs
    if batch is not None and batch > size:
        raise GamesimError(f"batch ({batch}) cannot exceed the {size} data points of an iteration")
    exact = get_algorithm(name)
    params = {k: PARAMS[k] for k in ORACLE_PARAMS}
    if spec.accumulate:
        if fit == "exact" or batch is not None:
            raise GamesimError(f"sampled {name} fits all the data so far with fit='sgd' or 'adam' on the full batch: "
                               "its empirical objective has no minimizer when a response sampled for the optimism "
                               "term never won (so no fit='exact'), and the data are kept as counts (no batch)")
        params.update(exact.params)  # α
        params["lr"] = PARAMS["lr"]
        step = _accumulating_step(name, pairs, fit, steps, oracle == "hard")
        queries = pairs
    elif kind == "egpo":
        if (fit, steps, batch) != ("exact", OPTIONS["steps"].default, None):
            raise GamesimError("recipe='egpo' takes one SGD step per iteration at the learning rate that "
                               "matches η (see gamesim.bandit.sampled); leave fit, steps and batch unset")
        params.update(exact.params)  # Nash-MD's mix_ratio, Nash-MD-PG's beta
        step = _egpo_step(name, pairs, oracle == "hard")
        queries = pairs * spec.egpo.queries_per_sample
    else:
        if fit != "exact":
            params["lr"] = PARAMS["lr"]
        if spec.momentum or spec.anchor == "f-mirror":
            params.update(exact.params)  # APO's alpha; the α-divergence's alpha
        step = _make_step(name, recipe, pairs, K, fit, steps, batch or size, oracle == "hard", spec.momentum)
        queries = pairs * QUERIES[kind](K)
    best_response = spec.anchor == "reference" and fit == "exact" and kind != "egpo"  # named for what it is
    label = ", egpo" if kind == "egpo" else ", exact fit: iterated best response" if best_response else ""
    return dataclasses.replace(
        exact, name=f"{name}[sampled{label}]", step=step, log_policy=_first, params=params, check_game=None,
        init=_accumulating_init if spec.accumulate else _init_momentum if spec.momentum else _init,
        schedules=("constant",), queries_per_step=queries, needs_tau=spec.needs_tau or kind == "egpo",
        citation=f"{exact.citation}; sampled: {recipe}, N={pairs}{f', K={K}' if K else ''}, "
                 f"{'one SGD step' if kind == 'egpo' else fit + ' fit'}"
                 + ("; the exact fit jumps to each iteration's empirical IPO optimum (an iterated best response), "
                    "not Calandriello et al.'s gradient method (fit='sgd')" if best_response else ""))


def _init(log_pi0, A, log_ref, key):
    return log_pi0, key, jnp.zeros_like(log_pi0)


def _accumulating_init(log_pi0, A, log_ref, key):
    """(log π, key, scores, wins (C, n, n), optimism weights (C, n)): the counts of all the data so far."""
    return log_pi0, key, jnp.zeros_like(log_pi0), jnp.zeros(log_pi0.shape + log_pi0.shape[-1:], log_pi0.dtype), \
        jnp.zeros_like(log_pi0)
def _init_momentum(log_pi0, A, log_ref, key):
    """(log π̂_0, key, scores, log π_0): APO's fitted and extrapolated policies, equal at the start."""
    return log_pi0, key, jnp.zeros_like(log_pi0), log_pi0


def _first(state):
    return state[0]


def _anchor(kind, log_pi, log_ref, eta, tau, divergence=None):
    """The anchor c of `recipes.Recipe.anchor` for one context's log π_t; `divergence` (name, α) for
    "f-mirror", the f-regularized step with no preference signal, `updates.f_omd_update` at A = 0."""
    if kind == "f-mirror":
        name, alpha = divergence
        return f_omd_update(log_pi, jnp.zeros(log_pi.shape[-1:] * 2, log_pi.dtype), log_ref, eta, tau,
                            lambda ell: f_prime_log(name, ell, alpha, jnp))
    if kind == "mirror":
        return geometric_logits(log_pi, log_ref, eta * tau)
    if kind == "mixture":
        return geometric_mixture(log_pi, log_ref, eta * tau)
    return {"reference": log_ref, "policy": log_pi}[kind]


COLLECT = {
    "pairs": lambda key, log_sampler, A, oracle, N, K: feedback.pairs(key, log_sampler, A, oracle, N),
    "tournament": lambda key, log_sampler, A, oracle, N, K: feedback.best_vs_worst(key, log_sampler, A, oracle, N, K),
    "win-rates": lambda key, log_sampler, A, oracle, N, K: feedback.win_rates(key, log_sampler, A, oracle, N, K),
    "best-and-worst": lambda key, log_sampler, A, oracle, N, K: feedback.best_and_worst(
        feedback.win_rates(key, log_sampler, A, oracle, N, K), K),
}
"""Each data kind's draw (`recipes.DATA`) from the sampler's log-policy, N prompts, K samples."""


def collect(name, recipe, N, K, key, log_pi, A, log_ref, eta, tau, oracle, params=None):
    """One context's data for `name` under `recipe`, with the anchor c and the target scale of its loss
    (`params`: the run's hyperparameters, for an f-divergence's α)."""
    spec = RECIPES[name]
    anchor = _anchor(spec.anchor, log_pi, log_ref, eta, tau, get_algorithm(name).divergence_of(params or {}))
    log_sampler = anchor if spec.sampler == "mixture" else log_pi
    return COLLECT[spec.data[recipe]](key, log_sampler, A, oracle, N, K), anchor, spec.target_scale(eta, tau)


LOSSES = {
    "pair-regression": lambda theta, data, anchor, scale: losses.pair_regression_loss(
        theta, anchor, data.first, data.second, scale * (data.label - 0.5), data.weight),
    "sppo": lambda theta, data, anchor, scale: losses.sppo_loss(
        jax.nn.log_softmax(theta), anchor, scale, data.response, data.win_rate, data.weight),
    "dpo": lambda theta, data, anchor, scale: losses.dpo_loss(
        theta, anchor, scale, data.first, data.second, data.label, data.weight),
}
"""`recipes.Recipe.loss` → its loss of the logits θ on one context's data (`collect`'s)."""


def data_loss(name, theta, data, anchor, scale):
    """`name`'s loss of the logits θ on one context's data, anchor and scale (`collect`'s)."""
    return LOSSES[RECIPES[name].loss](theta, data, anchor, scale)


def _lbfgs_fit(name, data, anchor, scale, scores):
    """LBFGS_STEPS L-BFGS iterations from θ = c (SPPO: log π_t)."""
    def objective(theta):
        return data_loss(name, theta, data, anchor, scale)

    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)

    def lbfgs(carry, _):
        theta, state = carry
        value, grad = value_and_grad(theta, state=state)
        updates, state = solver.update(grad, state, theta, value=value, grad=grad, value_fn=objective)
        return (optax.apply_updates(theta, updates), state), None

    return jax.lax.scan(lbfgs, (anchor, solver.init(anchor)), None, length=LBFGS_STEPS)[0][0], scores


def _bradley_terry_fit(name, data, anchor, scale, scores):
    """DPO's minimizer: θ = c + r/β with r the Bradley-Terry maximum likelihood (ridge BT_RIDGE)."""
    n = anchor.shape[-1]
    f, s, w = data.first, data.second, data.weight
    weights = jnp.zeros((n, n), anchor.dtype).at[f, s].add(w).at[s, f].add(w)
    wins = jnp.zeros((n, n), anchor.dtype).at[f, s].add(w * data.label).at[s, f].add(w * (1 - data.label))
    scores = bradley_terry_fit(scores, weights, wins)
    return anchor + scale * scores, scores


def _least_squares_fit(name, data, anchor, scale, scores):
    """The pair regression's minimum-norm least-squares solution θ = c + L⁺b.

    L is block diagonal between the responses the data touches and the others (isolated vertices,
    where L⁺b is 0), so when N pairs cannot touch all n responses (2N < n) L⁺b is computed on the
    2N touched slots only: one k×k eigendecomposition, k = 2N, instead of n×n (the n = 1024 table
    with N = 128: 64× fewer flops), with the cutoff of the n×n pseudo-inverse."""
    n = anchor.shape[-1]
    f, s, w = data.first, data.second, data.weight
    k = min(n, 2 * f.shape[0])
    if k < n:  # slots: the touched responses in increasing order, then the fill n (an isolated vertex)
        touched = jnp.unique(jnp.concatenate([f, s]), size=k, fill_value=n)
        f, s = jnp.searchsorted(touched, f), jnp.searchsorted(touched, s)
    target = w * scale * (data.label - 0.5)
    laplacian = jnp.zeros((k, k), anchor.dtype).at[f, f].add(w).at[s, s].add(w).at[f, s].add(-w).at[s, f].add(-w)
    b = jnp.zeros(k, anchor.dtype).at[f].add(target).at[s].add(-target)
    cutoff = 10.0 * n * jnp.finfo(anchor.dtype).eps  # jnp.linalg.pinv's default for the n×n matrix
    step = jnp.linalg.pinv(laplacian, cutoff, hermitian=True) @ b
    if k < n:
        step = jnp.zeros(n, anchor.dtype).at[touched].set(step, mode="drop")
    return anchor + step, scores


EXACT_FITS = {"pair-regression": _least_squares_fit, "sppo": _lbfgs_fit, "dpo": _bradley_terry_fit}
"""`recipes.Recipe.loss` → the empirical minimizer of its `data_loss` (see the module docstring)."""


def exact_fit(name, data, anchor, scale, scores):
    """The empirical minimizer of `data_loss` (see the module docstring); returns (θ, BT scores)."""
    return EXACT_FITS[RECIPES[name].loss](name, data, anchor, scale, scores)


def optax_fit(name, optimizer, steps, batch, key, data, anchor, scale, log_pi):
    """`steps` optax steps on `data_loss` from θ = log π_t, each on a random minibatch of `batch`."""
    size = data[0].shape[0]

    def one(carry, key):
        theta, state = carry
        idx = jax.random.permutation(key, size)[:batch]
        minibatch = jax.tree_util.tree_map(lambda x: x[idx], data)
        grad = jax.grad(data_loss, argnums=1)(name, theta, minibatch, anchor, scale)
        updates, state = optimizer.update(grad, state, theta)
        return (optax.apply_updates(theta, updates), state), None

    return jax.lax.scan(one, (log_pi, optimizer.init(log_pi)), jax.random.split(key, steps))[0][0]


def _make_step(name, recipe, N, K, fit, steps, batch, hard, momentum=False):
    def context_step(key, log_pi, A, log_ref, scores, eta, tau, params):
        oracle = feedback.Oracle(1.0 if hard else 0.0, params["flip"], params["position_bias"])
        k_data, k_fit = jax.random.split(key)
        data, anchor, scale = collect(name, recipe, N, K, k_data, log_pi, A, log_ref, eta, tau, oracle, params)
        if fit == "exact":
            theta, scores = exact_fit(name, data, anchor, scale, scores)
        else:
            optimizer = (optax.sgd if fit == "sgd" else optax.adam)(params["lr"])
            theta = optax_fit(name, optimizer, steps, batch, k_fit, data, anchor, scale, log_pi)
        return jax.nn.log_softmax(theta), scores

    def step(state, A, log_ref, eta, tau, t, params):
        log_pi, key, scores = state[:3]
        sampler = state[3] if momentum else log_pi  # APO: the extrapolated reference
        key, sub = jax.random.split(jax.random.wrap_key_data(key))
        contexts = jax.random.split(sub, log_pi.shape[0])
        log_next, scores = jax.vmap(context_step, in_axes=(0, 0, 0, 0, 0, None, None, None))(
            contexts, sampler, A, log_ref, scores, eta, tau, params)
        if momentum:
            return (log_next, jax.random.key_data(key), scores,
                    nesterov_extrapolation(log_next, log_pi, params["alpha"]))
        return log_next, jax.random.key_data(key), scores

    return step


def _accumulating_step(name, N, fit, steps, hard):
    """XPO / VPO from sampled pairs (`recipes.Recipe.accumulate`): draw N pairs, add them to the win
    counts and the optimism weights, then `steps` full-batch optax steps from θ_t = log π_t on
    `losses.optimistic_dpo_loss` of all the data so far."""
    spec = RECIPES[name]

    def context_step(key, log_pi, A, log_ref, wins, optimism, eta, tau, params):
        oracle = feedback.Oracle(1.0 if hard else 0.0, params["flip"], params["position_bias"])
        data = feedback.pairs(key, log_pi, A, oracle, N, log_ref if spec.partner == "reference" else None)
        f, s, w = data.first, data.second, data.weight
        wins = wins.at[f, s].add(w * data.label).at[s, f].add(w * (1 - data.label))
        if spec.optimism == "partner-samples":  # XPO: α for each ỹ
            optimism = optimism.at[s].add(params["alpha"] * w)
        else:  # VPO: αβ E_{π_ref}[log π], once
            optimism = params["alpha"] * tau * jnp.exp(log_ref)
        optimizer = (optax.sgd if fit == "sgd" else optax.adam)(params["lr"])
        grad = jax.grad(losses.optimistic_dpo_loss)

        def one(carry, _):
            theta, state = carry
            updates, state = optimizer.update(grad(theta, log_ref, tau, wins, optimism), state, theta)
            return (optax.apply_updates(theta, updates), state), None

        theta = jax.lax.scan(one, (log_pi, optimizer.init(log_pi)), None, length=steps)[0][0]
        return jax.nn.log_softmax(theta), wins, optimism

    def step(state, A, log_ref, eta, tau, t, params):
        log_pi, key, scores, wins, optimism = state
        key, sub = jax.random.split(jax.random.wrap_key_data(key))
        contexts = jax.random.split(sub, log_pi.shape[0])
        log_ref = jnp.broadcast_to(log_ref, log_pi.shape)
        log_pi, wins, optimism = jax.vmap(context_step, in_axes=(0, 0, 0, 0, 0, 0, None, None, None))(
            contexts, log_pi, A, log_ref, wins, optimism, eta, tau, params)
        return log_pi, jax.random.key_data(key), scores, wins, optimism

    return step


def egpo_data(name, key, log_pi, log_ref, A, oracle, N, eta, tau, params, log_opponent=None):
    """One context's samples for `recipe="egpo"` (`recipes.Egpo`) as `feedback.Pairs`: for the
    triples, label = 1/2 + ℓ(y, y'') − ℓ(y', y''), so that label − 1/2 is the target's numerator;
    `log_opponent` replaces the recipe's opponent as the sampler of y'' (the extragradient's π_{t+1/2})."""
    egpo = RECIPES[name].egpo
    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    if log_opponent is None:
        log_opponent = log_pi if egpo.opponent is None else geometric_mixture(
            log_pi, log_ref, egpo.opponent(eta, tau, params))
    if not egpo.triples:
        return feedback.pairs(key, log_pi, A, oracle, N, log_pi_second=log_opponent)
    uniform = jnp.zeros_like(log_pi)
    y, y2 = feedback.sample(k1, uniform, (N,)), feedback.sample(k2, uniform, (N,))
    y3 = feedback.sample(k3, log_opponent, (N,))
    label = 0.5 + feedback.answer(k4, A, y, y3, oracle) - feedback.answer(k5, A, y2, y3, oracle)
    return feedback.Pairs(y, y2, label, jnp.ones(N, log_pi.dtype))


def egpo_loss(name, theta, data, log_pi, log_ref, tau):
    """EGPO's sampled loss of the logits θ on one context's data (`recipes.Egpo`)."""
    if RECIPES[name].egpo.policy_gradient:
        d = log_pi - log_ref  # π_t's, held fixed
        return -jnp.mean((data.label - tau * d[data.first]) * jax.nn.log_softmax(theta)[data.first])
    return losses.pair_regression_loss(theta, log_ref, data.first, data.second, (data.label - 0.5) / tau)


def egpo_lr(name, eta, tau, n):
    """The SGD learning rate of `recipe="egpo"` whose expected step is the exact step at η."""
    return RECIPES[name].egpo.lr(eta, tau, n)


def _egpo_step(name, N, hard):
    half_step = RECIPES[name].egpo.half_step

    def context_step(key, log_pi, A, log_ref, eta, tau, params):
        oracle = feedback.Oracle(1.0 if hard else 0.0, params["flip"], params["position_bias"])
        lr = egpo_lr(name, eta, tau, log_pi.shape[-1])
        grad = jax.grad(egpo_loss, argnums=1)
        k1, k2 = jax.random.split(key)
        data = egpo_data(name, k1, log_pi, log_ref, A, oracle, N, eta, tau, params)
        theta = log_pi - lr * grad(name, log_pi, data, log_pi, log_ref, tau)
        if half_step:  # fresh samples against the half step, stepped from θ_t
            data = egpo_data(name, k2, log_pi, log_ref, A, oracle, N, eta, tau, params, jax.nn.log_softmax(theta))
            theta = log_pi - lr * grad(name, log_pi, data, log_pi, log_ref, tau)
        return jax.nn.log_softmax(theta)

    def step(state, A, log_ref, eta, tau, t, params):
        log_pi, key, scores = state
        key, sub = jax.random.split(jax.random.wrap_key_data(key))
        contexts = jax.random.split(sub, log_pi.shape[0])
        log_pi = jax.vmap(context_step, in_axes=(0, 0, 0, 0, None, None, None))(
            contexts, log_pi, A, log_ref, eta, tau, params)
        return log_pi, jax.random.key_data(key), scores

    return step
