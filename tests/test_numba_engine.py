"""The engine's numba path: the JAX path's trajectories to 1e-12, and chosen only where it applies."""

import dataclasses

import numpy as np
import pytest
from conftest import assert_same_run, extreme_games
from hypothesis import given
from hypothesis import strategies as st

import gamesim.engine.simulation as engine
import gamesim.engine.numba_backend as numba_engine
from gamesim import GamesimError, load_game, simulate, simulate_batch
from gamesim.dynamics.algorithms import ALGORITHMS, get_algorithm, numba_chain

INITS = ["reference", "random", "uniform", "random"]


SUMS = ("regret", "linear_regret")
"""Metrics read off sums over the t + 1 iterates played (Σ log(π_s/π_ref) grows like t)."""


def both_paths(*args, **kwargs):
    return [simulate_batch(*args, backend=b, **kwargs) for b in ("jax", "numba")]


def assert_same_records(a, b):
    """Policies and metrics to 1e-12; the regrets to 1e-12 per iterate summed, since they subtract
    sums of t + 1 terms that each carry the paths' last-digit differences (XLA's exp and matvec
    round differently from libm's and a loop's)."""
    np.testing.assert_allclose(a.policies, b.policies, atol=1e-12, rtol=0)
    for name in a.metrics:
        bound = (1e-12 * (a.iterations + 1) if name in SUMS else 1e-12) + 1e-12 * np.abs(a.metrics[name])
        error = np.abs(a.metrics[name] - b.metrics[name])
        assert np.all(error <= bound), f"{name}: differs by up to {error.max():.3g} (bound {bound.max():.3g})"


@pytest.mark.parametrize("name, kwargs", [
    ("omd", {"eta": 0.5, "tau": 0.1}),
    ("inpo", {"tau": 0.2, "schedule": "theorem"}),
    ("nash-md", {"eta": 0.3, "tau": 0.1}),
    ("nash-md", {"tau": 0.5, "schedule": "theorem"}),
    ("sppo", {"eta": 0.5}),
    ("dno", {"eta": 2.0}),
])
@pytest.mark.slow
def test_numba_path_gives_the_jax_trajectories(random_games, name, kwargs):
    """Four different games and initial policies, 1000 iterations: the same records."""
    assert_same_records(*both_paths(random_games, name, seeds=[0, 1, 2, 3], inits=INITS, iterations=1000,
                                    record_every=50, **kwargs))


def test_every_mirror_chain_algorithm_is_covered():
    chains = {numba_chain(a) for a in ALGORITHMS.values()} - {None}
    assert chains == set(numba_engine.CHAINS)
    assert {n for n, a in ALGORITHMS.items() if numba_chain(a)} == {"omd", "inpo", "nash-md", "sppo", "dno",
                                                                    "iterative-ipo"}


def _half_step_omd():
    """A user's modified copy of OMD: the same object in every respect but its step (half the step)."""
    from gamesim.dynamics import updates

    return dataclasses.replace(get_algorithm("omd"),
                               step=lambda s, A, r, eta, tau, t, p: updates.omd_update(s, A, r, eta / 2, tau))


@pytest.mark.slow
def test_a_modified_copy_runs_its_own_step_on_every_backend():
    """2·10⁵ iterations, record_every 1000, where auto takes numba for the registered OMD: the copy
    runs its own (half) step on auto and jax, equal to the registered OMD at η/2 (JAX path), and numba
    refuses it."""
    game, kw = load_game("random:n=10,seed=1"), {"tau": 0.001, "iterations": 200_000, "record_every": 1000}
    mine = _half_step_omd()
    assert numba_chain(mine) is None and numba_chain(dataclasses.replace(get_algorithm("omd"), citation="x"))
    assert engine.choose_backend("auto", get_algorithm("omd"), game, dtype="float64", runs=1,
                                 iterations=kw["iterations"], record_every=kw["record_every"]) == "numba"
    original = simulate(game, "omd", eta=0.4, backend="numba", **kw)
    half = simulate(game, "omd", eta=0.2, backend="jax", **kw)
    for backend in ("auto", "jax"):
        run = simulate(game, mine, eta=0.4, backend=backend, **kw)
        np.testing.assert_allclose(run.policies, half.policies, atol=1e-12, rtol=0)
        assert np.abs(run.policies[1] - original.policies[1]).max() > 1e-3
    with pytest.raises(GamesimError, match="never a modified or user-defined step"):
        simulate(game, mine, eta=0.4, backend="numba", **kw)


@pytest.mark.slow
def test_numba_path_on_a_shared_game_and_on_contexts():
    """One game shared by runs of different η (stored once), and a game with two contexts."""
    assert_same_records(*both_paths(load_game("random:n=10,seed=5"), "omd", eta=[0.1, 0.3, 0.9, 0.5], tau=0.2,
                                    iterations=1000, record_every=50))
    contextual = load_game("random:n=10,seed=6,contexts=2,ref_seed=3")
    assert_same_records(*both_paths(contextual, "nash-md", eta=[0.5, 0.2, 0.5, 0.5], tau=0.1, iterations=1000,
                                    record_every=50))


