"""Plain-numpy transcriptions of the papers' updates and closed forms, shared by the tests.

Each is written in probability space with P itself (not gamesim's A = P − 1/2), independently of
gamesim's JAX code, in the paper's own form: gamesim's steps are checked against them (to 1e-12
over 100 steps in test_algorithms.py and test_algorithm_family.py).

A step is step(pi, P, ref, eta, tau, t) → π_{t+1}, t = 0, 1, … the iteration (fictitious play
uses it); the stateful ones (optimistic, refreshing, iterative DPO) are classes: one object per run.
"""

import numpy as np
from scipy.special import logsumexp

from gamesim.dynamics.updates import BT_RIDGE


def normalize(w):
    return w / w.sum()


def kl(p, q):
    """KL(p‖q), 0 log 0 = 0."""
    p, q = np.asarray(p), np.asarray(q)
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def gap_closed_form(P, ref, pi, tau):
    """DualGap_τ(π) = 2[τ log Σ π_ref e^{(Pπ)/τ} + τ KL(π‖π_ref) − 1/2] (the issue's closed form)."""
    return 2 * (tau * logsumexp(P @ pi / tau, b=ref) + tau * kl(pi, ref) - 0.5)


def mixture(pi, ref, beta):
    """NLHF eq. 3's geometric mixture π^{1−β} π_ref^β, normalized (β = ητ in Nash-MD)."""
    return normalize(pi ** (1 - beta) * ref ** beta)


# --- the updates ---------------------------------------------------------------------------------------
def inpo_eq5(pi, P, ref, eta_inpo, tau):
    """INPO eq. 5: π_{t+1} ∝ exp(P(y≻π_t)/η) π_ref^{τ/η} π_t^{1−τ/η}, η the inverse learning rate."""
    return normalize(np.exp(P @ pi / eta_inpo) * ref ** (tau / eta_inpo) * pi ** (1 - tau / eta_inpo))


def omd(pi, P, ref, eta, tau, t=0):
    """OMD / INPO at learning rate η: INPO eq. 5 with its inverse learning rate 1/η (NLHF eqs. 7–8)."""
    return inpo_eq5(pi, P, ref, 1 / eta, tau)


def nash_md_eq34(pi, P, ref, eta, tau, t=0):
    """NLHF eq. 3 (the geometric mixture at β = ητ) and eq. 4 (a mirror step against it)."""
    mix = mixture(pi, ref, eta * tau)
    return normalize(mix * np.exp(eta * P @ mix))


def hedge(pi, P, ref, eta, tau, t=0):
    """SPPO eq. 4.1: π_{t+1} ∝ π_t exp(η P(y ≻ π_t)) (Hedge; DNO and iterative IPO take the same step)."""
    return normalize(pi * np.exp(eta * P @ pi))


class Optimistic:
    """Optimistic OMD, one-line form: π_{t+1} ∝ π_t^{1−ητ} π_ref^{ητ} exp(η(2Pπ_t − Pπ_{t−1})), Pπ_{−1} = Pπ_0."""

    def __init__(self):
        self.prev = None

    def __call__(self, pi, P, ref, eta, tau, t=0):
        now = P @ pi
        prev = now if self.prev is None else self.prev
        self.prev = now
        return normalize(pi ** (1 - eta * tau) * ref ** (eta * tau) * np.exp(eta * (2 * now - prev)))


def extragradient(pi, P, ref, eta, tau, t=0):
    """EGPO's tabular step: an OMD half step, then the OMD step from π_t against the half step."""
    half = normalize(pi ** (1 - eta * tau) * ref ** (eta * tau) * np.exp(eta * P @ pi))
    return normalize(pi ** (1 - eta * tau) * ref ** (eta * tau) * np.exp(eta * P @ half))


def mmd(pi, P, ref, eta, tau, t=0):
    """MMD (Sokota et al. 2023) eq. 12: [π_t ρ^{αη} e^{η q_t}]^{1/(1+αη)}, magnet ρ = π_ref, α = τ."""
    return normalize((pi * ref ** (tau * eta) * np.exp(eta * P @ pi)) ** (1 / (1 + tau * eta)))


