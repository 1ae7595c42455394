"""Run directories: a set of result files committed as one unit, checked before any work starts.

A run directory (`gamesim run --out DIR`, `gamesim lm run --out DIR`) always holds one complete,
consistent record. Each save (a checkpoint during the run, and the final save) writes every file
into a fresh sibling directory `.DIR.new-PID`, with `run.json` last, holding a manifest of every
other file's size and SHA-256; then renames the old directory aside (`.DIR.old-PID`), the new one
into place, and deletes the old. A crash at any point leaves either the old record or the new
one: if DIR is missing, `RunDirectory.open` restores the complete sibling (the new one if it
passes its checksums, else the old one) and removes leftovers. Reading verifies every checksum,
so a truncated or edited file is named before anything is computed.

While a run writes DIR it holds an exclusive lock on the sibling file `.DIR.lock`; a second
writer is refused. Before any computation, `open` checks that DIR can be written, that it is
empty or absent (unless overwriting or resuming), and that `--overwrite` only ever replaces a
gamesim run directory (never a directory with other files in it).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
from pathlib import Path

from gamesim.core.errors import GamesimError
from gamesim.core.files import sha256

FORMAT = 1
"""The run directory format written by this version (run.json's "format")."""

INFO = "run.json"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class RunDirectory:
    """DIR, locked for writing; `commit` replaces its whole content atomically."""

    def __init__(self, path: Path, lock_fd: int, created: list[Path] = ()):
        self.path, self._lock_fd = path, lock_fd
        self._created = list(created)  # parents `open` made: removed again if nothing is committed

    @classmethod
    def open(cls, out, mode: str) -> RunDirectory:
        """Lock DIR for writing and check it, before any computation.

        mode "new": DIR must be absent or empty; "overwrite": absent, empty or a gamesim run
        directory; "resume": a complete gamesim run directory (read it with `read`).
        """
        if not str(out).strip():
            raise GamesimError("--out is empty; name the directory for the results, e.g. --out runs/first")
        path = Path(out).expanduser().absolute()
        if path.exists() and not path.is_dir():
            raise GamesimError(f"{out} exists and is not a directory; choose another --out")
        if blocker := next((p for p in path.parents if p.exists() and not p.is_dir()), None):
            raise GamesimError(f"{blocker} is a file, so it cannot hold the directory {out}; choose another --out")
        parent = path.parent
        created = [p for p in (parent, *parent.parents) if not p.exists()]
        try:
            parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            _remove_empty(created)
            raise GamesimError(f"cannot write the results into {parent}: {exc.strerror}; choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                raise GamesimError(f"{out} is being written by another gamesim process; wait for it to finish "
                                   "or choose another --out") from None
            raise
        run = cls(path, fd, created)
        try:
            run._recover()
            run._check(mode, out)
            if not os.access(parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
                raise GamesimError(f"cannot write the results into {out}: permission denied; choose another --out")
        except BaseException:
            run.close()
            raise
        return run

    def _siblings(self, kind: str) -> list[Path]:
        return sorted(self.path.parent.glob(f".{self.path.name}.{kind}-*"))

    def _recover(self) -> None:
        """Finish or undo a save that a crash interrupted, and remove its leftovers."""
        if not self.path.exists():
            for candidate in [*self._siblings("new"), *self._siblings("old")]:
                if _complete(candidate):
                    os.rename(candidate, self.path)
                    break
        for leftover in [*self._siblings("new"), *self._siblings("old")]:
            shutil.rmtree(leftover, ignore_errors=True)

    def _check(self, mode: str, shown) -> None:
        exists = self.path.exists()
        contents = list(self.path.iterdir()) if exists else []
        if mode == "new" and contents:
            what = "results" if (self.path / INFO).exists() else "other files"
            raise GamesimError(f"{shown} already holds {what}; pass --overwrite to replace a run, --resume to continue "
                               "it, or choose another --out")
        if mode == "overwrite" and contents and not (self.path / INFO).exists():
            raise GamesimError(f"{shown} holds files that are not a gamesim run, which --overwrite would delete; "
                               "choose another --out")
        if mode == "resume" and not exists:
            raise GamesimError(f"cannot resume: {shown} does not exist; start the run without --resume")

    def read(self) -> tuple[dict, dict]:
        """(run.json's content, {file name: path}) after checking every file against the manifest."""
        return read(self.path)

    def commit(self, files: dict, info: dict) -> None:
        """Replace DIR's content by `files` (name → writer(path)) and run.json = `info` + manifest."""
        new = self.path.parent / f".{self.path.name}.new-{os.getpid()}"
        shutil.rmtree(new, ignore_errors=True)
        new.mkdir()
        manifest = {}
        for name, write in files.items():
            target = new / name
            write(target)
            with open(target, "rb+") as f:
                os.fsync(f.fileno())
            manifest[name] = {"bytes": target.stat().st_size, "sha256": sha256(target)}
        with open(new / INFO, "w") as f:
            json.dump({"format": FORMAT, **info, "files": manifest}, f, indent=2, allow_nan=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(new)
        old = self.path.parent / f".{self.path.name}.old-{os.getpid()}"
        if self.path.exists():
            os.rename(self.path, old)
        os.rename(new, self.path)
        _fsync_dir(self.path.parent)
        shutil.rmtree(old, ignore_errors=True)

    def close(self) -> None:
        """Release the lock; parents made by `open` for a run that never committed are removed,
        so a command refused after `open` (a bad setting) leaves nothing behind."""
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path.parent / f".{self.path.name}.lock")
            os.close(self._lock_fd)
            self._lock_fd = None
            if not self.path.exists():
                _remove_empty(self._created)

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _remove_empty(directories: list[Path]) -> None:
    """Remove these directories (deepest first) where they are still empty."""
    for directory in directories:
        with contextlib.suppress(OSError):
            directory.rmdir()


def _complete(path: Path) -> bool:
    try:
        read(path)
        return True
    except GamesimError:
        return False


def read(path) -> tuple[dict, dict]:
    """(run.json's content, {file name: path}) of the run directory `path`, every file checked
    against run.json's manifest; a GamesimError names a missing, truncated or altered file."""
    path = Path(path)
    try:
        info = json.loads((path / INFO).read_text())
    except FileNotFoundError:
        raise GamesimError(f"{path} holds no run ({INFO} is missing)") from None
    except (OSError, ValueError, UnicodeDecodeError):
        raise GamesimError(f"{path / INFO} is unreadable or not JSON: the run directory is damaged; rerun with "
                           "--overwrite") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT or not isinstance(info.get("files"), dict):
        raise GamesimError(f"{path / INFO} is not a run directory of this gamesim version (format {FORMAT}); rerun "
                           "with --overwrite")
    files = {}
    for name, entry in info["files"].items():
        file = path / name
        if not file.is_file():
            raise GamesimError(f"{file} is missing from the run directory; rerun with --overwrite")
        if file.stat().st_size != entry.get("bytes") or sha256(file) != entry.get("sha256"):
            raise GamesimError(f"{file} is truncated or was changed after gamesim wrote it (its checksum does not "
                               "match run.json); restore it, or rerun with --overwrite")
        files[name] = file
    return info, files
