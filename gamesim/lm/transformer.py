r"""A small decoder-only transformer policy π_θ(y|c) over fixed-length responses, in pure JAX.

A response is y = (y_1, …, y_L), y_i ∈ {0, …, V−1}; a context (prompt) is c ∈ {0, …, C−1}. The
model reads the sequence [V + c, y_1, …, y_{L−1}] (the prompt token uses rows V..V+C−1 of the
embedding table, which has V + C rows) and factorizes

    log π_θ(y|c) = Σ_i log softmax(f_θ(c, y_<i))[y_i],

f_θ(c, y_<i) the logits at position i − 1 (causal masking: they see c, y_1..y_{i−1} only).

Architecture (GPT-2 style, pre-LayerNorm): x_0 = E[tokens] + P[positions]; per layer
x ← x + Attn(LN₁(x)), x ← x + MLP(LN₂(x)) with causal multi-head self-attention (q, k, v, o
projections) and MLP(h) = GELU(h W_in + b_in) W_out + b_out; logits = LN_f(x) U. Weights are
N(0, 0.02²), the residual output projections (W_o, W_out) N(0, (0.02/√(2·n_layers))²), LayerNorm
scales 1 and biases 0. Parameters are a plain dict pytree; the per-layer arrays are stacked on a
leading n_layers axis and the layers run as one `jax.lax.scan`.

Nash-MD's mixture for LMs is token-wise geometric: with ℓ_θ = log softmax(f_θ), the mixture's
next-token distribution is softmax((1 − β) ℓ_θ + β ℓ_other) on the same prefix (`sample(mix=)`,
`mixture_log_prob`). It is a distribution over responses, though not π_θ^{1−β} π_other^β
renormalized at the sequence level.

Responses are indexed y ↔ Σ_i y_i V^{L−i} (base-V digits, y_1 most significant) by
`index_to_tokens`/`tokens_to_index`; `enumerate_log_probs` tabulates log π(y|c) over all V^L
responses when that is at most 65536, so exact metrics of `gamesim.core.metrics` apply to the policy.

The array functions are jitted with `config` static (a frozen, hashable dataclass), and compose
with jit/vmap/grad. Context ids are not range-checked inside jit (an out-of-range id would be
clamped by the gather): pass 0 ≤ c < C.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from gamesim.core.errors import GamesimError
from gamesim.dynamics.updates import geometric_mixture

MAX_ENUMERABLE = 65536
"""Largest V^L for which `enumerate_log_probs` tabulates every response."""

INIT_STD = 0.02
LN_EPS = 1e-5
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the policy. vocab V: response tokens; length L: tokens per response; contexts C:
    prompt tokens; d_model, n_layers, n_heads, d_mlp (default 4·d_model); dtype of parameters and
    activations ("float32", or "float64" inside `jax.enable_x64`)."""

    vocab: int
    length: int
    contexts: int = 1
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    d_mlp: int | None = None
    dtype: str = "float32"

    def __post_init__(self):
        if self.d_mlp is None:
            object.__setattr__(self, "d_mlp", 4 * self.d_model if _positive_int(self.d_model) else None)
        for name in ("vocab", "length", "contexts", "d_model", "n_layers", "n_heads", "d_mlp"):
            value = getattr(self, name)
            if not _positive_int(value):
                raise GamesimError(f"ModelConfig: {name} must be a positive integer, got {value!r}; "
                                   f"pass e.g. {name}=4")
        if self.d_model % self.n_heads:
            raise GamesimError(f"ModelConfig: d_model={self.d_model} is not divisible by n_heads={self.n_heads}; "
                               f"choose n_heads among the divisors of d_model (e.g. "
                               f"{_divisor_near(self.d_model, self.n_heads)}) or change d_model")
        if self.dtype not in DTYPES:
            raise GamesimError(f"ModelConfig: unknown dtype {self.dtype!r}; use one of {', '.join(DTYPES)}")

    @property
    def num_responses(self) -> int:
        """V^L, the size of the response set."""
        return self.vocab ** self.length

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def flops_per_token(self) -> tuple[int, int]:
        """(N, F): the weights of the matrix products, N = n_layers(4d² + 2d·d_mlp) + d·V, and the
        forward FLOPs per token, F = 2N + 2·n_layers·L·d (attention over the L positions)."""
        n, d, m = self.n_layers, self.d_model, self.d_mlp
        N = n * (4 * d * d + 2 * d * m) + d * self.vocab
        return N, 2 * N + 2 * n * self.length * d


def _positive_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool) and value > 0


def _divisor_near(n: int, k: int) -> int:
    return min((d for d in range(1, n + 1) if n % d == 0), key=lambda d: (abs(d - k), d))


