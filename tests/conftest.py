"""Shared fixtures. JAX compiles once per shape and loop length: tests reuse a few of each."""

import os
import tempfile

import pytest
from hypothesis import settings

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
# the command line's JAX compilation cache goes to a scratch directory, not the user's cache
os.environ["GAMESIM_CACHE_DIR"] = tempfile.mkdtemp(prefix="gamesim-test-jax-cache-")


@pytest.fixture(scope="session")
def random_games():
    """Generic random games of the shapes the engine tests share."""
    from gamesim import load_game

    return [load_game(f"random:n=10,seed={s}") for s in range(4)]


@pytest.fixture
def float64():
    """For tests that call the pure functions directly: float64 without touching the global flag."""
    import jax

    with jax.enable_x64(True):
        yield


def normalize(w):
    return w / w.sum()
