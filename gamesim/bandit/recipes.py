r"""The sampled-feedback recipes: how each algorithm runs from preference queries, one registry read
by the bandit mode (`sampled`), the transformer mode (`gamesim.lm.training`), the command line's
flags and the study validator's keys.

Per iteration and context: sample responses (`Recipe.sampler`), ask the oracle, and fit the next
policy on that data by minimizing the algorithm's loss (`Recipe.loss`) relative to an anchor c
(`Recipe.anchor`), the labels' ℓ − 1/2 scaled by `Recipe.scale`:

| algorithm | data (`recipe=`) | loss | anchor c | scale |
|---|---|---|---|---|
| inpo | pairs from π_t; best-worst: INPO §4's tournament | pair regression, INPO eq. 8 | (1 − ητ) log π_t + ητ log π_ref | η |
| nash-md | pairs from π^μ_t ∝ π_t^{1−ητ} π_ref^{ητ} | pair regression (NLHF eq. 4 as a regression) | log π^μ_t | η |
| online-ipo | pairs from π_t | pair regression, IPO (Calandriello eq. 11) | log π_ref | 1/τ |
| sppo | win-rates: K per prompt, P̂ from K(K−1)/2 queries (SPPO §5); best-worst: each prompt's best and worst by P̂ (SPPO's code) | SPPO eqs. 4.6–4.7 | log π_t | η |
| iterative-dpo | pairs from π_t | DPO, β = 1/η | log π_t | η |
| xpo | pairs y ~ π_t, ỹ ~ π_ref, all kept | DPO, β = τ, + α Σ log π(ỹ) (XPO Alg. 1) | log π_ref | 1/τ |
| vpo | pairs from π_t, all kept | DPO, β = τ, + αβ E_{π_ref} log π (VPO, online) | log π_ref | 1/τ |
| apo | pairs from π_t (the extrapolated reference) | DPO, β = 1/η, then APO's extrapolation | log π_t | η |
| apo-sppo | as sppo, from π_t (the extrapolated reference) | SPPO eqs. 4.6–4.7, then APO's extrapolation | log π_t | η |
| omd-forward-kl, omd-js, omd-alpha | pairs from π_t | pair regression, INPO eq. 8 with the f-divergence's anchor | log π_t − ητ f′(π_t/π_ref) | η |

The pair regression is the mean of ((θ − c)(y) − (θ − c)(y') − scale·(ℓ − 1/2))² (`losses.
pair_regression_loss`), SPPO's loss (log π(y) − c(y) − (scale·P̂ − scale/2))², DPO's −log σ((h(y) −
h(y'))/scale), h = log π − c. The anchors "mirror" and "mixture" are `updates.geometric_logits` at
w = ητ (the mixture normalized); "f-mirror" is the f-regularized step with no preference signal,
`updates.f_omd_update` at A = 0 (INPO's anchor when f is the reverse KL), so the pair regression's
population minimizer is the `omd-*` step, as INPO's is the OMD step. The transformer mode runs the
same losses on pairs of sequences (not the f-mirror anchor, which needs π_t's per-response ratio).

`Recipe.momentum` (apo, apo-sppo): the fitted policy is π̂_{t+1}, recorded; the next sampler and anchor
is APO's extrapolation π_{t+1} ∝ π̂_{t+1}(π̂_{t+1}/π̂_t)^α (`updates.nesterov_extrapolation`, He, Yuan &
Gu 2024 Alg. 1), carried in the state.

`recipe="egpo"` runs EGPO's sampled estimators instead (`Egpo`; Zhou et al. 2025, `zhourunlong/
EGPO` simulations/loss_funcs.py, the `*_sample` functions) for omd, extragradient, nash-md,
online-ipo and nash-md-pg: one SGD step from θ_t = log π_t whose expectation is the exact step.

XPO and VPO keep every iteration's comparisons (`Recipe.accumulate`: their sufficient statistics,
the win counts and the optimism weights, in the sampled state) and fit with the optax fitters only:
the empirical objective has no minimizer whenever a response that ỹ hit never won a comparison
(the optimism term then sends its probability to 0), so there is no "exact" fit.

Reading this module loads no JAX: the command line builds its flags from it at start-up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gamesim.dynamics.algorithms import Param


@dataclass(frozen=True)
class Data:
    """A way to collect one iteration's data per context (`feedback` draws it; `sampled.COLLECT`).

    Args:
        doc: what it draws and how many queries it makes.
        samples: the default K, responses per prompt (0: a recipe without K).
        per_sample: whether each of the K samples is a data point (win rates), so an iteration
            holds pairs·K of them, rather than one per prompt.
        min_samples: the smallest K it accepts.
        power_of_two: whether K must be a power of two (a knockout tournament).
        hard_oracle: whether it needs answers (a hard oracle), not probabilities.
    """

    doc: str
    samples: int = 0
    per_sample: bool = False
    min_samples: int = 0
    power_of_two: bool = False
    hard_oracle: bool = False


DATA = {
    "pairs": Data("N pairs y ~ sampler, y' ~ sampler, one query each (INPO Alg. 1, online IPO, DPO)"),
    "tournament": Data("INPO §4, App. B: per prompt K samples, the best by a knockout, the worst among the first "
                       "round's losers, kept if the best beats the worst: K + K/2 − 1 queries",
                       samples=8, min_samples=2, power_of_two=True, hard_oracle=True),
    "win-rates": Data("SPPO §5: per prompt K samples, P̂(y ≻ π_t) from all K(K−1)/2 pairs",
                      samples=5, per_sample=True, min_samples=2),
    "best-and-worst": Data("SPPO's code (scripts/compute_prob.py): the win rates, keeping only each prompt's "
                           "best and worst sample", samples=5, per_sample=True, min_samples=2),
    "egpo": Data("EGPO's samplers (`Egpo`)"),
}
"""The data collectors by kind; a `Recipe` names them under the user's `recipe=` names."""


