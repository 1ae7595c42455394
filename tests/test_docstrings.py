"""The `>>>` examples in the public modules' docstrings run and print what they show (the API
reference renders them, so a wrong example would be published)."""

import doctest
import importlib

import pytest

MODULES = ["gamesim", "gamesim.core.games", "gamesim.core.equilibria", "gamesim.engine.simulation"]
"""The modules whose docstrings carry examples: the public API's main functions."""


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"{name} has no examples"
    assert result.failed == 0, f"{result.failed} of {name}'s docstring examples print something else (see above)"
