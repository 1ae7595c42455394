"""The bandit-mode study script (experiments/bandit_gap.py): its quick run draws a figure, reuses
saved configurations on a second run (recomputing only what is missing), and its spec is checked."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import gamesim

pytest.importorskip("matplotlib")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def study():
    spec = importlib.util.spec_from_file_location("bandit_gap", ROOT / "experiments" / "bandit_gap.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_draws_the_figure_and_resumes(study, tmp_path, monkeypatch):
    import matplotlib.image

    assert study.main(["--quick", "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "bandit_gap.pdf").stat().st_size > 0
    assert matplotlib.image.imread(tmp_path / "bandit_gap.png").std() > 0
    results = np.load(tmp_path / "bandit_gap.npz")
    spec = study.load_spec(study.HERE / "bandit_gap.toml", quick=True)
    G, A, M = len(spec["games"]), len(spec["algorithms"]), len(spec["N"])
    assert results["gap_reg"].shape == (G, A, M, spec["seeds"], spec["T"] // spec["record_every"] + 1)
    assert np.all(np.isfinite(results["gap_reg"])) and np.all(results["gap_reg"] >= -1e-12)

    # a second run after losing one configuration recomputes that one only
    cached = sorted((tmp_path / "bandit_gap").glob("*.npz"))
    assert len(cached) == G * A * (M + 1)
    cached[0].unlink()
    calls = []
    for name in ("simulate", "simulate_batch"):
        real = getattr(gamesim, name)
        monkeypatch.setattr(gamesim, name, lambda *a, _real=real, **k: calls.append(a) or _real(*a, **k))
    (tmp_path / "bandit_gap.png").unlink()
    assert study.main(["--quick", "--out-dir", str(tmp_path)]) == 0
    assert len(calls) == 1 and (tmp_path / "bandit_gap.png").exists()
    again = np.load(tmp_path / "bandit_gap.npz")
    for key in results.files:
        np.testing.assert_array_equal(again[key], results[key])


def test_spec_rejects_unknown_keys_with_a_suggestion(study, tmp_path, capsys):
    text = (study.HERE / "bandit_gap.toml").read_text()
    for wrong, suggestion in (("seeds = 8", "sedes = 8"), ("T = 40", "Tt = 40"),
                              ("inpo = { eta", "inpoo = { eta")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text.replace(wrong, suggestion, 1))
        with pytest.raises(ValueError, match=f"unknown key '{suggestion.split()[0]}'.*did you mean"):
            study.load_spec(bad, quick=True)
    assert study.main(["--spec", str(bad), "--out-dir", str(tmp_path)]) == 2
    assert "did you mean 'inpo'" in capsys.readouterr().err
