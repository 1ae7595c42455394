r"""The papers' claims as executable checks (`gamesim verify`).

A claim names its source, the algorithm and conditions, what is measured and the bound (from
`theory`), and the games it is checked on. Its check runs gamesim and returns the worst
measured/bound ratio over the games: ≤ 1 is PASS. Observations (what a paper reports, not what it
proves) are labelled as such. Ratios allow 1e-13 of float64 rounding on the measured side.

Each check takes `algorithms`, a mapping name → Algorithm that replaces the registry's entries,
so a test can feed a deliberately wrong update and see the check FAIL.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import theory
from .algorithms import get_algorithm, theorem_schedule
from .engine import simulate
from .equilibria import solve
from .errors import GamesimError
from .games import load_game

ROUNDING = 1e-13


@dataclass(frozen=True)
class Claim:
    name: str
    source: str
    statement: str
    check: Callable  # (game, quick, algorithms) -> worst measured/bound ratio on that game
    games: tuple
    quick_games: tuple
    observation: bool = False


def _ratio(measured, bound) -> float:
    measured, bound = np.asarray(measured, float), np.asarray(bound, float)
    return float(np.max((measured - ROUNDING) / bound))


def _B(traj, game) -> float:
    """Assumption A's B: max over the iterates of |log(π_t/π_ref)| (every iterate recorded)."""
    return float(np.max(np.abs(np.log(traj.policies) - np.log(game.reference))))


def _D(game) -> float:
    return float(np.log(1 / game.reference.min()))


def _alg(algorithms, name):
    return algorithms.get(name, get_algorithm(name))


# --- checks ------------------------------------------------------------------------------------------
def _inpo_lemma5(game, quick, algorithms):
    import jax
    import jax.numpy as jnp

    from .losses import inpo_population_loss

    eta, tau = 0.5, 0.2
    with jax.enable_x64(True):
        A, log_ref = jnp.asarray(game.payoff[0]), jnp.log(jnp.asarray(game.reference))
        log_pi_t = jax.nn.log_softmax(jnp.asarray(np.random.default_rng(game.n).standard_normal(game.n)))
        loss = lambda x: inpo_population_loss(x, log_pi_t, log_ref, A, eta, tau)
        x = log_pi_t - jnp.linalg.pinv(jax.hessian(loss)(log_pi_t), rtol=1e-12) @ jax.grad(loss)(log_pi_t)
        step = _alg(algorithms, "inpo").step(log_pi_t[None], A[None], log_ref[None], eta, tau, 0.0, {})[0]
        error = float(jnp.max(jnp.abs(jnp.exp(jax.nn.log_softmax(x)) - jnp.exp(step))))
    return error / 1e-8


def _inpo_theorem3(game, quick, algorithms):
    T, tau, D = (2000 if quick else 20000), 0.1, _D(game)
    eta = theory.inpo_theorem3_eta(T, tau, D, B=0.0)  # C = max(Bτ, 1) = 1; checked below
    traj = simulate(game, _alg(algorithms, "inpo"), eta=eta, tau=tau, iterations=T)
    B, plays = _B(traj, game), traj.iterations[1:] + 1  # at T = 1 the first two hold with equality
    m = {k: v[1:] for k, v in traj.metrics.items()}
    return max(_ratio(m["gap_reg_avg"], 2 * m["regret"] / plays),
               _ratio(m["regret"], m["linear_regret"]),
               _ratio(2 * m["linear_regret"] / plays, theory.inpo_theorem3_bound(plays, eta, tau, D, B)))


def _kl_recursion(kl, eta_t, step_bound):
    return _ratio(kl[1:], step_bound(kl[:-1], eta_t))


def _inpo_theorem4(game, quick, algorithms):
    # τ = 0.5: the constant 32C²/τ² makes the rate vacuous for T ≲ 32C²/(τ² KL); here it bites
    T, tau = (5000 if quick else 20000), 0.5
    alg = _alg(algorithms, "inpo")  # constant η = 1 (ητ = 0.1), then the theorem's schedule
    const = simulate(game, alg, eta=1.0, tau=tau, iterations=T)
    B = _B(const, game)
    r_const = _kl_recursion(const.metrics["kl_to_eq"], 1.0, lambda kl, e: theory.inpo_theorem4_step(kl, e, tau, B))
    sched = simulate(game, alg, tau=tau, schedule="theorem", iterations=T)
    B, t = _B(sched, game), sched.iterations
    kl = sched.metrics["kl_to_eq"]
    r_sched = _kl_recursion(kl, theorem_schedule(tau, t[:-1]), lambda k, e: theory.inpo_theorem4_step(k, e, tau, B))
    return max(r_const, r_sched, _ratio(kl[1:], theory.inpo_theorem4_rate(t[1:], tau, B)))


