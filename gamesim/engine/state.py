"""The engine's typed inputs and state, shared by the JAX and numba backends.

Every field has a leading batch axis B, except the games' arrays when one game is shared by the
whole batch. NamedTuples are JAX pytrees: they flatten in field order, so `Carry` flattens to
the same leaves, in the same order, as the positional tuples run directories saved before.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from gamesim.core.metrics import Accumulators


class Games(NamedTuple):
    """The games' arrays: (C, n, n) and (C, n) shared, or with a leading axis B, one per run."""

    A: Any  # payoff 2P − 1
    log_ref: Any  # log π_ref


class Hyper(NamedTuple):
    """Per-run inputs of a trajectory. η_t = eta0/(1 + decay·t) (`dynamics.algorithms.step_sizes`)."""

    eta0: Any  # (B,)
    decay: Any  # (B,)
    tau: Any  # (B,) KL weight
    weights: Any  # (B, C) ρ, the context weights
    log_pi_star: Any  # (B, C, n) log of the equilibrium the metrics measure against
    pi_vn: Any  # (B, C, n) the von Neumann winner (dueling regret of sampled runs), or None
    params: dict  # name → (B,): the algorithm's hyperparameters


class Carry(NamedTuple):
    """What one run carries from step to step: the algorithm's state, the metric accumulators over
    π_0..π_t, and t. Its leaves are `Trajectory.state`, which `resume_from` continues."""

    state: Any
    acc: Accumulators
    t: Any


class MirrorCarry(NamedTuple):
    """`Carry`'s leaves when the algorithm's state is log π itself (the mirror chains the numba
    backend runs), in `Carry`'s flattening order; the numba backend's state (B, …) arrays."""

    log_pi: Any  # (B, C, n)
    plays: Any  # (B,) t + 1
    sum_pi: Any  # (B, C, n)
    sum_kl_ref: Any  # (B, C)
    sum_log_ratio: Any  # (B, C, n)
    sum_weighted_pi: Any  # (B, C, n)
    t: Any  # (B,)

    @property
    def records(self) -> tuple:
        """The fields the metrics of a record need (all but t)."""
        return self[:-1]
