"""The lecture notebooks (docs/lectures/*.md, MyST-NB text notebooks): there are the six lectures,
each with exercises whose solutions run, and the docs build executes them all, failing on a cell
error, on a stated number that no longer holds (the notebooks assert what their prose claims) and
on a notebook that runs for over a minute (docs/_ext/execution_budget.py; CI runs the build)."""

import re
from pathlib import Path

DOCS = Path(__file__).parent.parent / "docs"
LECTURES = sorted(p for p in (DOCS / "lectures").glob("*.md") if p.name != "index.md")


def test_the_lectures_are_executed_notebooks_with_exercises_and_solutions():
    assert len(LECTURES) >= 6, [p.name for p in LECTURES]
    toc = (DOCS / "lectures" / "index.md").read_text()
    for path in LECTURES:
        text = path.read_text()
        assert text.startswith("---\njupytext:") and "file_format: mystnb" in text, path.name
        assert path.stem in toc, f"{path.name} is not in the lectures' table of contents"
        assert len(re.findall(r"\*\*Exercise \d+\.\*\*", text)) >= 2, path.name
        assert text.count(":class: dropdown") >= 2 and text.count("hide-input") >= 2, path.name
        assert text.count("assert ") >= 3, f"{path.name}: its numbers are not checked"


def test_the_build_executes_every_notebook_within_a_minute():
    conf = (DOCS / "conf.py").read_text()
    assert 'nb_execution_mode = "force"' in conf and "nb_execution_raise_on_error = True" in conf
    assert '"execution_budget"' in conf
    assert '"dollarmath"' in conf  # the lectures write their maths as $…$: without it the page shows the TeX source
    assert "BUDGET_S = 60\n" in (DOCS / "_ext" / "execution_budget.py").read_text()
