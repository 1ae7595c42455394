"""Your own method: a plugin algorithm and claim through simulate, verify, a study and the CLI; code
runs only on explicit opt-in, and a plugin's mistakes are one-line errors."""

import json
from pathlib import Path

import numpy as np
import pytest

import gamesim
from gamesim import GamesimError, simulate
from gamesim.engine import simulation as engine
from gamesim.studies import study
from gamesim.dynamics.algorithms import ALGORITHMS, get_algorithm, register_algorithm
from gamesim.cli import main

pytestmark = pytest.mark.slow  # plugins through simulate, verify, studies and the command line

ROOT = Path(__file__).parents[1]
PLUGIN = str(ROOT / "docs" / "examples" / "lookahead.py")
SPEC = str(ROOT / "docs" / "examples" / "lookahead.toml")


def test_plugin_algorithm_and_claim_through_python():
    gamesim.load_plugin(PLUGIN)
    mine = simulate("cycle3", "lookahead-inpo", eta=2.0, tau=0.2, iterations=30, lookahead=0.5)
    inpo = simulate("cycle3", "inpo", eta=2.0, tau=0.2, iterations=30)
    assert mine.metrics["gap_reg"][10] < 1e-3 * inpo.metrics["gap_reg"][10]
    batch = gamesim.simulate_batch(["cycle3"], "lookahead-inpo", eta=2.0, tau=0.2, iterations=30,
                                   lookahead=[0.0, 0.5])
    np.testing.assert_allclose(batch.policies[0], inpo.policies, atol=1e-14)  # λ = 0 is INPO
    np.testing.assert_allclose(batch.policies[1], mine.policies, atol=1e-14)
    result, = gamesim.verify(["lookahead-linear"], quick=True)
    assert result.passed
    assert engine.choose_backend("auto", get_algorithm("lookahead-inpo"), gamesim.load_game("cycle3"),
                                 dtype="float64", runs=100, iterations=10 ** 6, record_every=100) == "jax"


def test_plugin_through_the_command_line(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", "cycle3", "--plugin", PLUGIN, "--algorithm", "lookahead-inpo", "--eta", "2", "--tau", "0.2",
                 "--param", "lookahead=0.5", "--iterations", "30", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["gap_reg"] < 1e-12
    config = json.loads((out / "run.json").read_text())["config"]
    assert config["lookahead"] == 0.5 and PLUGIN in config["plugins"]
    assert main(["algorithms", "--plugin", PLUGIN]) == 0
    assert "lookahead-inpo" in capsys.readouterr().out
    assert main(["verify", "lookahead-linear", "--quick", "--plugin", PLUGIN, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["passed"]
    assert main(["verify", "lookahead-linear", "--quick", "--mutants", "--plugin", PLUGIN]) == 0
    assert "score: 7 of 7 mutants killed" in capsys.readouterr().out
    assert main(["verify", "inpo-lemma5", "--quick", "--plugin", PLUGIN, "--substitute", "inpo=lookahead-inpo"]) == 1


def test_plugin_in_a_study_only_with_the_opt_in(tmp_path, capsys):
    results = tmp_path / "results"
    assert main(["study", "run", SPEC, "--results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert "lists plugins (lookahead.py)" in err and "--allow-plugins" in err and len(err.splitlines()) == 1
    assert not results.exists()
    assert main(["study", "run", SPEC, "--results", str(results), "--allow-plugins"]) == 0
    saved = json.loads((results / "lookahead.json").read_text())
    assert saved["spec"]["group"][0]["algorithms"] == ["inpo", "lookahead-inpo"]


def test_a_spec_never_runs_its_plugins_by_itself(tmp_path, capsys):
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    spec = tmp_path / "s.toml"
    spec.write_text(Path(SPEC).read_text().replace('plugins = ["lookahead.py"]', 'plugins = ["evil.py"]'))
    with pytest.raises(GamesimError, match="pass --allow-plugins"):
        study.load_spec(spec)
    assert main(["study", "plot", str(spec), "--results", str(tmp_path / "r")]) == 2
    assert main(["reproduce", "--experiments", str(tmp_path), "--results", str(tmp_path / "r")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
    assert not marker.exists()


def test_editing_a_plugin_changes_the_code_fingerprint(tmp_path):
    before = study.code_fingerprint()
    plugin = tmp_path / "tweak.py"
    plugin.write_text("X = 1\n")
    gamesim.load_plugin(plugin)
    assert study.code_fingerprint() != before


@pytest.mark.parametrize("source, message", [
    ("def broken(:\n", "line 1: SyntaxError"),
    ("x = 1\nraise RuntimeError('boom')\n", "line 2: RuntimeError: boom"),
    ("import gamesim\ngamesim.register_algorithm(gamesim.dynamics.algorithms.get_algorithm('omd').__class__("
     "'inpo', lambda *a: a[0], 'x', 'y'))\n", "'inpo' is a built-in algorithm"),
])
def test_plugin_mistakes_are_one_line_errors(tmp_path, capsys, source, message):
    plugin = tmp_path / f"bad{abs(hash(source))}.py"
    plugin.write_text(source)
    assert main(["algorithms", "--plugin", str(plugin)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and plugin.name in err and len(err.splitlines()) == 1
    assert main(["algorithms", "--plugin", str(tmp_path / "missing.py")]) == 2
    assert "is not one" in capsys.readouterr().err


def test_register_algorithm_keeps_names_unique():
    omd = get_algorithm("omd")
    with pytest.raises(GamesimError, match="built-in"):
        register_algorithm(omd.__class__("omd", omd.step, "x", "y"))
    with pytest.raises(GamesimError, match="letters, digits"):
        register_algorithm(omd.__class__("my method", omd.step, "x", "y"))
    mine = register_algorithm(omd.__class__("test-unique-omd", omd.step, "x", "y"))
    assert register_algorithm(mine) is mine and ALGORITHMS["test-unique-omd"] is mine
    with pytest.raises(GamesimError, match="taken by another"):
        register_algorithm(omd.__class__("test-unique-omd", omd.step, "x", "y"))
