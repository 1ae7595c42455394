"""Shared fixtures. JAX compiles once per shape and loop length: tests reuse a few of each."""

import os
import tempfile
from pathlib import Path

import jax
import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st

from gamesim import PreferenceGame

settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=50, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
# One scratch JAX compilation cache for the whole session, not the user's: the command line's (it
# reads GAMESIM_CACHE_DIR, subprocesses included) and the in-process library calls', so that a shape
# compiled by one pytest-xdist worker or command is loaded, not compiled again, by the others.
CACHE = Path(tempfile.gettempdir()) / f"gamesim-test-jax-cache-{os.environ.get('PYTEST_XDIST_TESTRUNUID', os.getpid())}"
CACHE.mkdir(exist_ok=True)
os.environ["GAMESIM_CACHE_DIR"] = str(CACHE)
jax.config.update("jax_compilation_cache_dir", str(CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


LONGEST_FIRST = ("tests/test_verify.py::TestMutationMatrix", "tests/test_stored_values.py", "tests/test_verify.py",
                 "tests/test_reproduce.py::TestQuick_bandit_gap", "tests/test_reproduce.py::TestQuick_sample_efficiency",
                 "tests/test_trust.py", "tests/test_lm.py", "tests/test_engine.py", "tests/test_study.py")
"""The test scopes that took longest in a measured two-worker run, longest first."""


def pytest_collection_modifyitems(config, items):
    """Run the longest scopes first (then the rest in collection order), so that the two workers
    finish together: the longest-processing-time-first rule, with pyproject's --no-loadscope-reorder."""
    def rank(item):
        return next((i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)), len(LONGEST_FIRST))

    items.sort(key=rank)


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


def assert_same_run(a, b, atol):
    np.testing.assert_allclose(a.policies, b.policies, atol=atol, rtol=0)
    for name in a.metrics:
        np.testing.assert_allclose(a.metrics[name], b.metrics[name], atol=atol, rtol=1e-12, err_msg=name)


@st.composite
def extreme_games(draw, n=4):
    """Games whose preferences are all 0, 1/2 or 1 (deterministic comparisons)."""
    L = np.tril(np.array(draw(st.lists(st.sampled_from([0.0, 0.5, 1.0]), min_size=n * n, max_size=n * n)))
                .reshape(n, n), -1)
    return PreferenceGame(L + np.triu(1 - L.T, 1) + 0.5 * np.eye(n))