@dataclass(frozen=True)
class Egpo:
    r"""EGPO's sampled estimator of one algorithm (`recipe="egpo"`), with d = log π_θ − log π_ref:

    triples: y, y' uniform, y'' ~ opponent, label 1/2 + ℓ(y, y'') − ℓ(y', y''), loss mean of
    (d_y − d_y' − (label − 1/2)/τ)²; pairs: y ~ π_t, y' ~ opponent, the same loss on ℓ(y, y')
    (online IPO 2) or, with `policy_gradient`, −mean of (ℓ(y, y') − τ d_y) log π_θ(y), d held fixed.

    Args:
        triples: whether it samples triples (else pairs).
        opponent: (η, τ, params) → w, the opponent π_t^{1−w} π_ref^w (`updates.geometric_mixture`);
            None: π_t itself.
        lr: (η, τ, n) → the SGD learning rate whose expected step is the exact step at η (the
            inverse of `algorithms.egpo_settings`).
        policy_gradient: Nash-MD-PG's surrogate instead of the pair regression.
        half_step: the extragradient: a first step from θ_t gives π_{t+1/2}, then fresh samples with
            y'' ~ π_{t+1/2} and the same loss's step from θ_t.
        source: EGPO's method and loss function.
    """

    triples: bool
    opponent: Callable | None
    lr: Callable
    policy_gradient: bool = False
    half_step: bool = False
    source: str = ""

    @property
    def queries_per_sample(self) -> int:
        """Oracle answers per sample and step: two per triple, and the extragradient samples twice."""
        return (2 if self.triples else 1) * (2 if self.half_step else 1)


def _mirror_lr(eta, tau, n):
    return n * tau * eta / 4


_MIRROR_EGPO = {"triples": True, "lr": _mirror_lr}
"""omd, extragradient and nash-md: the triples' loss, lr = nτη/4."""


