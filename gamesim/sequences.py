r"""Sequence-level preference games: responses are token sequences y ∈ [V]^L, |Y| = V^L.

Response y and its index in [0, V^L) correspond through `transformer.index_to_tokens` (base-V
digits, first token most significant): the explicit bijection. Three oracles, each a `SequenceGame` with P(y ≻ y') for
index arrays and, when Y is small enough, the dense PreferenceGame for exact metrics:

- `lifted(game, V, L)`: a tabular game with n = V^L responses, response k ↔ sequence k;
- `features(V, L, rank, scale, seed)`: intransitive P = σ(φ(y)ᵀ R φ(y')), R skew-symmetric
  (rank/2 blocks scale·[[0, 1], [−1, 0]] in a random orthonormal basis of feature space) and
  φ(y) the standardized token counts and position-weighted token counts — the general preference
  model on hand-made features, so nearby sequences have similar preferences;
- `bradley_terry(V, L, scale, seed)`: transitive P = σ(r(y) − r(y')), r(y) = scale · wᵀφ(y).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .errors import GamesimError
from .games import PreferenceGame, load_game

DENSE_LIMIT = 4096
"""Largest |Y| for which the dense V^L × V^L preference matrix (and so exact metrics) is built."""


@dataclass(frozen=True)
class SequenceGame:
    vocab: int
    length: int
    prob: Callable  # (index array, index array) -> P(y ≻ y'), numpy float64
    label: str

    @property
    def num_responses(self) -> int:
        return self.vocab ** self.length

    def dense(self) -> PreferenceGame:
        """The PreferenceGame over all V^L responses (uniform π_ref; set it with with_reference)."""
        n = self.num_responses
        if n > DENSE_LIMIT:
            raise GamesimError(f"{self.label}: |Y| = {n} responses is above {DENSE_LIMIT}, too many for the dense "
                               "preference matrix; exact metrics need a smaller vocab or length")
        i = np.arange(n)
        P = self.prob(i[:, None], i[None, :])
        P = (P + 1 - P.T) / 2  # exact complementarity against rounding
        return PreferenceGame(P, label=self.label)


def feature_map(vocab: int, length: int, index) -> np.ndarray:
    """φ(y): token frequencies and position-weighted token counts (positions centred on 0), scaled by √V.

    The frequencies are not centred, so under a near-uniform policy the mean feature is not 0 and
    P(y ≻ π) varies with y: the uniform policy is far from equilibrium."""
    from .transformer import ModelConfig, index_to_tokens

    tok = index_to_tokens(np.asarray(index), ModelConfig(vocab=vocab, length=length))
    onehot = tok[..., None] == np.arange(vocab)
    position = (np.arange(length) - (length - 1) / 2) / max(length - 1, 1)
    counts = onehot.sum(-2) / length
    weighted = (onehot * position[:, None]).sum(-2)
    phi = np.concatenate([counts, weighted], axis=-1)
    return phi * np.sqrt(vocab)


def lifted(game, vocab: int, length: int) -> SequenceGame:
    """A tabular game on n = V^L responses as a sequence game: response k is the sequence k."""
    game = load_game(game)
    if game.contextual:
        raise GamesimError("lift a game with one context; contexts of the sequence game are prompt tokens")
    if game.n != vocab ** length:
        raise GamesimError(f"lifting needs n = V^L responses: {game.label} has n = {game.n}, V^L = "
                           f"{vocab}^{length} = {vocab ** length}; e.g. use random:n={vocab ** length}")
    P = game.P
    return SequenceGame(vocab, length, lambda i, j: P[i, j], f"lifted:{game.label}")


def features(vocab: int, length: int, rank: int = 4, scale: float = 2.0, seed: int = 0) -> SequenceGame:
    """Intransitive P = σ(φ(y)ᵀ R φ(y')) with R skew-symmetric of the given even rank."""
    d = 2 * vocab
    if rank < 2 or rank % 2 or rank > d:
        raise GamesimError(f"rank must be even, 2 ≤ rank ≤ 2V = {d}; got {rank}")
    rng = np.random.default_rng(seed)
    Q = np.linalg.qr(rng.standard_normal((d, d)))[0][:, :rank]
    R = Q @ np.kron(np.eye(rank // 2), np.array([[0.0, 1.0], [-1.0, 0.0]])) @ Q.T * scale

    def prob(i, j):
        logits = np.einsum("...a,ab,...b->...", feature_map(vocab, length, i), R, feature_map(vocab, length, j))
        return 1 / (1 + np.exp(-logits))

    return SequenceGame(vocab, length, prob, f"features:V={vocab},L={length},rank={rank},scale={scale},seed={seed}")


def bradley_terry(vocab: int, length: int, scale: float = 2.0, seed: int = 0) -> SequenceGame:
    """Transitive P = σ(r(y) − r(y')), reward r(y) = scale · wᵀφ(y), w ~ N(0, I) from `seed`."""
    w = np.random.default_rng(seed).standard_normal(2 * vocab) * scale

    def prob(i, j):
        return 1 / (1 + np.exp(-(feature_map(vocab, length, i) @ w - feature_map(vocab, length, j) @ w)))

    return SequenceGame(vocab, length, prob, f"bt:V={vocab},L={length},scale={scale},seed={seed}")


ORACLES = {"features": features, "bt": bradley_terry}


def load_oracle(spec: str, vocab: int, length: int) -> SequenceGame:
    """`features[:rank=4,scale=2.0,seed=0]`, `bt[:scale=2.0,seed=0]`, or `lift:GAME` (a tabular spec)."""
    name, _, args = spec.partition(":")
    if name == "lift":
        return lifted(args, vocab, length)
    if name not in ORACLES:
        raise GamesimError(f"unknown sequence oracle {name!r}; use features, bt or lift:GAME (e.g. lift:random:n=1024)")
    kwargs = {}
    for item in filter(None, args.split(",")):
        key, _, value = item.partition("=")
        try:
            kwargs[key.strip()] = float(value) if key.strip() == "scale" else int(value)
        except ValueError:
            raise GamesimError(f"oracle spec {spec!r}: {item!r} is not KEY=NUMBER") from None
    try:
        return ORACLES[name](vocab, length, **kwargs)
    except TypeError as exc:
        raise GamesimError(f"oracle spec {spec!r}: {exc}") from None
