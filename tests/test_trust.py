"""Nothing lost, nothing mixed, nobody in: run directories are one consistent record that survives
SIGKILL at any point, resumes refuse anything that differs, no spec runs code from its
surroundings, JSON is strict, expensive work asks first, and every bad input is a one-line error."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gamesim import GamesimError, load_game, simulate, simulate_batch
from gamesim.studies import study
from gamesim.dynamics.algorithms import get_algorithm
from gamesim.cli import main
from gamesim.core.games import save_csv
from gamesim.core.guards import GamesimWarning
from gamesim.engine.results import dumps
from gamesim.core.rundir import RunDirectory, read

ROOT = Path(__file__).parents[1]


def strict(text: str):
    """json.loads that refuses NaN and Infinity, as other parsers do."""
    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")
    return json.loads(text, parse_constant=refuse)


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gamesim: error:") and "Traceback" not in err, err
    return err


def run_args(out, *extra, game="cycle3", iterations=200):
    return ["run", game, "--algorithm", "inpo", "--eta", "0.5", "--tau", "0.1", "--iterations", str(iterations),
            "--record-every", "10", "--out", str(out), *extra]


# --- a resume continues only the same run ---------------------------------------------------------
def test_resume_refuses_an_edited_game_file(tmp_path, capsys):
    csv = tmp_path / "mygame.csv"
    save_csv(load_game("cycle3"), csv)
    out = tmp_path / "x"
    assert main(run_args(out, game=str(csv), iterations=100)) == 0
    P = load_game(str(csv)).P
    np.savetxt(csv, P.T, delimiter=",")  # the transposed matrix: a different game
    assert main(run_args(out, "--resume", game=str(csv), iterations=200)) == 2
    assert "the game" in one_line_error(capsys)
    assert read(out)[0]["iterations_done"] == 100  # nothing appended


@pytest.mark.parametrize("change, named", [(["--eta", "0.3"], "--eta"), (["--tau", "0.2"], "--tau"),
                                           (["--algorithm", "omd"], "--algorithm"), (["--seed", "3"], "--seed"),
                                           (["--record-every", "20"], "--record-every")])
def test_resume_refuses_any_changed_setting(tmp_path, capsys, change, named):
    out = tmp_path / "x"
    assert main(run_args(out, iterations=100)) == 0
    args = run_args(out, "--resume", iterations=200)
    i = args.index(change[0]) if change[0] in args else None
    if i is None:
        args += change
    else:
        args[i + 1] = change[1]
    assert main(args) == 2
    assert named in one_line_error(capsys)


def test_python_resume_refuses_another_run():
    first = simulate("cycle3", "inpo", eta=0.5, tau=0.1, iterations=100, record_every=10)
    for kwargs, named in [({"game": "rps"}, "the game"), ({"algorithm": "nash-md"}, "the algorithm"),
                          ({"eta": 0.3}, "the learning rate"), ({"tau": 0.2}, "the KL weight"),
                          ({"init": "random"}, "the initial policy")]:
        call = {"game": "cycle3", "algorithm": "inpo", "eta": 0.5, "tau": 0.1, **kwargs}
        with pytest.raises(GamesimError, match=named):
            simulate(call.pop("game"), call.pop("algorithm"), iterations=200, record_every=10, resume_from=first,
                     **call)
    mine = get_algorithm("inpo").__class__(**{**get_algorithm("inpo").__dict__,
                                              "step": lambda s, A, r, eta, tau, t, p: s})
    with pytest.raises(GamesimError, match="the algorithm"):
        simulate("cycle3", mine, eta=0.5, tau=0.1, iterations=200, record_every=10, resume_from=first)
    assert simulate("cycle3", "inpo", eta=0.5, tau=0.1, iterations=200, record_every=10,
                    resume_from=first).iterations[-1] == 200


def test_damaged_files_are_named_before_any_computation(tmp_path, capsys):
    out = tmp_path / "x"
    assert main(run_args(out, iterations=100)) == 0
    for name in ("state.npz", "policies.npy", "metrics.csv"):
        shutil.copytree(out, tmp_path / "copy")
        path = tmp_path / "copy" / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
        assert main(run_args(tmp_path / "copy", "--resume", iterations=200)) == 2
        err = one_line_error(capsys)
        assert name in err and "truncated" in err
        shutil.rmtree(tmp_path / "copy")
    (out / "run.json").write_text("{")
    assert main(run_args(out, "--resume", iterations=200)) == 2
    assert "run.json" in one_line_error(capsys)


# --- the output directory is checked and locked first ----------------------------------------------
def test_out_is_checked_before_any_computation(tmp_path, capsys):
    assert main(run_args("")) == 2
    assert "--out is empty" in one_line_error(capsys)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(run_args(blocker / "sub")) == 2
    assert "is a file, so it cannot hold the directory" in one_line_error(capsys)
    assert main(run_args(blocker)) == 2
    assert "not a directory" in one_line_error(capsys)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    assert main(run_args(mine)) == 2
    assert "other files" in one_line_error(capsys)
    assert main(run_args(mine, "--overwrite")) == 2
    assert "would delete" in one_line_error(capsys)
    assert (mine / "notes.txt").read_text() == "precious"
    assert main(run_args(tmp_path / "nothing", "--resume")) == 2
    assert "does not exist" in one_line_error(capsys)


def test_a_second_writer_is_refused(tmp_path, capsys):
    with RunDirectory.open(tmp_path / "x", "new"):
        assert main(run_args(tmp_path / "x")) == 2
        assert "another gamesim process" in one_line_error(capsys)
    assert main(run_args(tmp_path / "x")) == 0


@pytest.mark.slow
def test_checkpoints_during_a_run_and_their_resume(tmp_path):
    """A run saves the run so far between chunks; resuming that checkpoint ends with the numbers of an
    uninterrupted run."""
    seen = []

    def keep(traj):
        seen.append(traj)
    game, kw = "random:n=20,seed=2", dict(eta=0.4, tau=0.05, iterations=60_000, record_every=100, backend="jax")
    import gamesim.engine.simulation as engine

    old, engine.CHUNK_WORK = engine.CHUNK_WORK, 2e7
    try:
        whole = simulate(game, "inpo", checkpoint=keep, checkpoint_every=1e-9, **kw)
    finally:
        engine.CHUNK_WORK = old
    assert len(seen) > 3 and all(t.interrupted for t in seen)
    middle = seen[len(seen) // 2]
    rest = simulate(game, "inpo", resume_from=middle, **kw)
    np.testing.assert_array_equal(rest.policies, whole.policies)
    np.testing.assert_array_equal(rest.metrics["gap_reg"], whole.metrics["gap_reg"])


def test_a_crash_at_every_step_of_a_save_leaves_a_complete_record(tmp_path, monkeypatch):
    """Interrupt the save while writing its files, and at each of its renames and its clean-up: the
    directory is then the old record or the new one, never a mixture, and opening it again finishes
    or undoes the save."""
    out = tmp_path / "x"
    with RunDirectory.open(out, "new") as run:
        run.commit({"a.txt": lambda p: p.write_text("old")}, {"status": "old"})
    real_rename, real_rmtree = os.rename, shutil.rmtree
    for crash_at in range(4):  # 0: writing the files; 1, 2: the renames; 3: removing the old record
        calls = {"n": 0}

        def operation(real):
            def flaky(*args, **kwargs):
                calls["n"] += 1
                if calls["n"] == crash_at:
                    raise SystemExit("crash")
                return real(*args, **kwargs)
            return flaky

        def write(path):
            if crash_at == 0:
                path.write_text("ne")
                raise SystemExit("crash")
            path.write_text("new")

        with RunDirectory.open(out, "overwrite") as run:
            monkeypatch.setattr(os, "rename", operation(real_rename))
            monkeypatch.setattr(shutil, "rmtree", lambda p, **k: operation(real_rmtree)(p, **k)
                                if p.name.startswith(".x.old") else real_rmtree(p, **k))
            with pytest.raises(SystemExit):
                run.commit({"a.txt": write}, {"status": "new"})
            monkeypatch.undo()
        with RunDirectory.open(out, "overwrite"):
            info, files = read(out)
            assert (info["status"], files["a.txt"].read_text()) == (("old", "old") if crash_at < 2 else ("new", "new"))
            assert not [p for p in tmp_path.iterdir() if p.name.startswith(".x.") and p.name != ".x.lock"]
        with RunDirectory.open(out, "overwrite") as run:  # back to the old record for the next crash
            run.commit({"a.txt": lambda p: p.write_text("old")}, {"status": "old"})


def _cli(*args, env=None):
    return [sys.executable, "-m", "gamesim.cli", *args]


@pytest.mark.slow
def test_sigkill_at_random_points_never_leaves_a_wrong_state(tmp_path):
    """20 SIGKILLs at random times during a run and during --overwrite: every state left behind is
    a complete record (or nothing), --resume accepts only a matching one, and resuming after the
    kills ends with the numbers of an uninterrupted run."""
    rng = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["run", "random:n=30,seed=4", "--algorithm", "inpo", "--eta", "0.4", "--tau", "0.05", "--iterations",
            "1500000", "--record-every", "500", "--backend", "jax", "--checkpoint-every", "0.05", "--yes"]
    out = tmp_path / "killed"
    kills, done = 0, False
    while not done:
        mode = ["--resume"] if (out / "run.json").exists() else []
        proc = subprocess.Popen(_cli(*args, "--out", str(out), *mode), env=env, stderr=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=rng.uniform(1.0, 3.0) if kills < 14 else 600)
            assert proc.returncode == 0, proc.stderr.read()
            done = True
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
        if out.exists():
            info, _ = read(out)
            assert info["status"] in ("running", "interrupted", "complete")
    whole = tmp_path / "whole"
    subprocess.run(_cli(*args, "--out", str(whole)), env=env, check=True, capture_output=True)
    np.testing.assert_array_equal(np.load(out / "policies.npy"), np.load(whole / "policies.npy"))
    assert (out / "metrics.csv").read_text() == (whole / "metrics.csv").read_text()
    # --overwrite of a complete run with another one, killed at random: old or new, never mixed
    other = list(args)
    other[other.index("--eta") + 1] = "0.2"
    for _ in range(6):
        proc = subprocess.Popen(_cli(*other, "--out", str(whole), "--overwrite"), env=env, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(1.0, 3.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        info, _ = read(whole)
        assert info["config"]["eta"] in (0.4, 0.2)
        if info["config"]["eta"] == 0.4:
            assert info["status"] == "complete"
    assert kills >= 20


@pytest.mark.slow
def test_sigterm_stops_a_run_that_then_resumes(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = tmp_path / "x"
    args = ["run", "random:n=30,seed=4", "--algorithm", "inpo", "--eta", "0.4", "--tau", "0.05", "--iterations",
            "20000000", "--record-every", "1000", "--backend", "jax", "--yes", "--checkpoint-every", "0.5",
            "--out", str(out)]
    proc = subprocess.Popen(_cli(*args), env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120  # the first checkpoint: past compilation, however loaded the machine
    while not (out / "run.json").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 130
    assert "interrupted" in proc.stderr.read()
    info, _ = read(out)
    assert info["status"] == "interrupted" and 0 < info["iterations_done"] < 20_000_000


# --- no code from a spec's surroundings --------------------------------------------------------------
def test_provenance_never_runs_the_repositorys_commands(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo, marker = tmp_path / "repo", tmp_path / "fsmonitor-ran"
    repo.mkdir()
    git = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("config", "user.email", "t@t"), git("config", "user.name", "t")
    spec = repo / "toy.toml"
    spec.write_text(TOY)
    git("add", "toy.toml"), git("commit", "-qm", "spec")
    git("config", "core.fsmonitor", f"touch {marker}; echo")
    assert main(["study", "run", str(spec), "--results", str(tmp_path / "r")]) == 0
    assert not marker.exists()
    saved = json.loads((tmp_path / "r" / "toy.json").read_text())
    head = subprocess.run(["git", "-C", str(repo), "-c", "core.fsmonitor=", "rev-parse", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    assert saved["git_commit"] == head


TOY = """
title = "toy"
caption = "gap"

