"""The bad inputs a new user tried that once escaped as tracebacks, hangs or minutes of work: each is
now a one-line error with exit code 2, before any output is written (the working directory holds
exactly what the test put there), and the message names the problem.

Each input is also fed with its valid neighbour (seed 0 for seed −1, a file for a directory, a
small n for a huge one), which must be accepted: a check that refused everything would pass the
first half alone.
"""

from __future__ import annotations

import time

import pytest

from gamesim.cli import main
from gamesim.core.games import load_game

RUN = ["run", "cycle3", "--algorithm", "inpo", "--eta", "0.5", "--tau", "0.1", "--iterations", "10"]
LM = ["lm", "run", "--algorithm", "inpo", "--eta", "0.5", "--tau", "0.1", "--iterations", "2"]
SPEC = """title = "t"
[[group]]
games = ["cycle3"]
algorithms = ["inpo"]
eta = 0.5
tau = 0.1
iterations = ITERATIONS
record_every = 10
[[panel]]
kind = "curves"
metric = "gap"
"""


def _files(where):
    return sorted(p.relative_to(where).as_posix() for p in where.rglob("*"))


def _setup(tmp_path):
    (tmp_path / "afile").write_text("not a directory\n")
    (tmp_path / "cfgdir").mkdir()
    (tmp_path / "deep.toml").write_text("title = 't'\na = " + "[" * 5000 + "]" * 5000 + "\n")
    (tmp_path / "float.toml").write_text(SPEC.replace("ITERATIONS", "200.0"))
    (tmp_path / "huge.toml").write_text("vocab = 64\nlength = 12\n")


CASES = {
    "negative --seed": (RUN + ["--init", "random", "--seed", "-1", "--out", "o"], "seed is an integer in [0, 2**63)"),
    "negative random seed": (["run", "random:n=3,seed=-1", *RUN[2:], "--out", "o"], "seed is an integer"),
    "negative ref_seed": (["solve", "cycle3:ref_seed=-5"], "ref_seed is an integer"),
    "negative lm --seed": (LM + ["--seed", "-1", "--out", "o"], "seed is an integer"),
    "negative lm --init-seed": (LM + ["--init-seed", "-3", "--out", "o"], "init_seed is an integer"),
    "--out an existing file": (RUN + ["--out", "afile"], "afile exists and is not a directory"),
    "--out under a file": (RUN + ["--out", "afile/run"], "is a file, so it cannot hold the directory"),
    "--out under new directories, bad setting": (RUN[:-1] + ["-10", "--out", "new/deeper/o"], "iterations"),
    "lm --config a directory": (LM + ["--config", "cfgdir", "--out", "o"], "cfgdir is a directory"),
    "random:n=100000000": (["solve", "random:n=100000000"], "need about 240.0 PB"),
    "deeply nested study spec": (["study", "run", "deep.toml", "--results", "r"], "nested too deeply"),
    "float iterations in a study": (["study", "run", "float.toml", "--results", "r"], "whole number"),
    "sampled --pairs 1e8": (RUN + ["--feedback", "sampled", "--pairs", "100000000", "--out", "o"], "GB"),
    "lm --pairs 1e8": (LM + ["--pairs", "100000000", "--out", "o"], "TB"),
    "lm model too large to enumerate": (LM + ["--config", "huge.toml", "--metrics", "exact", "--out", "o"],
                                        "exact metrics enumerate all V^L"),
    "eta 1e308 at tau 0": (["run", "cycle3", "--algorithm", "sppo", "--eta", "1e308", "--iterations", "10",
                            "--out", "o"], "learning rate eta must be a number in [1e-12, 1e+12]"),
}


@pytest.mark.parametrize("name", CASES)
def test_a_bad_input_is_one_line_exit_2_and_leaves_nothing(name, tmp_path, monkeypatch, capsys):
    argv, message = CASES[name]
    monkeypatch.chdir(tmp_path)
    _setup(tmp_path)
    before = _files(tmp_path)
    started = time.perf_counter()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gamesim: error:"), err
    assert message in err, err
    assert time.perf_counter() - started < 30, "refused, but only after doing the work"
    assert _files(tmp_path) == before


def test_the_valid_neighbours_are_accepted(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(RUN + ["--init", "random", "--seed", "0", "--out", "new/deeper/o"]) == 0
    assert (tmp_path / "new" / "deeper" / "o" / "run.json").is_file()
    assert main(["solve", "cycle3:ref_seed=5"]) == 0
    assert main(["solve", "random:n=300"]) == 0
    (tmp_path / "iterations.toml").write_text(SPEC.replace("ITERATIONS", "200"))
    assert main(["study", "run", "iterations.toml", "--results", "r"]) == 0


def test_a_byte_order_mark_is_not_data(tmp_path):
    """Spreadsheets write a UTF-8 byte-order mark first: it is neither a number nor part of a name."""
    rows = "0.5,0.9,0.2\n0.1,0.5,0.9\n0.8,0.1,0.5\n"
    (tmp_path / "named.csv").write_bytes("\ufeffa,b,c\n".encode() + rows.encode())
    (tmp_path / "bare.csv").write_bytes("\ufeff".encode() + rows.encode())
    named, bare = load_game(tmp_path / "named.csv"), load_game(tmp_path / "bare.csv")
    assert named.names == ["a", "b", "c"] or tuple(named.names) == ("a", "b", "c")
    assert bare.names is None and bare.P[0, 0] == 0.5 and bare.P[0, 1] == 0.9
