"""The engine: batches equal single runs, interrupted runs resume exactly, long runs stay finite."""

import jax
import numpy as np
import pytest
from conftest import assert_same_run, extreme_games
from hypothesis import given
from hypothesis import strategies as st

import gamesim.engine.simulation as engine
from gamesim import GamesimError, PreferenceGame, load_game, simulate, simulate_batch


def test_batch_equals_single_runs(random_games):
    """A vmapped batch over games, η, τ, seeds and initial policies gives each run's own numbers.

    Batched reductions may sum in another order, so "the same" is to float64 rounding (1e-13)."""
    etas, taus, inits = [0.2, 0.5, 1.0, 0.05], [0.1, 0.0, 0.5, 1.0], ["random", None, "uniform", "random"]
    batch = simulate_batch(random_games, "nash-md", eta=etas, tau=taus, inits=inits, seeds=[0, 1, 2, 3],
                           iterations=200, record_every=20)
    for i, game in enumerate(random_games):
        single = simulate(game, "nash-md", eta=etas[i], tau=taus[i], init=inits[i], seed=i,
                          iterations=200, record_every=20)
        assert_same_run(single, engine.Trajectory(batch.iterations, batch.policies[i],
                                                  {k: v[i] for k, v in batch.metrics.items()}, None, {}),
                        atol=1e-13)


@pytest.mark.slow
def test_shared_game_batch_equals_single_runs():
    game = load_game("random:n=10,seed=5")
    etas = [0.1, 0.3, 0.9]
    batch = simulate_batch(game, "omd", eta=etas, tau=0.2, iterations=200, record_every=20)
    for i, eta in enumerate(etas):
        single = simulate(game, "omd", eta=eta, tau=0.2, iterations=200, record_every=20)
        np.testing.assert_allclose(batch.policies[i], single.policies, atol=1e-13, rtol=0)
        np.testing.assert_allclose(batch.metrics["gap_reg"][i], single.metrics["gap_reg"], atol=1e-13)


@pytest.mark.slow
def test_contextual_run_equals_runs_per_context():
    game = load_game("random:n=10,seed=6,contexts=2,ref_seed=3")
    both = simulate(game, "inpo", eta=0.5, tau=0.1, iterations=200, record_every=20)
    parts = [simulate(PreferenceGame(game.P[c], game.reference[c]), "inpo", eta=0.5, tau=0.1,
                      iterations=200, record_every=20) for c in range(2)]
    for c in range(2):
        np.testing.assert_allclose(both.policies[:, c], parts[c].policies, atol=1e-14, rtol=0)
    for name in ("gap_reg", "gap", "regret", "kl_to_eq"):
        np.testing.assert_allclose(both.metrics[name], 0.5 * (parts[0].metrics[name] + parts[1].metrics[name]),
                                   atol=1e-13, err_msg=name)


def test_resume_equals_uninterrupted():
    whole = simulate("cycle3", "nash-md", eta=0.3, tau=0.1, iterations=400, record_every=20)
    first = simulate("cycle3", "nash-md", eta=0.3, tau=0.1, iterations=200, record_every=20)
    rest = simulate("cycle3", "nash-md", eta=0.3, tau=0.1, iterations=400, record_every=20, resume_from=first)
    assert_same_run(whole, rest, atol=0)  # bit for bit
    np.testing.assert_array_equal(whole.iterations, rest.iterations)


@pytest.mark.slow
def test_interrupt_keeps_completed_chunks(monkeypatch):
    """Ctrl-C during a run returns what the completed chunks recorded, and the run resumes from it."""
    monkeypatch.setattr(engine, "CHUNK_WORK", 1.0)  # one record per chunk
    compiled = engine._chunk
    calls = {"n": 0}

    def interrupting(*key):
        fn = compiled(*key)

        def run(*args):
            calls["n"] += 1
            if calls["n"] == 4:
                raise KeyboardInterrupt
            return fn(*args)
        return run

    monkeypatch.setattr(engine, "_chunk", interrupting)
    part = simulate("cycle3", "omd", eta=0.5, tau=0.1, iterations=100, record_every=10)
    assert part.interrupted and part.iterations[-1] == 30 and len(part.policies) == 4
    monkeypatch.undo()
    done = simulate("cycle3", "omd", eta=0.5, tau=0.1, iterations=100, record_every=10, resume_from=part)
    whole = simulate("cycle3", "omd", eta=0.5, tau=0.1, iterations=100, record_every=10)
    assert not done.interrupted
    assert_same_run(whole, done, atol=0)


