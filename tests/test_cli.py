"""The command line: outputs, refusals and exit codes, as a user sees them."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest

from gamesim import GamesimError, load_game, solve
from gamesim.cli import main
from gamesim.core.files import _umask
from gamesim.core.metrics import METRICS
from transcriptions import gap_closed_form, hedge, kl, nash_md_eq34, omd


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


@pytest.mark.slow
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


def test_demo_prints_the_numbers_of_its_runs(capsys):
    """Every number the demo prints against an independent computation: the equilibria against
    (4, 3, 4)/11 and `solve`, each run's final metrics against the numpy transcriptions of its update
    (tests/transcriptions.py) from π_0 = (0.6, 0.3, 0.1). The demo rounds (policies and the gap to 4
    decimals, the table to 3 significant digits), so a printed value must be the recomputed one to
    half its last printed unit: 5e-5 absolute, or 5e-3 relative plus 1e-15 (float64 rounding of the
    gaps near 0)."""
    T, tau = 300, 0.1
    assert main(["demo", "--iterations", str(T)]) == 0
    out = capsys.readouterr().out
    game = load_game("cycle3")
    P, ref = game.P, game.reference
    star0, star = np.array([4, 3, 4]) / 11, solve(game, tau).policy
    vectors = [np.array(v.split(), float) for v in re.findall(r"\[([^]]*)\]", out)]
    np.testing.assert_allclose(vectors[0], star0, rtol=0, atol=5e-5)
    np.testing.assert_allclose(vectors[1], star, rtol=0, atol=5e-5)
    printed_gap = float(re.search(r"original-game gap is (\S+)", out).group(1))
    assert abs(printed_gap - (2 * np.max(P @ star) - 1)) <= 5e-5
    runs = {"sppo (Hedge)": (hedge, lambda t: 0.5, 0.0),
            "inpo / omd": (omd, lambda t: 0.5, tau),
            "nash-md, eta_t = 2/(tau(t+2))": (nash_md_eq34, lambda t: 2 / (tau * (t + 2)), tau),
            "nash-md, constant eta": (nash_md_eq34, lambda t: 0.5, tau)}
    table = out[out.index("\nalgorithm"):].strip().split("\n\n")[0].splitlines()[1:]
    assert len(table) == len(runs)
    for line in table:
        label, *values = re.fullmatch(r"(.*?)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", line).groups()
        step, eta, t_tau = runs[label]
        pis = [np.array([0.6, 0.3, 0.1])]
        for t in range(T):
            pis.append(step(pis[-1], P, ref, eta(t), t_tau))
        last, avg = pis[-1], np.mean(pis, axis=0)
        expected = [2 * np.max(P @ last) - 1, 2 * np.max(P @ avg) - 1,
                    gap_closed_form(P, ref, last, t_tau) if t_tau else 2 * np.max(P @ last) - 1,
                    kl(star if t_tau else star0, last)]
        for printed, value in zip(map(float, values), expected):
            assert abs(printed - value) <= 5e-3 * abs(value) + 1e-15, (label, printed, value)


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


def test_algorithms_lists_each_with_its_source_and_hyperparameters(capsys):
    """`gamesim algorithms`: one entry per registered algorithm, a test algorithm registered here
    included, each with its citation, what it converges to, and every hyperparameter = its default."""
    from gamesim.dynamics.algorithms import ALGORITHMS, Algorithm, Param, get_algorithm, register_algorithm

    mine = register_algorithm(Algorithm("test-listed", get_algorithm("omd").step, "Listed et al. 2099, eq. 7",
                                        "a test's fixed point", params={"gamma": Param(0.375, 0.0, 1.0, "a test knob")}))
    try:
        expected = dict(ALGORITHMS)
        assert main(["algorithms"]) == 0
    finally:
        del ALGORITHMS[mine.name]
    entries = {}
    for line in capsys.readouterr().out.splitlines():
        if line and not line[0].isspace():
            name = line.split()[0]
            entries[name] = line
        elif line.strip():
            entries[name] += "\n" + line
    assert list(entries) == list(expected)
    for name, alg in expected.items():
        assert alg.citation in entries[name] and alg.converges_to in entries[name], name
        shown = dict(re.findall(r"\b([a-z_]+)\s*=\s*(\d[-+.\deE]*)", entries[name], re.ASCII))
        assert {k: float(v) for k, v in shown.items()} == {k: p.default for k, p in alg.params.items()}, name


@pytest.mark.slow
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
