"""`gamesim plot` and `gamesim compare` on finished, interrupted, sampled-feedback and transformer runs:
the drawn lines and the printed numbers are the recorded ones, labels name what differs."""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest

from gamesim.cli import main
from gamesim.core.rundir import RunDirectory
from gamesim.engine.results import versions, write_run
from gamesim.engine.simulation import simulate
from gamesim.studies import runs as view

BASE = ["run", "cycle3", "--iterations", "200", "--record-every", "10"]


@pytest.fixture(scope="module")
def run_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main([*BASE, "--algorithm", "inpo", "--eta", "0.5", "--tau", "0.1", "--out", str(root / "inpo")]) == 0
    assert main([*BASE, "--algorithm", "sppo", "--eta", "0.5", "--out", str(root / "sppo")]) == 0
    assert main([*BASE, "--algorithm", "inpo", "--eta", "0.5", "--tau", "0.1", "--feedback", "sampled",
                 "--pairs", "16", "--out", str(root / "sampled")]) == 0
    # an interrupted run, saved as `gamesim run` saves one on Ctrl-C: its command's settings, 100 of 200 done
    config = json.loads((root / "inpo" / "run.json").read_text())["config"] | {"eta": 0.3}
    part = simulate("cycle3", "inpo", eta=0.3, tau=0.1, iterations=100, record_every=10)
    with RunDirectory.open(root / "stopped", "new") as out:
        write_run(out, dataclasses.replace(part, interrupted=True), config, versions("test"))
    return root


def _csv(path):
    lines = (path / "metrics.csv").read_text().splitlines()
    names = lines[0].split(",")
    table = np.array([[float(x) for x in line.split(",")] for line in lines[1:]])
    return {name: table[:, i] for i, name in enumerate(names)}


def test_compare_prints_the_recorded_final_values_and_what_differs(run_dirs, capsys):
    paths = [run_dirs / name for name in ("inpo", "sppo", "sampled", "stopped")]
    assert main(["compare", *map(str, paths), "--metric", "gap", "--metric", "gap_reg"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(str(run_dirs))}
    for path in paths:
        status, done, gap, gap_reg = rows[str(path)][1:]
        recorded = _csv(path)
        assert done == str(int(recorded["iteration"][-1]))
        assert float(gap) == pytest.approx(recorded["gap"][-1], rel=1e-5)
        assert float(gap_reg) == pytest.approx(recorded["gap_reg"][-1], rel=1e-5)
    assert rows[str(run_dirs / "stopped")][1:3] == ["interrupted", "100"]
    differ = dict(re.findall(r"^  (\w+): (.*)$", out, re.M))
    assert differ == {"algorithm": "inpo | sppo | inpo | inpo", "eta": "0.5 | 0.5 | 0.5 | 0.3",
                      "feedback": "exact | exact | sampled | exact", "pairs": "- | - | 16 | -",
                      "tau": "0.1 | 0 | 0.1 | 0.1"}
    assert main(["compare", str(paths[0]), str(paths[2]), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runs"][1]["mode"] == "sampled" and set(data["differences"]) == {"feedback", "pairs"}
    assert data["runs"][0]["final"]["gap"] == _csv(paths[0])["gap"][-1]


def test_plot_draws_the_recorded_curves_and_the_simplex(run_dirs, tmp_path, capsys):
    runs = [view.load_run(run_dirs / name) for name in ("inpo", "sppo", "sampled", "stopped")]
    fig = view.figure(runs, ["gap", "gap_reg", "winrate_vs_ref"])
    gap, gap_reg, winrate, simplex = fig.axes
    assert gap.get_yscale() == "log" and gap_reg.get_yscale() == "log" and winrate.get_yscale() == "linear"
    for line, name in zip(gap_reg.lines, ("inpo", "sppo", "sampled", "stopped")):
        recorded = _csv(run_dirs / name)
        np.testing.assert_array_equal(line.get_xdata(), recorded["iteration"])
        np.testing.assert_array_equal(line.get_ydata(), np.maximum(recorded["gap_reg"], view.positive(0.0)))
    labels = [t.get_text() for t in gap.get_legend().get_texts()]
    assert labels == ["algorithm=inpo, eta=0.5, tau=0.1, feedback=exact", "algorithm=sppo, eta=0.5, tau=0, feedback=exact",
                      "algorithm=inpo, eta=0.5, tau=0.1, feedback=sampled, pairs=16",
                      "algorithm=inpo, eta=0.3, tau=0.1, feedback=exact (interrupted at 100)"]
    corners = np.array([[0, 0], [1, 0], [0.5, np.sqrt(3) / 2]])
    trajectories = [line for line in simplex.lines if len(line.get_xdata()) > 4]  # not the triangle
    np.testing.assert_allclose(np.c_[trajectories[0].get_xdata(), trajectories[0].get_ydata()],
                               np.load(run_dirs / "inpo" / "policies.npy") @ corners, rtol=0, atol=1e-15)
    fig.clf()

    queries = view.figure([runs[2]], ["gap"], x="queries")
    np.testing.assert_array_equal(queries.axes[0].lines[0].get_xdata(), _csv(run_dirs / "sampled")["queries"])
    out = tmp_path / "p.png"
    assert main(["plot", *(str(run_dirs / n) for n in ("inpo", "stopped")), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    from gamesim.studies.study import has_ink
    assert has_ink(out)


@pytest.mark.parametrize("argv, message", [
    (["plot", "RUNS/inpo", "--metric", "gapp"], "did you mean 'gap'"),
    (["plot", "RUNS/inpo", "--metric", "queries"], "queries is not recorded in"),
    (["plot", "RUNS/inpo", "--x", "queries"], "--x queries needs sampled-feedback runs"),
    (["plot", "RUNS/inpo", "--out", "OUT/p.txt"], "names no figure format"),
    (["compare", "RUNS/nowhere"], "is not a directory"),
    (["compare", "OUT"], "holds no run"),
    (["compare", "RUNS/damaged"], "truncated or was changed"),
])
def test_bad_runs_and_options_are_one_line_errors(run_dirs, tmp_path, capsys, argv, message):
    import shutil

    if not (run_dirs / "damaged").exists():
        shutil.copytree(run_dirs / "inpo", run_dirs / "damaged")
        with open(run_dirs / "damaged" / "metrics.csv", "a") as f:
            f.write("210,0,0\n")
    argv = [a.replace("RUNS", str(run_dirs)).replace("OUT", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_transformer_run_is_drawn_with_its_interval_and_compared(tmp_path, run_dirs, capsys):
    lm = ["lm", "run", "--algorithm", "inpo", "--eta", "0.5", "--tau", "0.1", "--iterations", "4", "--pairs", "16",
          "--steps", "2", "--metrics", "sampled", "--eval-samples", "256"]
    assert main([*lm, "--out", str(tmp_path / "lm")]) == 0
    capsys.readouterr()
    run = view.load_run(tmp_path / "lm")
    assert run.mode == "transformer" and "winrate_vs_ref_ci95" in run.metrics
    fig = view.figure([run], ["winrate_vs_ref"])
    band, = fig.axes[0].collections  # the 95% interval
    assert len(fig.axes) == 1 and band.get_paths()
    with pytest.raises(Exception, match="not recorded"):
        view.choose_metrics([run, view.load_run(run_dirs / "inpo")], ["gap"])
    assert main(["compare", str(tmp_path / "lm"), str(run_dirs / "inpo"), "--metric", "kl_to_ref"]) == 0
    assert "model.vocab: 4 | -" in capsys.readouterr().out
