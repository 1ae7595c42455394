"""A study split into shards on separate processes, merged: the same results as one process, bit for
bit; shards of another spec or code, or an incomplete set, refused by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gamesim.cli import main
from gamesim.core.errors import GamesimError
from gamesim.core.files import sha256
from gamesim.studies import shards, study

SPEC = """title = "sweep"
[[group]]
name = "main"
games = ["cycle3", "random:n=4,seed=1"]
algorithms = ["inpo", "nash-md"]
eta = [0.2, 0.5]
tau = 0.1
iterations = 40
record_every = 10
seeds = 2
init = "random"
[[panel]]
kind = "curves"
metric = "gap"
"""


@pytest.fixture
def spec(tmp_path):
    path = tmp_path / "sweep.toml"
    path.write_text(SPEC)
    return path


def _arrays(results_dir, name="sweep"):
    with np.load(results_dir / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def _cli(*args, cwd):
    root = str(Path(__file__).resolve().parents[1])  # this checkout's gamesim, wherever the process starts
    env = {**os.environ, "GAMESIM_CACHE_DIR": "", "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-m", "gamesim.cli", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_shards_in_two_processes_merge_to_the_one_process_result(spec, tmp_path):
    s = study.load_spec(spec)
    assert len(study.all_cells(s)) == 8  # 2 algorithms × 2 η × 2 game shapes: each shard gets 4
    runs = [_cli("study", "run", str(spec), "--shard", f"{k}/2", "--results", str(tmp_path / f"host{k}"), cwd=tmp_path)
            for k in (1, 2)]
    for run in runs:
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
    held = [sorted(p.name for p in (tmp_path / f"host{k}" / "sweep" / "cells").glob("*.npz")) for k in (1, 2)]
    assert len(held[0]) == len(held[1]) == 4 and not set(held[0]) & set(held[1])
    assert not (tmp_path / "host1" / "sweep.npz").exists()  # a shard alone writes no results

    merge = _cli("study", "merge", str(spec), "--results", str(tmp_path / "merged"), "--from", str(tmp_path / "host1"),
                 "--from", str(tmp_path / "host2"), cwd=tmp_path)  # a fresh process: no test's plugins loaded
    assert merge.wait(timeout=600) == 0, merge.stderr.read()
    study.run_study(s, tmp_path / "single", log=lambda *a: None)
    merged, single = _arrays(tmp_path / "merged"), _arrays(tmp_path / "single")
    assert merged.keys() == single.keys() and "main/gap" in merged
    for key in single:
        np.testing.assert_array_equal(merged[key], single[key], err_msg=key)
    assert np.ptp(single["main/gap"][..., -1], axis=-1).max() > 0  # the seeds differ: seeds reach each cell
    info = json.loads((tmp_path / "merged" / "sweep.json").read_text())
    assert info["npz_sha256"] == sha256(tmp_path / "merged" / "sweep.npz") and info["spec"]["group"] == s.spec["group"]


def test_shards_of_another_spec_or_code_or_an_incomplete_set_are_refused(spec, tmp_path):
    quiet = lambda *a: None  # noqa: E731
    small = SPEC.replace('games = ["cycle3", "random:n=4,seed=1"]', 'games = ["cycle3"]').replace("eta = [0.2, 0.5]", "eta = 0.2")
    spec.write_text(small)
    s = study.load_spec(spec)
    shards.run_shard(s, tmp_path / "r", (1, 2), log=quiet)
    with pytest.raises(GamesimError, match=r"shards 2 of 2 of sweep are missing"):
        shards.merge(s, tmp_path / "r", log=quiet)
    spec.write_text(small.replace("iterations = 40", "iterations = 50"))
    other = study.load_spec(spec)
    shards.run_shard(other, tmp_path / "other", (2, 2), log=quiet)
    with pytest.raises(GamesimError, match=r"shard 2/2 .* different version of sweep.toml"):
        shards.merge(s, tmp_path / "r", [tmp_path / "other"], log=quiet)
    shards.run_shard(s, tmp_path / "r", (2, 2), log=quiet)
    manifest = tmp_path / "r" / "sweep" / "shards" / "2-of-2.json"
    record = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**record, "code_fingerprint": "0123456789ab"}))
    with pytest.raises(GamesimError, match=r"shard 2/2 .* different gamesim code"):
        shards.merge(s, tmp_path / "r", log=quiet)
    manifest.write_text(json.dumps(record))
    shards.run_shard(s, tmp_path / "r", (1, 3), log=quiet)
    with pytest.raises(GamesimError, match=r"split it in different ways \(N = 2 and N = 3\)"):
        shards.merge(s, tmp_path / "r", log=quiet)
    (tmp_path / "r" / "sweep" / "shards" / "1-of-3.json").unlink()
    assert set(shards.merge(s, tmp_path / "r", log=quiet)) == {"main"}


@pytest.mark.parametrize("text", ["0/2", "3/2", "2", "a/b", "1/0", "2/-1"])
def test_a_bad_shard_is_a_one_line_error(text, spec, capsys):
    assert main(["study", "run", str(spec), "--shard", text]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--shard takes K/N" in err


@pytest.mark.slow
def test_cells_in_worker_processes_equal_one_process_and_load_plugins(spec, tmp_path):
    """`--jobs 2`: the cells computed by two spawned workers (a plugin's algorithm among them, its
    file loaded in each worker) are the one-process results bit for bit."""
    plugin = Path(__file__).resolve().parents[1] / "docs" / "examples" / "lookahead.py"
    spec.write_text(SPEC.replace('algorithms = ["inpo", "nash-md"]', 'algorithms = ["inpo", "lookahead-inpo"]'))
    assert main(["study", "run", str(spec), "--plugin", str(plugin), "--jobs", "2",
                 "--results", str(tmp_path / "two")]) == 0
    assert main(["study", "run", str(spec), "--plugin", str(plugin), "--results", str(tmp_path / "one")]) == 0
    two, one = _arrays(tmp_path / "two"), _arrays(tmp_path / "one")
    assert two.keys() == one.keys()
    for name in one:
        np.testing.assert_array_equal(two[name], one[name], err_msg=name)
    assert not np.array_equal(one["main/gap"][:, 0], one["main/gap"][:, 1])  # dims (game, algorithm, …): they differ
