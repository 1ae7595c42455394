"""The documentation runs: every Python block of each guide, in order, in one namespace (its asserts
check its prose); a block that shows a file (first line `# docs/…`) is that file, verbatim. The
tutorials are MyST notebooks, whose code cells the documentation build also executes."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
GUIDES = {"tutorials/tutorial.md": 5, "tutorials/dynamics.md": 10, "howto/own_method.md": 6}
"""Each guide (under docs/) and the fewest Python blocks it has."""
BLOCK = r"```(?:python|\{code-cell\} ipython3)\n(.*?)```"
"""A Python block: plain, or a notebook's code cell."""


@pytest.mark.slow
@pytest.mark.parametrize("guide", [g for g in GUIDES if not g.startswith("tutorials/")])
def test_guide_blocks_run(monkeypatch, guide):
    """The guides the docs build shows without executing; the tutorials it executes (CI runs the
    build, `test_tutorial_executes_in_the_docs_build`), so the suite does not run them twice."""
    text = (ROOT / "docs" / guide).read_text()
    blocks = [b for b in re.findall(BLOCK, text, flags=re.DOTALL) if not b.startswith("# docs/")]
    assert len(blocks) >= GUIDES[guide]
    assert sum(block.count("assert ") for block in blocks) >= len(blocks)  # the blocks check what the prose says
    monkeypatch.chdir(ROOT)
    namespace = {"__name__": guide}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/{guide}, block {i + 1}", "exec"), namespace)  # noqa: S102 (the point)
    for figure in re.findall(r"\]\(((?:\.\./)+(?:figures|examples)/[^)]+)\)", text):
        assert (ROOT / "docs" / guide).parent.joinpath(figure).resolve().exists(), figure


@pytest.mark.parametrize("tutorial", [g for g in GUIDES if g.startswith("tutorials/")])
def test_tutorial_executes_in_the_docs_build(tutorial):
    """Every code block of a tutorial is a notebook cell, and the build executes them all and
    fails on an error, so the published page shows what this gamesim computes."""
    text = (ROOT / "docs" / tutorial).read_text()
    assert text.startswith("---\njupytext:") and "```python" not in text
    assert len(re.findall(r"```\{code-cell\} ipython3\n", text)) >= GUIDES[tutorial]
    conf = (ROOT / "docs" / "conf.py").read_text()
    assert 'nb_execution_mode = "force"' in conf and "nb_execution_raise_on_error = True" in conf


@pytest.mark.parametrize("guide", GUIDES)
def test_files_shown_in_a_guide_are_verbatim(guide):
    text = (ROOT / "docs" / guide).read_text()
    for name, shown in re.findall(BLOCK.replace("(.*?)", r"# (docs/\S+)\n(.*?)"), text, flags=re.DOTALL):
        assert shown == (ROOT / name).read_text(), name
