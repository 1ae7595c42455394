r"""Realistic wrong variants of the algorithms, and which claims reject them (`gamesim verify --mutants`).

A check is only as good as the wrong answers it rejects. Each `Mutant` is a bug people make when
implementing an update: a step size halved or doubled, the KL weight off, τ forgotten, the
preference scaled, INPO's inverse η used as a learning rate, the theorem's schedule off by one,
a mixture with the wrong weight or in the wrong direction, the wrong opponent, another method's
update, or the average iterate computed without π_0. `kill_matrix` runs every claim about a
mutant's algorithm with the mutant in its place (`claims.verify(algorithms=…)`) and records which
claims fail on it (kill it). Every mutant must be killed by at least one claim about its own
algorithm, while the correct updates pass every claim.

Generic mutants rewrite the arguments a step is called with, so they apply to any algorithm, a
user's own included (`mutants_of`); the specific ones rebuild a step from `updates`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import jax
import jax.numpy as jnp
import numpy as np

from gamesim.dynamics import updates as u
from gamesim.dynamics.algorithms import get_algorithm, refreshing
from gamesim.studies.claims import CLAIMS, _gap, _stacked, check_claim, run, select


@dataclass(frozen=True)
class Mutant:
    """A wrong variant of the algorithm `algorithm`: `make` turns the right Algorithm into the
    wrong one; or `runner` wraps how a check's runs are made (a wrong reading of the trajectory)."""

    name: str
    algorithm: str
    make: Callable | None = None
    runner: Callable | None = None

    def apply(self) -> tuple[dict, Callable]:
        """(algorithms to substitute, runner) for `claims.check_claim`."""
        alg = get_algorithm(self.algorithm)
        substitute = {self.algorithm: self.make(alg)} if self.make else {}
        return substitute, self.runner(run) if self.runner else run


def _step(rewrite: Callable) -> Callable:
    """A `make` that wraps the algorithm's step: rewrite(step) → wrong step."""
    return lambda alg: dataclasses.replace(alg, step=rewrite(alg.step))


def _replace(**fields) -> Callable:
    return lambda alg: dataclasses.replace(alg, **fields)


GENERIC = {
    "step ×½": (lambda a: a.learning_rate, _step(lambda f: lambda s, A, r, eta, tau, t, p: f(s, A, r, eta / 2, tau, t, p))),
    "step ×2": (lambda a: a.learning_rate, _step(lambda f: lambda s, A, r, eta, tau, t, p: f(s, A, r, 2 * eta, tau, t, p))),
    "inverse η as the learning rate": (lambda a: a.learning_rate,
                                       _step(lambda f: lambda s, A, r, eta, tau, t, p: f(s, A, r, 1 / eta, tau, t, p))),
    "KL weight ×1.5": (lambda a: a.uses_tau,
                       _step(lambda f: lambda s, A, r, eta, tau, t, p: f(s, A, r, eta, 1.5 * tau, t, p))),
    "τ ignored": (lambda a: a.uses_tau, _step(lambda f: lambda s, A, r, eta, tau, t, p: f(s, A, r, eta, 0.0, t, p))),
    "preference scaled ×1.5": (lambda a: True,
                               _step(lambda f: lambda s, A, r, eta, tau, t, p: f(s, 1.5 * A, r, eta, tau, t, p))),
    "schedule off by one (t+1 for t+2)": (lambda a: "theorem" in a.schedules,
                                          _step(lambda f: lambda s, A, r, eta, tau, t, p:
                                                f(s, A, r, eta * (t + 2) / (t + 1), tau, t, p))),
}
"""name → (applies to the algorithm?, make)."""