def _nash_md_theorem1(game, quick, algorithms):
    T, tau = (1000 if quick else 5000), 0.1
    traj = simulate(game, _alg(algorithms, "nash-md"), tau=tau, schedule="theorem", iterations=T)
    t, kl = traj.iterations, traj.metrics["kl_to_eq"]
    return max(_kl_recursion(kl, theorem_schedule(tau, t[:-1]), lambda k, e: theory.nash_md_step(k, e, tau)),
               _ratio(kl[1:], theory.nash_md_rate(t[1:], tau)))


def _sppo_theorem41(game, quick, algorithms):
    T, D = (2000 if quick else 20000), _D(game)
    eta = np.sqrt(8 * D / T)  # η = Θ(1/√T), the minimizer of the bound at T
    traj = simulate(game, _alg(algorithms, "sppo"), eta=eta, iterations=T, record_every=10)
    plays = traj.iterations + 1
    return _ratio(traj.metrics["gap_avg"], theory.hedge_average_gap_bound(plays, eta, D))


def _mmd_theorem34(game, quick, algorithms):
    tau = 0.2
    eta = theory.mmd_max_eta(tau, game.payoff)
    traj = simulate(game, _alg(algorithms, "mmd"), eta=eta, tau=tau, iterations=300)
    kl = traj.metrics["kl_to_eq"]
    return _ratio(kl[1:], theory.mmd_rate(traj.iterations[1:], eta, tau, kl[0]))


def _nash_md_bias(game, quick, algorithms):
    eta, tau = 1.0, 0.2
    beta = eta * tau
    pi = simulate(game, _alg(algorithms, "nash-md"), eta=eta, tau=tau, iterations=5000 if quick else 20000,
                  record_every=1000).policies[-1]
    mix = pi ** (1 - beta) * game.reference ** beta
    mix /= mix.sum()
    fixed = game.reference * np.exp(game.P @ mix / tau)
    residual = np.abs(pi - fixed / fixed.sum()).max()
    distance = np.abs(pi - solve(game, tau).policy).max()
    return max(residual / 1e-10, 1e-6 / distance)


def _online_ipo_prop41(game, quick, algorithms):
    tau, alg = 0.2, _alg(algorithms, "online-ipo")
    star = solve(game, tau).policy
    stay = simulate(game, alg, eta=2.0, tau=tau, iterations=1, init=star).policies[-1]
    kl = simulate(game, alg, eta=2.0, tau=tau, iterations=20000, record_every=20000).metrics["kl_to_eq"]
    return max(np.abs(stay - star).max() / 1e-13, kl[-1] / (1e-6 * kl[0]))


def _refresh_last_iterate(game, quick, algorithms):
    eta, tau, T = 0.5, 0.1, 8000
    gaps = [simulate(game, _alg(algorithms, name), eta=eta, tau=tau, iterations=T, record_every=T).metrics["gap"][-1]
            for name in ("comal", "mpo")]
    inpo = simulate(game, _alg(algorithms, "inpo"), eta=eta, tau=tau, iterations=T, record_every=T).metrics["gap"][-1]
    floor = solve(game, tau)
    from .metrics import duality_gap

    floor = duality_gap(game, floor.policy, 0.0)
    return max(max(gaps) / 1e-8, abs(inpo - floor) / 1e-9, 1e-3 / floor)