@dataclass(frozen=True)
class Recipe:
    """How one algorithm runs from sampled feedback, in the bandit and the transformer mode.

    Args:
        algorithm: the exact algorithm (`algorithms.ALGORITHMS`) whose step it samples.
        data: `recipe=` name → `DATA` kind; the first is the default.
        loss: "pair-regression", "sppo" or "dpo" (see the module docstring); None: EGPO's only.
        anchor: c, "mirror" ((1 − ητ) log π_t + ητ log π_ref), "mixture" (its normalization, the
            sampler too), "reference" (log π_ref), "policy" (log π_t) or "f-mirror" (log π_t − ητ
            f′(π_t/π_ref) normalized, f the algorithm's divergence).
        scale: "eta" (η) or "inverse-tau" (1/τ), the factor on ℓ − 1/2.
        sampler: "policy" (π_t) or "mixture" (π^μ_t ∝ π_t^{1−ητ} π_ref^{ητ}).
        partner: the second response's sampler, "same" (the sampler's) or "reference" (π_ref: XPO's ỹ).
        accumulate: whether the fit uses all the comparisons so far (XPO, VPO), with `loss`
            "optimistic-dpo" and the optax fitters only.
        optimism: the optimism term's weights, "partner-samples" (α per ỹ: XPO) or "reference"
            (αβ π_ref once: VPO); None: none.
        egpo: EGPO's estimator, for `recipe="egpo"`.
        source: the paper and equations it transcribes.
        momentum: whether the fitted policy is then extrapolated (APO), the extrapolation being the
            next iteration's sampler and anchor "policy"; tabular only (the transformer mode has no
            extrapolated reference model).
    """

    algorithm: str
    data: dict
    loss: str | None = None
    anchor: str | None = None
    scale: str = "eta"
    sampler: str = "policy"
    partner: str = "same"
    accumulate: bool = False
    optimism: str | None = None
    egpo: Egpo | None = None
    source: str = ""
    momentum: bool = False

    @property
    def transformer(self) -> bool:
        """Whether the transformer mode runs it: its own loss on pairs (EGPO's estimators are tabular)."""
        return self.loss is not None and not self.accumulate and not self.momentum and self.anchor != "f-mirror"

    @property
    def needs_tau(self) -> bool:
        """Whether its loss divides by τ (the scale 1/τ)."""
        return self.scale == "inverse-tau"

    def target_scale(self, eta, tau):
        """The factor on ℓ − 1/2 at (η, τ): η, or 1/τ (floats or JAX tracers)."""
        return 1 / tau if self.scale == "inverse-tau" else eta


RECIPES: dict[str, Recipe] = {r.algorithm: r for r in [
    Recipe("inpo", {"pairs": "pairs", "best-worst": "tournament"}, "pair-regression", "mirror",
           source="INPO (Zhang et al. 2024) eq. 8, Alg. 1 and §4"),
    Recipe("nash-md", {"pairs": "pairs", "egpo": "egpo"}, "pair-regression", "mixture", sampler="mixture",
           egpo=Egpo(opponent=lambda eta, tau, p: p["mix_ratio"] * eta * tau, **_MIRROR_EGPO,
                     source="EGPO's nash_md_sample: y'' ~ π^ω_t, ω = mix_ratio·ητ (its code: 1/2)"),
           source="Nash-MD (Munos et al. 2023) eqs. 3–4 as a regression"),
    Recipe("online-ipo", {"pairs": "pairs", "egpo": "egpo"}, "pair-regression", "reference", scale="inverse-tau",
           egpo=Egpo(triples=False, opponent=None, lr=lambda eta, tau, n: tau * eta / 4,
                     source="EGPO's Online IPO 2: y, y' ~ π_t, lr = τη/4"),
           source="online IPO (Calandriello et al. 2024) eq. 11"),
    Recipe("sppo", {"win-rates": "win-rates", "best-worst": "best-and-worst"}, "sppo", "policy",
           source="SPPO (Wu et al. 2024) §5, eqs. 4.6–4.7; `uclaml/SPPO` for best-worst"),
    Recipe("iterative-dpo", {"pairs": "pairs"}, "dpo", "policy",
           source="DPO (Rafailov et al. 2023) with reference π_t, β = 1/η"),
    Recipe("xpo", {"pairs": "pairs"}, "optimistic-dpo", "reference", scale="inverse-tau", partner="reference",
           accumulate=True, optimism="partner-samples",
           source="XPO (Xie et al. 2024) Alg. 1: y ~ π_t, ỹ ~ π_ref, all data kept, + α Σ log π(ỹ)"),
    Recipe("vpo", {"pairs": "pairs"}, "optimistic-dpo", "reference", scale="inverse-tau", accumulate=True,
           optimism="reference",
           source="VPO (Cen et al. 2024), online: y, y' ~ π_t, all data kept, + αβ E_{π_ref} log π (π_cal = π_ref)"),
    *(Recipe(name, {"pairs": "pairs"}, "pair-regression", "f-mirror",
             source="INPO (Zhang et al. 2024) eq. 8's pair regression, anchored at the f-regularized step "
                    "(f-DPO's divergences, Wang et al. 2023)")
      for name in ("omd-forward-kl", "omd-js", "omd-alpha")),
    Recipe("apo", {"pairs": "pairs"}, "dpo", "policy", momentum=True,
           source="APO (He, Yuan & Gu 2024) Alg. 1 with DPO (reference π_t, β = 1/η)"),
    Recipe("apo-sppo", {"win-rates": "win-rates", "best-worst": "best-and-worst"}, "sppo", "policy", momentum=True,
           source="APO (He, Yuan & Gu 2024) Alg. 1 with SPPO (§5, eqs. 4.6–4.7)"),
    Recipe("omd", {"egpo": "egpo"}, egpo=Egpo(opponent=None, **_MIRROR_EGPO, source="EGPO's Online IPO 1: y'' ~ π_t"),
           source="EGPO (Zhou et al. 2025), simulations/loss_funcs.py"),
    Recipe("extragradient", {"egpo": "egpo"},
           egpo=Egpo(opponent=None, half_step=True, **_MIRROR_EGPO, source="EGPO's egpo_sample: y'' ~ π_{t+1/2}"),
           source="EGPO (Zhou et al. 2025), simulations/loss_funcs.py"),
    Recipe("nash-md-pg", {"egpo": "egpo"},
           egpo=Egpo(triples=False, opponent=lambda eta, tau, p: p["beta"], lr=lambda eta, tau, n: eta,
                     policy_gradient=True, source="EGPO's nash_md_pg_sample: y' ~ π^β_t, lr = η"),
           source="Nash-MD-PG (Munos et al. 2023) §7; EGPO (Zhou et al. 2025), simulations/loss_funcs.py"),
]}
"""The algorithms that run from sampled feedback, by name: the one list of them."""