def _opponent_mixture(weight: Callable) -> Callable:
    """Nash-MD whose opponent is the mixture π_t^{1−c}π_ref^c at c = weight(η, τ), the KL centre
    staying π_t^{1−ητ}π_ref^{ητ}: c = ητ is Nash-MD (eqs. 3–4), c = 0 is OMD."""
    def step(s, A, r, eta, tau, t, p):
        c = weight(eta, tau)
        opponent = jnp.exp(jax.nn.log_softmax((1 - c) * s + c * r, axis=-1))
        return jax.nn.log_softmax(u.mirror_logits(s, r, u.matvec(A, opponent), eta, tau), axis=-1)

    return _replace(step=step)


def _nash_md_mutants() -> dict:
    return {
        "mixture weight ητ/2 (EGPO's code)": _opponent_mixture(lambda eta, tau: eta * tau / 2),
        "mixture reversed (π_t^{ητ}π_ref^{1−ητ})": _opponent_mixture(lambda eta, tau: 1 - eta * tau),
        "opponent π_t instead of the mixture (OMD)": _opponent_mixture(lambda eta, tau: 0.0),
    }


def _average_without_first(runner: Callable) -> Callable:
    """Runs as `runner`, but the average-iterate metrics are those of the mean of π_1..π_t (π_0
    left out, the bug), recomputed from every iterate and then read at the requested records."""
    def wrapped(game, algorithm, batch=False, **kwargs):
        k = kwargs.pop("record_every", 1)
        traj = runner(game, algorithm, batch=batch, record_every=1, **kwargs)
        taus = np.broadcast_to(np.asarray(kwargs.get("tau", 0.0), float), (len(traj.policies),) if batch else ())
        metrics = {name: np.array(v) for name, v in traj.metrics.items()}
        for b in (range(len(traj.policies)) if batch else [None]):
            pis = _stacked(game, traj.policies[b] if batch else traj.policies)
            played = np.arange(len(pis))[:, None, None]
            mean = np.concatenate([pis[:1], np.cumsum(pis[1:], axis=0) / played[1:]])
            tau = float(taus[b] if batch else taus)
            for name, t in (("gap_avg", 0.0), ("gap_reg_avg", tau)):
                (metrics[name] if b is None else metrics[name][b])[...] = _gap(game, mean, t)
        keep = slice(None, None, k)
        return dataclasses.replace(traj, iterations=traj.iterations[keep],
                                   policies=traj.policies[:, keep] if batch else traj.policies[keep],
                                   metrics={n: v[..., keep] for n, v in metrics.items()})

    return wrapped


