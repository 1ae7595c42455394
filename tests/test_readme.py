"""The README's Python examples run, and the numbers they quote are what gamesim computes."""

import re
from pathlib import Path

import numpy as np
import pytest

README = (Path(__file__).parents[1] / "README.md").read_text()


@pytest.mark.slow
def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    assert len(blocks) >= 2
    namespace = {}
    for block in blocks:
        exec(compile(block, "README.md", "exec"), namespace)
    np.testing.assert_allclose(namespace["eq"].policy, np.array([4, 3, 4]) / 11, atol=1e-14)
    assert namespace["traj"].metrics["gap_reg"][-1] < 1e-15
    assert round(namespace["traj"].metrics["gap"][-1], 4) == 0.0245
    np.testing.assert_allclose(namespace["hedge"].metrics["gap"], [0.40, 0.58, 0.59, 0.80], atol=0.006)
    assert round(namespace["hedge"].metrics["gap_avg"][-1], 4) == 0.0075
    assert namespace["batch"].metrics["gap_reg"].shape == (256, 101)


def test_readme_starts_with_the_two_commands():
    first = README.split("```bash\n", 1)[1].split("```", 1)[0].strip().splitlines()
    assert first[0].endswith("gamesim demo") and first[1].endswith("python -m pytest")
    ci = (Path(__file__).parents[1] / ".ci" / "run").read_text()
    assert "python -m pip install --quiet -e '.[test]'" in ci and "\npython -m pytest\n" in ci
    docs = re.search(r"```bash\n(.*?)```", README.split("## Documentation", 1)[1], flags=re.DOTALL).group(1)
    build = docs.split("&& ", 1)[1].strip()              # the README's one documentation command …
    assert build.startswith("python -m sphinx -W") and ci.strip().endswith(build)   # … is what CI runs last