CONFIGS = {
    "tiny": ModelConfig(vocab=4, length=5, d_model=32, n_layers=2, n_heads=2),
    "small": ModelConfig(vocab=8, length=8, d_model=128, n_layers=4, n_heads=4),
    "medium": ModelConfig(vocab=16, length=12, d_model=256, n_layers=6, n_heads=8),
}
"""Named shapes; "tiny" has 4^5 = 1024 responses and is enumerable."""


# ---------------------------------------------------------------- parameters and forward pass

@functools.partial(jax.jit, static_argnames=("config",))
def init(key, config: ModelConfig) -> dict:
    """Fresh parameters: N(0, 0.02²) weights, W_o and W_out scaled by 1/√(2·n_layers), zero biases,
    unit LayerNorm scales. Shapes: embed (V + C, d), pos (L + 1, d), layers/* (n_layers, …),
    unembed (d, V). (All weights are cut from one normal draw: one threefry call compiles fast.)"""
    V, C, L, d, n, m = config.vocab, config.contexts, config.length, config.d_model, config.n_layers, config.d_mlp
    dtype = jnp.dtype(config.dtype)
    out_std = INIT_STD / math.sqrt(2 * n)
    shapes = {"embed": ((V + C, d), INIT_STD), "pos": ((L + 1, d), INIT_STD), "unembed": ((d, V), INIT_STD),
              "wq": ((n, d, d), INIT_STD), "wk": ((n, d, d), INIT_STD), "wv": ((n, d, d), INIT_STD),
              "wo": ((n, d, d), out_std), "w_in": ((n, d, m), INIT_STD), "w_out": ((n, m, d), out_std)}
    sizes = [math.prod(shape) for shape, _ in shapes.values()]
    flat = jnp.split(jax.random.normal(key, (sum(sizes),), dtype), np.cumsum(sizes)[:-1])
    w = {name: std * z.reshape(shape) for (name, (shape, std)), z in zip(shapes.items(), flat)}
    ones, zeros = (lambda *s: jnp.ones(s, dtype)), (lambda *s: jnp.zeros(s, dtype))
    return {
        "embed": w["embed"],
        "pos": w["pos"],
        "layers": {
            "ln1_scale": ones(n, d), "ln1_bias": zeros(n, d),
            "wq": w["wq"], "wk": w["wk"], "wv": w["wv"], "wo": w["wo"],
            "ln2_scale": ones(n, d), "ln2_bias": zeros(n, d),
            "w_in": w["w_in"], "b_in": zeros(n, m),
            "w_out": w["w_out"], "b_out": zeros(n, d),
        },
        "ln_f_scale": ones(d), "ln_f_bias": zeros(d),
        "unembed": w["unembed"],
    }


def _layer_norm(x, scale, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + LN_EPS) * scale + bias


