"""Pages generated at build time from the sources they describe, so they cannot go stale:
the gallery (one page per study spec in experiments/, its figure, caption and spec) and the
claims that `gamesim verify` checks (from the claims registry)."""

import inspect
import tomllib
from pathlib import Path

ROOT = Path(__file__).parents[2]
DOCS = ROOT / "docs"


def _write(path: Path, text: str) -> None:
    """Write only on change, so an unchanged page is not rebuilt."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def gallery() -> None:
    """docs/gallery/NAME.md for every experiments/NAME.toml, and their index."""
    names = sorted(p.stem for p in (ROOT / "experiments").glob("*.toml"))
    for name in names:
        spec = tomllib.loads((ROOT / "experiments" / f"{name}.toml").read_text())
        title = spec.get("title", name)
        figure = ROOT / "figures" / f"{name}.png"
        shown = (f"```{{figure}} ../../figures/{name}.png\n:alt: {title}\n\n{spec.get('caption', '')}\n```\n"
                 if figure.exists() else f"No figure yet: `gamesim study plot experiments/{name}.toml` draws it.\n")
        _write(DOCS / "gallery" / f"{name}.md",
               f"# {name}: {title}\n\n{shown}\n"
               f"Regenerate it with `gamesim study run experiments/{name}.toml && "
               f"gamesim study plot experiments/{name}.toml`. The spec:\n\n"
               f"```{{literalinclude}} ../../experiments/{name}.toml\n:language: toml\n```\n")
    _write(DOCS / "gallery" / "index.md",
           "# Gallery\n\nEvery study in `experiments/`: its figure (`figures/NAME.png`), caption and spec. "
           "This page is generated at build time from the experiments directory, so a new spec appears "
           "here without editing the documentation; `gamesim reproduce` redraws them all.\n\n"
           "```{toctree}\n:maxdepth: 1\n\n" + "\n".join(names) + "\n```\n")


def claims() -> None:
    """docs/theory/claims.md: every registered claim, its source, statement, games and check."""
    from gamesim.studies.claims import CLAIMS, KINDS  # built from the registry

    lines = ["# What `gamesim verify` checks", "",
             ("Generated at build time from the claims registry (`gamesim.studies.claims.CLAIMS`). "
              "Each claim is a statement from a paper (`theorem`), gamesim's own derivation (`derivation`) or "
              "what a paper reports (`observation`); `gamesim verify NAME` measures it on its games, and "
              "`--quick` on its quick games. A check is a `bound` (measured ≤ allowed) or `sharp` (a measured "
              "value equals the predicted one to a tolerance)."), ""]
    for kind in KINDS:
        chosen = [c for c in CLAIMS.values() if c.kind == kind]
        if not chosen:
            continue
        lines += [f"## {kind.capitalize()}s", ""]
        for c in chosen:
            doc = inspect.getdoc(c.check) or ""
            lines += [f"### `{c.name}`", "", f"**Source:** {c.source}", "", f"**Statement:** {c.statement}", "",
                      (f"**Algorithms:** {', '.join(f'`{a}`' for a in c.algorithms)}. "
                       f"**Games:** {', '.join(f'`{g}`' for g in c.games)} "
                       f"(quick: {', '.join(f'`{g}`' for g in c.quick_games)})."), ""]
            if doc:
                lines += ["**How it is checked:**", "", "```text", doc, "```", ""]
    _write(DOCS / "theory" / "claims.md", "\n".join(lines))


def _generate(app) -> None:
    gallery()
    claims()


def setup(app):
    app.connect("builder-inited", _generate)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
