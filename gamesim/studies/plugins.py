"""Your own code, loaded only when you ask: a plugin is a Python file that registers algorithms
(`algorithms.register_algorithm`) and claims (`claims.register_claim`).

Nothing loads a plugin by itself: `gamesim ... --plugin FILE.py` loads it, and a study spec's
`plugins = [...]` list runs only with `--allow-plugins` (or `study.load_spec(..., allow_plugins=True)`).
Loading a file twice runs it once. Each loaded file's content hash enters the fingerprint of a
study's cached results, so editing your method recomputes them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType

from gamesim.core.errors import GamesimError

LOADED: dict[Path, tuple[ModuleType, str]] = {}
"""Resolved path → (module, sha1 of its source) of every plugin loaded in this process."""


def load_plugin(path) -> ModuleType:
    """Run a plugin file once per process, recording its content hash for studies' fingerprints.

    Args:
        path: a Python file (*.py); `~` is expanded and the path resolved, so one file loaded
            under two spellings runs once.

    Returns:
        The file as a module (the one loaded before, if it was).

    Raises:
        GamesimError: if `path` is not an existing .py file, or when running it raises: with the
            file's name and line (a GamesimError it raises keeps its message after the name).
    """
    path = Path(path).expanduser().resolve()
    if path in LOADED:
        return LOADED[path][0]
    if path.suffix != ".py" or not path.is_file():
        raise GamesimError(f"a plugin is a Python file (*.py); {str(path)!r} is not one")
    source = path.read_bytes()
    name = f"gamesim_plugin_{hashlib.sha1(str(path).encode()).hexdigest()[:10]}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except GamesimError as exc:
        del sys.modules[name]
        raise GamesimError(f"plugin {path.name}: {exc}") from None
    except Exception as exc:
        del sys.modules[name]
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        line = getattr(exc, "lineno", None) or (frames[-1].lineno if frames else "?")
        raise GamesimError(f"plugin {path.name}, line {line}: {type(exc).__name__}: {exc}") from None
    LOADED[path] = (module, hashlib.sha1(source).hexdigest()[:12])
    return module


def fingerprint() -> dict:
    """File name → content hash of every plugin loaded in this process."""
    return {str(path): digest for path, (_, digest) in sorted(LOADED.items())}
