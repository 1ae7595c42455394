"""The command line: outputs, refusals and exit codes, as a user sees them."""

import json
import subprocess
import sys

import numpy as np
import pytest

from gamesim import GamesimError
from gamesim.cli import main
from gamesim.core.files import _umask
from gamesim.core.metrics import METRICS


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "gamesim.cli", *args], capture_output=True, text=True)


def test_solve_json(capsys):
    assert main(["solve", "cycle3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"n", "tau", "policy", "value", "duality_gap"}
    np.testing.assert_allclose(out["policy"], np.array([4, 3, 4]) / 11, atol=1e-14)


def test_run_writes_results_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["run", "cycle3", "--algorithm", "inpo", "--eta", "0.5", "--tau", "0.1", "--iterations", "200",
            "--record-every", "20", "--out", str(out)]
    assert main([*args, "--json"]) == 0
    final = json.loads(capsys.readouterr().out)
    header = (out / "metrics.csv").read_text().splitlines()[0].split(",")
    assert header == ["iteration", *METRICS]
    table = np.loadtxt(out / "metrics.csv", delimiter=",", skiprows=1)
    assert table.shape == (11, 1 + len(METRICS)) and table[-1, 0] == 200
    policies = np.load(out / "policies.npy")
    assert policies.shape == (11, 3) and policies.dtype == np.float64
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete" and info["config"]["algorithm"] == "inpo"
    assert info["final"] == final and "jax" in info["versions"] and info["timing"]["seconds"] > 0
    assert (out / "metrics.csv").stat().st_mode & 0o777 == 0o666 & ~_umask()  # like a plain open()
    assert main(args) == 2
    assert "already holds results" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_backend_flag_picks_the_engine_path(tmp_path, capsys):
    """--backend jax and --backend numba give the same final metrics; an unknown path is refused."""
    args = ["run", "cycle3", "--algorithm", "inpo", "--eta", "0.5", "--tau", "0.1", "--iterations", "200",
            "--record-every", "20", "--json", "--overwrite"]
    final = {}
    for backend in ("jax", "numba"):
        assert main([*args, "--backend", backend, "--out", str(tmp_path / backend)]) == 0
        final[backend] = json.loads(capsys.readouterr().out)
    for name, value in final["jax"].items():
        assert abs(final["numba"][name] - value) <= 1e-12 * (1 + abs(value)), name
    assert main([*args, "--backend", "gpu", "--out", str(tmp_path / "gpu")]) == 2
    assert "backend must be 'auto', 'jax' or 'numba'" in capsys.readouterr().err


def test_resume_extends_a_run_exactly(tmp_path):
    base = ["run", "random:n=10,seed=0", "--algorithm", "nash-md", "--eta", "0.3", "--tau", "0.2",
            "--record-every", "20"]
    assert main([*base, "--iterations", "200", "--out", str(tmp_path / "whole")]) == 0
    assert main([*base, "--iterations", "100", "--out", str(tmp_path / "part")]) == 0
    assert main([*base, "--iterations", "200", "--out", str(tmp_path / "part"), "--resume"]) == 0
    for f in ("metrics.csv",):
        assert (tmp_path / "whole" / f).read_text() == (tmp_path / "part" / f).read_text()
    np.testing.assert_array_equal(np.load(tmp_path / "whole" / "policies.npy"), np.load(tmp_path / "part" / "policies.npy"))
    assert main([*base, "--iterations", "200", "--eta", "0.4", "--out", str(tmp_path / "part"), "--resume"]) == 2


@pytest.mark.parametrize("args, message", [
    (["solve", "rsp"], "did you mean 'rps'"),
    (["run", "cycle3", "--algorithm", "inp", "--eta", "1", "--iterations", "10", "--out", "x"], "did you mean 'inpo'"),
    (["run", "cycle3", "--algorithm", "inpo", "--eta", "20", "--tau", "0.1", "--iterations", "10", "--out", "x"],
     "eta·tau ≤ 1"),
    (["run", "cycle3", "--eta", "1", "--iterations", "10", "--out", "x"], "required: --algorithm"),
    (["solve", "cycle3", "--tau", "-1"], "must be 0 or in"),
])
def test_user_errors_are_one_line_exit_2(args, message):
    res = run_cli(*args)
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert "Traceback" not in res.stderr


def test_games_lists_builtins():
    res = run_cli("games")
    assert res.returncode == 0
    names = {line.split(":")[0].split()[0] for line in res.stdout.splitlines()}
    assert names >= {"rps", "cycle3", "random", "sequence", "soccer", "rrps"}


def test_demo_runs(capsys):
    assert main(["demo", "--iterations", "300"]) == 0
    out = capsys.readouterr().out
    assert "sppo" in out and "nash-md" in out


def test_hyperparameter_flags_match_the_registry(tmp_path, capsys):
    from gamesim.dynamics.algorithms import ALGORITHMS, BUILTIN
    from gamesim.bandit.sampled import sampled_algorithm
    from gamesim.cli import hyperparameter_flags

    sampled = {k for fit in ("exact", "sgd") for k in sampled_algorithm("inpo", fit=fit).params}
    assert set(hyperparameter_flags()) == {k for name, a in ALGORITHMS.items() if name in BUILTIN for k in a.params} | sampled
    out = tmp_path / "r"
    assert main(["run", "cycle3", "--algorithm", "ipo-md", "--eta", "1", "--tau", "0.2", "--beta", "0.3",
                 "--iterations", "10", "--out", str(out)]) == 0
    assert json.loads((out / "run.json").read_text())["config"]["beta"] == 0.3
    assert main(["run", "cycle3", "--algorithm", "inpo", "--eta", "1", "--beta", "0.3", "--iterations", "10",
                 "--out", str(tmp_path / "s")]) == 2
    assert "no hyperparameter 'beta'" in capsys.readouterr().err


def test_a_registered_algorithms_new_hyperparameter_is_a_flag_and_a_study_key(tmp_path, monkeypatch, capsys):
    """Registering an algorithm with a new Param gives `gamesim run` its flag (help from its doc) and
    the study validator its key, with no edit to cli.py or study.py; before, both refuse it."""
    import dataclasses

    from gamesim.dynamics.algorithms import ALGORITHMS, Param, get_algorithm
    from gamesim.studies.study import load_spec

    omd = get_algorithm("omd")
    damped = dataclasses.replace(omd, name="omd-damped", step=lambda s, A, r, eta, tau, t, p: omd.step(
        s, A, r, p["damping"] * eta, tau, t, p), params={"damping": Param(0.5, 0.0, 1.0, "factor on the step η")})
    run = ["run", "cycle3", "--algorithm", "omd-damped", "--eta", "0.5", "--tau", "0.1", "--iterations", "10",
           "--damping", "0.25", "--out", str(tmp_path / "run")]
    spec = tmp_path / "damped.toml"
    spec.write_text('[[group]]\ngames = "cycle3"\nalgorithms = "omd-damped"\neta = 0.5\ntau = 0.1\n'
                    'iterations = 10\ndamping = [0.25, 0.5]\n\n[[panel]]\nkind = "curves"\nmetric = "gap"\n')
    assert main(run) == 2 and "unrecognized arguments: --damping" in capsys.readouterr().err
    with pytest.raises(GamesimError, match="unknown key .* 'damping'"):
        load_spec(spec)
    monkeypatch.setitem(ALGORITHMS, damped.name, damped)  # registered for this test only
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert " ".join(capsys.readouterr().out.split()).count("--damping DAMPING omd-damped: factor on the step η "
                                                            "(default 0.5)") == 1
    assert main(run) == 0
    assert json.loads((tmp_path / "run" / "run.json").read_text())["config"]["damping"] == 0.25
    assert load_spec(spec).groups["group0"].axes["damping"] == [0.25, 0.5]


def test_algorithms_lists_every_algorithm(capsys):
    from gamesim.dynamics.algorithms import ALGORITHMS

    assert main(["algorithms"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ALGORITHMS)


def test_commands_share_compilations_through_the_persistent_cache(tmp_path):
    """A second `gamesim run` of the same shape loads its compiled loops from the cache the first
    one wrote (GAMESIM_CACHE_DIR); `gamesim games` never imports JAX."""
    import os

    env = {**os.environ, "GAMESIM_CACHE_DIR": str(tmp_path / "cache")}
    args = [sys.executable, "-m", "gamesim.cli", "run", "cycle3", "--algorithm", "inpo", "--eta", "0.1", "--tau",
            "0.1", "--iterations", "100"]
    first = subprocess.run([*args, "--out", str(tmp_path / "a")], env=env, capture_output=True, text=True,
                           check=False)
    assert first.returncode == 0, first.stderr
    entries = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert any(name.startswith("jit_chunk") for name in entries), entries
    second = subprocess.run([*args, "--out", str(tmp_path / "b")], env=env, capture_output=True, text=True,
                            check=False)
    assert second.returncode == 0 and sorted(p.name for p in (tmp_path / "cache").iterdir()) == entries
    probe = "import sys; from gamesim.cli import main; main(['games']); print('jax' in sys.modules)"
    games = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)
    assert games.stdout.strip().splitlines()[-1] == "False"
