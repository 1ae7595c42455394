"""The lecture notebooks (docs/lectures/*.md, MyST-NB text notebooks) execute without error, each
in under a minute: the docs build executes them too, so a cell that fails or a stated number that
no longer holds (the notebooks assert what their prose claims) breaks the build first here."""

import time
from pathlib import Path

import pytest

LECTURES = sorted(p for p in (Path(__file__).parent.parent / "docs" / "lectures").glob("*.md") if p.name != "index.md")
BUDGET_S = 60


def test_lectures_found():
    assert len(LECTURES) >= 6, [p.name for p in LECTURES]


@pytest.mark.slow
@pytest.mark.parametrize("path", LECTURES, ids=[p.stem for p in LECTURES])
def test_lecture_runs_in_a_minute(path):
    nbclient = pytest.importorskip("nbclient")
    read = pytest.importorskip("myst_nb.core.read")
    notebook = read.read_myst_markdown_notebook(path.read_text())
    start = time.perf_counter()
    nbclient.NotebookClient(notebook, timeout=BUDGET_S, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f} s")
    assert elapsed < BUDGET_S, f"{path.name} took {elapsed:.0f} s, over the {BUDGET_S} s budget"