class Refreshing:
    """COMAL / MPO: an inner step towards the magnet's regularized equilibrium; the magnet is reset to
    the iterate every `every` steps or once the inner gap is ≤ `gap_threshold`."""

    def __init__(self, inner, every, gap_threshold=0.0):
        self.inner, self.every, self.eps, self.magnet, self.since = inner, every, gap_threshold, None, 0

    def __call__(self, pi, P, ref, eta, tau, t=0):
        magnet = ref if self.magnet is None else self.magnet
        new = self.inner(pi, P, magnet, eta, tau, t)
        self.since += 1
        if self.since >= self.every or gap_closed_form(P, magnet, new, tau) <= self.eps:
            magnet, self.since = new, 0
        self.magnet = magnet
        return new


def logit_step(pi, eta, weights, advantage):
    """A policy-gradient step on the logits: π ∝ π exp(η w ⊙ (a − ⟨w, a⟩))."""
    return normalize(pi * np.exp(eta * weights * (advantage - weights @ advantage)))


def online_ipo(pi, P, ref, eta, tau, t=0, beta=0.0):
    """Calandriello et al. 2024: online IPO (β = 0, eq. 11's expected gradient) and IPO-MD (β > 0,
    pairs from the mixture π' ∝ π^{1−β}π_ref^β), both weighted by π'."""
    mix = mixture(pi, ref, beta)
    return logit_step(pi, eta, mix, P @ mix - tau * np.log(pi / ref))


def nash_md_pg(pi, P, ref, eta, tau, t=0, beta=0.0):
    """Calandriello et al. 2024, Nash-MD-PG: the policy gradient weighted by π against the mixture π'."""
    mix = mixture(pi, ref, beta)
    return logit_step(pi, eta, pi, P @ mix - tau * np.log(pi / ref))


class IterativeDPO:
    """Iterative DPO: the Bradley-Terry reward fitted by Newton on the π⊗π-weighted likelihood (with
    gamesim's ridge BT_RIDGE, scaled by each response's comparison mass), then π_t exp(η r)."""

    def __init__(self):
        self.r = None

    def __call__(self, pi, P, ref, eta, tau, t=0):
        r = np.zeros_like(pi) if self.r is None else self.r
        W = np.outer(pi, pi)
        for _ in range(12):
            S = 1 / (1 + np.exp(-(r[:, None] - r[None, :])))
            ridge = BT_RIDGE * W.sum(1)
            grad = (W * (S - P)).sum(1) + ridge * r
            M = W * S * (1 - S)
            r = r - np.linalg.solve(np.diag(M.sum(1) + ridge) - M, grad)
        self.r = r
        return normalize(pi * np.exp(eta * r))


def fictitious_play(pi, P, ref, eta, tau, t=0):
    """Fictitious play (Brown 1951; smooth at τ > 0): the running average of (regularized) best responses."""
    br = normalize(ref * np.exp(P @ pi / tau)) if tau > 0 else np.eye(len(pi))[np.argmax(P @ pi)]
    return (1 - 1 / (t + 2)) * pi + br / (t + 2)


def replicator(pi, P, ref, eta, tau, t=0):
    """Discrete replicator dynamics: π_{t+1}(y) = π_t(y)(1 + η((Pπ_t)_y − π_tᵀPπ_t))."""
    return pi * (1 + eta * (P @ pi - pi @ P @ pi))


# --- stochastic methods, given their draws -----------------------------------------------------------------
def zpg_value_difference(P, pi, perturbed, y, y2, wins, queries, trim):
    """ZPG (Zhang & Ying 2024, Alg. 1): the trimmed inverse Bradley-Terry link of the empirical rate at which
    the perturbed policy's response y2 beat the current one's y, Π_D[σ⁻¹(w/M)]; with M = 0 (infinitely
    many queries, responses in expectation) Σ_{y,y2} π(y) π'(y2) Π_D[σ⁻¹(P(y2 ≻ y))]."""
    link = lambda p: np.clip(np.log(p) - np.log(1 - p), -trim, trim)  # noqa: E731
    if queries == 0:
        return float(perturbed @ link(P) @ pi)
    with np.errstate(divide="ignore"):
        return float(link(wins / queries))


