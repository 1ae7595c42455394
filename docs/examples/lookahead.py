"""Lookahead INPO, a worked example of your own method: INPO's step (INPO eq. 5, learning-rate
form) against an opponent moved towards its own regularized best response,

    π̂_t ∝ π_t^{1−λ} BR_τ(π_t)^λ,   π_{t+1} ∝ π_t^{1−ητ} π_ref^{ητ} exp(η A π̂_t),   λ = 0 is INPO,

and the claim that comes with it. Load it with `--plugin docs/examples/lookahead.py` or
`gamesim.load_plugin(...)`.
"""

import jax
import jax.numpy as jnp
import numpy as np

import gamesim
from gamesim.studies.claims import Claim, linear_convergence
from gamesim.dynamics.theory import local_rate


def lookahead_step(log_pi, A, log_ref, eta, tau, t, params):
    """One step on log π_t of shape (contexts, n); η is a learning rate (gamesim's convention)."""
    scores = lambda pi: jnp.einsum("...ij,...j->...i", A, pi)  # (Aπ)_y = P(y ≻ π) − 1/2
    log_br = jax.nn.log_softmax(log_ref + scores(jnp.exp(log_pi)) / tau, axis=-1)
    lam = params["lookahead"]
    opponent = jax.nn.softmax((1 - lam) * log_pi + lam * log_br, axis=-1)
    logits = (1 - eta * tau) * log_pi + eta * tau * log_ref + eta * scores(opponent)
    return jax.nn.log_softmax(logits, axis=-1)


gamesim.register_algorithm(gamesim.Algorithm(
    "lookahead-inpo", lookahead_step, citation="docs/examples/lookahead.py (a worked example)",
    converges_to="π*_τ, last iterate", needs_tau=True, schedules=("constant", "theorem"),
    params={"lookahead": gamesim.Param(0.5, 0.0, 1.0, "weight λ of BR_τ(π_t) in the opponent")}))


def converges_faster_than_inpo(ctx):
    """Linear convergence to π*_τ at the rate of the linearized step, and no slower than INPO's."""
    game, eta, tau = ctx.game, 2.0, 0.2
    star = gamesim.solve(game, tau).policy
    inpo_rate, _ = local_rate(ctx.reference("inpo").step, np.log(game.stack_policy(star)), game.payoff,
                              np.log(game.stacked_reference), eta, tau)
    return linear_convergence(ctx, "lookahead-inpo", eta=eta, tau=tau, limit=star, params={"lookahead": 0.5},
                              label="λ = 0.5, η = 2, τ = 0.2", theorem_rate=inpo_rate ** 2)


gamesim.register_claim(Claim(
    "lookahead-linear", "docs/examples/lookahead.py", "lookahead INPO converges linearly to π*_τ, "
    "no slower than INPO at the same η", converges_faster_than_inpo, algorithms=("lookahead-inpo",),
    games=("cycle3", "random:n=10,seed=0,ref_seed=1", "soccer"), quick_games=("cycle3",), kind="derivation"))