def _specific() -> list[Mutant]:
    """The mutants that need an algorithm's internals."""
    out = [Mutant(name, "nash-md", make) for name, make in _nash_md_mutants().items()]
    out += [Mutant("Nash-MD's update (another method)", name, _replace(step=get_algorithm("nash-md").step,
                                                                  params=get_algorithm("nash-md").params))
            for name in ("inpo", "omd")]
    out += [Mutant("MMD's update at the same η (another method)", "omd",
                   _replace(step=lambda s, A, r, eta, tau, t, p: u.mmd_update(s, A, r, eta, tau)))]
    out += [Mutant("average iterate without π_0", name, runner=_average_without_first)
            for name in ("inpo", "sppo", "dno", "iterative-ipo")]
    out += [Mutant("replicator's update (another method)", name,
                   _replace(step=lambda s, A, r, eta, tau, t, p: u.replicator_update(s, A, eta)))
            for name in ("sppo", "dno", "iterative-ipo")]
    out += [
        Mutant("second step from the half step", "extragradient",
               _replace(step=lambda s, A, r, eta, tau, t, p: u.omd_update(u.omd_update(s, A, r, eta, tau), A, r, eta,
                                                                           tau))),
        Mutant("no extrapolation (OMD)", "extragradient", _replace(step=get_algorithm("omd").step)),
        Mutant("no optimism (OMD)", "optimistic-omd",
               _replace(step=lambda s, A, r, eta, tau, t, p: (u.omd_update(s[0], A, r, eta, tau),
                                                               u.matvec(A, jnp.exp(s[0]))))),
        Mutant("previous scores never updated", "optimistic-omd",
               _replace(step=lambda s, A, r, eta, tau, t, p: (u.optimistic_omd_update(s[0], s[1], A, r, eta, tau)[0],
                                                               s[1]))),
        Mutant("plain OMD at η (no 1/(1 + ηα))", "mmd", _replace(step=get_algorithm("omd").step)),
        Mutant("magnet dropped", "mmd",
               _replace(step=lambda s, A, r, eta, tau, t, p: u.mmd_update(s, A, 0.0 * r, eta, tau))),
        Mutant("OMD's update (another method)", "online-ipo", _replace(step=get_algorithm("omd").step)),
        Mutant("weights π_ref instead of π_t", "online-ipo",
               _replace(step=lambda s, A, r, eta, tau, t, p: jax.nn.log_softmax(
                   s + eta * u.self_play_gradient(s, A, r, tau, s, jnp.exp(r)), axis=-1))),
        Mutant("mixture reversed (β → 1 − β)", "ipo-md",
               _replace(step=lambda s, A, r, eta, tau, t, p: u.ipo_md_update(s, A, r, eta, tau, 1 - p["beta"]))),
        Mutant("opponent π_t (online IPO)", "ipo-md", _replace(step=get_algorithm("online-ipo").step)),
        Mutant("weights π_t (Nash-MD-PG's update)", "ipo-md", _replace(step=get_algorithm("nash-md-pg").step)),
        Mutant("mixture reversed (β → 1 − β)", "nash-md-pg",
               _replace(step=lambda s, A, r, eta, tau, t, p: u.nash_md_pg_update(s, A, r, eta, tau, 1 - p["beta"]))),
        Mutant("opponent π_t (β = 0)", "nash-md-pg",
               _replace(step=lambda s, A, r, eta, tau, t, p: u.nash_md_pg_update(s, A, r, eta, tau, 0.0))),
        Mutant("weights π' (IPO-MD's update)", "nash-md-pg", _replace(step=get_algorithm("ipo-md").step)),
        Mutant("momentum reversed (−α)", "apo", _apo_extrapolation(lambda hat, pi, a: (-a, hat))),
        Mutant("α ×1.5", "apo", _apo_extrapolation(lambda hat, pi, a: (1.5 * a, hat))),
        Mutant("extrapolated from π_t, not π̂_t", "apo", _apo_extrapolation(lambda hat, pi, a: (a, pi))),
        Mutant("no extrapolation (iterative DPO)", "apo", _apo_extrapolation(lambda hat, pi, a: (0.0, hat))),
        Mutant("Hedge on P (no Bradley-Terry fit)", "iterative-dpo",
               _replace(step=lambda s, A, r, eta, tau, t, p: (u.hedge_update(s[0], A, eta), s[1]))),
    ]
    out += [
        Mutant("α's sign flipped", "xpo", _replace(step=_xpo_mutant(alpha_sign=-1.0))),
        Mutant("optimism samples from π_t, not π_ref", "xpo", _replace(step=_xpo_mutant(optimism_from_policy=True))),
        Mutant("β halved", "xpo", _replace(step=_xpo_mutant(beta_factor=0.5))),
    ]
    for name, inner, other in (("comal", u.omd_update, u.mmd_update), ("mpo", u.mmd_update, u.omd_update)):
        out += [
            Mutant("never refreshed", name, _replace(**{**refreshing(inner), "step": _never_refreshed(inner)})),
            Mutant(f"inner step of {'MPO (MMD)' if name == 'comal' else 'COMAL (OMD)'}", name,
                   _replace(**refreshing(other))),
        ]
    return out


def _xpo_mutant(alpha_sign=1.0, optimism_from_policy=False, beta_factor=1.0):
    """XPO's step with α's sign flipped, the optimism term over π_t's samples instead of π_ref's, or β scaled."""
    def step(s, A, r, eta, tau, t, p):
        r = jnp.broadcast_to(r, s[0].shape)
        return u.optimistic_dpo_update(s[0], s[1], s[2], A, r, beta_factor * tau, alpha_sign * p["alpha"], t, r,
                                       s[0] if optimism_from_policy else r, False)

    return step


