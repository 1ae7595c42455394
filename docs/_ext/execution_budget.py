"""Every executed notebook (the lectures, the tutorials) must run within BUDGET_S seconds, kernel
start included, as myst-nb measured it during this build: a page that got slower fails the build
(a warning, an error under -W) with its time, instead of only waiting longer."""

from myst_nb.sphinx_ import NbMetadataCollector
from sphinx.util import logging

BUDGET_S = 60
"""A lecture runs in under a minute on a laptop; CI's two cores are the reference."""

logger = logging.getLogger(__name__)


def _check(app, env):
    for docname in sorted(env.found_docs):
        data = NbMetadataCollector.get_exec_data(env, docname)
        if data and data.get("runtime") is not None and data["runtime"] > app.config.execution_budget_s:
            logger.warning(f"{docname} took {data['runtime']:.0f} s to execute, over the "
                           f"{app.config.execution_budget_s:.0f} s budget; make its runs shorter or share their shapes",
                           location=docname)


def setup(app):
    app.add_config_value("execution_budget_s", BUDGET_S, "env", types=(int,))
    app.connect("env-check-consistency", _check)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