[[group]]
name = "main"
games = ["cycle3"]
algorithms = ["inpo"]
eta = 0.5
tau = 0.1
iterations = 20
record_every = 10

[[panel]]
kind = "curves"
metric = "gap"
"""


@pytest.mark.parametrize("name", ["../../evil", "a/b", ".hidden", "..", "x" * 65])
def test_names_that_would_leave_the_results_directory_are_refused(tmp_path, name, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text(TOY.replace('name = "main"', f'name = "{name}"'))
    with pytest.raises(GamesimError, match="not a plain name"):
        study.load_spec(spec)


def test_files_cannot_shadow_built_in_games(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    save_csv(load_game("rps"), tmp_path / "cycle3")
    with pytest.raises(GamesimError, match="both a built-in game and a file"):
        load_game("cycle3")
    np.testing.assert_allclose(load_game("./cycle3").P, load_game("rps").P)
    save_csv(load_game("rps"), tmp_path / "mine")
    with pytest.raises(GamesimError, match=r"name files by a path: \./mine"):
        load_game("mine")
    assert main(["solve", "cycle3"]) == 2
    one_line_error(capsys)


def test_errors_about_a_file_never_print_its_contents(tmp_path, capsys):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$abcdefghijklmnopqrstuvwxyz0123456789:19000:0:99999:7:::\nsecond line\n")
    assert main(["solve", str(secret)]) == 2
    err = one_line_error(capsys)
    assert "abcdef" not in err and "19000" not in err and "second" not in err
    binary = tmp_path / "b.csv"
    binary.write_bytes(bytes(range(256)))
    assert main(["solve", str(binary)]) == 2
    assert "not a text file" in one_line_error(capsys)


def test_a_damaged_study_cell_or_result_is_recomputed_or_named(tmp_path, capsys):
    spec = tmp_path / "toy.toml"
    spec.write_text(TOY)
    results = tmp_path / "r"
    assert main(["study", "run", str(spec), "--results", str(results)]) == 0
    cell, = (results / "toy" / "cells").glob("*.npz")
    cell.write_bytes(cell.read_bytes()[:50])
    (results / "toy.json").unlink()
    assert main(["study", "run", str(spec), "--results", str(results)]) == 0
    assert "damaged" in capsys.readouterr().err
    npz = results / "toy.npz"
    npz.write_bytes(npz.read_bytes()[:100])
    assert main(["study", "plot", str(spec), "--results", str(results), "--figures", str(tmp_path / "f")]) == 2
    assert "toy.npz" in one_line_error(capsys)
    assert main(["study", "run", str(spec), "--results", str(results)]) == 0


# --- strict JSON, valid ranges -----------------------------------------------------------------------
def test_json_is_strict_everywhere(tmp_path, capsys):
    assert strict(dumps({"a": float("inf"), "b": [float("nan"), -float("inf"), np.float32(1.5)]})) == \
        {"a": "inf", "b": ["nan", "-inf", 1.5]}
    assert main(run_args(tmp_path / "x", "--json")) == 0
    assert set(strict(capsys.readouterr().out)) >= {"gap", "gap_reg"}
    assert main(["solve", "rps", "--tau", "1000", "--json"]) == 0
    assert strict(capsys.readouterr().out)["value"] > 0.49
    assert strict((tmp_path / "x" / "run.json").read_text())["status"] == "complete"


@pytest.mark.parametrize("argv, message", [
    (["run", "cycle3", "--algorithm", "sppo", "--eta", "1e308", "--iterations", "10", "--out", "o"], "eta must be"),
    (["solve", "rps", "--tau", "1e308", "--json"], "tau (the KL weight) must be"),
    (["run", "cycle3", "--algorithm", "inpo", "--eta", "1e-300", "--tau", "1e300", "--iterations", "10",
      "--out", "o"], "tau (the KL weight) must be"),
    (["run", "cycle3", "--algorithm", "inpo", "--eta", "0.5", "--iterations", "100", "--record-every", "1000",
      "--out", "o"], "larger than iterations"),
    (["run", "cycle3", "--algorithm", "inpo", "--eta", "0.5", "--iterations", "100", "--record-every", "30",
      "--out", "o"], "use 90 or 120 iterations"),
    (["run", "cycle3", "--algorithm", "inpo", "--eta", "0.5", "--seed", str(2 ** 70), "--iterations", "10",
      "--out", "o"], "seed is an integer"),
])
def test_meaningless_settings_are_refused(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "o" / "run.json").exists()


def test_messages_that_used_to_mislead():
    import gamesim

    traj = simulate("cycle3", "inpo", eta=np.float32(0.5), tau=np.float64(0.1), iterations=10)
    assert traj.iterations[-1] == 10
    P = load_game("cycle3").P.copy()
    P[2, 2] = 0.5000001
    with pytest.raises(GamesimError, match=r"P\[2,2\] = 0.5000001, not 1/2"):
        gamesim.PreferenceGame(P)
    with pytest.raises(GamesimError, match="at least one game"):
        simulate_batch([], "inpo", eta=0.5, iterations=10)
    with pytest.raises(GamesimError, match="seed is an integer"):
        simulate("cycle3", "inpo", eta=0.5, seed=2 ** 70, iterations=10)


def test_a_misspelt_panel_metric_is_caught_before_anything_runs(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(TOY.replace('metric = "gap"', 'metric = "gapp"'))
    with pytest.raises(GamesimError, match="did you mean 'gap'"):
        study.load_spec(spec)


# --- guards on expensive work ----------------------------------------------------------------------
@pytest.mark.parametrize("argv, message", [
    (["run", "rrps", "--algorithm", "sppo", "--eta", "0.1", "--iterations", "1000000", "--out", "o"], "--yes"),
    (["solve", "random:n=2000", "--tau", "1e-10"], "--yes"),
    (["lm", "run", "--config", "cfg.toml", "--algorithm", "inpo", "--eta", "1", "--tau", "0.1", "--iterations",
      "100", "--metrics", "sampled", "--out", "o"], "--yes"),
])
def test_expensive_work_asks_first(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "cfg.toml").write_text("vocab = 8\nlength = 64\nd_model = 128\nn_layers = 4\nn_heads = 4\n")
    started = time.perf_counter()
    assert main(argv) == 2
    assert message in one_line_error(capsys) and time.perf_counter() - started < 20
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_studies_too_large_to_run_are_refused_and_the_api_warns(tmp_path):
    spec = tmp_path / "big.toml"
    spec.write_text(TOY.replace("iterations = 20\nrecord_every = 10", "iterations = 200000000\nrecords = 100\nseeds = 64"))
    with pytest.raises(GamesimError, match="--yes"):
        study.run_study(study.load_spec(spec), tmp_path / "r", yes=False)
    grid = ", ".join(f"{0.001 * (i + 1):.3f}" for i in range(300))
    spec.write_text(TOY.replace("eta = 0.5\ntau = 0.1", f"eta = [{grid}]\ntau = [{grid}]").replace(
        "record_every = 10", "records = 2"))
    started = time.perf_counter()
    with pytest.raises(GamesimError, match="90000 cells.*--yes"):
        study.run_study(study.load_spec(spec), tmp_path / "r", yes=False)
    assert time.perf_counter() - started < 30 and not (tmp_path / "r" / "big").exists()
    spec.write_text(TOY.replace("iterations = 20", "iterations = 1e12"))
    with pytest.raises(GamesimError, match="whole number"):
        study.load_spec(spec)
    with pytest.warns(GamesimWarning, match="rough estimate"):
        simulate("rrps", "sppo", eta=0.1, iterations=400_000, record_every=1, progress=False)


# --- every bad input: a one-line error, never a traceback --------------------------------------------
BAD = st.sampled_from(["", "nan", "inf", "-1", "0", "1e400", "abc", "-0", "1e-320", "3.5", "10000000000000"])


@settings(max_examples=40, deadline=None)
@given(flag=st.sampled_from(["--eta", "--tau", "--iterations", "--record-every", "--seed", "--beta", "--pairs",
                             "--checkpoint-every"]), value=BAD,
       algorithm=st.sampled_from(["inpo", "ipo-md", "sppo"]), game=st.sampled_from(["cycle3", "cycl3", "random:n=-2"]))
def test_bad_command_lines_are_one_line_errors(tmp_path_factory, flag, value, algorithm, game):
    import contextlib
    import io

    options = {"--algorithm": algorithm, "--eta": "0.5", "--tau": "0.1", "--iterations": "20",
               "--out": str(tmp_path_factory.mktemp("bad") / "o"), flag: value}
    if flag == "--pairs":
        options["--feedback"] = "sampled"
    argv = ["run", game, *(x for item in options.items() for x in item)]

    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = main(argv)
    text = err.getvalue().strip()
    assert code in (0, 2)
    if code == 2:
        assert len(text.splitlines()) == 1 and "Traceback" not in text, text


@settings(max_examples=40, deadline=None)
@given(kwargs=st.fixed_dictionaries({}, optional={
    "eta": st.sampled_from([None, -1.0, 0.0, float("nan"), float("inf"), "0.5", 1e300, True]),
    "tau": st.sampled_from([-0.1, float("nan"), 1e300, "x", None]),
    "iterations": st.sampled_from([-5, 2.5, 10 ** 12, "10", None]),
    "record_every": st.sampled_from([0, -1, 3.0, 7]),
    "seed": st.sampled_from([-1, 2 ** 70, 1.5]),
    "init": st.sampled_from(["nope", [0.5, 0.5], [1.0, 0.0, 0.0], [0.2, 0.2, 0.2]]),
    "schedule": st.sampled_from(["theorem", "linear"]),
    "beta": st.sampled_from([2.0, -1.0]),
}))
def test_bad_api_calls_raise_gamesim_errors(kwargs):
    call = {"eta": 0.5, "tau": 0.1, "iterations": 20, **kwargs}
    try:
        simulate("cycle3", "inpo", progress=False, **{k: v for k, v in call.items() if v is not None or k == "eta"})
    except GamesimError as exc:
        assert "\n" not in str(exc)
    except TypeError as exc:  # a required argument left out by the strategy
        assert "iterations" in str(exc)
