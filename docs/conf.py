"""Sphinx configuration: MyST pages and notebooks (myst-nb executes them), furo, autodoc + napoleon.

Build: python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

import sys
from pathlib import Path

DOCS = Path(__file__).parent
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(DOCS.parent))  # the checkout's gamesim, installed or not

import gamesim

project = "gamesim"
author = "the gamesim authors"
release = version = gamesim.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.autosummary",
    "sphinx_copybutton",
    "plain_docstrings",  # docs/_ext: plain-text maths in docstrings, escaped for reStructuredText
    "generated_pages",  # docs/_ext: the gallery (experiments/*.toml) and the claims page (the registry)
    "execution_budget",  # docs/_ext: a notebook that executes for over a minute fails the build
    "sphinx_togglebutton",  # the lectures' solutions (`:class: dropdown` admonitions) open on a click
]
exclude_patterns = ["_build", "jupyter_execute", ".jupyter_cache", "examples", "**/.ipynb_checkpoints"]

html_theme = "furo"
html_title = f"gamesim {release}"

myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "amsmath"]  # $…$ and $$…$$ maths in pages and notebooks
myst_heading_anchors = 3

# Notebooks (tutorials, lectures) execute at every build: "force", because CI builds from a clean
# clone, where a cache holds nothing, and a cache could show outputs of older code locally.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_timeout = 120  # seconds per cell
nb_execution_show_tb = True
nb_merge_streams = True

default_role = "code"  # `name` in a docstring is code, as in the README

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
html_static_path = ["_static"]
html_css_files = ["wrap.css"]
