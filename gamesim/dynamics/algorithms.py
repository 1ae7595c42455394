r"""The algorithms gamesim runs: a registry of the updates in `updates`, with their
hyperparameters, valid ranges and what they converge to, plus the step-size converters.

Step-size convention: η is a learning rate everywhere in gamesim (the exponent is ηPπ). INPO, DNO
and COMAL write an *inverse* learning rate (exponent P/η_INPO, KL weight τ/η_INPO); SPPO writes
β = 1/η. Convert at the boundary with the helpers below.

An `Algorithm` is (init, step, log_policy) over a state pytree, so that methods with memory
(optimistic steps, magnet refreshes, fitted rewards) run in the same engine as memoryless ones.

Reading the registry loads no JAX (the command line builds its flags from it and lists it at
start-up): the built-in steps reach `updates` and jax.numpy through `_u` and `_jnp` when a run
first traces them.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass, field

from gamesim.core.errors import GamesimError
from gamesim.core.names import did_you_mean


# --- step-size converters ------------------------------------------------------------------------
def eta_from_inverse(eta_inverse: float) -> float:
    """gamesim's learning rate from INPO's / DNO's / COMAL's inverse learning rate: η = 1/η_INPO.

    Args:
        eta_inverse: the papers' η_INPO (exponent P/η_INPO, KL weight τ/η_INPO).

    Returns:
        η = 1/η_INPO, gamesim's learning rate (exponent ηPπ, KL weight ητ).

    References:
        INPO (Zhang et al. 2024) eq. 5; DNO (Rosset et al. 2024) eq. 9; COMAL (Liu et al. 2024) Alg. 1.
    """
    return 1.0 / eta_inverse


def eta_to_inverse(eta: float) -> float:
    """INPO's / DNO's / COMAL's inverse learning rate from gamesim's η: η_INPO = 1/η.

    Args:
        eta: gamesim's learning rate η.

    Returns:
        η_INPO = 1/η, the inverse learning rate of the papers below.

    References:
        INPO (Zhang et al. 2024) eq. 5; DNO (Rosset et al. 2024) eq. 9; COMAL (Liu et al. 2024) Alg. 1.
    """
    return 1.0 / eta


def eta_from_sppo_beta(beta: float) -> float:
    """gamesim's η from SPPO's β (their loss uses β = 1/η): η = 1/β.

    Args:
        beta: SPPO's β, the inverse step of its loss (log π/π_t − (P̂ − 1/2)/β)².

    Returns:
        η = 1/β (SPPO's runs: β = 1e-3, η = 1e3).

    References:
        SPPO (Wu et al. 2024) eqs. 4.1 and 4.6–4.7.
    """
    return 1.0 / beta


def eta_to_sppo_beta(eta: float) -> float:
    """SPPO's β from gamesim's η: β = 1/η.

    Args:
        eta: gamesim's learning rate η.

    Returns:
        SPPO's β = 1/η.

    References:
        SPPO (Wu et al. 2024) eqs. 4.1 and 4.6–4.7.
    """
    return 1.0 / eta


EGPO_METHODS = ("online-ipo-1", "online-ipo-2", "nash-md", "nash-md-pg", "egpo")
"""The five methods of EGPO's tabular study (`zhourunlong/EGPO`, simulations/loss_funcs.py)."""


def egpo_settings(method: str, *, lr: float, beta: float, n: int, samples: int | None = None) -> tuple[str, dict]:
    r"""gamesim's algorithm and `simulate` keywords for one of EGPO's methods run as EGPO runs it:
    plain SGD at learning rate `lr` on the tabular logits θ (n actions), KL weight `beta`, exact
    losses (Zhou et al. 2025, code `simulations/loss_funcs.py`; d = log π − log π_ref, s = P sg(π)).
    Derived (each gradient in closed form; tests/test_algorithms.py checks one step of each against
    autodiff of a transcription of EGPO's loss):

    - "online-ipo-1", loss (1/n²) Σ_{y,y'} (d_y − d_{y'} − (s_y − s_{y'})/β)²: ∇_θ = (4/n)(e − ē),
      e = θ − log π_ref − s/β, so θ ← (1 − ητ)θ + ητ log π_ref + η Pπ with η = 4 lr/(nβ), τ = β: `omd`.
    - "egpo": the same loss with s taken at the half step π_{t+1/2}: `extragradient` at the same η.
    - "online-ipo-2", loss Σ π_y π_{y'} (d_y − d_{y'} − (P_{yy'} − ½)/β)²: ∇_θ = −(4/β) π ⊙ (Aπ − βd
      − ⟨π, Aπ − βd⟩), the online IPO direction: `online-ipo` at η = 4 lr/β, τ = β.
    - "nash-md", the first loss with s = Pπ^ω, π^ω ∝ π^{1−ω} π_ref^ω, ω = true_lr·β = 2 lr/n: `nash-md` at
      η = 4 lr/(nβ), τ = β and ω = ητ/2 (mix_ratio = 1/2; the paper's Nash-MD has ω = ητ).
    - "nash-md-pg", loss −Σ_y sg(π_y)((Pπ^ω)_y − β sg(d_y)) log π_y at the same ω:
      ∇_θ = −π ⊙ (g − ⟨π, g⟩), g = Aπ^ω − βd: `nash-md-pg` at η = lr, τ = β, mixture weight ω.

    Start from π_0 = π_ref (`init="reference"`), as EGPO does.

    Args:
        method: one of EGPO_METHODS.
        lr: EGPO's SGD learning rate, > 0.
        beta: EGPO's KL weight β, > 0 (gamesim's τ).
        n: the number of actions, ≥ 2 (the uniform samplers' 1/n² sets η).
        samples: EGPO's sampled variant with that many samples per step (its runs: 100): sampled
            feedback with `recipe="egpo"` and the soft oracle (EGPO reads P itself), whose expected
            step is the exact one (`gamesim.bandit.sampled`); None for the exact losses.

    Returns:
        (algorithm name, `simulate` keywords: eta, tau and the algorithm's hyperparameters, plus
        the sampling options when `samples` is given).

    References:
        Zhou et al. 2025 (EGPO), `zhourunlong/EGPO` simulations/loss_funcs.py; Calandriello et al.
        2024 eq. 11 (online IPO); Munos et al. 2023 eqs. 3–4 and §7 (Nash-MD, Nash-MD-PG).
    """
    if method not in EGPO_METHODS:
        raise GamesimError(f"EGPO's methods are {', '.join(EGPO_METHODS)}; got {method!r}")
    for name, value in (("lr", lr), ("beta", beta)):
        if not (_is_number(value) and value > 0):
            raise GamesimError(f"egpo_settings: {name} must be a finite number > 0, got {value!r}")
    if not (isinstance(n, numbers.Integral) and not isinstance(n, bool) and n >= 2):
        raise GamesimError(f"egpo_settings: n is the number of actions, an integer ≥ 2, got {n!r}")
    if samples is not None and not (isinstance(samples, numbers.Integral) and samples >= 1):
        raise GamesimError(f"egpo_settings: samples is a count ≥ 1 (EGPO's runs: 100), got {samples!r}")
    mirror = {"eta": 4 * lr / (n * beta), "tau": beta}
    name, kwargs = {"online-ipo-1": ("omd", mirror),
                    "egpo": ("extragradient", mirror),
                    "online-ipo-2": ("online-ipo", {"eta": 4 * lr / beta, "tau": beta}),
                    "nash-md": ("nash-md", {**mirror, "mix_ratio": 0.5}),
                    "nash-md-pg": ("nash-md-pg", {"eta": lr, "tau": beta, "beta": 2 * lr / n})}[method]
    if samples is not None:
        kwargs = {**kwargs, "feedback": "sampled", "recipe": "egpo", "pairs": samples, "oracle": "soft"}
    return name, kwargs


def theorem_schedule(tau: float, t):
    """η_t = 2/(τ(t+2)), t = 0, 1, …: Nash-MD Theorem 1 and INPO Theorem 4 (η_0 τ = 1)."""
    return 2.0 / (tau * (t + 2))


def step_sizes(schedule: str, eta, tau: float) -> tuple[float, float]:
    """(η_0, d) with η_t = η_0/(1 + d·t), the form the engine compiles: "constant" is (η, 0);
    "theorem" is (1/τ, 1/2), which is `theorem_schedule`'s 2/(τ(t+2))."""
    return (1 / tau, 0.5) if schedule == "theorem" else (eta, 0.0)


MIN_ETA, MAX_ETA = 1e-12, 1e12
"""The learning rates accepted: below 1e-12 a step ηAπ is within a few thousand float64 roundings
of log π; above 1e12 the logits of a long run overflow."""


def _is_number(x) -> bool:
    """A finite real number, Python's or numpy's (not a bool)."""
    return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


# --- registry --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Param:
    """A hyperparameter of an algorithm (or of the sampled feedback): one per name, and each
    becomes a `gamesim run` flag (`--NAME`, help from `doc`) and a study key.

    Args:
        default: the value when none is given.
        low, high: the closed valid range, checked by `Algorithm.resolve_params`.
        doc: what it means, one line (the flag's help and the error message quote it).
        integer: whether only whole numbers are valid (the flag then parses an int).
    """

    default: float
    low: float
    high: float
    doc: str
    integer: bool = False


def _u():
    """`gamesim.dynamics.updates`, imported when a run first traces a built-in step."""
    from gamesim.dynamics import updates  # loads JAX, which reading the registry must not (CLI start-up)

    return updates


def _jnp():
    """jax.numpy, imported when a run first traces a built-in step's init (as `_u`)."""
    import jax.numpy as jnp  # loads JAX, which reading the registry must not (CLI start-up)

    return jnp


def _policy_is_state(log_pi0, A, log_ref, key):
    return log_pi0


def _first(state):
    return state[0]


def _identity(state):
    return state


@dataclass(frozen=True, eq=False)
class Algorithm:
    """A self-play method for the engine.

    This class is the public way to bring your own method: give `step` (a pure jax.numpy function
    of the signature below), its hyperparameters as `Param`s with their valid ranges, and a
    citation; pass the object to `simulate`, or `register_algorithm` it to use it by name.
    Compiled loops are cached per Algorithm object (identity), so a modified copy gets its own;
    the engine's numba path runs only the registered steps it knows (`numba_chain`).

    Args:
        name: its registry name (letters, digits, '-', '_').
        step: step(state, A, log_ref, eta, tau, t, params) → state, with t the iteration (0, 1, …)
            and params the resolved hyperparameters (a dict of floats).
        citation: the paper and equation it implements.
        converges_to: what the iterates converge to, in words (`gamesim algorithms` prints it).
        init: init(log_pi0, A, log_ref, key) → state (key: the run's PRNG key, for sampled
            feedback); default: the log-policy itself.
        log_policy: log_policy(state) → (C, n); default: the state itself.
        params: name → `Param`, its hyperparameters.
        learning_rate: False for methods without η (fictitious play).
        kl_bounded: whether η·τ ≤ 1 is required (the weight 1 − ητ on log π_t stays ≥ 0).
        eta_below: an exclusive upper bound on η, if any (replicator dynamics: 2).
        schedules: the step-size schedules it takes ("constant", "theorem").
        target: the equilibrium `kl_to_eq` measures, "regularized" (π*_τ) or "original" (τ = 0).
        uses_tau: False when τ only selects the game the metrics measure (the mutation library
            skips its τ mutants then).
        default_init: π_0 when `simulate` gets init=None ("reference", "uniform").
        queries_per_step: preference queries one step makes (0 for exact methods; a `queries`
            metric is recorded when > 0).
        needs_tau: whether τ > 0 is required (a loss that divides by τ).
        query_count: query_count(params) → the queries one step makes, for a method whose count
            depends on its hyperparameters (the `queries` metric then uses it; queries_per_step > 0
            still marks the method as sampled).
        divergence: the f-divergence in place of KL in the game its `target` and its τ-regularized
            metrics refer to ("forward-kl", "js", "alpha", `gamesim.core.divergences`; α is then the
            run's "alpha" hyperparameter); None: KL.
        check_game: check_game(game, tau, params) raises GamesimError for a game on which the
            method is undefined (XPO/VPO: no minimizer); None: none.

    References:
        Each built-in's `citation`; the engine's signature is documented in docs/howto/own_method.md.
    """

    name: str
    step: Callable
    citation: str
    converges_to: str
    init: Callable = _policy_is_state
    log_policy: Callable = _identity
    params: dict = field(default_factory=dict)
    learning_rate: bool = True
    kl_bounded: bool = True
    eta_below: float | None = None
    schedules: tuple = ("constant",)
    target: str = "regularized"
    uses_tau: bool = True
    default_init: str = "reference"
    queries_per_step: int = 0
    needs_tau: bool = False
    query_count: Callable | None = None
    divergence: str | None = None
    check_game: Callable | None = None

    def queries(self, params: dict) -> float:
        """The preference queries one step makes with these (resolved) hyperparameters."""
        return float(self.query_count(params) if self.query_count is not None else self.queries_per_step)

    def divergence_of(self, params: dict):
        """(name, α) of the regularizer for a run with hyperparameters `params`, or None for KL."""
        if self.divergence is None:
            return None
        return self.divergence, params.get("alpha") if self.divergence == "alpha" else None

    def resolve_params(self, given: dict) -> dict:
        """The full hyperparameters: `given` checked against `params`, defaults filled in."""
        for key in given:
            if key not in self.params:
                hint = did_you_mean(key, self.params)
                takes = ", ".join(self.params) or "no hyperparameters"
                raise GamesimError(f"{self.name} has no hyperparameter {key!r}{hint}; it takes {takes}")
        out = {}
        for key, p in self.params.items():
            value = given.get(key, p.default)
            if not (_is_number(value) and p.low <= value <= p.high) or (p.integer and value != int(value)):
                kind = "an integer" if p.integer else "a number"
                raise GamesimError(f"{self.name}: {key} must be {kind} in [{p.low:g}, {p.high:g}] "
                                   f"({p.doc}); got {value!r}")
            out[key] = float(value)
        return out

    def check(self, eta, tau: float, schedule: str) -> None:
        """Raise GamesimError unless (η, τ, schedule) is in this algorithm's valid range."""
        if self.needs_tau and not tau > 0:
            raise GamesimError(f"{self.name} needs tau > 0 (its loss divides by τ)")
        if schedule not in self.schedules:
            raise GamesimError(f"{self.name} takes schedule {' or '.join(map(repr, self.schedules))}, "
                               f"not {schedule!r}")
        if not self.learning_rate:
            if eta is not None:
                raise GamesimError(f"{self.name} has no learning rate; drop eta")
            return
        if schedule == "theorem":
            if eta is not None:
                raise GamesimError("schedule 'theorem' sets η_t = 2/(τ(t+2)) itself; do not also give eta")
            if not tau > 0:
                raise GamesimError("schedule 'theorem' (η_t = 2/(τ(t+2))) needs tau > 0")
            return
        if eta is None:
            raise GamesimError(f"{self.name} needs a learning rate eta")
        if not (_is_number(eta) and MIN_ETA <= eta <= MAX_ETA):
            raise GamesimError(f"the learning rate eta must be a number in [{MIN_ETA:g}, {MAX_ETA:g}], got {eta!r}: "
                               "outside it a step is lost in float64 rounding, or overflows the logits")
        if self.eta_below is not None and eta >= self.eta_below:
            raise GamesimError(f"{self.name} needs eta < {self.eta_below:g} (every factor 1 + η(Aπ)_y "
                               f"must stay positive); got eta={eta}")
        if self.kl_bounded and eta * tau > 1:
            raise GamesimError(
                f"{self.name} needs eta·tau ≤ 1 (the weight 1 − ητ on log π_t must be ≥ 0); got "
                f"eta={eta}, tau={tau}, eta·tau={eta * tau:g}. Use eta ≤ {1 / tau:g}. If your eta is "
                "INPO's inverse learning rate, convert it: eta = 1/eta_INPO")


def _omd(s, A, log_ref, eta, tau, t, p):
    return _u().omd_update(s, A, log_ref, eta, tau)


def _mmd(log_pi, A, log_magnet, eta, tau):
    return _u().mmd_update(log_pi, A, log_magnet, eta, tau)


def _omd_inner(log_pi, A, log_magnet, eta, tau):
    return _u().omd_update(log_pi, A, log_magnet, eta, tau)


def _hedge(s, A, log_ref, eta, tau, t, p):
    return _u().hedge_update(s, A, eta)


def _nash_md(s, A, log_ref, eta, tau, t, p):
    return _u().nash_md_update(s, A, log_ref, eta, tau, p["mix_ratio"] * eta * tau)


NUMBA_CHAINS = {_omd: "omd", _hedge: "hedge", _nash_md: "nash-md"}
"""The registered steps that are a chain of KL mirror steps, which the engine can also run as a
numba loop (`numba_engine`), keyed by the step function itself."""


def numba_chain(alg: Algorithm, params=()) -> str | None:
    """"omd", "hedge" or "nash-md" when `alg` provably runs that registered chain of mirror steps
    with exact feedback: its step, init and log_policy are the registered functions themselves
    (so a copy with another step, `dataclasses.replace(alg, step=…)`, has none) and every run's
    hyperparameters (`params`, a list of dicts) are the chain's (Nash-MD's mixture at ητ); None otherwise."""
    if alg.init is not _policy_is_state or alg.log_policy is not _identity or alg.queries_per_step:
        return None
    if any(p.get("mix_ratio", 1.0) != 1.0 for p in params):
        return None
    return NUMBA_CHAINS.get(alg.step)


def refreshing(inner):
    """The fields of a magnet-refresh method (MPO, COMAL) around `inner(log π, A, log magnet, η, τ)`,
    a step towards the magnet's regularized equilibrium: `Algorithm(name, citation=…,
    converges_to=…, **refreshing(inner))`. State (log π, log magnet, steps since the last reset)."""

    def init(log_pi0, A, log_ref, key):
        return log_pi0, _jnp().broadcast_to(log_ref, log_pi0.shape), _jnp().zeros(log_pi0.shape[:-1], log_pi0.dtype)

    def step(s, A, log_ref, eta, tau, t, p):
        log_pi = inner(s[0], A, s[1], eta, tau)
        return (log_pi, *_u().refresh_magnet(log_pi, s[1], s[2], A, tau, p["refresh_every"], p["refresh_gap"]))

    return {"init": init, "step": step, "log_policy": _first,
            "params": {"refresh_every": Param(200, 1, 1e12, "iterations between magnet resets", integer=True),
                       "refresh_gap": Param(0.0, 0.0, 1.0, "reset sooner once the inner duality gap is ≤ this; 0: never")},
            "target": "original"}


NOISE = Param(0.0, 0.0, 1e3, "standard deviation of the Gaussian noise on each observed payoff (Aπ_t)_y, "
                             "fresh every step from the run's seed; 0: exact feedback")


def _apmd(s, A, log_ref, eta, tau, t, p):
    """APMD's step with its code's slingshot schedule (algorithms/apmd.py): σ = π_ref at t = 0, set to
    the pre-step iterate π_t at every t divisible by T_σ (t = 0 included), serving from step t + 1."""
    log_pi, log_slingshot, key = s
    scores, key = _u().noisy_scores(key, A, log_pi, p["noise"])
    reset = t % p["refresh_every"] == 0
    return _u().apmd_update(log_pi, log_slingshot, scores, eta, tau), _jnp().where(reset, log_pi, log_slingshot), key


def _mwu(s, A, log_ref, eta, tau, t, p):
    """MWU on the observed payoffs: APMD without perturbation (μ = 0), their MD baseline."""
    scores, key = _u().noisy_scores(s[1], A, s[0], p["noise"])
    return _u().apmd_update(s[0], s[0], scores, eta, 0.0), key


def _omwu(s, A, log_ref, eta, tau, t, p):
    scores, key = _u().noisy_scores(s[2], A, s[0], p["noise"])
    log_pi_hat, log_pi = _u().optimistic_mwu_update(s[1], scores, eta)
    return log_pi, log_pi_hat, key


def _optimistic_init(log_pi0, A, log_ref, key):
    """(log π_0, Aπ_0): the first optimistic step is a plain OMD step."""
    from gamesim.core.metrics import matvec  # loads JAX, which reading the registry must not (CLI start-up)

    return log_pi0, matvec(A, _jnp().exp(log_pi0))


def _zpg(s, A, log_ref, eta, tau, t, p):
    """ZPG: the key in the state, N perturbations per step (a loop: N may differ across a batch).

    Why a key-carrying step and not a `gamesim.bandit.recipes` entry: a recipe samples data from π_t
    (or a mixture with π_ref) and fits the next policy by minimizing a loss on it; ZPG compares π_t
    with a randomly perturbed π_{θ+μv} and moves along v, which is no loss fit, and Sparring (below)
    keeps two learners' weights. Both draw their own data each step, as `apmd`'s noise does."""
    total, key = _u().zpg_direction(s[1], A, s[0], p["mu"], p["perturbations"], p["queries_per_pair"], p["trim"])
    return _u().zpg_update(s[0], total, eta, p["mu"], p["perturbations"]), key


def exp3_gamma(gamma, eta, n):
    """EXP3's exploration γ: the given one, or for gamma = 0 Auer et al.'s coupling γ = Kη (their
    exponent is γ/K), capped at 1."""
    return _jnp().where(gamma > 0, gamma, _jnp().minimum(1.0, n * eta))


def exp3_parameters(n: int, horizon: int) -> tuple[float, float]:
    r"""(η, γ) of EXP3's Corollary 3.2 (Auer, Cesa-Bianchi, Freund & Schapire 2002) for K = n arms and a
    known horizon T, with g = T ≥ G_max (rewards in [0, 1]):

        γ = min{1, √(K ln K / ((e − 1) g))},   η = γ/K,

    for `sparring`'s eta and gamma (gamma may then be left at 0, which is γ = Kη).

    Args:
        n: the number of arms (responses), ≥ 2.
        horizon: the number of rounds T, ≥ 1.

    Returns:
        (η, γ).

    References:
        Auer et al. 2002, SIAM J. Comput. 32(1), Fig. "Exp3" and Corollary 3.2.
    """
    if not (isinstance(n, numbers.Integral) and n >= 2 and isinstance(horizon, numbers.Integral) and horizon >= 1):
        raise GamesimError(f"exp3_parameters takes n ≥ 2 arms and a horizon ≥ 1 (integers); got n={n!r}, horizon={horizon!r}")
    gamma = min(1.0, math.sqrt(n * math.log(n) / ((math.e - 1) * horizon)))
    return gamma / n, gamma


def _sparring_init(log_pi0, A, log_ref, key):
    """(log p_L, log w_L, log w_R, key): both learners start at w = π_0 (EXP3: w = 1 is π_0 uniform)."""
    return log_pi0, log_pi0, log_pi0, key


def _sparring(s, A, log_ref, eta, tau, t, p):
    """Sparring with two EXP3 learners (state: left's played distribution, both weights, key); duels = 0
    is the expected step `sparring_exact_update`."""
    _, log_wl, log_wr, key = s
    gamma = exp3_gamma(p["gamma"], eta, log_wl.shape[-1])
    log_pl, log_pr = _u().exp3_policy(log_wl, gamma), _u().exp3_policy(log_wr, gamma)
    wins_l, wins_r, key = _u().sparring_wins(key, A, log_pl, log_pr, p["duels"])
    exact_l, exact_r = _u().sparring_exact_update(log_wl, log_wr, A, eta, gamma)
    sampled = p["duels"] > 0
    log_wl = _jnp().where(sampled, _u().exp3_update(log_wl, log_pl, wins_l, eta, p["duels"]), exact_l)
    log_wr = _jnp().where(sampled, _u().exp3_update(log_wr, log_pr, wins_r, eta, p["duels"]), exact_r)
    return _u().exp3_policy(log_wl, gamma), log_wl, log_wr, key


ZPG_PARAMS = {
    "mu": Param(0.1, 1e-6, 1e3, "μ: perturbation distance, θ + μv with v uniform on the unit sphere"),
    "perturbations": Param(10, 1, 1e6, "N: perturbations v per step, each with one response pair", integer=True),
    "queries_per_pair": Param(10, 0, 1e6, "M: oracle queries per response pair; 0: exact form (M = ∞, "
                              "responses in expectation)", integer=True),
    "trim": Param(5.0, 1e-6, 1e3, "D: σ⁻¹ of the empirical win rate trimmed to [−D, D]"),
}
SPARRING_PARAMS = {
    "gamma": Param(0.0, 0.0, 1.0, "EXP3 exploration γ (p = (1 − γ)w/Σw + γ/n); 0: γ = min(1, nη), "
                   "Auer et al.'s η = γ/K"),
    "duels": Param(1, 0, 1e6, "N: duels (one query each) per iteration; 0: the expected step", integer=True),
}


def _f_omd(name):
    """The step of mirror descent on the `name`-regularized game (`updates.f_omd_update`)."""
    from gamesim.core.divergences import f_prime_log  # loads numpy and scipy, which reading the registry must not (CLI start-up)

    def step(s, A, log_ref, eta, tau, t, p):
        alpha = p["alpha"] if name == "alpha" else None
        return _u().f_omd_update(s, A, log_ref, eta, tau, lambda ell: f_prime_log(name, ell, alpha, _jnp()))

    return step


_F_OMD = ("f-DPO's divergence (Wang et al. 2023, arXiv 2309.16240) in the self-play game: mirror descent "
          "log π ← log π + η[Aπ − τ f′(π/π_ref)] − log Z")
_F_LIMIT = "π*_f (Aπ − τ f′(π/π_ref) = λ), last iterate, for ητ small enough (measured: README)"


def optimism_limit(P, ref, tau: float, vpo: bool) -> float:
    r"""The largest α for which XPO's (`vpo=False`) or VPO's population objective has a minimizer at
    every step, by gamesim's derivation (a sufficient condition; `updates.optimistic_dpo_update`).

    Along logits r − s·1_S (S a nonempty proper set of responses, s → ∞) the likelihood grows like
    s·wins(S → S^c) and the optimism term falls like s·κ'·π_ref(S), so a minimizer exists when
    wins(S → S^c) > κ'·π_ref(S) for every such S (the Lovász-extension argument: the ratio of the two
    positively homogeneous, piecewise-linear growth rates is smallest at an indicator direction).
    XPO: per pair π_t × π_ref, wins(S → S^c) ≥ p_min[π_t(S)π_ref(S^c) + π_ref(S)π_t(S^c)]
    ≥ p_min·min(π_ref(S), π_ref(S^c)) and κ' = α/β, so α < β·p_min·π_min/(1 − π_min) suffices
    (π_min = min π_ref, p_min = min_{y≠y'} P_yy'). VPO: the summed likelihood holds the first pair
    π_0 × π_0 (π_0 = π_ref) and κ' = α/β·β = α once, so α < 2·p_min·π_min suffices. The papers
    instead restrict the policy class (XPO: |β log(π/π_ref)| ≤ V_max; VPO: a bounded reward class),
    which the unrestricted tabular class is not.
    """
    import numpy as np  # only when a run's game is checked: reading the registry stays import-light (CLI start-up)

    P, ref = np.asarray(P, float), np.asarray(ref, float)
    off = ~np.eye(P.shape[-1], dtype=bool)
    p_min = float(np.min(P[..., off]))
    pi_min = float(np.min(ref))
    return 2 * p_min * pi_min if vpo else tau * p_min * pi_min / (1 - pi_min)


def _optimism_check(vpo: bool) -> Callable:
    def check(game, tau, params):
        limit = optimism_limit(game.P, game.stacked_reference, tau, vpo)
        if not params["alpha"] < limit:
            name = "vpo" if vpo else "xpo"
            raise GamesimError(
                f"{name}: alpha={params['alpha']:g} is not below {limit:.4g}, the bound under which its tabular "
                f"objective is guaranteed a minimizer on {game.label!r} at tau={tau:g} (the optimism term "
                "can send a response's probability to 0 and the objective to −∞; see "
                f"algorithms.optimism_limit). Use alpha < {limit:.4g}" + ("" if vpo else " or a larger tau"))
    return check


def _optimistic_dpo(vpo: bool, optimism=None) -> Callable:
    """XPO's / VPO's population step (`updates.optimistic_dpo_update`); state (log π, W̄, r).
    `optimism`(log π_t, log π_ref) → the optimism term's log-distribution (π_ref; a mutant's other)."""
    def step(s, A, log_ref, eta, tau, t, p):
        log_ref = _jnp().broadcast_to(log_ref, s[0].shape)
        log_opt = log_ref if optimism is None else optimism(s[0], log_ref)
        return _u().optimistic_dpo_update(s[0], s[1], s[2], A, log_ref, tau, p["alpha"], t,
                                          s[0] if vpo else log_ref, log_opt, vpo)
    return step


def _optimistic_dpo_init(log_pi0, A, log_ref, key):
    jnp = _jnp()
    return log_pi0, jnp.zeros(log_pi0.shape + log_pi0.shape[-1:], log_pi0.dtype), jnp.zeros_like(log_pi0)
ALPHA = Param(0.3, 0.0, 0.99, "APO's momentum weight α: π_{t+1} ∝ π̂_{t+1}(π̂_{t+1}/π̂_t)^α (0: the plain "
                               "iterative method; < 1)")


def _apo_init(log_pi0, A, log_ref, key):
    """(log π̂_0, log π_0, Bradley-Terry scores): π̂_0 = π_0, so the first step is the plain one."""
    return log_pi0, log_pi0, _jnp().zeros_like(log_pi0)


def _apo_dpo(s, A, log_ref, eta, tau, t, p):
    log_pi, log_hat, scores = _u().apo_dpo_update(s[1], s[0], s[2], A, eta, p["alpha"])
    return log_hat, log_pi, scores


def _apo_sppo(s, A, log_ref, eta, tau, t, p):
    log_pi, log_hat = _u().apo_sppo_update(s[1], s[0], A, eta, p["alpha"])
    return log_hat, log_pi, s[2]


SEA_ENSEMBLE = 20
"""SEA's ensemble size E (oat's default `num_ensemble`); fixed, as it sets the state's shape."""


def _sea_init(log_pi0, A, log_ref, key):
    """(log π_0, wins, member rewards, anchors' N(0, I) draws z, key): no data yet; the members start at z,
    whose argmax is that of their anchors z/√λ, so the first pair is already Thompson sampling's."""
    import jax  # loads JAX, which reading the registry must not (CLI start-up)

    key, sub = jax.random.split(jax.random.wrap_key_data(key))
    noise = jax.random.normal(sub, (SEA_ENSEMBLE, *log_pi0.shape), log_pi0.dtype)
    wins = _jnp().zeros((*log_pi0.shape, log_pi0.shape[-1]), log_pi0.dtype)
    return log_pi0, wins, noise, noise, jax.random.key_data(key)


def _sea(s, A, log_ref, eta, tau, t, p):
    log_pi, wins, _, noise, key = s
    log_pi, wins, rewards, key = _u().sea_ts_update(key, wins, noise, s[2], A, log_ref, tau, p["prior_precision"],
                                                    p["bai"])
    return log_pi, wins, rewards, noise, key


MIX_RATIO = Param(1.0, 0.0, 1.0, "weight of π_ref in the opponent mixture as a multiple of ητ "
                                  "(1: the paper's π^{1−ητ} π_ref^{ητ}; EGPO's code: 1/2)")
BETA = Param(0.125, 0.0, 1.0, "weight of π_ref in the opponent mixture π^{1−β} π_ref^β")
_THEOREM = ("constant", "theorem")

ALGORITHMS: dict[str, Algorithm] = {a.name: a for a in [
    Algorithm("omd", _omd, "INPO eq. 5; NLHF eqs. 7–8", "π*_τ, last iterate (τ > 0); average iterate (τ = 0)",
              schedules=_THEOREM),
    Algorithm("inpo", _omd, "INPO (Zhang et al. 2024) eq. 5; losses eqs. 7–8", "π*_τ, last iterate",
              schedules=_THEOREM),
    Algorithm("nash-md", _nash_md, "Nash-MD (Munos et al. 2023) eqs. 3–4",
              "π*_τ with schedule 'theorem'; the biased point of Calandriello eq. 13 (β = ητ) with constant η",
              schedules=_THEOREM, params={"mix_ratio": MIX_RATIO}),
    Algorithm("sppo", _hedge, "SPPO (Wu et al. 2024) eq. 4.1", "von Neumann winner, average iterate only",
              kl_bounded=False, target="original", uses_tau=False),
    Algorithm("optimistic-omd",
              lambda s, A, r, eta, tau, t, p: _u().optimistic_omd_update(s[0], s[1], A, r, eta, tau),
              "optimistic MWU (Rakhlin & Sridharan 2013; Daskalakis & Panageas 2019), KL to π_ref",
              "π*_τ, last iterate; at τ = 0 the von Neumann winner, last iterate (unique or full-support NE)",
              init=_optimistic_init, log_policy=_first),
    Algorithm("extragradient", lambda s, A, r, eta, tau, t, p: _u().extragradient_update(s, A, r, eta, tau),
              "EGPO (Zhou et al. 2025), tabular form of its code", "π*_τ, last iterate, linearly"),
    Algorithm("mmd", lambda s, A, r, eta, tau, t, p: _u().mmd_update(s, A, r, eta, tau),
              "MMD (Sokota et al. 2023) eq. 12, magnet π_ref, α = τ", "π*_τ, last iterate (rate 1/(1+ηα) for η ≤ α/L²)",
              kl_bounded=False),
    Algorithm("mpo", citation="MPO (Wang et al. 2024): MMD with magnet refresh",
              converges_to="von Neumann winner, last iterate", kl_bounded=False,
              **refreshing(_mmd)),
    Algorithm("comal", citation="COMAL (Liu et al. 2024) Alg. 1 with INPO's update as inner solver",
              converges_to="von Neumann winner, last iterate", **refreshing(_omd_inner)),
    Algorithm("online-ipo", lambda s, A, r, eta, tau, t, p: _u().ipo_md_update(s, A, r, eta, tau, 0.0),
              "online IPO (Calandriello et al. 2024) eq. 11, exact expected gradient", "π*_τ (Prop. 4.1)",
              kl_bounded=False),
    Algorithm("ipo-md", lambda s, A, r, eta, tau, t, p: _u().ipo_md_update(s, A, r, eta, tau, p["beta"]),
              "IPO-MD (Calandriello et al. 2024) §5, exact expected gradient",
              "the point of eq. 13 (π*_τ only at β = 0)", kl_bounded=False, params={"beta": BETA}),
    Algorithm("nash-md-pg", lambda s, A, r, eta, tau, t, p: _u().nash_md_pg_update(s, A, r, eta, tau, p["beta"]),
              "Nash-MD-PG (Munos et al. 2023) §7, exact expected gradient",
              "the point of Calandriello eq. 13 (π*_τ only at β = 0)", kl_bounded=False, params={"beta": BETA}),
    Algorithm("iterative-dpo", lambda s, A, r, eta, tau, t, p: _u().iterative_dpo_update(s[0], s[1], A, eta),
              "iterative DPO (Rafailov et al. 2023; Xiong et al. 2024), population step",
              "a Condorcet winner if there is one; cycles on intransitive games", kl_bounded=False,
              init=lambda lp, A, r, key: (lp, _jnp().zeros_like(lp)), log_policy=_first, target="original",
              uses_tau=False),
    Algorithm("iterative-ipo", _hedge, "iterative IPO (Azar et al. 2023) with reference π_t: Hedge",
              "von Neumann winner, average iterate only", kl_bounded=False, target="original", uses_tau=False),
    Algorithm("dno", _hedge, "DNO (Rosset et al. 2024) Alg. 1 / SPO (Swamy et al. 2024), idealized",
              "von Neumann winner, average iterate (its output)", kl_bounded=False, target="original",
              uses_tau=False, default_init="uniform"),
    Algorithm("fictitious-play", lambda s, A, r, eta, tau, t, p: _u().fictitious_play_update(s, A, r, tau, t),
              "fictitious play (Brown 1951; Robinson 1951); smooth when τ > 0",
              "von Neumann winner (τ = 0) or π*_τ, the iterate being the empirical average",
              learning_rate=False, kl_bounded=False),
    Algorithm("replicator", lambda s, A, r, eta, tau, t, p: _u().replicator_update(s, A, eta),
              "discrete replicator dynamics (Taylor & Jonker 1978)", "von Neumann winner, average iterate",
              kl_bounded=False, eta_below=2.0, target="original", uses_tau=False),
    Algorithm("mmd-moving-magnet",
              lambda s, A, r, eta, tau, t, p: _u().mmd_moving_magnet_update(s[0], s[1], A, eta, tau, p["magnet_lr"]),
              "MMD (Sokota et al. 2023) eq. 12, α = τ, magnet moved as in App. H.5: ρ_{t+1} ∝ ρ_t^{1−η̃} π_{t+1}^{η̃}",
              "von Neumann winner, last iterate (empirically)", init=lambda lp, A, r, key: (lp, _jnp().broadcast_to(r, lp.shape)),
              log_policy=_first, kl_bounded=False, target="original",
              params={"magnet_lr": Param(0.05, 0.0, 1.0, "η̃: weight of π_{t+1} in the magnet's geometric step")}),
    Algorithm("apmd", _apmd, "APMD (Abe et al. 2024), G = KL, as its code runs it; η = 2η_APMD, τ = μ/2",
              "von Neumann winner, last iterate; with noisy feedback a neighbourhood of it, smaller for smaller η",
              init=lambda lp, A, r, key: (lp, _jnp().broadcast_to(r, lp.shape), key), log_policy=_first, target="original",
              params={"refresh_every": Param(100, 1, 1e12, "T_σ: iterations between slingshot resets", integer=True),
                      "noise": NOISE}),
    Algorithm("mwu", _mwu, "MWU, Abe et al.'s (2024) baseline (their MD, entropy), on observed payoffs",
              "von Neumann winner, average iterate only", init=lambda lp, A, r, key: (lp, key), log_policy=_first,
              params={"noise": NOISE}, kl_bounded=False, target="original", uses_tau=False),
    Algorithm("omwu", _omwu, "optimistic MWU, Abe et al.'s (2024) baseline (their OMD, entropy), two-sequence form",
              "von Neumann winner, last iterate with exact feedback", init=lambda lp, A, r, key: (lp, lp, key),
              log_policy=_first, params={"noise": NOISE}, kl_bounded=False, target="original", uses_tau=False),
    Algorithm("zpg", _zpg, "ZPG (Zhang & Ying 2024) Alg. 1, tabular logits, Bradley-Terry link; η = α",
              "with a Bradley-Terry P the reward maximizer (the Condorcet winner); otherwise a point where the "
              "self-play gradient of the log-odds game σ⁻¹(P) vanishes, not in general P's von Neumann winner",
              init=lambda lp, A, r, key: (lp, key), log_policy=_first, params=ZPG_PARAMS, kl_bounded=False,
              target="original", uses_tau=False, queries_per_step=1,
              query_count=lambda p: p["perturbations"] * p["queries_per_pair"]),
    Algorithm("sparring", _sparring, "Sparring (Ailon et al. 2014) with EXP3 (Auer et al. 2002), self-play",
              "von Neumann winner, average iterate (Dudík et al. 2015); reports the left learner's played p",
              init=_sparring_init, log_policy=_first, params=SPARRING_PARAMS, kl_bounded=False, target="original",
              uses_tau=False, default_init="uniform", queries_per_step=1, query_count=lambda p: p["duels"]),
    Algorithm("omd-forward-kl", _f_omd("forward-kl"), _F_OMD + ", f(u) = −log u", _F_LIMIT, divergence="forward-kl"),
    Algorithm("omd-js", _f_omd("js"), _F_OMD + ", Jensen-Shannon", _F_LIMIT, divergence="js"),
    Algorithm("omd-alpha", _f_omd("alpha"), _F_OMD + ", α-divergence", _F_LIMIT, divergence="alpha",
              params={"alpha": Param(0.5, 0.01, 0.99, "α of the α-divergence, f′(u) = (1 − u^{−α})/α (f-DPO: 0 < α < 1)")}),
    Algorithm("xpo", _optimistic_dpo(False), "XPO (Xie et al. 2024) Alg. 1, population form: online DPO on all "
              "past pairs (π_t × π_ref) + α Σ log π(ỹ), ỹ ~ π_ref; β = τ",
              "on a Bradley-Terry game at α = 0, π_ref e^{s/τ}/Z from the first step; at α > 0 the stationary "
              "point of the objective on its accumulated data (tabular, exact argmin)",
              init=_optimistic_dpo_init, log_policy=_first, learning_rate=False, kl_bounded=False, needs_tau=True,
              params={"alpha": Param(1e-5, 0.0, 1e6, "optimism weight α on Σ log π(ỹ), ỹ ~ π_ref (TRL's "
                                                      "XPOConfig default 1e-5; the paper gives none)")},
              check_game=_optimism_check(False)),
    Algorithm("vpo", _optimistic_dpo(True), "VPO (Cen et al. 2024), online, population form: BT likelihood of all "
              "past pairs (π_t × π_t) + αβ E_{π_ref}[log π] (π_cal = π_ref, optimistic sign); β = τ",
              "on a Bradley-Terry game at α = 0, π_ref e^{s/τ}/Z from the first step; at α > 0 the stationary "
              "point of the objective on its accumulated data, the optimism fading as α/(t+1)",
              init=_optimistic_dpo_init, log_policy=_first, learning_rate=False, kl_bounded=False, needs_tau=True,
              params={"alpha": Param(1e-3, 0.0, 1e6, "value-regularizer weight α (its αβ E_{π_ref} log π is "
                                                      "added once to the summed likelihood; gamesim's default)")},
              check_game=_optimism_check(True)),
    Algorithm("apo", _apo_dpo, "APO (He, Yuan & Gu 2024) Alg. 1: iterative DPO + Nesterov extrapolation, population step",
              "a Condorcet winner if there is one (Bradley-Terry: log π̂_t moves by η/(1 − α) per step asymptotically)",
              init=_apo_init, log_policy=_first, params={"alpha": ALPHA}, kl_bounded=False, target="original",
              uses_tau=False),
    Algorithm("apo-sppo", _apo_sppo, "APO (He, Yuan & Gu 2024) Alg. 1 with SPPO's step (eq. 4.1) + Nesterov extrapolation",
              "a Condorcet winner if there is one; on intransitive games not shown", init=_apo_init, log_policy=_first,
              params={"alpha": ALPHA}, kl_bounded=False, target="original", uses_tau=False),
    Algorithm("sea", _sea, "SEA (Liu et al. 2024), tabular, as sail-sg/oat's EnnEETS: Thompson sampling over an anchored "
              "Bradley-Terry ensemble; policy softmax(log π_ref + r̄/τ)",
              "softmax(log π_ref + s/τ) as the posterior concentrates (s the Bradley-Terry scores); stochastic",
              init=_sea_init, log_policy=_first, learning_rate=False, kl_bounded=False, target="original",
              needs_tau=True, queries_per_step=1,
              params={"prior_precision": Param(1.0, 1e-6, 1e6, "λ: precision of each member's Gaussian prior, "
                                                                "anchors a_e ~ N(0, I/λ)"),
                      "bai": Param(1, 0, 1, "second response: 1, the most uncertain margin against the first (oat's "
                                            "EnnBAITS, SEA's script); 0, another member's argmax (EnnEETS)",
                                   integer=True)}),
]}


BUILTIN = frozenset(ALGORITHMS)
"""The names gamesim ships; a user's algorithm cannot take one of them."""


def register_algorithm(alg: Algorithm) -> Algorithm:
    """Make `alg` available by name: `simulate`, studies, claims and the command line, whose
    `gamesim run` then takes each of its new `Param`s as a flag and each study its keys.

    A name is taken once; the built-in names cannot be replaced (to run your code in a built-in's
    place in its claims, use `verify(algorithms={"inpo": alg})` or `gamesim verify --substitute
    inpo=NAME`).

    Args:
        alg: the `Algorithm`; registering the same object twice is harmless.

    Returns:
        `alg`, so that it can be used as `ALG = register_algorithm(Algorithm(...))`.

    Raises:
        GamesimError: `alg` is no Algorithm, its name is not a plain name, or the name is taken.

    References:
        docs/howto/own_method.md (a worked example).
    """
    if not isinstance(alg, Algorithm):
        raise GamesimError(f"register_algorithm takes a gamesim.dynamics.algorithms.Algorithm, not {type(alg).__name__}")
    if not (isinstance(alg.name, str) and alg.name and alg.name.replace("-", "").replace("_", "").isalnum()):
        raise GamesimError(f"an algorithm's name is letters, digits, '-' and '_', not {alg.name!r}")
    if alg.name in ALGORITHMS and ALGORITHMS[alg.name] is not alg:
        what = "a built-in algorithm" if alg.name in BUILTIN else "taken by another registered algorithm"
        raise GamesimError(f"the name {alg.name!r} is {what}; give your algorithm its own name")
    ALGORITHMS[alg.name] = alg
    return alg


def get_algorithm(name) -> Algorithm:
    """The registered algorithm called `name`.

    Args:
        name: a registry name, or an `Algorithm` (returned as is).

    Returns:
        The `Algorithm`.

    Raises:
        GamesimError: no algorithm has that name (the message suggests the closest one).

    References:
        `gamesim algorithms` lists the registry with each algorithm's paper and equation.
    """
    if isinstance(name, Algorithm):
        return name
    if name not in ALGORITHMS:
        raise GamesimError(f"unknown algorithm {name!r}{did_you_mean(name, ALGORITHMS)}; choose from {', '.join(ALGORITHMS)}")
    return ALGORITHMS[name]
