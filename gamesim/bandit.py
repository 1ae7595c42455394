r"""Bandit mode: the algorithms as they run on LLMs, from sampled preference feedback.

Each iteration, per context: sample responses from π_t (Nash-MD: from its geometric mixture),
ask the oracle (`feedback`), and fit the next policy on that finite data by minimizing the
algorithm's loss over tabular logits θ (log π_{t+1} = θ − logsumexp θ):

| algorithm | data (recipe) | loss (`losses`) |
|---|---|---|
| inpo | N pairs from π_t, or best-vs-worst of K (INPO §4) | eq. 8: ((θ − c)(y) − (θ − c)(y') − η(ℓ − 1/2))², c = (1 − ητ) log π_t + ητ log π_ref |
| nash-md | N pairs from π^μ_t ∝ π_t^{1−ητ}π_ref^{ητ} | the same with c = log π^μ_t (NLHF eq. 4 as a regression) |
| online-ipo | N pairs from π_t | IPO: c = log π_ref, target (ℓ − 1/2)/τ (Calandriello eq. 11) |
| sppo | K samples per prompt, P̂ from K(K−1)/2 queries (SPPO §5) | (log π(y)/π_t(y) − η(P̂ − 1/2))² (eqs. 4.6–4.7) |
| iterative-dpo | N pairs from π_t | DPO with reference π_t, β = 1/η |

Two fitters. "exact": the empirical minimizer — for the pair regressions the minimum-norm
least-squares solution θ = c + L⁺b (L the comparison graph's Laplacian), for DPO the
Bradley-Terry maximum likelihood (ridge 1e-9), for SPPO 100 L-BFGS iterations from θ_t (its
loss pins only the sampled responses' probabilities). "sgd"/"adam": `steps` optax steps from
θ_t = log π_t with learning rate `lr` on minibatches of `batch` data points — the practical recipe.

The exact fit of online IPO ignores η: it jumps to the empirical IPO optimum of each iteration's
data (an iterated best response, which oscillates); `fit="sgd"` with lr = ητ/4 is the step the
exact mode's `online-ipo` takes in expectation. Sampled SPPO's estimator shrinks its step to
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

from .algorithms import Param, get_algorithm
from .errors import GamesimError

SAMPLED = ("inpo", "nash-md", "online-ipo", "sppo", "iterative-dpo")
RECIPES = {"inpo": ("pairs", "best-worst"), "nash-md": ("pairs",), "online-ipo": ("pairs",),
           "sppo": ("win-rates",), "iterative-dpo": ("pairs",)}
FITS = ("exact", "sgd", "adam")
LBFGS_STEPS = 100


def _queries(recipe: str, N: int, K: int) -> int:
    from . import feedback

    return {"pairs": N, "best-worst": N * feedback.best_vs_worst_queries(K),
            "win-rates": N * feedback.win_rates_queries(K)}[recipe]


@functools.cache
def sampled_algorithm(name: str, pairs: int = 64, recipe: str | None = None, samples: int | None = None,
                      fit: str = "exact", steps: int = 10, batch: int | None = None, oracle: str = "hard"):
    """The engine Algorithm running `name` from sampled feedback (cached: one object per setting).

    pairs: N, pairs per iteration and context (prompts, for the K-sample recipes). recipe: see
    RECIPES (the first is the default). samples: K for the K-sample recipes (8 best-vs-worst, 5
    win-rates). fit: "exact", "sgd" or "adam"; steps, batch: the optax fitter's step count and
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
    if recipe == "best-worst" and oracle != "hard":
        raise GamesimError("the best-vs-worst tournament needs a hard oracle (answers, not probabilities)")
    K = samples or {"best-worst": 8, "win-rates": 5}.get(recipe, 0)
    if recipe == "best-worst" and (K < 2 or K & (K - 1)):
        raise GamesimError(f"the best-vs-worst tournament needs K a power of two ≥ 2, got {K}")
    if recipe == "win-rates" and K < 2:
        raise GamesimError(f"win rates need K ≥ 2 samples per prompt, got {K}")
    for what, value in (("pairs", pairs), ("steps", steps), ("batch", batch or 1)):
        if not (isinstance(value, int) and value >= 1):
            raise GamesimError(f"{what} must be an integer ≥ 1, got {value!r}")
    size = pairs * K if recipe == "win-rates" else pairs
    if batch is not None and batch > size:
        raise GamesimError(f"batch ({batch}) cannot exceed the {size} data points of an iteration")
    exact = get_algorithm(name)
    params = {"flip": Param(0.0, 0.0, 0.5, "probability that an answer is flipped"),
              "position_bias": Param(0.0, -0.5, 0.5, "added to P(first response wins)")}
    if fit != "exact":
        params["lr"] = Param(0.1, 0.0, 1e6, "learning rate of the optax fitter")
    step = _make_step(name, recipe, pairs, K, fit, steps, batch or size, oracle == "hard")
    return dataclasses.replace(
        exact, name=f"{name}[sampled]", step=step, init=_init, log_policy=_first, params=params,
        schedules=("constant",), queries_per_step=_queries(recipe, pairs, K), needs_tau=name == "online-ipo",
        citation=f"{exact.citation}; sampled: {recipe}, N={pairs}{f', K={K}' if K else ''}, {fit} fit")


def _init(log_pi0, A, log_ref, key):
    import jax.numpy as jnp

    return log_pi0, key, jnp.zeros_like(log_pi0)


def _first(state):
    return state[0]


def collect(name, recipe, N, K, key, log_pi, A, log_ref, eta, tau, oracle):
    """One context's data for `name`, with the anchor c and the target scale of its loss."""
    import jax

    from . import feedback, losses

    if name == "sppo":
        return feedback.win_rates(key, log_pi, A, oracle, N, K), log_pi, eta
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

    from . import losses

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

    from .updates import bradley_terry_fit

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

    from . import feedback

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