@pytest.mark.slow
@given(extreme_games(), st.sampled_from(["omd", "nash-md", "sppo"]), st.floats(0.01, 1e3),
       st.just(0.0) | st.floats(1e-3, 1), st.sampled_from([None, "random"]))
def test_policies_stay_normalized_and_finite(game, name, eta, kl_share, init):
    """10⁵ iterations with η up to 10³ on games of 0/1 preferences: no NaN, no drift off the simplex."""
    tau = 0.0 if name == "sppo" else kl_share / eta  # ητ ∈ [0, 1]
    traj = simulate(game, name, eta=eta, tau=tau, iterations=100_000, record_every=10_000, init=init)
    assert np.all(np.isfinite(traj.policies)) and np.all(traj.policies >= 0)
    np.testing.assert_allclose(traj.policies.sum(-1), 1, atol=1e-12)
    assert all(np.all(np.isfinite(v)) for v in traj.metrics.values())


@pytest.mark.slow
def test_float32_option_tracks_float64():
    t64 = simulate("cycle3", "inpo", eta=0.5, tau=0.1, iterations=1000, record_every=100)
    t32 = simulate("cycle3", "inpo", eta=0.5, tau=0.1, iterations=1000, record_every=100, dtype="float32")
    np.testing.assert_allclose(t32.policies, t64.policies, atol=1e-5)


def test_user_jax_precision_setting_is_left_alone():
    before = jax.config.jax_enable_x64
    simulate("cycle3", "inpo", eta=0.5, tau=0.1, iterations=10)
    assert jax.config.jax_enable_x64 == before


@pytest.mark.parametrize("kwargs, message", [
    ({"iterations": 105, "record_every": 10}, "multiple of record_every"),
    ({"iterations": -1}, "≥ 0"),
    ({"record_every": 0}, "record_every"),
    ({"init": [0.5, 0.5, 0.0]}, "positive probability"),
    ({"init": [0.5, 0.5]}, "shape"),
    ({"init": "gaussian"}, "init must be"),
    ({"dtype": "float16"}, "dtype"),
])
def test_bad_engine_arguments(kwargs, message):
    args = {"eta": 0.5, "tau": 0.1, "iterations": 100, **kwargs}
    with pytest.raises(GamesimError, match=message):
        simulate("cycle3", "omd", **args)


def test_bad_batches():
    with pytest.raises(GamesimError, match="different lengths"):
        simulate_batch("cycle3", "omd", eta=[0.1, 0.2], tau=[0.1, 0.2, 0.3], iterations=10)
    with pytest.raises(GamesimError, match="same number of responses"):
        simulate_batch(["cycle3", "random:n=4"], "omd", eta=0.1, iterations=10)


SHARDED = """
import json, jax, numpy as np, gamesim
from gamesim.engine import simulation as engine
games = [gamesim.load_game(f"random:n=10,seed={s}") for s in range(4)]
diffs = {}
for shared in (False, True):
    for feedback, extra in (("exact", {}), ("sampled", {"pairs": 16})):
        a, b = (gamesim.simulate_batch(games[0] if shared else games, "inpo", eta=[0.1, 0.2, 0.3, 0.4], tau=0.1,
                                       iterations=200, record_every=50, seeds=[0, 1, 2, 3], progress=False,
                                       devices=d, feedback=feedback, **extra) for d in (1, 2))
        diffs[f"{shared}-{feedback}"] = [float(np.abs(a.policies - b.policies).max()),
                                         max(float(np.abs(a.metrics[m] - b.metrics[m]).max()) for m in a.metrics)]
sharding = engine._batch_sharding(4, None)
x = engine._place(np.zeros((4, 3)), sharding, 4)
print(json.dumps({"devices": jax.local_device_count(), "split": len(x.sharding.device_set),
                  "replicated": x.sharding.is_fully_replicated, "diffs": diffs}))
"""


@pytest.mark.slow
def test_sharded_batch_equals_the_unsharded_one():
    """With two CPU devices forced, the batch axis is split over them (jax.sharding) and every
    trajectory, exact or sampled, on distinct or shared games, is the one-device trajectory."""
    import json
    import os
    import subprocess
    import sys

    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["devices"] == 2 and out["split"] == 2 and not out["replicated"], out
    for name, (policy_diff, metric_diff) in out["diffs"].items():
        assert policy_diff == 0 and metric_diff <= 1e-13, (name, out)
    with pytest.raises(GamesimError, match="between 1 and the 1 local devices"):
        simulate_batch("rps", "omd", eta=[0.1, 0.2], iterations=2, devices=2)
