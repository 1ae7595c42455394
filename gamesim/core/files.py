"""Atomic file writes: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from gamesim.core.errors import GamesimError


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside `path`; on success flush, fsync and rename it over `path`.

    The file gets the permissions a plain `open` would give (0o666 less the umask), not
    mkstemp's owner-only 0o600.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_toml(path: str | os.PathLike, what: str) -> dict:
    """The TOML file `path` (a study spec, a model config: `what`) as a dict, or a one-line
    GamesimError naming the problem: missing, a directory, unreadable, not UTF-8 text, not TOML,
    or nested too deeply for the parser (Python's recursion limit)."""
    path = Path(path)
    if path.is_dir():
        raise GamesimError(f"{path} is a directory; give the {what} TOML file itself")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise GamesimError(f"cannot read {what} {str(path)!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise GamesimError(f"{path} is not a UTF-8 text file; a {what} is TOML text") from None
    except tomllib.TOMLDecodeError as exc:
        raise GamesimError(f"{path}: not valid TOML ({exc})") from None
    except RecursionError:
        raise GamesimError(f"{path}: arrays or tables nested too deeply to read; a {what} needs at most a few "
                           "levels") from None