def _attention(x, p, config: ModelConfig):
    """Causal multi-head self-attention: softmax(q kᵀ/√d_head + mask) v, heads concatenated, then W_o."""
    B, T, _ = x.shape
    H, Dh = config.n_heads, config.d_head
    q, k, v = ((x @ p[w]).reshape(B, T, H, Dh) for w in ("wq", "wk", "wv"))
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k) / jnp.sqrt(jnp.asarray(Dh, x.dtype))
    causal = jnp.tril(jnp.ones((T, T), bool))
    weights = jax.nn.softmax(jnp.where(causal, scores, -jnp.inf), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(B, T, H * Dh) @ p["wo"]


@functools.partial(jax.jit, static_argnames=("config",))
def apply(params: dict, config: ModelConfig, tokens) -> jax.Array:
    """Next-token logits (B, T, V) of tokens (B, T) = [V + c, y_1, …, y_{T−1}], 1 ≤ T ≤ L + 1.

    logits[:, i] is the (unnormalized) distribution of y_{i+1}, computed from tokens[:, :i+1] only;
    with T = L (the prompt and y_1..y_{L−1}) they cover the whole response. Response tokens are
    ids 0..V−1, the prompt token V + c."""
    tokens = jnp.asarray(tokens, jnp.int32)
    T = tokens.shape[1]
    if not 1 <= T <= config.length + 1:
        raise GamesimError(f"apply: got {T} tokens per row; feed the prompt token and at most L = "
                           f"{config.length} response tokens")
    x = params["embed"][tokens] + params["pos"][:T]

    def layer(x, p):
        x = x + _attention(_layer_norm(x, p["ln1_scale"], p["ln1_bias"]), p, config)
        h = _layer_norm(x, p["ln2_scale"], p["ln2_bias"])
        return x + jax.nn.gelu(h @ p["w_in"] + p["b_in"]) @ p["w_out"] + p["b_out"], None

    x, _ = jax.lax.scan(layer, x, params["layers"])
    return _layer_norm(x, params["ln_f_scale"], params["ln_f_bias"]) @ params["unembed"]


def _inputs(config: ModelConfig, contexts, responses):
    """[V + c, y_1, …, y_{L−1}]: the model input whose logits score all L tokens of `responses`."""
    prompt = config.vocab + jnp.asarray(contexts, jnp.int32)[:, None]
    return jnp.concatenate([prompt, jnp.asarray(responses, jnp.int32)[:, :-1]], axis=1)


def _next_log_probs(params, config: ModelConfig, inputs, mix):
    """Per-position next-token log-probabilities (B, T, V): log softmax f_θ, or under mix = (other, β)
    log softmax((1 − β) log softmax f_θ + β log softmax f_other)."""
    logp = jax.nn.log_softmax(apply(params, config, inputs), axis=-1)
    if mix is None:
        return logp
    other, beta = mix
    other_logp = jax.nn.log_softmax(apply(other, config, inputs), axis=-1)
    return geometric_mixture(logp, other_logp, jnp.asarray(beta, logp.dtype))


def _token_log_probs(params, config, contexts, responses, mix):
    responses = jnp.asarray(responses, jnp.int32)
    logp = _next_log_probs(params, config, _inputs(config, contexts, responses), mix)
    return jnp.take_along_axis(logp, responses[..., None], axis=-1)[..., 0]


@functools.partial(jax.jit, static_argnames=("config",))
def token_log_probs(params: dict, config: ModelConfig, contexts, responses) -> jax.Array:
    """log π_θ(y_i | c, y_<i) for each token: (B, L) from contexts (B,) and responses (B, L)."""
    return _token_log_probs(params, config, contexts, responses, None)


@functools.partial(jax.jit, static_argnames=("config",))
def log_prob(params: dict, config: ModelConfig, contexts, responses) -> jax.Array:
    """Sequence log-probability log π_θ(y|c) = Σ_i log softmax(f_θ(c, y_<i))[y_i]: (B,)."""
    return _token_log_probs(params, config, contexts, responses, None).sum(-1)


@functools.partial(jax.jit, static_argnames=("config",))
def mixture_log_prob(params: dict, other: dict, config: ModelConfig, beta, contexts, responses) -> jax.Array:
    """log π^β(y|c) = Σ_i log softmax((1 − β) ℓ_θ,i + β ℓ_other,i)[y_i], ℓ_i = log softmax f(c, y_<i):
    the token-wise geometric mixture Nash-MD samples from (β = 0: π_θ, β = 1: π_other). (B,)."""
    return _token_log_probs(params, config, contexts, responses, (other, beta)).sum(-1)


# ---------------------------------------------------------------- sampling

def sample(params: dict, config: ModelConfig, key, contexts, temperature=1.0, mix=None) -> jax.Array:
    """Responses (B, L) int32 drawn autoregressively from π_θ(·|c) for contexts (B,).

    Token i is drawn from softmax(ℓ_i / temperature), ℓ_i the next-token log-probabilities
    (temperature 0: greedy argmax). mix = (other_params, β) draws from the token-wise geometric
    mixture softmax((1 − β) ℓ_θ,i + β ℓ_other,i) instead (see `mixture_log_prob`). One
    `jax.lax.scan` over the L positions on a fixed (B, L) buffer; each step reruns the forward
    pass on the whole buffer, whose not-yet-drawn tail the causal mask hides."""
    if isinstance(temperature, (int, float)) and temperature < 0:
        raise GamesimError(f"sample: temperature must be ≥ 0 (0 is greedy), got {temperature}")
    if mix is not None:
        if not (isinstance(mix, (tuple, list)) and len(mix) == 2):
            raise GamesimError("sample: mix must be a pair (other_params, beta)")
        beta = mix[1]
        if isinstance(beta, (int, float)) and not 0 <= beta <= 1:
            raise GamesimError(f"sample: the mixture weight beta must lie in [0, 1], got {beta}")
        mix = tuple(mix)
    return _sample(params, config, key, contexts, temperature, mix)


@functools.partial(jax.jit, static_argnames=("config",))
def _sample(params, config: ModelConfig, key, contexts, temperature, mix):
    contexts = jnp.asarray(contexts, jnp.int32)
    B, L = contexts.shape[0], config.length
    temperature = jnp.asarray(temperature, jnp.dtype(config.dtype))
    safe_t = jnp.where(temperature > 0, temperature, 1)

    def step(buffer, xs):
        i, k = xs
        logp = _next_log_probs(params, config, _inputs(config, contexts, buffer), mix)
        logits = jax.lax.dynamic_index_in_dim(logp, i, axis=1, keepdims=False)
        drawn = jax.random.categorical(k, logits / safe_t, axis=-1)
        token = jnp.where(temperature > 0, drawn, jnp.argmax(logits, axis=-1)).astype(jnp.int32)
        return buffer.at[:, i].set(token), None

    buffer, _ = jax.lax.scan(step, jnp.zeros((B, L), jnp.int32), (jnp.arange(L), jax.random.split(key, L)))
    return buffer


# ---------------------------------------------------------------- the response set

def _index_backend(x, config: ModelConfig):
    """numpy (int64) for host input, jax.numpy for jax arrays and tracers (int32 unless x64 is on)."""
    if isinstance(x, jax.Array):
        xp, dtype = jnp, (x.dtype if jnp.issubdtype(x.dtype, jnp.integer) else jnp.dtype(jnp.int32))
    else:
        xp, dtype = np, np.dtype(np.int64)
    if config.num_responses - 1 > np.iinfo(dtype).max:
        raise GamesimError(f"response indices of V^L = {config.num_responses} overflow {np.dtype(dtype).name}; "
                           "pass numpy arrays (int64) or enable jax x64")
    return xp, dtype


def index_to_tokens(index, config: ModelConfig):
    """Tokens (..., L) of response indices (...): y_i = ⌊index / V^{L−i}⌋ mod V (y_1 most significant).

    numpy in, numpy out; a jax array (or tracer) in, a jax array out."""
    xp, dtype = _index_backend(index, config)
    V, L = config.vocab, config.length
    powers = xp.asarray([V ** (L - 1 - i) for i in range(L)], dtype)
    index = xp.asarray(index).astype(dtype)
    return ((index[..., None] // powers) % V).astype(xp.int32)


def tokens_to_index(tokens, config: ModelConfig):
    """Response index Σ_i y_i V^{L−i} of tokens (..., L): the inverse of `index_to_tokens`."""
    xp, dtype = _index_backend(tokens, config)
    V, L = config.vocab, config.length
    powers = xp.asarray([V ** (L - 1 - i) for i in range(L)], dtype)
    return (xp.asarray(tokens).astype(dtype) * powers).sum(-1)


def enumerate_log_probs(params: dict, config: ModelConfig, batch: int = 4096, *, mix=None) -> jax.Array:
    """The table log π_θ(y|c) (C, V^L) over every context and response (index order of
    `index_to_tokens`), in `batch`-sized chunks under one `jax.lax.map` (one compilation).

    mix = (other_params, β): the token-wise mixture's table instead (`mixture_log_prob`)."""
    N = config.num_responses
    if N > MAX_ENUMERABLE:
        raise GamesimError(f"the response set of V^L = {config.vocab}^{config.length} = {N} is not enumerable "
                           f"(at most {MAX_ENUMERABLE}); estimate metrics by sampling (`sample`, `log_prob`) "
                           "or use a smaller vocab/length")
    if not _positive_int(batch):
        raise GamesimError(f"enumerate_log_probs: batch must be a positive integer, got {batch!r}")
    return _enumerate(params, config, min(int(batch), N), None if mix is None else tuple(mix))


@functools.partial(jax.jit, static_argnames=("config", "batch"))
def _enumerate(params, config: ModelConfig, batch: int, mix):
    N, C = config.num_responses, config.contexts
    chunks = -(-N // batch)
    # indices past N wrap to valid token sequences whose rows are dropped below
    tokens = index_to_tokens(jnp.arange(chunks * batch, dtype=jnp.int32), config).reshape(chunks, batch, -1)
    contexts = jnp.repeat(jnp.arange(C, dtype=jnp.int32), batch)

    def chunk(responses):
        responses = jnp.tile(responses, (C, 1))
        return _token_log_probs(params, config, contexts, responses, mix).sum(-1).reshape(C, batch)

    table = jax.lax.map(chunk, tokens)                     # (chunks, C, batch)
    return table.transpose(1, 0, 2).reshape(C, chunks * batch)[:, :N]


def initial_params(model: ModelConfig, init_seed: int = 0) -> dict:
    """The initial model, which is also π_ref: `transformer.init` from `init_seed`."""
    return init(jax.random.split(jax.random.PRNGKey(init_seed))[0], model)


def initial_policy(model: ModelConfig, init_seed: int = 0) -> np.ndarray:
    """π_ref of an enumerable model: the initial model's probabilities, (C, V^L), float64."""
    return normalize(enumerate_log_probs(initial_params(model, init_seed), model))


def normalize(log_probs) -> np.ndarray:
    """Probabilities from log-probabilities, renormalized in float64."""
    logp = np.asarray(log_probs, np.float64)
    pi = np.exp(logp - logp.max(-1, keepdims=True))
    return pi / pi.sum(-1, keepdims=True)
