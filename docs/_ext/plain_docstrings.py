"""gamesim's docstrings write maths in plain text (|x|, π*_τ, P(y ≻ y'|x)) and code in single
backticks, readable in `help()`; before napoleon reads them, escape the characters that
reStructuredText would take for markup, so autodoc renders them as written."""

import re

_CODE_THEN_LETTER = re.compile(r"(`[^`\s][^`]*`)(?=\w)")  # `Param`s → `Param`\ s
_EMPHASIS = r"(?<![\w*])\*[A-Za-z][^*]*?[A-Za-z]\*(?![\w*])"  # *word* or *a phrase*, kept
_LONE_STAR = re.compile(_EMPHASIS + r"|(?<![*\\])\*(?!\*)")  # * but not ** (bold)
_ARGS_STARS = re.compile(r"\*\*(?=\w+(?!\w|\*\*))")         # **kwargs, not **bold**


def escape(lines: list[str]) -> None:
    """Escape |, * (but *emphasis*) and **args, and end `code` spans before a letter, in place."""
    for i, line in enumerate(lines):
        line = line.replace("|", r"\|")
        line = _LONE_STAR.sub(lambda m: m[0] if len(m[0]) > 1 else r"\*", _ARGS_STARS.sub(r"\*\*", line))
        lines[i] = _CODE_THEN_LETTER.sub(r"\1\\ ", line)


def _process(app, what, name, obj, options, lines) -> None:
    escape(lines)


def setup(app):
    app.connect("autodoc-process-docstring", _process, priority=400)  # before napoleon (500)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