def test_numba_path_finds_the_biased_rps_winner():
    """Known answer: SPPO's (Hedge's) average iterate on biased RPS → (1/16, 10/16, 5/16)."""
    traj = simulate("biased_rps", "sppo", eta=0.1, iterations=100_000, record_every=100_000, backend="numba")
    assert traj.metrics["gap_avg"][-1] < 1e-3
    assert traj.metrics["gap_avg"][-1] < 0.01 * traj.metrics["gap_avg"][0]


@pytest.mark.slow
def test_a_run_resumes_across_paths():
    """The numba state is the JAX carry leaf for leaf: JAX for 500 iterations, then numba to 1000,
    equals JAX throughout."""
    whole = simulate("cycle3", "nash-md", eta=0.3, tau=0.1, iterations=1000, record_every=50, backend="jax")
    first = simulate("cycle3", "nash-md", eta=0.3, tau=0.1, iterations=500, record_every=50, backend="jax")
    rest = simulate("cycle3", "nash-md", eta=0.3, tau=0.1, iterations=1000, record_every=50, resume_from=first,
                    backend="numba")
    assert_same_records(whole, rest)
    np.testing.assert_array_equal(whole.iterations, rest.iterations)
    back = simulate("cycle3", "nash-md", eta=0.3, tau=0.1, iterations=1500, record_every=50, resume_from=rest,
                    backend="jax")
    assert back.iterations[-1] == 1500 and np.all(np.isfinite(back.policies))


def test_numba_interrupt_keeps_completed_chunks(monkeypatch):
    """Ctrl-C between numba chunks returns the completed records; the run resumes from them."""
    monkeypatch.setattr(engine, "CHUNK_WORK", 1.0)  # one record per chunk
    advance, calls = numba_engine.advance, {"n": 0}

    def interrupting(*args):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return advance(*args)

    monkeypatch.setattr(numba_engine, "advance", interrupting)
    part = simulate("cycle3", "omd", eta=0.5, tau=0.1, iterations=100, record_every=10, backend="numba")
    assert part.interrupted and part.iterations[-1] == 30 and len(part.policies) == 4
    monkeypatch.undo()
    done = simulate("cycle3", "omd", eta=0.5, tau=0.1, iterations=100, record_every=10, resume_from=part,
                    backend="numba")
    whole = simulate("cycle3", "omd", eta=0.5, tau=0.1, iterations=100, record_every=10, backend="numba")
    assert_same_run(whole, done, atol=0)


@given(extreme_games(), st.sampled_from(["omd", "nash-md", "sppo"]), st.floats(0.01, 1e3),
       st.just(0.0) | st.floats(1e-3, 1))
def test_numba_policies_stay_normalized_and_finite(game, name, eta, kl_share):
    """10⁵ iterations with η up to 10³ on games of 0/1 preferences: no NaN, no drift off the simplex."""
    tau = 0.0 if name == "sppo" else kl_share / eta
    traj = simulate(game, name, eta=eta, tau=tau, iterations=100_000, record_every=10_000, backend="numba")
    assert np.all(np.isfinite(traj.policies)) and np.all(traj.policies >= 0)
    np.testing.assert_allclose(traj.policies.sum(-1), 1, atol=1e-12)
    assert all(np.all(np.isfinite(v)) for v in traj.metrics.values())


def test_auto_takes_numba_only_where_it_applies():
    small, large, omd = load_game("cycle3"), load_game("random:n=200"), get_algorithm("omd")

    def path(backend="auto", alg=omd, game=small, dtype="float64", runs=1, iterations=engine.NUMBA_MIN_UPDATES,
             record_every=engine.NUMBA_MIN_RECORD_EVERY, devices=None):
        return engine.choose_backend(backend, alg, game, dtype=dtype, runs=runs, iterations=iterations,
                                     record_every=record_every, devices=devices)

    assert path() == "numba"
    assert path(runs=10, iterations=engine.NUMBA_MIN_UPDATES // 10) == "numba"
    assert path(iterations=engine.NUMBA_MIN_UPDATES - 1) == "jax"  # not worth loading numba
    assert path(record_every=engine.NUMBA_MIN_RECORD_EVERY - 1) == "jax"  # records dominate
    assert path(game=large) == "jax"  # n > NUMBA_MAX_N
    assert path(dtype="float32") == "jax"
    assert path(alg=get_algorithm("extragradient")) == "jax"
    assert path(devices=2) == "jax"
    assert path("jax") == "jax"
    assert path("numba", game=large, iterations=1, record_every=1) == "numba"


@pytest.mark.parametrize("kwargs, message", [
    ({"algorithm": "extragradient"}, "extragradient has no numba path"),
    ({"dtype": "float32"}, "float64 only"),
    ({"algorithm": "inpo", "feedback": "sampled", "pairs": 8}, "has no numba path"),
    ({"backend": "cuda"}, "backend must be 'auto', 'jax' or 'numba'"),
])
def test_numba_path_refuses_what_it_cannot_run(kwargs, message):
    args = {"algorithm": "omd", "eta": 0.5, "tau": 0.1, "iterations": 10, "backend": "numba", **kwargs}
    with pytest.raises(GamesimError, match=message):
        simulate("cycle3", args.pop("algorithm"), **args)
