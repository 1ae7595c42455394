r"""Exact (full-information) self-play updates: one pure function per paper equation.

Conventions. η is a learning rate (the exponent is ηPπ); see `algorithms` for the converters from
INPO's inverse η and SPPO's β. Policies are log-probabilities of shape (C, n), a row per context;
A = P − 1/2 replaces P wherever a softmax normalizes (the constant η/2 cancels), and
P(y ≻ π) − πᵀPπ = (Aπ)_y for any distribution π. Policy-gradient methods act on the logits θ;
since log π = θ − logsumexp(θ), log π itself serves as the logits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.nn import log_softmax

from gamesim.core.metrics import duality_gaps, matvec


def geometric_logits(log_pi, log_ref, weight):
    r"""(1 − w) log π + w log π_ref: the logits of the geometric mixture π^{1−w} π_ref^w.

    The one home of this formula. At w = ητ it is the KL part of the mirror step, log π_t's target
    with no preference signal: INPO's anchor (§3.2's h_t = log π − this, eq. 8), the anchor of the
    sampled pair regressions (`gamesim.bandit.sampled`) and of the transformer mode. At w = β,
    normalized (`geometric_mixture`), it is the opponent of Nash-MD (eq. 3), IPO-MD and
    Nash-MD-PG, and the token-wise mixture of the transformer mode. Plain arithmetic.
    """
    return (1 - weight) * log_pi + weight * log_ref


def geometric_mixture(log_pi, log_ref, weight):
    """log of π^{1−w} π_ref^w / Z, the normalized `geometric_logits` (over the last axis)."""
    return log_softmax(geometric_logits(log_pi, log_ref, weight), axis=-1)


def mirror_logits(log_pi, log_ref, scores, eta, tau):
    """(1 − ητ) log π + ητ log π_ref + η·scores, the logits of the KL-regularized mirror step:
    `geometric_logits` at w = ητ plus η·scores (tests/test_algorithms.py holds the two equal bit
    for bit).

    Written out rather than calling `geometric_logits` because the numba engine (`numba_backend`)
    compiles this same function and applies it entry by entry, and numba cannot call a Python
    function; so the JAX and numba paths share one definition of the step.
    """
    return (1 - eta * tau) * log_pi + eta * tau * log_ref + eta * scores


def _mirror(log_pi, log_ref, eta, tau, scores):
    """log softmax(mirror_logits(…)): the KL-regularized mirror step."""
    return log_softmax(mirror_logits(log_pi, log_ref, scores, eta, tau), axis=-1)


def omd_update(log_pi, A, log_ref, eta, tau):
    r"""KL-regularized online mirror descent, which is INPO's closed-form update.

    INPO (Zhang et al. 2024) eq. 5, inverse convention η_INPO = 1/η:

        π_{t+1}(y) ∝ exp(P(y ≻ π_t)/η_INPO) π_ref(y)^{τ/η_INPO} π_t(y)^{1 − τ/η_INPO};

    learning-rate form (NLHF's OMD, Munos et al. 2023 eqs. 7–8):

        log π_{t+1} = (1 − ητ) log π_t + ητ log π_ref + η Pπ_t − log Z.

    τ = 0 is Hedge / multiplicative weights. Valid for η > 0 and 0 ≤ ητ ≤ 1.
    """
    return _mirror(log_pi, log_ref, eta, tau, matvec(A, jnp.exp(log_pi)))


def nash_md_update(log_pi, A, log_ref, eta, tau, mix):
    r"""Nash-MD (Munos et al. 2023, eqs. 3–4), learning-rate convention as in the paper.

    Geometric mixture π^μ_t ∝ π_t^{1−ητ} π_ref^{ητ} (eq. 3), then the mirror step against it:

        π_{t+1}(y) ∝ π^μ_t(y) exp(η P(y ≻ π^μ_t))   (eq. 4).

    Theorem 1 uses η_t = 2/(τ(t+2)) (`schedule="theorem"`); with a constant η the iteration
    converges to a biased point (Calandriello et al. 2024 eq. 13 with β = ητ). Valid for η > 0, 0 ≤ ητ ≤ 1.

    `mix` = ω is the weight of π_ref in the opponent π^ω_t ∝ π_t^{1−ω} π_ref^ω; the step is

        log π_{t+1} = (1 − ητ) log π_t + ητ log π_ref + η Aπ^ω_t − log Z
                    = log π^ω_t + (ητ − ω)(log π_ref − log π_t) + η Aπ^ω_t − log Z,

    which is eq. 4 at the paper's ω = ητ (the second form, used here, then adds an exact zero).
    EGPO's code mixes with ω = ητ/2 (`egpo_settings`).
    """
    log_mix = geometric_mixture(log_pi, log_ref, mix)
    return _mirror(log_mix + (eta * tau - mix) * (log_ref - log_pi), log_ref, eta, 0.0, matvec(A, jnp.exp(log_mix)))


def hedge_update(log_pi, A, eta):
    r"""Hedge / multiplicative weights: π_{t+1}(y) ∝ π_t(y) exp(η P(y ≻ π_t)).

    SPPO (Wu et al. 2024) eq. 4.1 (their loss writes β = 1/η; their runs use β = 1e-3, η = 1e3);
    DNO's idealized soft policy iteration (Rosset et al. 2024, eq. 9, inverse η); SPO (Swamy et
    al. 2024); and iterative IPO with reference π_t on its own pairs, whose population optimum
    (Azar et al. 2023) is π_t exp(P(y ≻ π_t)/τ_IPO), η = 1/τ_IPO. Valid for η > 0.
    """
    return _mirror(log_pi, 0.0, eta, 0.0, matvec(A, jnp.exp(log_pi)))


def optimistic_omd_update(log_pi, prev_scores, A, log_ref, eta, tau):
    r"""Optimistic OMD / optimistic multiplicative weights, with KL to π_ref when τ > 0.

    log π_{t+1} = (1 − ητ) log π_t + ητ log π_ref + η(2Pπ_t − Pπ_{t−1}) − log Z
    (Rakhlin & Sridharan 2013; Daskalakis & Panageas 2019 at τ = 0; the NLHF analysis of Chen et
    al. 2025). `prev_scores` is Aπ_{t−1} (Aπ_0 at the first step, a plain OMD step). Returns
    (log π_{t+1}, Aπ_t). Valid for η > 0, 0 ≤ ητ ≤ 1.
    """
    scores = matvec(A, jnp.exp(log_pi))
    return _mirror(log_pi, log_ref, eta, tau, 2 * scores - prev_scores), scores


def extragradient_update(log_pi, A, log_ref, eta, tau):
    r"""Extragradient with the KL mirror map (EGPO, Zhou et al. 2025; tabular form of its code).

    π_{t+1/2} = softmax((1 − ητ) log π_t + ητ log π_ref + ηPπ_t),
    π_{t+1}   = softmax((1 − ητ) log π_t + ητ log π_ref + ηPπ_{t+1/2}). Valid for η > 0, 0 ≤ ητ ≤ 1.
    """
    half = _mirror(log_pi, log_ref, eta, tau, matvec(A, jnp.exp(log_pi)))
    return _mirror(log_pi, log_ref, eta, tau, matvec(A, jnp.exp(half)))


def mmd_update(log_pi, A, log_magnet, eta, alpha):
    r"""Magnetic mirror descent (Sokota et al. 2023, eq. 12) on q_t = Pπ_t:

        π_{t+1} ∝ [π_t ρ^{αη} e^{η q_t}]^{1/(1 + αη)},   magnet ρ, temperature α.

    With ρ = π_ref and α = τ it equals KL-regularized OMD at learning rate η/(1 + ητ) (derived;
    tested). Valid for η > 0, α ≥ 0; Theorem 3.4's linear rate needs η ≤ α/L².
    """
    scores = matvec(A, jnp.exp(log_pi))
    return log_softmax((log_pi + eta * alpha * log_magnet + eta * scores) / (1 + eta * alpha), axis=-1)


def refresh_magnet(log_pi, log_magnet, since, A, tau, every, gap_threshold):
    r"""Reset the magnet/reference to π_{t+1} every `every` steps, or sooner once the inner game's
    duality gap DualGap_τ(π_{t+1}; magnet) ≤ `gap_threshold` > 0 (0 disables it) (MPO, Wang et al.
    2024, Lemma 3.3; COMAL, Liu et al. 2024, Alg. 1). Returns (log magnet, steps since the reset).

    Near the equilibrium a freshly reset inner game starts with a gap below any fixed threshold,
    so a gap trigger then resets every step, which is Hedge (log π_{t+1} = log π_t + ηAπ_t) and
    drifts: the threshold bounds the accuracy reached.
    """
    since = since + 1
    inner_gap = duality_gaps(A, log_magnet, log_pi, tau)
    reset = (since >= every) | ((gap_threshold > 0) & (inner_gap <= gap_threshold))
    return jnp.where(reset[..., None], log_pi, log_magnet), jnp.where(reset, 0.0, since)


def self_play_gradient(log_pi, A, log_ref, tau, log_opponent, weights):
    r"""The logit gradient w ⊙ (Aπ' − τ d − ⟨w, Aπ' − τ d⟩), d = log(π/π_ref), π' the opponent.

    With w = π it is the self-play policy gradient of E_{y~π}[P(y ≻ π') − τ log(π(y)/π_ref(y))]
    (NLHF §7, eq. 13 of its appendix); with w = π' it is minus the gradient of the IPO loss on
    pairs from π' (Calandriello et al. 2024, Prop. 5.1) up to the factor 4/τ.
    """
    advantage = matvec(A, jnp.exp(log_opponent)) - tau * (log_pi - log_ref)
    return weights * (advantage - jnp.sum(weights * advantage, axis=-1, keepdims=True))


def ipo_md_update(log_pi, A, log_ref, eta, tau, beta):
    r"""Exact expected step of IPO-MD (Calandriello et al. 2024, §5) on the logits:

        θ_{t+1} = θ_t + η π'_t ⊙ (Aπ'_t − τ d_t − ⟨π'_t, Aπ'_t − τ d_t⟩),  π'_t ∝ π_t^{1−β} π_ref^β,

    the negative gradient of the IPO loss (target (P(y ≻ y') − 1/2)/τ) on pairs y, y' ~ π'_t,
    which is (4/τ)·this direction: SGD with learning rate lr is η = 4 lr/τ (derived; tested with
    autodiff). Its stationary point is eq. 13's π ∝ π_ref exp(P(y ≻ (π)^{1−β} π_ref^β)/τ).
    β = 0 is online IPO (eq. 11), whose stationary point is π*_τ (Prop. 4.1); β = 1 samples both
    responses from π_ref, which is offline IPO (eq. 10) with μ = π_ref, whose optimum is
    π ∝ π_ref exp(P(y ≻ π_ref)/τ). Valid for η > 0.
    """
    log_opponent = geometric_mixture(log_pi, log_ref, beta)
    opponent = jnp.exp(log_opponent)
    return log_softmax(log_pi + eta * self_play_gradient(log_pi, A, log_ref, tau, log_opponent, opponent), axis=-1)


def nash_md_pg_update(log_pi, A, log_ref, eta, tau, beta):
    r"""Exact expected Nash-MD-PG step (Munos et al. 2023, §7 and App. eq. 13) on the logits:

        θ_{t+1} = θ_t + η π_t ⊙ (Aπ'_t − τ d_t − ⟨π_t, Aπ'_t − τ d_t⟩),  π'_t ∝ π_t^{1−β} π_ref^β
        (stop-gradient), d_t = log(π_t/π_ref).

    β = 0 is self-play, β = 1 the best response to π_ref. Its stationary points are those of
    IPO-MD (eq. 13 of Calandriello et al. 2024). Valid for η > 0.
    """
    log_opponent = geometric_mixture(log_pi, log_ref, beta)
    return log_softmax(log_pi + eta * self_play_gradient(log_pi, A, log_ref, tau, log_opponent, jnp.exp(log_pi)),
                       axis=-1)


BT_RIDGE = 1e-9
BT_NEWTON_STEPS = 12


def bradley_terry_fit(scores, weights, wins):
    r"""The Bradley-Terry reward fitted by maximum likelihood to weighted comparisons:

        r = argmin_r −Σ_{y,y'} wins_{yy'} log σ(r_y − r_y') + Σ_y (λ_y/2) r_y²,

    weights_{yy'} = weights_{y'y} the mass of the pair, wins_{yy'} + wins_{y'y} = weights_{yy'}
    the part won by y; BT_NEWTON_STEPS Newton steps from `scores` (gradient
    Σ_y' (w_yy' σ(r_y − r_y') − wins_yy') + λ_y r_y). The ridge λ_y = BT_RIDGE · Σ_y' w_yy' is
    relative to each response's comparison mass, so it keeps the fit unique when the data
    separate without swamping the data of a response the policy has nearly dropped (an absolute
    ridge would: at π(y) ≈ 1e-9 it outweighs y's comparisons). Population comparisons of pairs
    from π: weights = ππᵀ, wins = weights ⊙ P. Shapes (C, n[, n]).
    """
    eye = jnp.eye(scores.shape[-1])
    ridge = BT_RIDGE * jnp.sum(weights, axis=-1) + jnp.finfo(scores.dtype).tiny

    def newton(r, _):
        S = jax.nn.sigmoid(r[..., :, None] - r[..., None, :])
        grad = jnp.sum(weights * S - wins, axis=-1) + ridge * r
        M = weights * S * (1 - S)
        H = eye * (jnp.sum(M, axis=-1) + ridge)[..., None] - M
        return r - jnp.linalg.solve(H, grad[..., None])[..., 0], None

    return jax.lax.scan(newton, scores, None, length=BT_NEWTON_STEPS)[0]


def iterative_dpo_update(log_pi, scores, A, eta):
    r"""Population iterative DPO (Rafailov et al. 2023, with reference π_t; as in Xiong et al. 2024):
    DPO's loss on pairs y, y' ~ π_t labelled by P is minimized by β log(π/π_t) = r̂_t, the
    Bradley-Terry reward fitted to those comparisons, so π_{t+1} ∝ π_t exp(η r̂_t), η = 1/β.
    The transitive baseline. Returns (log π_{t+1}, r̂_t). Valid for η > 0.
    """
    pi = jnp.exp(log_pi)
    weights = pi[..., :, None] * pi[..., None, :]
    scores = bradley_terry_fit(scores, weights, weights * (0.5 + A))
    return log_softmax(log_pi + eta * scores, axis=-1), scores


def fictitious_play_update(log_pi, A, log_ref, tau, t):
    r"""Fictitious play (Brown 1951; Robinson 1951) in self-play: the empirical average moves
    towards a best response to itself, π_{t+1} = (1 − α_t) π_t + α_t BR(π_t), α_t = 1/(t+2),
    so π_t is the uniform average of π_0 and the first t best responses. BR is a pure best
    response at τ = 0 (ties to the first) and BR_τ = softmax(log π_ref + Pπ/τ) at τ > 0 (smooth
    fictitious play). No learning rate.
    """
    scores = matvec(A, jnp.exp(log_pi))
    positive = tau > 0
    smooth = log_softmax(log_ref + scores / jnp.where(positive, tau, 1.0), axis=-1)
    pure = jnp.log(jax.nn.one_hot(jnp.argmax(scores, axis=-1), scores.shape[-1], dtype=scores.dtype))
    alpha = 1 / (t + 2)
    return jnp.logaddexp(jnp.log1p(-alpha) + log_pi, jnp.log(alpha) + jnp.where(positive, smooth, pure))


def replicator_update(log_pi, A, eta):
    r"""Discrete replicator dynamics (Taylor & Jonker 1978, in discrete time):
    π_{t+1}(y) = π_t(y)(1 + η(P(y ≻ π_t) − π_tᵀPπ_t)) = π_t(y)(1 + η(Aπ_t)_y).
    Valid for 0 < η < 2, which keeps every factor positive (|Aπ| ≤ 1/2).
    """
    return log_softmax(log_pi + jnp.log1p(eta * matvec(A, jnp.exp(log_pi))), axis=-1)


def mmd_moving_magnet_update(log_pi, log_magnet, A, eta, alpha, magnet_rate):
    r"""MMD with a moving magnet (Sokota et al. 2023, App. H.5: Nash equilibria by moving the magnet):
    the MMD step (eq. 12, `mmd_update`) towards ρ_t, then the magnet's geometric step

        ρ_{t+1} ∝ ρ_t^{1−η̃} π_{t+1}^{η̃},   η̃ the magnet's step size (their `mag_lr`),

    as their extensive-form learner does it (`ssokota/mmd`, mmd/efg/learners.py, the code of their
    moving-magnet runs: α = 1, η = 0.1, η̃ = 0.05); their normal-form learner (mmd/nfg/learners.py)
    mixes in π_t instead, a variant they never run with η̃ > 0. Learning-rate convention as in the
    paper. Returns (log π_{t+1}, log ρ_{t+1}). Valid for η > 0, α ≥ 0, 0 ≤ η̃ ≤ 1.
    """
    log_pi = mmd_update(log_pi, A, log_magnet, eta, alpha)
    return log_pi, geometric_mixture(log_magnet, log_pi, magnet_rate)


def noisy_scores(key_data, A, log_pi, noise):
    r"""Noisy feedback: the payoff vector Aπ_t observed with additive Gaussian noise ξ_t ~ N(0, noise² I)
    (per context), fresh at every step, as in Abe et al.'s experiments (ICML 2024, "noisy feedback":
    their code adds N(0, 0.1²) to each player's payoff vector; M2WU, Abe et al. 2023, the same).
    noise = 0 is exact feedback. `key_data` is the run's PRNG key (raw); returns (Aπ_t + ξ_t, next key).
    """
    key, sub = jax.random.split(jax.random.wrap_key_data(key_data))
    scores = matvec(A, jnp.exp(log_pi))
    return scores + noise * jax.random.normal(sub, scores.shape, scores.dtype), jax.random.key_data(key)


def apmd_update(log_pi, log_slingshot, scores, eta, tau):
    r"""Adaptively perturbed mirror descent (APMD; Abe, Ariu, Sakamoto & Iwasaki, ICML 2024) with the
    entropy regularizer and the KL perturbation G = KL(·‖σ), as their code runs it
    (`CyberAgentAILab/adaptively-perturbed-md`, algorithms/apmd.py and md.py), learning-rate convention:

        π_{t+1} ∝ π_t exp(η_APMD [q_t − μ(log(π_t/σ) + 1)]),   q_t the observed payoff vector,

    i.e. log π_{t+1} = (1 − ητ) log π_t + ητ log σ + η·scores − log Z: KL-regularized OMD (`omd_update`)
    towards the slingshot σ instead of π_ref, on given (possibly noisy) scores. With payoffs M in
    [−1, 1] and gamesim's A = M/2 (P = (1 + M)/2), η·Aπ = η_APMD·Mπ and ητ = η_APMD·μ, so
    η = 2η_APMD, τ = μ/2 (noise: σ = σ_APMD/2). The slingshot's resets are the caller's. Valid for
    η > 0, 0 ≤ ητ ≤ 1.
    """
    return _mirror(log_pi, log_slingshot, eta, tau, scores)


def optimistic_mwu_update(log_pi_hat, scores, eta):
    r"""Optimistic MWU in the two-sequence form of Abe et al.'s baseline (`CyberAgentAILab/
    adaptively-perturbed-md`, algorithms/omd.py, entropy regularizer), q_t the payoff vector at π_t:

        π̂_{t+1} ∝ π̂_t exp(η q_t),   π_{t+1} ∝ π̂_{t+1} exp(η q_t),   π̂_0 = π_0.

    For t ≥ 1 this is log π_{t+1} = log π_t + η(2q_t − q_{t−1}) − log Z, `optimistic_omd_update` at
    τ = 0; its first step is π_1 ∝ π_0 exp(2ηq_0) (optimistic_omd_update's: π_0 exp(ηq_0)).
    Returns (log π̂_{t+1}, log π_{t+1}). Valid for η > 0.
    """
    log_pi_hat = log_softmax(log_pi_hat + eta * scores, axis=-1)
    return log_pi_hat, log_softmax(log_pi_hat + eta * scores, axis=-1)


def _pair_entries(M, y, y2):
    """M[c, y[c], y2[c]] per context c: M (C, n, n), y and y2 (C,) integer arrays."""
    rows = jnp.take_along_axis(M, y[..., None, None], axis=-2)[..., 0, :]
    return jnp.take_along_axis(rows, y2[..., None], axis=-1)[..., 0]


def log_odds_game(A, trim):
    r"""L = Π_D σ⁻¹(P) = clip(log P − log(1 − P), −D, D), P = 1/2 + A: the trimmed value differences that
    the inverse Bradley-Terry link reads off exact preference probabilities (skew-symmetric, L + Lᵀ = 0)."""
    P = 0.5 + A
    return jnp.clip(jnp.log(P) - jnp.log1p(-P), -trim, trim)


def zpg_draw(key, A, log_pi, mu, queries, trim):
    r"""One perturbation of ZPG (Zhang & Ying 2024, Alg. 1), per context: v uniform on the unit sphere of
    the n logits; responses y ~ π_θ and y' ~ π_{θ+μv} (the current and the perturbed policy); M = `queries`
    oracle answers to "does y' beat y?", won w ~ Binomial(M, P(y' ≻ y)); the value-difference estimate

        d = Π_D[σ⁻¹(w/M)] = clip(log(w/M) − log(1 − w/M), −D, D)

    (the empirical win rate through the inverse Bradley-Terry link, trimmed to [−D, D]: w = 0 or M
    gives ∓D, never ±∞). M = 0 is the exact form, infinitely many queries and the responses in
    expectation: d = π_{θ+μv}ᵀ L π_θ with L = `log_odds_game` (v is still drawn). `key` is a typed PRNG
    key. Returns (v (C, n), d (C,), y, y', w).

    Each context is its own problem (its own v, d = n). With a Bradley-Terry P, σ⁻¹(P(y' ≻ y)) =
    r(y') − r(y), so E[d] = V(θ + μv) − V(θ) at M = ∞ (finite M biases σ⁻¹ of the rate, which the
    paper bounds); with a general P the method ascends the self-play gradient of the log-odds game L.
    Read from the paper's abstract and algorithm outline (current against perturbed policy, v on the
    unit sphere, N perturbations with M queries each, trimmed σ⁻¹); the defaults of μ, N, M, D are
    gamesim's, not the paper's experimental settings.
    """
    kv, ky, ky2, kw = jax.random.split(key, 4)
    g = jax.random.normal(kv, log_pi.shape, log_pi.dtype)
    v = g / jnp.linalg.norm(g, axis=-1, keepdims=True)
    log_pert = log_softmax(log_pi + mu * v, axis=-1)
    y = jax.random.categorical(ky, log_pi, axis=-1)
    y2 = jax.random.categorical(ky2, log_pert, axis=-1)
    p = jnp.clip(0.5 + _pair_entries(A, y2, y), 0.0, 1.0)
    w = jax.random.binomial(kw, jnp.full(p.shape, queries, p.dtype), p).astype(p.dtype)
    rate = w / jnp.maximum(queries, 1.0)
    sampled = jnp.clip(jnp.log(rate) - jnp.log1p(-rate), -trim, trim)
    exact = jnp.sum(jnp.exp(log_pert) * matvec(log_odds_game(A, trim), jnp.exp(log_pi)), axis=-1)
    return v, jnp.where(queries > 0, sampled, exact), y, y2, w


def zpg_update(log_pi, sum_dv, eta, mu, perturbations):
    r"""ZPG's parameter step (Zhang & Ying 2024, Alg. 1) on the logits θ = log π, given the draws:

        θ_{t+1} = θ_t + η ĝ_t,   ĝ_t = (n/(Nμ)) Σ_{k=1..N} d_k v_k,

    `sum_dv` = Σ_k d_k v_k over the N = `perturbations` draws of `zpg_draw`, n the number of logits per
    context (the dimension of the sphere). η is the paper's step size α (a learning rate, ascent).
    E_v[(n/μ)(V(θ + μv) − V(θ))v] is the gradient of the ball-smoothed value (Flaxman et al. 2005).
    """
    n = log_pi.shape[-1]
    return log_softmax(log_pi + eta * n / (perturbations * mu) * sum_dv, axis=-1)


def zpg_direction(key_data, A, log_pi, mu, perturbations, queries, trim):
    """Σ_k d_k v_k over N = `perturbations` draws of `zpg_draw`, the k-th from fold_in(sub, k) with
    (key, sub) = split(key) (a loop, so that N may be a traced hyperparameter). Returns (Σ d_k v_k,
    next key data)."""
    key, sub = jax.random.split(jax.random.wrap_key_data(key_data))

    def body(k, total):
        v, d, *_ = zpg_draw(jax.random.fold_in(sub, k), A, log_pi, mu, queries, trim)
        return total + d[..., None] * v

    total = jax.lax.fori_loop(0, perturbations.astype(jnp.int32), body, jnp.zeros_like(log_pi))
    return total, jax.random.key_data(key)


def exp3_policy(log_w, gamma):
    r"""log p, p = (1 − γ) w/Σw + γ/n: EXP3's played distribution (Auer et al. 2002, Fig. "Exp3", step 1)."""
    n = log_w.shape[-1]
    return jnp.logaddexp(jnp.log1p(-gamma) + log_softmax(log_w, axis=-1), jnp.log(gamma / n))


def sparring_draw(key, A, log_p_left, log_p_right):
    r"""One duel of Sparring (Ailon, Karnin & Joachims 2014, §4), per context: x ~ p_L, y ~ p_R, the
    oracle's answer b ~ Bernoulli(P(x ≻ y)). `key` is a typed PRNG key. Returns (x, y, b)."""
    kx, ky, kb = jax.random.split(key, 3)
    x = jax.random.categorical(kx, log_p_left, axis=-1)
    y = jax.random.categorical(ky, log_p_right, axis=-1)
    b = jax.random.bernoulli(kb, jnp.clip(0.5 + _pair_entries(A, x, y), 0.0, 1.0)).astype(log_p_left.dtype)
    return x, y, b


def sparring_wins(key_data, A, log_p_left, log_p_right, duels):
    """(W_L, W_R, next key data): over N = `duels` draws of `sparring_draw` (the i-th from fold_in(sub, i),
    (key, sub) = split(key)), W_L[j] = Σ_i 1[x_i = j] b_i and W_R[j] = Σ_i 1[y_i = j](1 − b_i)."""
    key, sub = jax.random.split(jax.random.wrap_key_data(key_data))
    n = log_p_left.shape[-1]

    def body(i, wins):
        x, y, b = sparring_draw(jax.random.fold_in(sub, i), A, log_p_left, log_p_right)
        return (wins[0] + jax.nn.one_hot(x, n, dtype=b.dtype) * b[..., None],
                wins[1] + jax.nn.one_hot(y, n, dtype=b.dtype) * (1 - b)[..., None])

    zero = jnp.zeros_like(log_p_left)
    wins = jax.lax.fori_loop(0, duels.astype(jnp.int32), body, (zero, zero))
    return *wins, jax.random.key_data(key)


def exp3_update(log_w, log_p, wins, eta, duels):
    r"""EXP3's weight step (Auer, Cesa-Bianchi, Freund & Schapire 2002, Fig. "Exp3", steps 3–4) with N
    plays per round: the importance-weighted reward r̂_j = W_j/(N p_j) (W_j the reward won with arm j,
    p the played distribution), then w_j ← w_j exp(η r̂_j); normalized (log_softmax), which changes
    no p. The paper's η is γ/K. E[r̂_j] is arm j's expected reward: unbiased.
    """
    return log_softmax(log_w + eta * wins / (jnp.maximum(duels, 1.0) * jnp.exp(log_p)), axis=-1)


def sparring_exact_update(log_w_left, log_w_right, A, eta, gamma):
    r"""The expected Sparring/EXP3 exponent (duels = 0): r̂ replaced by its expectation, E[r̂_L] = Pp_R and
    E[r̂_R] = Pp_L (A for P: the constant 1/2 cancels in w/Σw), i.e. Hedge on the weights with the payoff
    taken at the opponent's γ-mixed policy p = `exp3_policy`. This is the step's mean exponent, not the
    mean of exp(η r̂). Returns (log w_L, log w_R)."""
    p_left, p_right = (jnp.exp(exp3_policy(lw, gamma)) for lw in (log_w_left, log_w_right))
    return (log_softmax(log_w_left + eta * matvec(A, p_right), axis=-1),
            log_softmax(log_w_right + eta * matvec(A, p_left), axis=-1))


def f_omd_update(log_pi, A, log_ref, eta, tau, f_prime):
    r"""Mirror descent on the f-regularized game (`gamesim.core.divergences`), explicit in the regularizer:

        log π_{t+1} = log π_t + η[(Aπ_t) − τ f′(π_t/π_ref)] − log Z,

    the entropic mirror step on the gradient of π ↦ πᵀPπ_t − τ D_f(π‖π_ref) at π_t (the regularizer
    linearized at π_t; A = P − 1/2, the constant η/2 cancels in Z). `f_prime(ℓ)` is f′ as a function of
    ℓ = log(π/π_ref) (`divergences.f_prime_log`). For reverse KL, f′ = ℓ + 1 and the step is
    (1 − ητ) log π_t + ητ log π_ref + ηAπ_t − log Z, `omd_update` (equal up to rounding). Its fixed
    points are the f-equilibria, (Aπ)_y − τ f′(π_y/π_ref(y)) = λ (Wang et al. 2023, f-DPO, their
    optimality condition with the reward replaced by the self-play score Aπ). Learning-rate convention:
    η multiplies the scores.

    Step size. Linearized at π*, the regularizer's part of the step multiplies δℓ_y by 1 − ητ h(ℓ*_y),
    h(ℓ) = d f′/dℓ = u f″(u) (1 for reverse KL, 1/(1 + u) ≤ 1 for JS, 1/u for forward KL, u^{−α} for α,
    u = π*/π_ref): so ητ max_y h(ℓ*_y) < 2 is needed, which for forward KL and α is stricter than OMD's
    ητ ≤ 1 where π* ≪ π_ref (small τ); the skew part ηA adds rotation, as for OMD. The registry enforces
    ητ ≤ 1; measured limits are in the README's f-divergence section.

    Guard: f′ is evaluated at max(ℓ, F_LOG_RATIO_FLOOR) (ℓ ≥ −600, π/π_ref ≥ e^{−600}), which no
    converging run reaches; it keeps ητ f′ finite when a too-large η makes the iterates blow up (forward
    KL's −1/u overflows float64 below u = e^{−709}), so such a run shows an infinite gap, never a NaN.
    """
    pi = jnp.exp(log_pi)
    ratio = jnp.maximum(log_pi - log_ref, F_LOG_RATIO_FLOOR)
    return log_softmax(log_pi + eta * (matvec(A, pi) - tau * f_prime(ratio)), axis=-1)


F_LOG_RATIO_FLOOR = -600.0
"""`f_omd_update` evaluates f′(π/π_ref) at log(π/π_ref) ≥ this: e^{600}/α ≤ 4e262 stays finite times ητ ≤ 1."""
OPTIMISTIC_FIT_STEPS = 40


def optimistic_bradley_terry_fit(scores, weights, wins, log_ref, tau, bonus, optimism=None):
    r"""The implicit reward of XPO's / VPO's tabular objective: with log π_r = log π_ref + r/τ − log Z,

        r = argmin_r −Σ_{y,y'} wins_{yy'} log σ(r_y − r_y') + κ Σ_y q(y) log π_r(y)   (κ = `bonus` · τ),

    i.e. the Bradley-Terry likelihood of `bradley_terry_fit` plus the optimism term over the
    distribution q of its samples (`optimism`; default π_ref, the papers'). Its stationarity
    condition (derived: the likelihood's gradient sums to 0, ∂_r κ⟨q, log π_r⟩ = (κ/τ)(q − π_r)):

        G(r) = Σ_y' (w_yy' σ(r_y − r_y') − wins_yy') − bonus·(π_r − q) = 0,   bonus = κ/τ.

    The objective is not convex (−KL(π_ref‖π_r) is concave); its convex part's Hessian H (that of
    `bradley_terry_fit`, with its relative ridge in H only, so that the fixed point is G = 0 itself,
    unbiased; G ⊥ 1 keeps r's mean, which π_r ignores) preconditions the fixed-point iteration r ← r − H⁻¹G(r),
    OPTIMISTIC_FIT_STEPS times from `scores`: the convex-concave procedure with its convex part
    solved by one Newton step, which converges linearly where bonus·‖diag π − ππᵀ‖/τ is below H's
    curvature (the condition under which `optimism_limit` guarantees a minimizer; tested against
    scipy.optimize). bonus = 0 is `bradley_terry_fit`. Shapes (C, n[, n]).
    """
    eye = jnp.eye(scores.shape[-1])
    ridge = BT_RIDGE * jnp.sum(weights, axis=-1) + jnp.finfo(scores.dtype).tiny
    q = jnp.exp(log_ref) if optimism is None else optimism

    def step(r, _):
        S = jax.nn.sigmoid(r[..., :, None] - r[..., None, :])
        pi = jax.nn.softmax(log_ref + r / tau, axis=-1)
        grad = jnp.sum(weights * S - wins, axis=-1) - bonus * (pi - q)
        M = weights * S * (1 - S)
        H = eye * (jnp.sum(M, axis=-1) + ridge)[..., None] - M
        return r - jnp.linalg.solve(H, grad[..., None])[..., 0], None

    return jax.lax.scan(step, scores, None, length=OPTIMISTIC_FIT_STEPS)[0]


def optimistic_dpo_update(log_pi, mean_weights, scores, A, log_ref, tau, alpha, t, log_partner, log_optimism,
                          vpo):
    r"""Population XPO / VPO: online DPO on all the data so far plus an optimism term, minimized exactly
    over tabular policies. β = τ (the KL weight); no learning rate (each step is an argmin).

    XPO (Xie et al. 2024, Alg. 1): at iteration t pairs y ~ π_t, ỹ ~ π_ref (`log_partner` = log π_ref)
    are labelled by P and ỹ joins the optimism data; π_{t+1} minimizes, over all i ≤ t,

        α Σ_i log π(ỹ_i) − Σ_i log σ(β log(π(y⁺_i)/π_ref(y⁺_i)) − β log(π(y⁻_i)/π_ref(y⁻_i))).

    Divided by the t + 1 pairs and with each iteration's data replaced by its expectation:

        π_{t+1} = argmin_π α⟨π_ref, log π⟩ + L_BT(β log(π/π_ref); W̄_t),
        W̄_t = (1/(t+1)) Σ_{i≤t} (π_i π_refᵀ + π_ref π_iᵀ),  wins = W̄_t ⊙ P,

    `optimistic_bradley_terry_fit` at bonus α/β. VPO (Cen et al. 2024, online, π_cal = π_ref,
    optimism sign +): pairs y, y' ~ π_t (`log_partner` = log π_t), and the value regularizer
    αβ E_{π_ref}[log π] is added once to the summed likelihood, so divided by t + 1 its bonus is
    α/(t+1). `mean_weights` is W̄_{t−1} (its weight at t = 0 is 0); `log_optimism` the optimism
    term's distribution (π_ref; a mutant changes it). Returns (log π_{t+1}, W̄_t, r_{t+1}).

    Sources: neither paper's full text could be read when this was written; the objectives are
    Alg. 1 of XPO and VPO's online algorithm as their abstracts, TRL's XPOTrainer documentation
    (loss: DPO + α·log π(ref completion)) and secondary summaries state them. Unchecked against
    the papers: that VPO samples both responses from π_t, uses π_cal = π_ref online, and adds its
    regularizer once (not per pair); that XPO's optimism sum runs over all past ỹ.

    Derived facts (tests/test_optimism.py, the claim "xpo-stationary"): at α = 0 on a Bradley-Terry
    game P = σ(s_y − s_y') the fit is r = s + c, so π_{t+1} = π_ref e^{s/β}/Z, the KL-regularized
    optimum, from the first step on; at α > 0 each π_{t+1} satisfies the stationarity condition
    Σ_y' W̄_yy'(σ(r_y − r_y') − P_yy') = (α/β)(π_{t+1} − π_ref), r = β log(π_{t+1}/π_ref).
    """
    pi = jnp.exp(log_pi)
    partner = jnp.exp(log_partner)
    pairs = pi[..., :, None] * partner[..., None, :]
    mean_weights = mean_weights + (pairs + jnp.swapaxes(pairs, -1, -2) - mean_weights) / (t + 1)
    bonus = alpha / (t + 1) if vpo else alpha / tau
    scores = optimistic_bradley_terry_fit(scores, mean_weights, mean_weights * (0.5 + A), log_ref, tau, bonus,
                                          jnp.exp(log_optimism))
    return log_softmax(log_ref + scores / tau, axis=-1), mean_weights, scores
def nesterov_extrapolation(log_hat_next, log_hat, alpha):
    r"""APO's momentum step (He, Yuan & Gu 2024, Algorithm 1, the extrapolation after each
    iteration's preference optimization), in log space:

        π_{t+1} ∝ π̂_{t+1} (π̂_{t+1}/π̂_t)^α,   log π_{t+1} = (1 + α) log π̂_{t+1} − α log π̂_t − log Z,

    Nesterov's extrapolation of the proximal-point iterates π̂ (the policies the preference
    optimization returns) by the momentum weight α ∈ [0, 1); α = 0 is the plain iterative method.
    π_{t+1} is the reference (and the sampler) of the next optimization step.
    """
    return log_softmax((1 + alpha) * log_hat_next - alpha * log_hat, axis=-1)


def apo_dpo_update(log_pi, log_hat, scores, A, eta, alpha):
    r"""APO with DPO as its inner step (He, Yuan & Gu 2024, Algorithm 1 with the DPO loss), population form:

        π̂_{t+1} ∝ π_t exp(η r̂_t),
        π_{t+1} ∝ π̂_{t+1} (π̂_{t+1}/π̂_t)^α,

    the first `iterative_dpo_update` (DPO against reference π_t on pairs from π_t, r̂_t the
    Bradley-Terry fit, η = 1/β), the second `nesterov_extrapolation`.

    On a Bradley-Terry game r̂_t = s (the true scores, up to a constant), so log π̂_t = log π_0 +
    η c_t s with c_t − c_{t−1} = (1 − α^t)/(1 − α), c_t = t/(1 − α) − α(1 − α^t)/(1 − α)² (derived;
    `gamesim verify apo-bt`): the effective step grows to η/(1 − α) per iteration, the paper's
    acceleration. Returns (log π_{t+1}, log π̂_{t+1}, r̂_t). Valid for η > 0, 0 ≤ α < 1.
    """
    log_hat_next, scores = iterative_dpo_update(log_pi, scores, A, eta)
    return nesterov_extrapolation(log_hat_next, log_hat, alpha), log_hat_next, scores


def apo_sppo_update(log_pi, log_hat, A, eta, alpha):
    r"""APO with SPPO as its inner step (He, Yuan & Gu 2024, Algorithm 1 with SPPO's loss), population form:

        π̂_{t+1} ∝ π_t exp(η P(y ≻ π_t))       (`hedge_update`, SPPO eq. 4.1, η = 1/β),
        π_{t+1} ∝ π̂_{t+1} (π̂_{t+1}/π̂_t)^α     (`nesterov_extrapolation`).

    Returns (log π_{t+1}, log π̂_{t+1}). Valid for η > 0, 0 ≤ α < 1.
    """
    log_hat_next = hedge_update(log_pi, A, eta)
    return nesterov_extrapolation(log_hat_next, log_hat, alpha), log_hat_next


def anchored_bradley_terry_fit(scores, weights, wins, anchor, precision, steps):
    r"""The Bradley-Terry reward with a Gaussian prior centred at `anchor`, by Newton's method:

        r = argmin_r −Σ_{y,y'} wins_{yy'} log σ(r_y − r_y') + (λ/2)‖r − anchor‖²,   λ = `precision` > 0,

    `steps` Newton steps from `scores` (gradient Σ_y' (w_yy' σ(r_y − r_y') − wins_yy') + λ(r_y − a_y),
    Hessian diag(Σ_y' M_yy' + λ) − M, M = w σ(1 − σ)); weights = wins + winsᵀ. Strictly convex for
    λ > 0. One member of SEA's anchored ensemble (`sea_ts_update`); shapes (..., n[, n]).
    """
    eye = jnp.eye(scores.shape[-1])

    def newton(r, _):
        S = jax.nn.sigmoid(r[..., :, None] - r[..., None, :])
        grad = jnp.sum(weights * S - wins, axis=-1) + precision * (r - anchor)
        M = weights * S * (1 - S)
        H = eye * (jnp.sum(M, axis=-1) + precision)[..., None] - M
        return r - jnp.linalg.solve(H, grad[..., None])[..., 0], None

    return jax.lax.scan(newton, scores, None, length=steps)[0]


SEA_NEWTON_STEPS = 8
"""Newton steps per refit of each ensemble member (warm-started: one comparison changes per step)."""


def sea_thompson_pair(key, rewards, bai):
    r"""SEA's pair for one query per context (Liu et al. 2024, Thompson sampling over the epistemic
    reward; as `sail-sg/oat` oat/rm/model.py does it): shuffle the E ensemble members; y = argmax of the
    first member's reward (a posterior sample). The second response, by `bai`:

    - bai = 1, best-arm-identification TS (`EnnBAITS`, what oat's SEA example script runs): y' = argmax_{y'}
      Var_e(r_e(y) − r_e(y')), the response whose margin against y the ensemble is least sure of
      (oat/rm/uncertainty.py `logits_variance`; the variance is 0 at y' = y, so y' ≠ y);
    - bai = 0, explore-exploit TS (`EnnEETS`): y' = argmax of the first later member whose argmax
      differs from y, or y itself when all agree.

    `rewards` (E, C, n); returns (y, y'), each (C,).
    """
    order = jax.random.permutation(key, rewards.shape[0])
    best = jnp.argmax(rewards[order], axis=-1)  # (E, C)
    first, rest = best[0], best[1:]
    differs = rest != first
    pick = jnp.argmax(differs, axis=0)  # the first member that disagrees
    agreed = jnp.take_along_axis(rest, pick[None], axis=0)[0]
    explore_exploit = jnp.where(jnp.any(differs, axis=0), agreed, first)
    at_first = jnp.take_along_axis(rewards, jnp.broadcast_to(first[None, :, None], (rewards.shape[0], first.shape[0], 1)),
                                   axis=-1)  # (E, C, 1): each member's reward of y
    margin_variance = jnp.var(at_first - rewards, axis=0)  # (C, n)
    best_arm = jnp.argmax(margin_variance, axis=-1)
    return first, jnp.where(bai > 0, best_arm, explore_exploit)


def sea_ts_update(key_data, wins, noise, rewards, A, log_ref, tau, precision, bai):
    r"""One step of SEA (Sample-Efficient Alignment, Liu, Chen, Yang, Xu, Du & Lin 2024) in its tabular
    bandit form: Thompson sampling for the pair, one preference query, the epistemic reward refit.

    Epistemic model (the paper's ensemble, as `sail-sg/oat` trains it: every member on all the data,
    each regularized towards its own random initialization, oat/rm/networks.py `regularization`):
    member e's reward is `anchored_bradley_terry_fit` of all comparisons so far with prior precision
    λ, anchored at a_e = z_e/√λ, z_e ~ N(0, I) drawn once (`noise`): anchored ensembling (Pearce et al.
    2020; the randomized-prior sample of Osband et al. 2018), an exact posterior sample for a
    linear-Gaussian model, approximate for Bradley-Terry. Not a bootstrap (oat resamples no data) and
    not a Laplace posterior.

    Step: (y, y') = `sea_thompson_pair` (`bai`: which second-response rule); the hard oracle answers
    1[y ≻ y'] ~ Bernoulli(P(y ≻ y')); the answer is added to `wins` (a duel of y with itself, when every member agrees, is asked but
    informs nothing and is not recorded); every member is refit. The policy is the KL-regularized
    optimum of the posterior mean reward r̄ = mean_e r_e, π = softmax(log π_ref + r̄/τ): the target of
    SEA's policy learner (online DPO against π_ref, β = τ), with the reward model in place of the
    learner (gamesim's reading: the paper's section on the policy was not available to check).

    No exact form: the pair is a random function of the posterior, and the posterior depends on
    the realized answers, so the expected next state is not a map of the expected state.
    Returns (log π_{t+1}, wins, rewards, next key); shapes wins (C, n, n), rewards/noise (E, C, n).
    """
    key, k_pair, k_answer = jax.random.split(jax.random.wrap_key_data(key_data), 3)
    first, second = sea_thompson_pair(k_pair, rewards, bai)
    p = jnp.take_along_axis(jnp.take_along_axis(0.5 + A, first[:, None, None], axis=-2)[:, 0],
                            second[:, None], axis=-1)[:, 0]
    label = jax.random.bernoulli(k_answer, p).astype(wins.dtype)
    n = wins.shape[-1]
    one_hot = jax.nn.one_hot(first, n, dtype=wins.dtype)[:, :, None] * jax.nn.one_hot(second, n, dtype=wins.dtype)[:, None, :]
    informative = (first != second).astype(wins.dtype)[:, None, None]
    wins = wins + informative * (label[:, None, None] * one_hot
                                 + (1 - label[:, None, None]) * jnp.swapaxes(one_hot, -1, -2))
    weights = wins + jnp.swapaxes(wins, -1, -2)
    rewards = anchored_bradley_terry_fit(rewards, weights, wins, noise / jnp.sqrt(precision), precision,
                                         SEA_NEWTON_STEPS)
    log_pi = log_softmax(log_ref + jnp.mean(rewards, axis=0) / tau, axis=-1)
    return log_pi, wins, rewards, jax.random.key_data(key)