def zpg(pi, P, eta, mu, directions, queries, trim, y, y2, wins):
    """ZPG's step on the logits θ = log π given the perturbations v_k and their draws:
    θ + η (n/(Nμ)) Σ_k d_k v_k, d_k the value difference between π_{θ+μv_k} and π_θ."""
    theta, n = np.log(pi), len(pi)
    g = np.zeros(n)
    for k, v in enumerate(directions):
        perturbed = normalize(np.exp(theta + mu * v))
        g += zpg_value_difference(P, pi, perturbed, y[k], y2[k], wins[k], queries, trim) * v
    return normalize(np.exp(theta + eta * n / (len(directions) * mu) * g))


def exp3_played(w, gamma):
    """EXP3 (Auer et al. 2002, Fig. "Exp3"): p = (1 − γ) w/Σw + γ/K."""
    return (1 - gamma) * normalize(w) + gamma / len(w)


def exp3(w, gamma, eta, arms, rewards):
    """EXP3's weight update over N plays of the round's p: x̂_j = Σ_{i: arm_i = j} reward_i/(N p_j),
    w_j ← w_j exp(η x̂_j) (the paper: N = 1, η = γ/K)."""
    p = exp3_played(w, gamma)
    xhat = np.zeros(len(w))
    for j, r in zip(arms, rewards):
        xhat[j] += r / (len(arms) * p[j])
    return normalize(w * np.exp(eta * xhat))


def sparring_expected(w_left, w_right, P, gamma, eta):
    """Sparring's expected EXP3 exponent: each learner's x̂ replaced by E[x̂] = P p_opponent."""
    p_left, p_right = exp3_played(w_left, gamma), exp3_played(w_right, gamma)
    return normalize(w_left * np.exp(eta * P @ p_right)), normalize(w_right * np.exp(eta * P @ p_left))
# --- f-DPO's divergences (Wang et al. 2023, arXiv 2309.16240: their f and f′) ------------------------------
def f_prime(name, u, alpha=None):
    """f′(u) as f-DPO lists it: log u + 1, −1/u, log(2u/(1 + u)), (1 − u^{−α})/α."""
    return {"reverse-kl": lambda: np.log(u) + 1, "forward-kl": lambda: -1 / u,
            "js": lambda: np.log(2 * u / (1 + u)), "alpha": lambda: (1 - u ** (-alpha)) / alpha}[name]()


def f_fn(name, u, alpha=None):
    """f(u): u log u, −log u, u log u − (u + 1) log((u + 1)/2), (u^{1−α} − (1−α)u − α)/(α(α − 1))."""
    return {"reverse-kl": lambda: u * np.log(u), "forward-kl": lambda: -np.log(u),
            "js": lambda: u * np.log(u) - (u + 1) * np.log((u + 1) / 2),
            "alpha": lambda: (u ** (1 - alpha) - (1 - alpha) * u - alpha) / (alpha * (alpha - 1))}[name]()


def f_omd(name, alpha=None):
    """Mirror descent on π₁ᵀPπ₂ − τD_f(π₁‖π_ref) + τD_f(π₂‖π_ref), regularizer linearized at π_t, in
    probability space with P: π_{t+1} ∝ π_t exp(η[P(y ≻ π_t) − τ f′(π_t(y)/π_ref(y))])."""

    def step(pi, P, ref, eta, tau, t=0):
        return normalize(pi * np.exp(eta * (P @ pi - tau * f_prime(name, pi / ref, alpha))))

    return step


