"""The documentation runs: every Python block of each guide, in order, in one namespace (its asserts
check its prose); a block that shows a file (first line `# docs/…`) is that file, verbatim."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
GUIDES = {"tutorial.md": 10, "own_method.md": 6}
"""Each guide and the fewest Python blocks it has."""


@pytest.mark.slow
@pytest.mark.parametrize("guide", GUIDES)
def test_guide_blocks_run(monkeypatch, guide):
    text = (ROOT / "docs" / guide).read_text()
    blocks = [b for b in re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL) if not b.startswith("# docs/")]
    assert len(blocks) >= GUIDES[guide]
    assert sum(block.count("assert ") for block in blocks) >= len(blocks)  # the blocks check what the prose says
    monkeypatch.chdir(ROOT)
    namespace = {"__name__": guide}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/{guide}, block {i + 1}", "exec"), namespace)  # noqa: S102 (the point)
    for figure in re.findall(r"\]\(((?:\.\./figures|examples)/[^)]+)\)", text):
        assert (ROOT / "docs" / figure).resolve().exists(), figure


@pytest.mark.parametrize("guide", GUIDES)
def test_files_shown_in_a_guide_are_verbatim(guide):
    text = (ROOT / "docs" / guide).read_text()
    for name, shown in re.findall(r"```python\n# (docs/\S+)\n(.*?)```", text, flags=re.DOTALL):
        assert shown == (ROOT / name).read_text(), name
