"""A study split across machines: `gamesim study run SPEC --shard K/N`, then `gamesim study merge SPEC`.

Shard K of N computes the cells i (in `study.all_cells` order, 0-based) with i mod N = K − 1 into
the usual RESULTS/NAME/cells/ and writes RESULTS/NAME/shards/K-of-N.json: the spec's hash, the
code fingerprint, the gamesim version and the cell files it holds. A cell's randomness comes from
its own settings (its seeds), so which shard or process computed it changes nothing: `merge`
checks that every shard 1..N is there and was made by this spec and this code, copies the cells
of shards kept elsewhere (`--from DIR`, e.g. each host's own results directory) into RESULTS
(each file atomically, checked against its recorded SHA-256), and stacks them into the same
NAME.npz a single machine writes.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

from gamesim.core import VERSION
from gamesim.core.errors import GamesimError
from gamesim.core.files import atomic_open, sha256
from gamesim.studies.study import Study, all_cells, cell_path, code_fingerprint, compute_cells, stack_cells

SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' → (K, N) with 1 ≤ K ≤ N."""
    match = SHARD.match(str(text))
    k, n = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not match or not 1 <= k <= n:
        raise GamesimError(f"--shard takes K/N with 1 ≤ K ≤ N (e.g. --shard 2/8 for the second of eight shares), "
                           f"not {text!r}")
    return k, n


def spec_hash(study: Study) -> str:
    """A hash of the resolved groups alone (what the cells are), without the code."""
    return hashlib.sha1(json.dumps(study.spec["group"], sort_keys=True, default=str).encode()).hexdigest()[:16]


def _manifest_path(results_dir, study: Study, k: int, n: int) -> Path:
    return Path(results_dir) / study.name / "shards" / f"{k}-of-{n}.json"


def run_shard(study: Study, results_dir, shard: tuple[int, int], force: bool = False, log=print,
              yes: bool | None = None) -> list[Path]:
    """Compute shard K of N of the study's cells and record it; returns the cell files it holds."""
    k, n = shard
    mine = all_cells(study)[k - 1::n]
    started = time.time()
    compute_cells(study, results_dir, mine, force=force, log=log, yes=yes)
    files = [cell_path(study, results_dir, cell) for cell in mine]
    manifest = {"study": study.name, "shard": k, "of": n, "spec_hash": spec_hash(study),
                "code_fingerprint": code_fingerprint(), "gamesim": VERSION, "seconds": time.time() - started,
                "cells": {f.name: sha256(f) for f in files}}
    path = _manifest_path(results_dir, study, k, n)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    log(f"{study.name}: shard {k}/{n} holds {len(files)} of {len(all_cells(study))} cells; when all {n} are done, "
        f"run `gamesim study merge {study.path}`")
    return files


def merge(study: Study, results_dir, sources=(), log=print) -> dict:
    """Check the shards in `results_dir` and `sources`, copy their cells into `results_dir` and
    write the study's results; returns them as `study.run_study` does."""
    results_dir = Path(results_dir)
    found = {}  # k → (directory, manifest)
    counts = set()
    for directory in dict.fromkeys([results_dir, *map(Path, sources)]):
        for path in sorted((directory / study.name / "shards").glob("*-of-*.json")):
            manifest = _read_manifest(path)
            _check(study, manifest, path)
            counts.add(manifest["of"])
            found.setdefault(manifest["shard"], (directory, manifest))
    if not found:
        raise GamesimError(f"no shards of {study.name} in {', '.join(map(str, dict.fromkeys([results_dir, *sources])))}; "
                           f"run `gamesim study run {study.path} --shard K/N` first (or --from the hosts' results)")
    if len(counts) > 1:
        raise GamesimError(f"the shards of {study.name} split it in different ways ({' and '.join(f'N = {c}' for c in sorted(counts))}); "
                           "merge shards of one split: remove the others' shards/ files")
    n = counts.pop()
    missing = [k for k in range(1, n + 1) if k not in found]
    if missing:
        raise GamesimError(f"shards {', '.join(map(str, missing))} of {n} of {study.name} are missing; run them "
                           f"(`gamesim study run {study.path} --shard K/{n}`) or pass their results with --from DIR")
    cell_dir = results_dir / study.name / "cells"
    cell_dir.mkdir(parents=True, exist_ok=True)
    for directory, manifest in found.values():
        for name, digest in manifest["cells"].items():
            source, target = directory / study.name / "cells" / name, cell_dir / name
            if target.exists() and sha256(target) == digest:
                continue
            try:
                data = source.read_bytes()
            except OSError as exc:
                raise GamesimError(f"cannot read {source} of shard {manifest['shard']}/{n}: {exc.strerror}") from None
            if hashlib.sha256(data).hexdigest() != digest:
                raise GamesimError(f"{source} does not match shard {manifest['shard']}/{n}'s record (damaged or "
                                   "changed); run that shard again")
            with atomic_open(target, "wb") as f:
                f.write(data)
    log(f"{study.name}: merged {n} shards")
    seconds = sum(manifest.get("seconds", 0.0) for _, manifest in found.values())
    return stack_cells(study, results_dir, seconds, log=log)


def _read_manifest(path: Path) -> dict:
    try:
        manifest = json.loads(path.read_text())
        if not all(key in manifest for key in ("shard", "of", "spec_hash", "code_fingerprint", "cells")):
            raise ValueError
    except (OSError, ValueError, UnicodeDecodeError, TypeError):
        raise GamesimError(f"{path} is not a shard record of gamesim (damaged); run that shard again") from None
    return manifest


def _check(study: Study, manifest: dict, path: Path) -> None:
    """Refuse a shard of another spec or another gamesim code, naming which and how to fix it."""
    where = f"shard {manifest['shard']}/{manifest['of']} ({path})"
    if manifest["spec_hash"] != spec_hash(study):
        raise GamesimError(f"{where} was run from a different version of {study.path.name} (its groups differ); "
                           "run every shard from the same spec")
    if manifest["code_fingerprint"] != code_fingerprint():
        raise GamesimError(f"{where} was run by different gamesim code (gamesim {manifest.get('gamesim', '?')}, "
                           f"code {manifest['code_fingerprint']}; here {VERSION}, code {code_fingerprint()}); "
                           "run every shard and the merge with the same gamesim checkout and plugins")