def _hedge_cycles(game, quick, algorithms):
    T = 3000 if quick else 20000
    traj = simulate(game, _alg(algorithms, "sppo"), eta=0.5, iterations=T, record_every=T // 100,
                    init=[0.6, 0.3, 0.1])
    gaps = traj.metrics["gap"]
    return 0.1 / gaps[len(gaps) // 2:].min()


# --- registry ------------------------------------------------------------------------------------------
RANDOM = ("random:n=10,seed=0", "random:n=10,seed=1", "random:n=50,seed=2,ref_seed=3")
SKEW = ("skew:n=20,rank=4,seed=0", "skew:n=100,rank=6,scale=2.0,seed=1")
ALL = ("cycle3", "rps:ref_seed=1", "biased_rps", *RANDOM, *SKEW, "soccer", "rrps")
QUICK = ("cycle3", "random:n=10,seed=0")

CLAIMS: dict[str, Claim] = {c.name: c for c in [
    Claim("inpo-lemma5", "INPO Lemma 5 / Prop. 6",
          "argmin_π of the population loss (eq. 8) = the OMD step (eq. 5), to 1e-8",
          _inpo_lemma5, ALL, QUICK),
    Claim("inpo-thm3", "INPO Theorem 3 (Lemma 2)",
          "DualGap_τ(π̄_T) ≤ 2 Regret_T/T ≤ 2 LinRegret_T/T ≤ 2[D/(ηT) + (4τ²B² + 1)η], η = √D/(max(Bτ,1)√T)",
          _inpo_theorem3, ALL, QUICK),
    Claim("inpo-thm4", "INPO Theorem 4",
          "KL_{t+1} ≤ (1 − ητ)KL_t + 8C²η² (η = 1/η_INPO, C = max(Bτ, 1)); with η_t = 2/(τ(t+2)), "
          "KL(π*_τ‖π_T) ≤ 32C²/(τ²(T+1))", _inpo_theorem4, ALL, QUICK),
    Claim("nash-md-thm1", "Nash-MD (NLHF) Theorem 1, eq. 6",
          "KL_{t+1} ≤ (1 − η_tτ)KL_t + 2η_t² and KL(π*_τ‖π_T) ≤ 8/(τ²(T+1)) for η_t = 2/(τ(t+2))",
          _nash_md_theorem1, ALL, QUICK),
    Claim("sppo-thm41", "SPPO Theorem 4.1 (Freund & Schapire 1999)",
          "DualGap_0(π̄_T) ≤ 2(D/(ηT) + η/8), D = log(1/min π_0), η = √(8D/T)",
          _sppo_theorem41, ALL, QUICK),
    Claim("mmd-thm34", "MMD Theorem 3.4 (Sokota et al. 2023)",
          "KL(π*_τ‖π_t) ≤ (1 + ητ)^{−t} KL(π*_τ‖π_0) at η = τ/L², L = max|A|",
          _mmd_theorem34, ALL, QUICK),
    Claim("nash-md-bias", "Calandriello et al. 2024, eq. 13",
          "constant-step Nash-MD converges to π ∝ π_ref exp(Pπ'/τ), π' ∝ π^{1−ητ}π_ref^{ητ} (residual ≤ 1e-10), "
          "at least 1e-6 away from π*_τ", _nash_md_bias,
          ("cycle3", "biased_rps", *RANDOM, *SKEW, "soccer"), QUICK),
    Claim("online-ipo-prop41", "Calandriello et al. 2024, Prop. 4.1",
          "π*_τ is stationary for online IPO's expected dynamics (one step moves it ≤ 1e-13), and "
          "2·10⁴ steps from π_ref shrink KL(π*_τ‖π_t) 10⁶-fold", _online_ipo_prop41, ALL, QUICK),
    Claim("refresh-last-iterate", "COMAL (Liu et al. 2024) Thm. 1; MPO (Wang et al. 2024) Thm. 3.4",
          "COMAL and MPO: last-iterate DualGap_0 < 1e-8; INPO's stays at DualGap_0(π*_τ) > 1e-3",
          _refresh_last_iterate, ("cycle3",), ("cycle3",)),
    Claim("hedge-cycles", "SPPO / MWU; COMAL §5",
          "Hedge's last iterate does not converge: DualGap_0 ≥ 0.1 over the second half of the run",
          _hedge_cycles, ("cycle3", "rps"), ("cycle3", "rps"), observation=True),
]}


@dataclass
class Result:
    claim: Claim
    ratios: dict  # game → ratio
    seconds: float

    @property
    def worst(self) -> float:
        return max(self.ratios.values())

    @property
    def passed(self) -> bool:
        return bool(np.isfinite(self.worst) and self.worst <= 1)


def verify(names=None, quick: bool = False, algorithms: dict | None = None) -> list[Result]:
    """Run the named claims (all by default) on their games; see `CLAIMS`."""
    import difflib

    names = list(CLAIMS) if not names else names
    for name in names:
        if name not in CLAIMS:
            close = difflib.get_close_matches(name, list(CLAIMS), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise GamesimError(f"unknown claim {name!r}{hint}; claims: {', '.join(CLAIMS)}")
    results = []
    for name in names:
        claim = CLAIMS[name]
        t0 = time.perf_counter()
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = {spec: float(claim.check(load_game(spec), quick, algorithms or {}))
                      for spec in (claim.quick_games if quick else claim.games)}
        results.append(Result(claim, ratios, time.perf_counter() - t0))
    return results