TRANSFORMER_ALGORITHMS = tuple(name for name, r in RECIPES.items() if r.transformer)
"""The algorithms the transformer mode runs (`gamesim.lm.training`)."""


@dataclass(frozen=True)
class Option:
    """A setting of the sampled feedback: a keyword of `sampled_algorithm` and of `simulate`
    (`SAMPLING_OPTIONS`), a `gamesim run` flag and a study key; one value per run directory.

    Args:
        type: int or str (the flag parses it).
        default: its value when not given (None: see `doc`).
        doc: what it sets (the flag's help).
        flag: the command-line spelling, when not --NAME with '-' for '_'.
    """

    type: type
    default: object
    doc: str
    flag: str | None = None


FITS = ("exact", "sgd", "adam")
ORACLES = ("hard", "soft")
OPTIONS = {
    "pairs": Option(int, 64, "pairs per iteration and context (prompts, for the K-sample recipes)"),
    "recipe": Option(str, None, "the data recipe, by algorithm: "
                     + "; ".join(f"{name}: {', '.join(r.data)}" for name, r in RECIPES.items())
                     + " (default: the algorithm's first)"),
    "samples": Option(int, None, "K for the K-sample recipes (default: 8 for inpo's tournament, 5 for sppo's)"),
    "fit": Option(str, "exact", f"{', '.join(FITS)}: the empirical minimizer, or optax steps"),
    "steps": Option(int, 10, "optimizer steps per iteration with fit sgd or adam"),
    "batch": Option(int, None, "minibatch size with fit sgd or adam (default: all data)", flag="batch-size"),
    "oracle": Option(str, "hard", "hard (Bernoulli answers) or soft (the probability itself)"),
}
"""The sampled feedback's settings, in `sampled_algorithm`'s order."""

PARAMS = {
    "flip": Param(0.0, 0.0, 0.5, "probability that an answer is flipped"),
    "position_bias": Param(0.0, -0.5, 0.5, "added to P(first response wins)"),
    "lr": Param(0.1, 0.0, 1e6, "learning rate of the optax fitter (fit sgd or adam)"),
}
"""The sampled feedback's hyperparameters (per run, batchable): the oracle's, and the fitter's
`lr` (with fit sgd or adam only)."""
ORACLE_PARAMS = ("flip", "position_bias")
