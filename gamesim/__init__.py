"""gamesim: exact simulation of game-theoretic RLHF on preference games.

    >>> import gamesim
    >>> game = gamesim.load_game("cycle3")
    >>> gamesim.solve(game).policy * 11       # the von Neumann winner, (4, 3, 4)/11
    array([4., 3., 4.])
    >>> traj = gamesim.simulate(game, "inpo", eta=0.5, tau=0.1, iterations=1000)
    >>> bool(traj.metrics["gap_reg"][-1] < 1e-12)   # duality gap of the τ-regularized game
    True

Layers, each importing only those before it (docs/discussion/architecture.md): `core` (games, equilibria,
metric kernels, run directories), `dynamics` (updates, losses, algorithms, theory), `bandit`
(sampled feedback), `engine` (simulate), `lm` (transformer and MLP policies), `studies` (specs,
figures, claims, mutants, plugins), and on top this package's namespace and the CLI.
Heavy imports (JAX, SciPy) happen on first use, so `import gamesim` is fast.
"""

import importlib.abc
import importlib.util
import sys
from importlib import import_module

from gamesim.core import VERSION as __version__  # noqa: F401 (the package version, read as gamesim.__version__)
from gamesim.lm import sequences as _sequences  # noqa: F401 (registers the "sequence" game spec, which needs the lm layer)

_EXPORTS = {
    "PreferenceGame": "core.games", "load_game": "core.games",
    "solve": "core.equilibria", "Equilibrium": "core.equilibria", "duality_gap": "core.equilibria",
    "GamesimError": "core.errors",
    "Algorithm": "dynamics.algorithms", "Param": "dynamics.algorithms", "register_algorithm": "dynamics.algorithms",
    "simulate": "engine.simulation", "simulate_batch": "engine.simulation", "Trajectory": "engine.simulation",
    "Claim": "studies.claims", "register_claim": "studies.claims", "verify": "studies.claims",
    "load_plugin": "studies.plugins",
}
__all__ = ["Algorithm", "Claim", "Equilibrium", "GamesimError", "Param", "PreferenceGame", "Trajectory", "duality_gap",
           "load_game", "load_plugin", "register_algorithm", "register_claim", "simulate", "simulate_batch", "solve",
           "verify"]

MOVED = {
    "errors": "core.errors", "games": "core.games", "equilibria": "core.equilibria", "metrics": "core.metrics",
    "updates": "dynamics.updates", "losses": "dynamics.losses", "algorithms": "dynamics.algorithms",
    "theory": "dynamics.theory", "feedback": "bandit.feedback",
    "transformer": "lm.transformer", "sequences": "lm.sequences", "mlp": "lm.mlp", "study": "studies.study",
    "claims": "studies.claims", "mutants": "studies.mutants", "plugins": "studies.plugins",
}
"""Module paths of gamesim 0.1 before the layers, kept importable (`from gamesim.claims import
Claim`): each names the same module object as its new path, so registries are shared."""


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(import_module(f"gamesim.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'gamesim' has no attribute {name!r}")


class _MovedModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Resolves `gamesim.<old name>` to the module at its new path (see MOVED)."""

    def find_spec(self, fullname, path=None, target=None):
        head, _, old = fullname.partition(".")
        if head != "gamesim" or old not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        return import_module(f"gamesim.{MOVED[spec.name.partition('.')[2]]}")

    def exec_module(self, module):
        pass


sys.meta_path.append(_MovedModules())
