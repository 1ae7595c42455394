r"""Sequence-level preference games: responses are token sequences y ∈ [V]^L, |Y| = V^L.

Response y and its index in [0, V^L) correspond through `transformer.index_to_tokens` (base-V
digits, first token most significant): the explicit bijection. Three oracles, each a `SequenceGame` with P(y ≻ y') for
token arrays (numpy, or jax.numpy inside the compiled training step) and, when Y is small enough,
the dense PreferenceGame for exact metrics:

- `lifted(game, V, L)`: a tabular game with n = V^L responses, response k ↔ sequence k;
- `features(V, L, rank, scale, seed)`: intransitive P = σ(φ(y)ᵀ R φ(y')), R skew-symmetric
  (rank/2 blocks scale·[[0, 1], [−1, 0]] in a random orthonormal basis of feature space) and
  φ(y) the standardized token counts and position-weighted token counts — the general preference
  model on hand-made features, so nearby sequences have similar preferences;
- `bradley_terry(V, L, scale, seed)`: transitive P = σ(r(y) − r(y')), r(y) = scale · wᵀφ(y).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from gamesim.core.errors import GamesimError
from gamesim.core.games import Builtin, PreferenceGame, load_game, register_builtin

DENSE_LIMIT = 4096
"""Largest |Y| for which the dense V^L × V^L preference matrix (and so exact metrics) is built."""


@dataclass(frozen=True)
class SequenceGame:
    """A preference oracle on token sequences: P(y ≻ y') from `arrays`, which are either
    {"table": P} (a lifted tabular game) or {"R": R, "w": w} (P = σ(φ(y)ᵀRφ(y') + wᵀ(φ(y) − φ(y'))),
    R skew-symmetric). `prob` is one definition for numpy (dense tables, float64) and for
    jax.numpy inside the compiled training step, where the arrays are passed as arguments."""

    vocab: int
    length: int
    arrays: dict
    label: str

    @property
    def num_responses(self) -> int:
        return self.vocab ** self.length

    def prob(self, tokens_a, tokens_b, arrays=None, xp=np):
        """P(y ≻ y') for token arrays (..., L); `arrays` and `xp` = jax.numpy inside jit."""
        return preference(self.arrays if arrays is None else arrays, self.vocab, self.length, tokens_a, tokens_b, xp)

    def dense(self) -> PreferenceGame:
        """The PreferenceGame over all V^L responses (uniform π_ref; set it with with_reference)."""
        from gamesim.lm.transformer import ModelConfig, index_to_tokens  # loads JAX: `import gamesim` imports this module

        n = self.num_responses
        if n > DENSE_LIMIT:
            raise GamesimError(f"{self.label}: |Y| = {n} responses is above {DENSE_LIMIT}, too many for the dense "
                               "preference matrix; exact metrics need a smaller vocab or length")
        tokens = index_to_tokens(np.arange(n), ModelConfig(vocab=self.vocab, length=self.length))
        P = self.prob(tokens[:, None], tokens[None, :])
        P = (P + 1 - P.T) / 2  # exact complementarity against rounding
        return PreferenceGame(P, label=self.label)


def preference(arrays: dict, vocab: int, length: int, tokens_a, tokens_b, xp=np):
    """P(y ≻ y') of the oracle given by `arrays` (see SequenceGame), in numpy or jax.numpy."""
    if "table" in arrays:
        weights = vocab ** xp.arange(length - 1, -1, -1)
        return arrays["table"][(tokens_a * weights).sum(-1), (tokens_b * weights).sum(-1)]
    phi_a, phi_b = feature_map(vocab, length, tokens_a, xp), feature_map(vocab, length, tokens_b, xp)
    R = arrays["R"].astype(phi_a.dtype)
    logits = xp.einsum("...a,ab,...b->...", phi_a, R, phi_b) + (phi_a - phi_b) @ arrays["w"].astype(phi_a.dtype)
    return 1 / (1 + xp.exp(-logits))


def feature_map(vocab: int, length: int, tokens, xp=np):
    """φ(y): token frequencies and position-weighted token counts (positions centred on 0), scaled by √V.

    The frequencies are not centred, so under a near-uniform policy the mean feature is not 0 and
    P(y ≻ π) varies with y: the uniform policy is far from equilibrium."""
    onehot = (tokens[..., None] == xp.arange(vocab)).astype(float if xp is np else "float32")
    position = (xp.arange(length) - (length - 1) / 2) / max(length - 1, 1)
    counts = onehot.sum(-2) / length
    weighted = (onehot * position[:, None]).sum(-2)
    return xp.concatenate([counts, weighted], axis=-1) * np.sqrt(vocab)


def lifted(game, vocab: int, length: int) -> SequenceGame:
    """A tabular game on n = V^L responses as a sequence game: response k is the sequence k."""
    game = load_game(game)
    if game.contextual:
        raise GamesimError("lift a game with one context; contexts of the sequence game are prompt tokens")
    if game.n != vocab ** length:
        raise GamesimError(f"lifting needs n = V^L responses: {game.label} has n = {game.n}, V^L = "
                           f"{vocab}^{length} = {vocab ** length}; e.g. use random:n={vocab ** length}")
    return SequenceGame(vocab, length, {"table": game.P}, f"lifted:{game.label}")


def features(vocab: int, length: int, rank: int = 4, scale: float = 2.0, seed: int = 0) -> SequenceGame:
    """Intransitive P = σ(φ(y)ᵀ R φ(y')) with R skew-symmetric of the given even rank."""
    d = 2 * vocab
    if rank < 2 or rank % 2 or rank > d:
        raise GamesimError(f"rank must be even, 2 ≤ rank ≤ 2V = {d}; got {rank}")
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0][:, :rank]
    R = Q @ np.kron(np.eye(rank // 2), np.array([[0.0, 1.0], [-1.0, 0.0]])) @ Q.T * scale
    return SequenceGame(vocab, length, {"R": R, "w": np.zeros(d)},
                        f"features:V={vocab},L={length},rank={rank},scale={scale},seed={seed}")


def bradley_terry(vocab: int, length: int, scale: float = 2.0, seed: int = 0) -> SequenceGame:
    """Transitive P = σ(r(y) − r(y')), reward r(y) = scale · wᵀφ(y), w ~ N(0, I) from `seed`."""
    w = np.random.default_rng(seed).standard_normal(2 * vocab) * scale
    return SequenceGame(vocab, length, {"R": np.zeros((2 * vocab, 2 * vocab)), "w": w},
                        f"bt:V={vocab},L={length},scale={scale},seed={seed}")


ORACLES = {"features": features, "bt": bradley_terry}


def reference_game(oracle: SequenceGame, reference: np.ndarray) -> PreferenceGame:
    """The dense game of `oracle` with π_ref = `reference` (C, V^L), P the same in every context."""
    base = oracle.dense()
    reference = np.asarray(reference, np.float64)
    if reference.shape[0] == 1:
        return base.with_reference(reference[0])
    return PreferenceGame(np.broadcast_to(base.P, (reference.shape[0], *base.P.shape)).copy(), reference,
                          label=oracle.label)


def sequence_game(model: str = "tiny", oracle: str = "features", rank: int = 4, scale: float = 2.0, seed: int = 0,
                  init_seed: int = 0) -> PreferenceGame:
    """The tabular game a transformer-mode run plays: the oracle's P over all V^L responses of
    the named model config, π_ref = that model initialized from `init_seed` (the `sequence` game)."""
    game = _sequence_game(model, oracle_spec(oracle, rank, scale, seed), init_seed)
    return PreferenceGame(game.P.copy(), game.reference.copy(), label=game.label)


@functools.cache
def _sequence_game(model: str, oracle: str, init_seed: int) -> PreferenceGame:
    from gamesim.lm.transformer import CONFIGS, initial_policy  # loads JAX (as in `dense`)

    if model not in CONFIGS:
        raise GamesimError(f"sequence game: model is one of {', '.join(CONFIGS)}, not {model!r}")
    config = CONFIGS[model]
    return reference_game(load_oracle(oracle, config.vocab, config.length), initial_policy(config, init_seed))


def oracle_spec(oracle: str, rank: int = 4, scale: float = 2.0, seed: int = 0) -> str:
    """The `load_oracle` spec of an oracle name and its parameters (rank is the features oracle's)."""
    if oracle == "features":
        return f"features:rank={rank},scale={scale},seed={seed}"
    if oracle == "bt":
        return f"bt:scale={scale},seed={seed}"
    raise GamesimError(f"sequence game: oracle is features or bt, not {oracle!r}")


def load_oracle(spec: str, vocab: int, length: int) -> SequenceGame:
    """`features[:rank=4,scale=2.0,seed=0]`, `bt[:scale=2.0,seed=0]`, or `lift:GAME` (a tabular spec)."""
    kind, _, args = spec.partition(":")
    if kind == "lift":
        return lifted(args, vocab, length)
    if kind not in ORACLES:
        raise GamesimError(f"unknown sequence oracle {kind!r}; use features, bt or lift:GAME (e.g. lift:random:n=1024)")
    kwargs = {}
    for item in filter(None, args.split(",")):
        key, _, value = item.partition("=")
        try:
            kwargs[key.strip()] = float(value) if key.strip() == "scale" else int(value)
        except ValueError:
            raise GamesimError(f"oracle spec {spec!r}: {item!r} is not KEY=NUMBER") from None
    try:
        return ORACLES[kind](vocab, length, **kwargs)
    except TypeError as exc:
        raise GamesimError(f"oracle spec {spec!r}: {exc}") from None


register_builtin("sequence", Builtin(
    sequence_game, {"model": "tiny", "oracle": "features", "rank": 4, "scale": 2.0, "seed": 0, "init_seed": 0},
    "a transformer-mode game: P of a sequence oracle (features or bt) over all V^L responses of a model config, "
    "π_ref = that model at init"))
