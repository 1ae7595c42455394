r"""Bandit mode: the algorithms as they run on LLMs, from sampled preference feedback.

Each iteration, per context: sample responses from π_t (Nash-MD: from its geometric mixture),
ask the oracle (`feedback`), and fit the next policy on that finite data by minimizing the
algorithm's loss over tabular logits θ (log π_{t+1} = θ − logsumexp θ):

| algorithm | data (recipe) | loss (`losses`) |
|---|---|---|
| inpo | N pairs from π_t, or best-vs-worst of K (INPO §4) | eq. 8: ((θ − c)(y) − (θ − c)(y') − η(ℓ − 1/2))², c = (1 − ητ) log π_t + ητ log π_ref |
| nash-md | N pairs from π^μ_t ∝ π_t^{1−ητ}π_ref^{ητ} | the same with c = log π^μ_t (NLHF eq. 4 as a regression) |
| online-ipo | N pairs from π_t | IPO: c = log π_ref, target (ℓ − 1/2)/τ (Calandriello eq. 11) |
| sppo | K samples per prompt, P̂ from K(K−1)/2 queries (SPPO §5); or only each prompt's best and worst sample by P̂ (`recipe="best-worst"`, SPPO's official code) | (log π(y)/π_t(y) − η(P̂ − 1/2))² (eqs. 4.6–4.7) |
| iterative-dpo | N pairs from π_t | DPO with reference π_t, β = 1/η |
| omd, extragradient, nash-md, online-ipo, nash-md-pg | `recipe="egpo"`: EGPO's sampled estimators (below) | EGPO's losses, one SGD step |

`recipe="egpo"` runs EGPO's sampled losses as its code does (Zhou et al. 2025, `zhourunlong/EGPO`,
simulations/loss_funcs.py, the `*_sample` functions), one plain SGD step per iteration from θ_t =
log π_t on N samples, with the learning rate that makes the expected step the exact algorithm's
step at the same η (the inverse of `algorithms.egpo_settings`): with d = log π_θ − log π_ref,
- omd (Online IPO 1): y, y' uniform, y'' ~ π_t; mean of (d_y − d_y' − (ℓ(y, y'') − ℓ(y', y''))/τ)²; lr = nτη/4.
- extragradient (EGPO): that step from θ_t gives π_{t+1/2}; fresh samples with y'' ~ π_{t+1/2}, and
  the same loss's step from θ_t; lr = nτη/4.
- nash-md: as omd with y'' ~ π^ω_t ∝ π_t^{1−ω} π_ref^ω, ω = mix_ratio·ητ (EGPO: mix_ratio = 1/2); lr = nτη/4.
- online-ipo (Online IPO 2): y, y' ~ π_t; mean of (d_y − d_y' − (ℓ(y, y') − 1/2)/τ)²; lr = τη/4.
- nash-md-pg: y ~ π_t, y' ~ π^β_t (its `beta`); −mean of (ℓ(y, y') − τ d_y) log π_θ(y), d stop-gradient; lr = η.
ℓ is the oracle's answer; EGPO reads P itself, which is `oracle="soft"`.

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

from gamesim.dynamics.algorithms import Param, get_algorithm
from gamesim.core.errors import GamesimError

SAMPLED = ("inpo", "nash-md", "online-ipo", "sppo", "iterative-dpo", "omd", "extragradient", "nash-md-pg")
RECIPES = {"inpo": ("pairs", "best-worst"), "nash-md": ("pairs", "egpo"), "online-ipo": ("pairs", "egpo"),
           "sppo": ("win-rates", "best-worst"), "iterative-dpo": ("pairs",), "omd": ("egpo",),
           "extragradient": ("egpo",), "nash-md-pg": ("egpo",)}
FITS = ("exact", "sgd", "adam")
LBFGS_STEPS = 100


def _queries(name: str, recipe: str, N: int, K: int) -> int:
    from gamesim.bandit import feedback

    if name == "sppo":
        return N * feedback.win_rates_queries(K)
    if recipe == "egpo":  # two answers per sample for the triples; the extragradient samples twice
        return N * (1 if name in ("online-ipo", "nash-md-pg") else 2) * (2 if name == "extragradient" else 1)
    return {"pairs": N, "best-worst": N * feedback.best_vs_worst_queries(K)}[recipe]


@functools.cache
def sampled_algorithm(name: str, pairs: int = 64, recipe: str | None = None, samples: int | None = None,
                      fit: str = "exact", steps: int = 10, batch: int | None = None, oracle: str = "hard"):
    """The engine Algorithm running `name` from sampled feedback (cached: one object per setting).

    pairs: N, pairs per iteration and context (prompts, for the K-sample recipes). recipe: see
    RECIPES (the first is the default). samples: K for the K-sample recipes (INPO's best-vs-worst
    tournament 8, SPPO's win rates and best-and-worst 5). fit: "exact", "sgd" or "adam"; steps, batch: the optax fitter's step count and
    minibatch size (default: all data). oracle: "hard" (Bernoulli answers) or "soft" (P itself).
    The learning rate `lr` of the optax fitter, the label-flip rate `flip` and the position bias
    `position_bias` are hyperparameters (per run, batchable).
    """
    if name not in SAMPLED:
        raise GamesimError(f"sampled feedback is available for {', '.join(SAMPLED)}, not {name!r}")
    recipe = recipe or RECIPES[name][0]
    if recipe not in RECIPES[name]:
        raise GamesimError(f"{name} takes recipe {' or '.join(RECIPES[name])}, not {recipe!r}")
    if fit not in FITS:
        raise GamesimError(f"fit must be one of {', '.join(FITS)}, not {fit!r}")
    if oracle not in ("hard", "soft"):
        raise GamesimError(f"oracle must be 'hard' or 'soft', not {oracle!r}")
    tournament = name == "inpo" and recipe == "best-worst"
    if tournament and oracle != "hard":
        raise GamesimError("the best-vs-worst tournament needs a hard oracle (answers, not probabilities)")
    K = samples or (8 if tournament else 5 if name == "sppo" else 0)
    if tournament and (K < 2 or K & (K - 1)):
        raise GamesimError(f"the best-vs-worst tournament needs K a power of two ≥ 2, got {K}")
    if name == "sppo" and K < 2:
        raise GamesimError(f"win rates need K ≥ 2 samples per prompt, got {K}")
    for what, value in (("pairs", pairs), ("steps", steps), ("batch", batch or 1)):
        if not (isinstance(value, int) and value >= 1):
            raise GamesimError(f"{what} must be an integer ≥ 1, got {value!r}")
    size = pairs * K if name == "sppo" else pairs
    if batch is not None and batch > size:
        raise GamesimError(f"batch ({batch}) cannot exceed the {size} data points of an iteration")
    exact = get_algorithm(name)
    params = {"flip": Param(0.0, 0.0, 0.5, "probability that an answer is flipped"),
              "position_bias": Param(0.0, -0.5, 0.5, "added to P(first response wins)")}
    if recipe == "egpo":
        if (fit, steps, batch) != ("exact", 10, None):
            raise GamesimError("recipe='egpo' takes one SGD step per iteration at the learning rate that "
                               "matches η (see gamesim.bandit.sampled); leave fit, steps and batch unset")
        params.update(exact.params)  # Nash-MD's mix_ratio, Nash-MD-PG's beta
        step = _egpo_step(name, pairs, oracle == "hard")
    else:
        if fit != "exact":
            params["lr"] = Param(0.1, 0.0, 1e6, "learning rate of the optax fitter")
        step = _make_step(name, recipe, pairs, K, fit, steps, batch or size, oracle == "hard")
    best_response = name == "online-ipo" and fit == "exact" and recipe != "egpo"  # named for what it is
    label = ", egpo" if recipe == "egpo" else ", exact fit: iterated best response" if best_response else ""
    return dataclasses.replace(
        exact, name=f"{name}[sampled{label}]", step=step, init=_init, log_policy=_first, params=params,
        schedules=("constant",), queries_per_step=_queries(name, recipe, pairs, K),
        needs_tau=name == "online-ipo" or recipe == "egpo",
        citation=f"{exact.citation}; sampled: {recipe}, N={pairs}{f', K={K}' if K else ''}, "
                 f"{'one SGD step' if recipe == 'egpo' else fit + ' fit'}"
                 + ("; the exact fit jumps to each iteration's empirical IPO optimum (an iterated best response), "
                    "not Calandriello et al.'s gradient method (fit='sgd')" if best_response else ""))


def _init(log_pi0, A, log_ref, key):
    import jax.numpy as jnp

    return log_pi0, key, jnp.zeros_like(log_pi0)


def _first(state):
    return state[0]


def collect(name, recipe, N, K, key, log_pi, A, log_ref, eta, tau, oracle):
    """One context's data for `name`, with the anchor c and the target scale of its loss."""
    import jax

    from gamesim.bandit import feedback
    from gamesim.dynamics import losses

    if name == "sppo":
        rates = feedback.win_rates(key, log_pi, A, oracle, N, K)
        return (feedback.best_and_worst(rates, K) if recipe == "best-worst" else rates), log_pi, eta
    if recipe == "best-worst":
        return feedback.best_vs_worst(key, log_pi, A, oracle, N, K), losses.inpo_anchor(log_pi, log_ref, eta, tau), eta
    if name == "nash-md":
        log_mix = jax.nn.log_softmax((1 - eta * tau) * log_pi + eta * tau * log_ref)
        return feedback.pairs(key, log_mix, A, oracle, N), log_mix, eta
    data = feedback.pairs(key, log_pi, A, oracle, N)
    if name == "online-ipo":
        return data, log_ref, 1 / tau
    return data, (log_pi if name == "iterative-dpo" else losses.inpo_anchor(log_pi, log_ref, eta, tau)), eta


def data_loss(name, theta, data, anchor, scale, log_pi, eta):
    """`name`'s loss of the logits θ on one context's data (see the table above)."""
    import jax

    from gamesim.dynamics import losses

    if name == "sppo":
        return losses.sppo_loss(jax.nn.log_softmax(theta), log_pi, eta, data.response, data.win_rate, data.weight)
    if name == "iterative-dpo":
        return losses.dpo_loss(theta, log_pi, eta, data.first, data.second, data.label, data.weight)
    return losses.pair_regression_loss(theta, anchor, data.first, data.second, scale * (data.label - 0.5),
                                       data.weight)


def exact_fit(name, data, anchor, scale, log_pi, eta, scores):
    """The empirical minimizer of `data_loss` (see the module docstring); returns (θ, BT scores)."""
    import jax
    import jax.numpy as jnp
    import optax

    from gamesim.dynamics.updates import bradley_terry_fit

    n = log_pi.shape[-1]
    if name == "sppo":
        def objective(theta):
            return data_loss(name, theta, data, anchor, scale, log_pi, eta)

        solver = optax.lbfgs()
        value_and_grad = optax.value_and_grad_from_state(objective)

        def lbfgs(carry, _):
            theta, state = carry
            value, grad = value_and_grad(theta, state=state)
            updates, state = solver.update(grad, state, theta, value=value, grad=grad, value_fn=objective)
            return (optax.apply_updates(theta, updates), state), None

        return jax.lax.scan(lbfgs, (log_pi, solver.init(log_pi)), None, length=LBFGS_STEPS)[0][0], scores
    f, s, w = data.first, data.second, data.weight
    if name == "iterative-dpo":
        weights = jnp.zeros((n, n), log_pi.dtype).at[f, s].add(w).at[s, f].add(w)
        wins = jnp.zeros((n, n), log_pi.dtype).at[f, s].add(w * data.label).at[s, f].add(w * (1 - data.label))
        scores = bradley_terry_fit(scores, weights, wins)
        return log_pi + eta * scores, scores
    target = w * scale * (data.label - 0.5)
    laplacian = jnp.zeros((n, n), log_pi.dtype).at[f, f].add(w).at[s, s].add(w).at[f, s].add(-w).at[s, f].add(-w)
    b = jnp.zeros(n, log_pi.dtype).at[f].add(target).at[s].add(-target)
    return anchor + jnp.linalg.pinv(laplacian, hermitian=True) @ b, scores


def optax_fit(name, optimizer, steps, batch, key, data, anchor, scale, log_pi, eta):
    """`steps` optax steps on `data_loss` from θ = log π_t, each on a random minibatch of `batch`."""
    import jax
    import optax

    size = data[0].shape[0]

    def one(carry, key):
        theta, state = carry
        idx = jax.random.permutation(key, size)[:batch]
        minibatch = jax.tree_util.tree_map(lambda x: x[idx], data)
        grad = jax.grad(data_loss, argnums=1)(name, theta, minibatch, anchor, scale, log_pi, eta)
        updates, state = optimizer.update(grad, state, theta)
        return (optax.apply_updates(theta, updates), state), None

    return jax.lax.scan(one, (log_pi, optimizer.init(log_pi)), jax.random.split(key, steps))[0][0]


def _make_step(name, recipe, N, K, fit, steps, batch, hard):
    import jax
    import optax

    from gamesim.bandit import feedback

    def context_step(key, log_pi, A, log_ref, scores, eta, tau, params):
        oracle = feedback.Oracle(1.0 if hard else 0.0, params["flip"], params["position_bias"])
        k_data, k_fit = jax.random.split(key)
        data, anchor, scale = collect(name, recipe, N, K, k_data, log_pi, A, log_ref, eta, tau, oracle)
        if fit == "exact":
            theta, scores = exact_fit(name, data, anchor, scale, log_pi, eta, scores)
        else:
            optimizer = (optax.sgd if fit == "sgd" else optax.adam)(params["lr"])
            theta = optax_fit(name, optimizer, steps, batch, k_fit, data, anchor, scale, log_pi, eta)
        return jax.nn.log_softmax(theta), scores

    def step(state, A, log_ref, eta, tau, t, params):
        log_pi, key, scores = state
        key, sub = jax.random.split(jax.random.wrap_key_data(key))
        contexts = jax.random.split(sub, log_pi.shape[0])
        log_pi, scores = jax.vmap(context_step, in_axes=(0, 0, 0, 0, 0, None, None, None))(
            contexts, log_pi, A, log_ref, scores, eta, tau, params)
        return log_pi, jax.random.key_data(key), scores

    return step


def egpo_data(name, key, log_pi, log_ref, A, oracle, N, eta, tau, params, log_opponent=None):
    """One context's samples for `recipe="egpo"` (module docstring) as `feedback.Pairs`: for the
    triples, label = 1/2 + ℓ(y, y'') − ℓ(y', y''), so that label − 1/2 is the target's numerator;
    `log_opponent` replaces π_t as the sampler of y'' (the extragradient's π_{t+1/2})."""
    import jax
    import jax.numpy as jnp

    from gamesim.bandit import feedback

    k1, k2, k3, k4, k5 = jax.random.split(key, 5)
    if name == "online-ipo":
        return feedback.pairs(key, log_pi, A, oracle, N)
    if name == "nash-md-pg":
        return feedback.pairs(key, log_pi, A, oracle, N, log_pi_second=_mixture(log_pi, log_ref, params["beta"]))
    uniform = jnp.zeros_like(log_pi)
    y, y2 = feedback.sample(k1, uniform, (N,)), feedback.sample(k2, uniform, (N,))
    if log_opponent is None:
        log_opponent = _mixture(log_pi, log_ref, params["mix_ratio"] * eta * tau) if name == "nash-md" else log_pi
    y3 = feedback.sample(k3, log_opponent, (N,))
    label = 0.5 + feedback.answer(k4, A, y, y3, oracle) - feedback.answer(k5, A, y2, y3, oracle)
    return feedback.Pairs(y, y2, label, jnp.ones(N, log_pi.dtype))


def _mixture(log_pi, log_ref, weight):
    import jax

    return jax.nn.log_softmax((1 - weight) * log_pi + weight * log_ref)


def egpo_loss(name, theta, data, log_pi, log_ref, tau):
    """EGPO's sampled loss of the logits θ on one context's data (module docstring)."""
    import jax
    import jax.numpy as jnp

    from gamesim.dynamics import losses

    if name == "nash-md-pg":
        d = log_pi - log_ref  # π_t's, held fixed
        return -jnp.mean((data.label - tau * d[data.first]) * jax.nn.log_softmax(theta)[data.first])
    return losses.pair_regression_loss(theta, log_ref, data.first, data.second, (data.label - 0.5) / tau)


def egpo_lr(name, eta, tau, n):
    """The SGD learning rate of `recipe="egpo"` whose expected step is the exact step at η."""
    return {"online-ipo": tau * eta / 4, "nash-md-pg": eta}.get(name, n * tau * eta / 4)


def _egpo_step(name, N, hard):
    import jax

    from gamesim.bandit import feedback

    def context_step(key, log_pi, A, log_ref, eta, tau, params):
        oracle = feedback.Oracle(1.0 if hard else 0.0, params["flip"], params["position_bias"])
        lr = egpo_lr(name, eta, tau, log_pi.shape[-1])
        grad = jax.grad(egpo_loss, argnums=1)
        k1, k2 = jax.random.split(key)
        data = egpo_data(name, k1, log_pi, log_ref, A, oracle, N, eta, tau, params)
        theta = log_pi - lr * grad(name, log_pi, data, log_pi, log_ref, tau)
        if name == "extragradient":  # fresh samples against the half step, stepped from θ_t
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
