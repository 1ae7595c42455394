"""docs/tutorial.md runs: every Python block, in order, in one namespace (its asserts check its prose)."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_tutorial_blocks_run(monkeypatch):
    text = (ROOT / "docs" / "tutorial.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) >= 10
    monkeypatch.chdir(ROOT)
    namespace = {"__name__": "tutorial"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/tutorial.md, block {i + 1}", "exec"), namespace)  # noqa: S102 (the point)
    for figure in re.findall(r"\]\((\.\./figures/[^)]+)\)", text):
        assert (ROOT / "docs" / figure).resolve().exists(), figure