def _apo_extrapolation(wrong: Callable) -> Callable:
    """APO whose extrapolation is (1 + α') log π̂_{t+1} − α' log(base), (α', base) = wrong(π̂_t, π_t, α):
    (α, π̂_t) is Algorithm 1's."""
    def step(s, A, r, eta, tau, t, p):
        log_hat, log_pi, scores = s
        log_next, scores = u.iterative_dpo_update(log_pi, scores, A, eta)
        alpha, base = wrong(log_hat, log_pi, p["alpha"])
        return log_next, u.nesterov_extrapolation(log_next, base, alpha), scores

    return _replace(step=step)


def _never_refreshed(inner):
    def step(s, A, r, eta, tau, t, p):
        return inner(s[0], A, s[1], eta, tau), s[1], s[2] + 1

    return step


def mutants_of(name: str) -> list[Mutant]:
    """The mutant library's variants of the algorithm `name`: the generic ones that apply to it
    (any algorithm, a user's own included) and gamesim's specific ones."""
    alg = get_algorithm(name)
    generic = [Mutant(m, name, make) for m, (applies, make) in GENERIC.items() if applies(alg)]
    return generic + [m for m in _specific() if m.algorithm == name]


def library(algorithms=None) -> list[Mutant]:
    """Mutants of every algorithm some claim is about (or of the given algorithms)."""
    names = algorithms or list(dict.fromkeys(a for c in CLAIMS.values() for a in c.algorithms))
    return [m for name in names for m in mutants_of(name)]


@dataclass
class Row:
    """One mutant: claim name → "killed", "survived", "error: …" or "not run" (stopped at the first kill)."""

    mutant: Mutant
    verdicts: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def killed(self) -> bool:
        return any(v != "survived" and v != "not run" for v in self.verdicts.values())


def kill_matrix(quick: bool = False, claims=None, first_kill: bool = False, log=None, algorithms=None) -> list[Row]:
    """Run every claim about each mutant's algorithm with the mutant in its place (`gamesim verify --mutants`).

    A claim kills a mutant when any of its checks fails on any of its games (it stops at the first
    such game), or when the mutant makes the check raise.

    Args:
        quick: run the claims on their quick games.
        claims: claim names (default all), tried in this order; the mutants are those of the
            algorithms they are about.
        first_kill: move to the next mutant at the first claim that kills (faster, the more so the
            cheaper the claims tried first; the matrix then shows "not run" after it).
        log: called with one line per mutant as it finishes (e.g. print), or None.
        algorithms: only the mutants of these algorithms (default: all the claims are about), so
            that the matrix can be computed in parts.

    Returns:
        One Row per mutant: claim name → "killed", "survived", "error: …" or "not run".

    Raises:
        GamesimError: for an unknown claim name.
    """
    chosen = select(claims)
    rows = []
    about = [a for a in dict.fromkeys(a for c in chosen for a in c.algorithms) if algorithms is None or a in algorithms]
    for mutant in library(about) if about else []:
        t0, row = time.perf_counter(), Row(mutant)
        substitute, runner = mutant.apply()
        for claim in (c for c in chosen if mutant.algorithm in c.algorithms):
            if first_kill and row.killed:
                row.verdicts[claim.name] = "not run"
                continue
            try:
                result = check_claim(claim, quick, substitute, runner, stop_on_failure=True)
                row.verdicts[claim.name] = "survived" if result.passed else "killed"
            except Exception as exc:  # a mutant that breaks a check is caught by it
                row.verdicts[claim.name] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
        row.seconds = time.perf_counter() - t0
        if log:
            log(f"{mutant.algorithm:>16} · {mutant.name:<44} {'killed' if row.killed else 'SURVIVED'} "
                f"({row.seconds:.1f} s)")
        rows.append(row)
    return rows
