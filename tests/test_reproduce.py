"""`gamesim reproduce --quick`: every study spec in experiments/ runs and draws a figure with ink.

One test class per spec, so that the test workers share the studies (`--dist loadscope` sends a
module's functions to one worker, each class to any); `reproduce` itself runs over a directory
holding one of them.
"""

import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from gamesim.studies import study
from gamesim.cli import main

ROOT = Path(__file__).resolve().parents[1]
SPECS = sorted(p.stem for p in (ROOT / "experiments").glob("*.toml"))
EXPECTED = {"apmd", "bandit_gap", "calandriello", "comal", "cycling", "egpo", "egpo_neural", "egpo_sampled", "heatmap",
            "inpo_theory", "kuhn", "mmd", "omwu_nlhf", "sample_efficiency", "simplex",
            "transformer", "transitive"}


def test_every_expected_study_has_a_spec():
    assert EXPECTED <= set(SPECS), sorted(EXPECTED - set(SPECS))


def _writes_its_figure(name, tmp_path):
    spec = ROOT / "experiments" / f"{name}.toml"
    t0 = time.perf_counter()
    assert main(["study", "run", str(spec), "--quick", "--results", str(tmp_path)]) == 0
    assert main(["study", "plot", str(spec), "--quick", "--results", str(tmp_path),
                 "--figures", str(tmp_path / "figures")]) == 0
    png, pdf = tmp_path / "figures" / f"{name}.png", tmp_path / "figures" / f"{name}.pdf"
    assert pdf.stat().st_size > 10_000 and study.has_ink(png), name
    with np.load(tmp_path / f"{name}.npz") as results:  # every recorded array holds numbers, not only NaN
        empty = [key for key in results.files if not np.isfinite(results[key]).any()]
    assert results.files and not empty, empty
    print(f"{name} --quick: {time.perf_counter() - t0:.0f} s")


def _quick_study_class(name):
    @pytest.mark.slow
    class QuickStudy:
        def test_writes_its_figure(self, tmp_path):
            _writes_its_figure(name, tmp_path)

    QuickStudy.__name__ = QuickStudy.__qualname__ = f"TestQuick_{name}"
    return QuickStudy


for _name in SPECS:
    globals()[f"TestQuick_{_name}"] = _quick_study_class(_name)


@pytest.mark.slow
def test_reproduce_runs_every_spec_of_a_directory(tmp_path):
    experiments = tmp_path / "experiments"
    experiments.mkdir()
    shutil.copy(ROOT / "experiments" / "simplex.toml", experiments)
    assert main(["reproduce", "--quick", "--experiments", str(experiments), "--results", str(tmp_path / "r")]) == 0
    assert study.has_ink(tmp_path / "r" / "figures" / "simplex.png")