class OptimisticDPO:
    """XPO (Xie et al. 2024, Alg. 1) / online VPO (Cen et al. 2024, π_cal = π_ref) in population form,
    in probability space: the pairs so far (y ~ π_i, y' ~ π_ref for XPO, y' ~ π_i for VPO, mass 1 each)
    labelled by P, and π_{t+1} the stationary point of

        Σ_i E[−log σ(β log(π(y⁺)/π_ref(y⁺)) − β log(π(y⁻)/π_ref(y⁻)))] + c Σ_y π_ref(y) log π(y),

    c = (t+1)α (XPO: one ỹ ~ π_ref per pair) or αβ (VPO: the regularizer once), found by
    scipy.optimize.root on the gradient in the free logits (the last pinned at 0)."""

    def __init__(self, vpo=False):
        self.vpo, self.pairs = vpo, []

    def __call__(self, pi, P, ref, alpha, beta, t=0):
        from scipy.optimize import root

        self.pairs.append(np.outer(pi, pi if self.vpo else ref))
        W = sum(m + m.T for m in self.pairs)
        c = alpha * beta if self.vpo else len(self.pairs) * alpha
        n = len(pi)

        def gradient(free):
            logits = np.append(free, 0.0)
            p = np.exp(logits - logsumexp(logits))
            h = beta * (np.log(p) - np.log(ref))
            S = 1 / (1 + np.exp(-(h[:, None] - h[None, :])))
            # d/dθ of the summed −log-likelihood: β Σ_y' W(σ − P), projected by the softmax Jacobian
            g_h = (W * (S - P)).sum(1)
            return (beta * (g_h - p * g_h.sum()) + c * (ref - p))[: n - 1]

        start = np.log(pi[: n - 1]) - np.log(pi[-1])
        sol = root(gradient, start, method="hybr", options={"xtol": 1e-15})
        logits = np.append(sol.x, 0.0)
        return np.exp(logits - logsumexp(logits))
class APO:
    """APO (He, Yuan & Gu 2024) Algorithm 1: the inner preference optimization against reference π_t gives
    π̂_{t+1}; the next reference is the extrapolation π_{t+1} ∝ π̂_{t+1} (π̂_{t+1}/π̂_t)^α. Returns π̂_{t+1}
    (what gamesim records); π_0 = π̂_0."""

    def __init__(self, inner, alpha):
        self.inner, self.alpha, self.hat, self.ref = inner, alpha, None, None

    def __call__(self, pi, P, ref, eta, tau, t=0):
        hat, reference = (pi, pi) if self.hat is None else (self.hat, self.ref)
        new_hat = self.inner(reference, P, ref, eta, tau, t)
        self.ref = normalize(new_hat * (new_hat / hat) ** self.alpha)
        self.hat = new_hat
        return new_hat


def oat_duel(best, order):
    """SEA's pair as `sail-sg/oat` EnnEETS.get_duel_actions picks it: `best[e]` the argmax of member e,
    `order` the shuffled members; the first member's choice, then the first later choice that differs
    (else the same response)."""
    first = best[order[0]]
    for e in order[1:]:
        if best[e] != first:
            return first, best[e]
    return first, first


def oat_bai_second(rewards, first):
    """SEA's second response under oat's EnnBAITS: the response whose logit margin against `first` has the
    largest variance over the ensemble (`rewards` (E, n))."""
    margins = rewards[:, [first]] - rewards
    return int(np.argmax(margins.var(axis=0)))


def anchored_bt_objective(r, wins, anchor, precision):
    """−Σ wins_{yy'} log σ(r_y − r_y') + (λ/2)‖r − anchor‖²: one SEA ensemble member's MAP objective."""
    d = r[:, None] - r[None, :]
    return float(np.sum(wins * np.logaddexp(0.0, -d)) + precision / 2 * np.sum((r - anchor) ** 2))


def anchored_bt_gradient(r, wins, anchor, precision):
    """The objective's gradient: ∂/∂r_y of the wins of y (−σ(−d_yy') each) and of its losses (+σ(−d_y'y))."""
    lose = 1 / (1 + np.exp(r[:, None] - r[None, :]))  # σ(−(r_y − r_y'))
    return -(wins * lose).sum(1) + (wins.T * (1 - lose)).sum(1) + precision * (r - anchor)
