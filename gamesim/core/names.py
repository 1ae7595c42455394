"""Names a user types (algorithms, games, keys, claims, file names): checks, and the closest valid
name when one is misspelt. The one home of every "did you mean" in gamesim."""

from __future__ import annotations

import difflib

from gamesim.core.errors import GamesimError


def did_you_mean(word, choices, cutoff: float = 0.6) -> str:
    """' (did you mean 'x'?)' for the choice closest to `word` (difflib ratio ≥ cutoff), else ''."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_keys(keys, valid, where: str) -> None:
    """Raise GamesimError naming the first key not in `valid`, with the closest valid one."""
    for key in keys:
        if key not in valid:
            close = difflib.get_close_matches(str(key), [str(v) for v in valid], n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(map(str, valid))}"
            raise GamesimError(f"unknown {where} {key!r}; {hint}")


def check_name(name, what: str) -> None:
    """Names that become parts of file names: letters, digits, '-', '_' and '.', not starting with
    '.', at most 64 characters (no path separators, no '..')."""
    ok = isinstance(name, str) and 0 < len(name) <= 64 and name[0].isalnum() and ".." not in name and \
        all(c.isalnum() or c in "-_." for c in name)
    if not ok:
        raise GamesimError(f"{what} {name!r} is not a plain name (letters, digits, '-', '_', '.'; no path "
                           "separators or '..'); rename it")
