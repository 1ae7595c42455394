"""gamesim: exact simulation of game-theoretic RLHF on preference games.

    >>> import gamesim
    >>> game = gamesim.load_game("cycle3")
    >>> gamesim.solve(game).policy            # the von Neumann winner, (4, 3, 4)/11
    >>> traj = gamesim.simulate(game, "inpo", eta=0.5, tau=0.1, iterations=1000)
    >>> traj.metrics["gap_reg"][-1]           # duality gap of the τ-regularized game

Submodules: games (PreferenceGame, built-ins, CSV), equilibria (solve), metrics (gaps, regret),
algorithms (updates, step-size converters, your own `Algorithm`), losses (INPO/SPPO losses),
engine (simulate), claims/theory/mutants (`gamesim verify`), plugins (your code, on opt-in),
bandit (sampled feedback), transformer/sequences/lm (transformer mode), study/plots (figures), cli.
Heavy imports (JAX, SciPy) happen on first use, so `import gamesim` is fast.
"""

from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "PreferenceGame": "games", "load_game": "games",
    "solve": "equilibria", "Equilibrium": "equilibria",
    "duality_gap": "metrics",
    "simulate": "engine", "simulate_batch": "engine", "Trajectory": "engine",
    "GamesimError": "errors",
    "Algorithm": "algorithms", "Param": "algorithms", "register_algorithm": "algorithms",
    "Claim": "claims", "register_claim": "claims", "verify": "claims",
    "load_plugin": "plugins",
}
__all__ = ["Algorithm", "Claim", "Equilibrium", "GamesimError", "Param", "PreferenceGame", "Trajectory", "duality_gap",
           "load_game", "load_plugin", "register_algorithm", "register_claim", "simulate", "simulate_batch", "solve",
           "verify"]


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'gamesim' has no attribute {name!r}")
