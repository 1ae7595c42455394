"""Studies: specs are validated with suggestions, results carry named axes and provenance and equal
direct `simulate` calls, an interrupted sweep resumes without recomputing finished cells, a spec
edit changes the figure, and `gamesim reproduce --quick` writes every figure with ink on it."""

import json
from pathlib import Path

import numpy as np
import pytest

from gamesim import GamesimError, simulate
from gamesim.studies import study
from gamesim.cli import main

pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parents[1]
SPEC = """
title = "test study"
caption = "gap = 2 max_y P(y ≻ π) − 1"
layout = [1, 2]

[[group]]
name = "main"
games = ["cycle3", "rps"]
algorithms = ["sppo", "inpo", "extragradient"]
eta = 0.25
tau = 0.0
init = [0.6, 0.3, 0.1]
iterations = 40
record_every = 4
metrics = ["gap", "gap_avg"]
policies = true
per_algorithm.inpo = { tau = 0.1 }

[[panel]]
kind = "curves"
metric = "gap"

[[panel]]
kind = "simplex"
select = { game = "cycle3" }
"""


def write(tmp_path, text=SPEC, name="toy.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def quiet(*_):
    pass


@pytest.mark.slow
def test_results_have_named_axes_and_equal_direct_runs(tmp_path):
    s = study.load_spec(write(tmp_path))
    res = study.run_study(s, tmp_path / "results", log=quiet)["main"]
    assert res.dims == ("game", "algorithm", "seed", "record")
    assert res.arrays["gap"].shape == (2, 3, 1, 11) and res.arrays["policy"].shape == (2, 3, 1, 11, 1, 3)
    for game in ("cycle3", "rps"):
        for alg, tau in (("sppo", 0.0), ("inpo", 0.1), ("extragradient", 0.0)):
            direct = simulate(game, alg, eta=0.25, tau=tau, init=[0.6, 0.3, 0.1], iterations=40, record_every=4)
            got, dims = res.select("gap", game=game, algorithm=alg, seed=0)
            assert dims == ("record",)
            np.testing.assert_allclose(got, direct.metrics["gap"], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(res.select("policy", game=game, algorithm=alg, seed=0)[0][:, 0],
                                       direct.policies, atol=1e-14)


def test_provenance_and_cache_by_hash(tmp_path, monkeypatch):
    path = write(tmp_path)
    s = study.load_spec(path)
    study.run_study(s, tmp_path / "results", log=quiet)
    info = json.loads((tmp_path / "results" / "toy.json").read_text())
    assert info["spec_hash"] == s.hash and info["spec"]["group"][0]["eta"] == 0.25
    assert {"gamesim", "numpy", "jax", "python"} <= set(info["versions"])
    assert info["git_commit"] is None  # tmp_path is not a checkout; see test_git_commit_of_the_checkout
    assert len(info["cell_seconds"]) == 3 and info["groups"]["main"]["dims"][-1] == "record"
    # same spec: nothing runs; a caption edit does not change the hash of the runs
    calls = []
    monkeypatch.setattr(study, "_simulate_cell", lambda *a: calls.append(a) or pytest.fail("recomputed"))
    study.run_study(study.load_spec(path), tmp_path / "results", log=quiet)
    path.write_text(SPEC.replace('caption = "gap', 'caption = "the gap'))
    assert study.load_spec(path).hash == s.hash
    assert calls == []


def test_the_code_fingerprint_covers_every_layer():
    """A cached cell is reused only by the code that made it: an edit of an update, an engine or a
    recipe must change the fingerprint, an edit of the drawing or the command line need not."""
    covered = {path.relative_to(study.PACKAGE).as_posix() for path in study.fingerprinted_sources()}
    assert {"dynamics/updates.py", "engine/simulation.py", "bandit/recipes.py", "core/games.py",
            "studies/study.py", "lm/training.py"} <= covered
    assert not covered & {"studies/plots.py", "studies/explore.py", "cli.py"}


def test_git_commit_of_the_checkout():
    import subprocess

    head = subprocess.run(["git", "rev-parse", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True)
    if head.returncode:
        pytest.skip("not a git checkout")
    assert study.git_commit(ROOT / "experiments") == head.stdout.strip()  # read from .git, without running git


def test_interrupted_sweep_resumes_without_recomputing(tmp_path, monkeypatch):
    s = study.load_spec(write(tmp_path))
    real, calls = study._simulate_cell, []

    def interrupt_third(cell, group, load):
        calls.append(cell.config["algorithm"])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(cell, group, load)

    monkeypatch.setattr(study, "_simulate_cell", interrupt_third)
    with pytest.raises(KeyboardInterrupt):
        study.run_study(s, tmp_path / "results", log=quiet)
    assert len(list((tmp_path / "results" / "toy" / "cells").glob("*.npz"))) == 2
    assert not (tmp_path / "results" / "toy.npz").exists()

    calls.clear()
    monkeypatch.setattr(study, "_simulate_cell", lambda cell, group, load: calls.append(cell) or real(cell, group, load))
    resumed = study.run_study(s, tmp_path / "results", log=quiet)["main"]
    assert len(calls) == 1  # three cells (one per algorithm, both games batched); two were saved
    fresh = study.run_study(s, tmp_path / "fresh", log=quiet)["main"]
    for name in fresh.arrays:
        np.testing.assert_array_equal(resumed.arrays[name], fresh.arrays[name])


def test_changing_a_number_changes_results_and_figure(tmp_path):
    path = write(tmp_path)
    s = study.load_spec(path)
    before = study.run_study(s, tmp_path / "r", log=quiet)["main"].arrays["gap"]
    png = next(p for p in study.plot_study(s, study.load_results(s, tmp_path / "r"), tmp_path / "f") if p.suffix == ".png")
    old_png = png.read_bytes()
    assert study.has_ink(png)
    path.write_text(SPEC.replace("eta = 0.25", "eta = 0.5"))
    s2 = study.load_spec(path)
    assert s2.hash != s.hash
    with pytest.raises(GamesimError, match="run `gamesim study run"):
        study.load_results(s2, tmp_path / "r")
    after = study.run_study(s2, tmp_path / "r", log=quiet)["main"].arrays["gap"]
    assert not np.allclose(before[:, :, :, 1:], after[:, :, :, 1:])
    study.plot_study(s2, study.load_results(s2, tmp_path / "r"), tmp_path / "f")
    assert png.read_bytes() != old_png


@pytest.mark.parametrize("old, new, message", [
    ('metrics = ["gap", "gap_avg"]', 'metric = ["gap", "gap_avg"]', "unknown key .*'metric'.*did you mean 'metrics'"),
    ('"extragradient"]', '"extragradiant"]', "unknown algorithm .*'extragradiant'.*did you mean 'extragradient'"),
    ('metrics = ["gap", "gap_avg"]', 'metrics = ["gap", "gap_avgg"]', "did you mean 'gap_avg'"),
    ('kind = "curves"', 'kind = "curve"', "did you mean 'curves'"),
    ('select = { game', 'select = { gamee', "select axis .*'gamee'"),
    ("tau = 0.1 }", "tua = 0.1 }", "did you mean 'tau'"),
    ("eta = 0.25", 'eta = "big"', "eta is a number"),
    ('title = "test study"', 'titel = "test study"', "did you mean 'title'"),
    ("iterations = 40", "iterations = [40, 80]", "records = R"),
    ('games = ["cycle3", "rps"]', 'games = ["cycle3", "rsp"]', "unknown game 'rsp'.*did you mean 'rps'"),
    ("policies = true", "policies = false", "needs the policies"),
    ("[[panel]]", "[[panel]", "not valid TOML"),
])
def test_spec_errors_name_the_problem(tmp_path, old, new, message, capsys):
    assert old in SPEC
    path = write(tmp_path, SPEC.replace(old, new, 1))
    with pytest.raises(GamesimError, match=message):
        study.load_spec(path)
    assert main(["study", "run", str(path), "--results", str(tmp_path / "r")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_invalid_runs_stop_the_sweep_unless_skipped(tmp_path):
    text = SPEC.replace('algorithms = ["sppo", "inpo", "extragradient"]', 'algorithms = ["inpo"]') \
        .replace("eta = 0.25", "eta = [1.0, 20.0]").replace("per_algorithm.inpo = { tau = 0.1 }", "")
    with pytest.raises(GamesimError, match="eta=20.0.*eta·tau ≤ 1"):
        study.run_study(study.load_spec(write(tmp_path, text.replace("tau = 0.0", "tau = 0.1"))), tmp_path / "a", log=quiet)
    text = text.replace("tau = 0.0", "tau = 0.1\nskip_invalid = true")
    res = study.run_study(study.load_spec(write(tmp_path, text)), tmp_path / "b", log=quiet)["main"]
    assert res.dims == ("game", "algorithm", "eta", "seed", "record")
    assert np.all(np.isfinite(res.arrays["gap"][:, :, 0])) and np.all(np.isnan(res.arrays["gap"][:, :, 1]))
    assert len(res.skipped) == 1 and "eta·tau ≤ 1" in res.skipped[0]["reason"]


LM_SPEC = """
title = "transformer mode"
caption = "gap"

[[group]]
name = "lm"
mode = "lm"
games = ["sequence:model=tiny,oracle=bt,scale=2.0"]
algorithms = ["inpo"]
eta = 2.0
tau = 0.05
iterations = 10
record_every = 5
pairs = 128
steps = 10
seeds = 2

[[panel]]
kind = "curves"
metric = "gap_reg"
"""


@pytest.mark.slow
def test_lm_group_equals_direct_transformer_runs(tmp_path):
    from gamesim.lm import training as lm
    from gamesim.lm.transformer import CONFIGS

    res = study.run_study(study.load_spec(write(tmp_path, LM_SPEC)), tmp_path / "r", log=quiet)["lm"]
    assert res.dims == ("game", "algorithm", "seed", "record") and res.arrays["gap_reg"].shape == (1, 1, 2, 3)
    for seed in (0, 1):
        direct = lm.run(CONFIGS["tiny"], lm.LMSettings("inpo", 2.0, 0.05, 10, "bt:scale=2.0,seed=0", pairs=128, steps=10,
                                                       record_every=5, seed=seed), progress=False)
        for name in ("gap_reg", "gap", "kl_to_eq", "winrate_vs_ref"):
            np.testing.assert_array_equal(res.select(name, seed=seed)[0][0, 0], direct[name])
    assert not np.array_equal(res.arrays["gap_reg"][0, 0, 0], res.arrays["gap_reg"][0, 0, 1])


@pytest.mark.parametrize("old, new, message", [
    ('games = ["sequence:', 'games = ["rps", "sequence:', "plays sequence games"),
    ("steps = 10", 'steps = 10\nfeedback = "sampled"', r"mode = 'lm' group\) 'feedback'"),
    ('algorithms = ["inpo"]', 'algorithms = ["omd"]', "unknown algorithm .*'omd'; valid: inpo, nash-md"),
    ('mode = "lm"', 'mode = "llm"', "mode is 'tabular'"),
    ("oracle=bt", "oracle=bradley", "oracle is features or bt"),
])
def test_lm_group_errors(tmp_path, old, new, message):
    assert old in LM_SPEC
    with pytest.raises(GamesimError, match=message):
        study.load_spec(write(tmp_path, LM_SPEC.replace(old, new, 1)))


def test_has_ink_rejects_a_blank_image(tmp_path):
    import matplotlib.image

    matplotlib.image.imsave(tmp_path / "blank.png", np.ones((50, 50, 3)))
    assert not study.has_ink(tmp_path / "blank.png")


def test_egpo_spec_runs_egpos_published_settings():
    """experiments/egpo.toml's per-algorithm settings are `egpo_settings` of EGPO's configs (its
    simulations/configs.py: β, lr, iterations), so the spec cannot drift from the converter."""
    from gamesim.dynamics.algorithms import egpo_settings

    configs = {("egpo.toml", "beta-1e-3"): (1e-3, 2e-4, 100000, None),
               ("egpo.toml", "beta-1e-2"): (1e-2, 0.02, 5000, None),
               ("egpo.toml", "beta-1e-1"): (0.1, 0.1, 1000, None),
               ("egpo_sampled.toml", "beta-1e-2"): (1e-2, 2e-4, 100000, 100)}
    for (file, name), (beta, lr, T, samples) in configs.items():
        group = study.load_spec(ROOT / "experiments" / file).groups[name]
        assert group.fixed["tau"] == beta and group.fixed["iterations"] == T and group.fixed["init"] == "reference"
        for method in ("online-ipo-1", "online-ipo-2", "nash-md", "nash-md-pg", "egpo"):
            alg, kwargs = egpo_settings(method, lr=lr, beta=beta, n=10, samples=samples)
            given = {**{k: v for k, v in group.fixed.items() if k in kwargs}, **group.per_algorithm[alg]}
            assert set(given) == set(kwargs), (file, name, method)
            for key, value in given.items():
                expected = kwargs[key] if isinstance(kwargs[key], str) else pytest.approx(kwargs[key], rel=1e-12)
                assert value == expected, (file, name, method, key)
