"""Every stored number is what the code computed before the last behaviour-preserving refactor,
bit for bit (tests/stored_values.py says what is stored and how it was made)."""

import numpy as np
import pytest

from stored_values import STORE, compute, machine

pytestmark = pytest.mark.slow


def differences(stored: dict, now: dict, exact: bool) -> list[str]:
    """One line per key that is missing, new, or differs (exactly, or beyond 1e-12 relative)."""
    lines = [f"{k}: missing now" for k in sorted(stored.keys() - now.keys())]
    lines += [f"{k}: new, not stored" for k in sorted(now.keys() - stored.keys())]
    for k in sorted(stored.keys() & now.keys()):
        a, b = stored[k], np.asarray(now[k])
        if a.dtype != b.dtype or a.shape != b.shape:
            lines.append(f"{k}: {a.dtype}{a.shape} stored, {b.dtype}{b.shape} now")
        elif a.dtype.kind != "f":
            if not np.array_equal(a, b):
                lines.append(f"{k}: differs")
        elif not (np.array_equal(a, b, equal_nan=True) if exact else np.allclose(a, b, rtol=1e-12, atol=0, equal_nan=True)):
            lines.append(f"{k}: max |Δ| = {np.nanmax(np.abs(a - b)):.3g}")
    return lines


def test_every_stored_value_is_reproduced():
    with np.load(STORE) as data:
        stored = {k: data[k] for k in data.files}
    where = str(stored.pop("machine"))
    same_machine = where == machine()
    problems = differences(stored, compute(), exact=same_machine)
    how = "bit for bit" if same_machine else f"to 1e-12 relative (stored on {where}, now {machine()})"
    assert not problems, f"{len(problems)} of {len(stored)} stored values not reproduced {how}:\n" + "\n".join(problems[:40])


def test_the_comparison_sees_one_bit():
    stored = {"x": np.array([0.1, 0.2]), "name": np.array("a")}
    assert differences(stored, {"x": np.array([0.1, 0.2]), "name": np.array("a")}, exact=True) == []
    nudged = {"x": np.array([0.1, np.nextafter(0.2, 1)]), "name": np.array("a")}
    assert differences(stored, nudged, exact=True) == ["x: max |Δ| = 2.78e-17"]
    assert differences(stored, {"x": np.array([0.1, 0.2])}, exact=True) == ["name: missing now"]
    assert differences(stored, {**nudged, "y": 1.0}, exact=False) == ["y: new, not stored"]
