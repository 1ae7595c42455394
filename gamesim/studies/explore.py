"""`gamesim explore`: one interactive page for the classroom, served on 127.0.0.1.

The page (explore.html beside this module: vanilla JS, no external assets, works offline) holds
the controls: a built-in 3-response game or a typed 3 × 3 matrix P, an algorithm (every registered
one, plugins included), η, τ, π_0 and the number of iterations. On each change it asks
GET /api/run?…; the server runs gamesim's own `simulate` on it and answers the final metrics and
one SVG figure (the trajectory in the simplex, drawn by `plots.simplex`, and the duality gaps of
the last and the average iterate, regularized and not, on a log axis). Bad input is answered 400
with gamesim's one-line message, which the page shows in place of the figure.

Runs record RECORDS + 1 points and take one of ITERATIONS, so JAX compiles each algorithm for a
few loop shapes only (about 1.5 s the first time, milliseconds after).
"""

from __future__ import annotations

import functools
import io
import json
import math
import sys
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from gamesim.core.errors import GamesimError
from gamesim.core.games import BUILTINS, PreferenceGame, load_game
from gamesim.core.names import check_keys
from gamesim.dynamics.algorithms import ALGORITHMS
from gamesim.engine.results import dumps
from gamesim.engine.simulation import simulate
from gamesim.studies.plots import ALGORITHM_STYLE, OKABE_ITO, STYLE, positive, simplex

PAGE = Path(__file__).with_name("explore.html")
ITERATIONS = (100, 300, 1000, 3000)
"""The run lengths offered: few loop shapes, so each algorithm compiles a few times at most."""
RECORDS = 100
DEFAULTS = {"game": "cycle3", "algorithm": "inpo", "eta": "0.5", "tau": "0.1", "iterations": "1000",
            "init": "0.6 0.3 0.1"}
CURVES = (("gap", "gap, last iterate", "-"), ("gap_avg", "gap, average iterate", "--"),
          ("gap_reg", "τ-reg. gap, last iterate", "-"), ("gap_reg_avg", "τ-reg. gap, average iterate", "--"))
SHOWN = ("gap", "gap_avg", "gap_reg", "gap_reg_avg", "kl_to_eq")
LOCAL_HOSTS = ("127.0.0.1", "localhost")
"""Host headers the server answers (with a port): another name reaching 127.0.0.1 is a page's DNS rebinding."""
SUPERSCRIPTS = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")
_LOCK = threading.Lock()  # one run at a time: the cores go to it, and rc_context changes matplotlib's global settings


@functools.cache
def games() -> dict[str, list]:
    """The built-in games without parameters that have 3 responses: name → P as nested lists."""
    out = {}
    for name, builtin in BUILTINS.items():
        if not builtin.params:
            game = load_game(name)
            if game.n == 3 and not game.contextual:
                out[name] = game.P.tolist()
    return out


def options() -> dict:
    """What the page offers: the games, the algorithms (registered now, plugins included), defaults."""
    return {"games": games(), "iterations": list(ITERATIONS), "defaults": DEFAULTS,
            "algorithms": [{"name": a.name, "citation": a.citation, "learning_rate": a.learning_rate}
                           for a in ALGORITHMS.values()]}


def parse_numbers(text: str, what: str) -> np.ndarray:
    """Rows separated by newlines or ';', cells by spaces or commas → a float array (a vector for one row)."""
    rows = [r.replace(",", " ").split() for r in text.replace(";", "\n").splitlines() if r.strip()]
    try:
        values = [[float(cell) for cell in row] for row in rows]
    except ValueError as exc:
        raise GamesimError(f"{what}: {str(exc).split(': ', 1)[-1]} is not a number") from None
    if not values or len({len(r) for r in values}) != 1:
        raise GamesimError(f"{what}: write rows of equally many numbers, one row per line")
    return np.array(values[0] if len(values) == 1 else values)


def _number(query: dict, key: str) -> float:
    try:
        return float(query[key])
    except (KeyError, ValueError):
        raise GamesimError(f"{key} must be a number, not {query.get(key, '')!r}") from None


def game_of(query: dict) -> PreferenceGame:
    """The query's game: `matrix` (3 × 3, typed) if given, else `game`, one of `games()`."""
    if query.get("matrix", "").strip():
        P = parse_numbers(query["matrix"], "matrix")
        if P.shape != (3, 3):
            raise GamesimError(f"the matrix must be 3 × 3 (three rows of three numbers), not {'×'.join(map(str, P.shape))}")
        return PreferenceGame(P)
    name = query.get("game", DEFAULTS["game"])
    check_keys([name], list(games()), "game (a built-in with 3 responses; or type a matrix)")  # no files: the page offers these
    return load_game(name)


def run(query: dict) -> tuple[dict, str]:
    """Run the query's settings with `simulate`; return (final metrics and π_T, the figure as SVG)."""
    game = game_of(query)
    name = query.get("algorithm", DEFAULTS["algorithm"])
    algorithm = ALGORITHMS.get(name)
    eta = _number(query, "eta") if algorithm is None or algorithm.learning_rate else None
    tau = _number(query, "tau")
    if (iterations := _number(query, "iterations")) not in ITERATIONS:
        raise GamesimError(f"iterations must be one of {', '.join(map(str, ITERATIONS))}, not {query['iterations']}")
    iterations = int(iterations)
    init = parse_numbers(query["init"], "π_0") if query.get("init", "").strip() else None
    with _LOCK:
        traj = simulate(game, name, eta=eta, tau=tau, iterations=iterations, record_every=iterations // RECORDS,
                        init=init, progress=False, yes=False)
        svg = figure(game, name, traj, eta, tau)
    final = traj.final()
    return {"final": {k: final[k] for k in SHOWN}, "policy": traj.policies[-1].tolist(),
            "iterations": iterations}, svg


def figure(game, name: str, traj, eta: float | None, tau: float) -> str:
    """The trajectory in the simplex beside its gap curves (log axis), as SVG text."""
    import matplotlib  # matplotlib loads when the first figure is drawn
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure  # no pyplot: figures of concurrent requests stay apart

    label, color, ls, _ = ALGORITHM_STYLE.get(name, (name, OKABE_ITO[0], "-", "o"))
    # fixed margins, no tight layout or tight bbox (each lays out the text once more) and decades as
    # plain text (10⁻⁵, not mathtext's parse of each label): a figure in a third of the time
    with matplotlib.rc_context(STYLE | {"svg.hashsalt": "gamesim-explore", "svg.fonttype": "none",
                                        "savefig.bbox": "standard"}):
        fig = Figure(figsize=(10, 4.2))
        FigureCanvasSVG(fig)
        left, right = fig.subplots(1, 2, width_ratios=(1, 1.25),
                                   gridspec_kw={"left": 0.02, "right": 0.77, "bottom": 0.12, "top": 0.84, "wspace": 0.12})
        simplex(left, game, [(traj.policies, color, ls, label)], sorted({0.0, tau}))
        left.legend(loc="upper left", bbox_to_anchor=(-0.05, 1.12), fontsize=7, ncols=2)
        for (key, text, style), c in zip(CURVES, OKABE_ITO):
            if tau == 0 and key.startswith("gap_reg"):  # the same as the gaps at τ = 0
                continue
            right.plot(traj.iterations, positive(traj.metrics[key]), color=c, ls=style, label=text)
        right.set_yscale("log")
        right.yaxis.set_major_formatter(lambda y, _: f"10{round(math.log10(y))}".translate(SUPERSCRIPTS))  # not mathtext's
        right.set_xlabel("iteration t")
        right.set_ylabel("duality gap")
        right.set_title(f"{label} on {game.label}: " + (f"η = {eta:g}, " if eta is not None else "") + f"τ = {tau:g}")
        right.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def respond(target: str) -> tuple[int, str, bytes]:
    """(status, content type, body) for a GET of `target` (path and query string)."""
    url = urllib.parse.urlsplit(target)
    query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
    if url.path in ("/", "/index.html"):
        return HTTPStatus.OK, "text/html; charset=utf-8", PAGE.read_bytes()
    if url.path == "/api/options":
        return HTTPStatus.OK, "application/json", json.dumps(options()).encode()
    if url.path != "/api/run":
        return HTTPStatus.NOT_FOUND, "application/json", json.dumps({"error": f"no page {url.path}"}).encode()
    try:
        result, svg = run(query)
    except GamesimError as exc:
        return HTTPStatus.BAD_REQUEST, "application/json", json.dumps({"error": str(exc)}).encode()
    return HTTPStatus.OK, "application/json", dumps(result | {"svg": svg}).encode()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # http.server calls it by this name
        try:
            if self.headers.get("Host", "").rpartition(":")[0] not in LOCAL_HOSTS:  # a web page's DNS rebinding
                status, kind = HTTPStatus.FORBIDDEN, "application/json"
                body = json.dumps({"error": "gamesim explore answers its own page only: open it at 127.0.0.1"}).encode()
            else:
                status, kind, body = respond(self.path)
        except Exception as exc:  # a bug, not bad input: say so in the page, keep serving
            status, kind = HTTPStatus.INTERNAL_SERVER_ERROR, "application/json"
            body = json.dumps({"error": f"internal error ({type(exc).__name__}: {exc}); please report it"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # quiet: the terminal shows the URL only
        pass


def serve(port: int = 0, open_browser: bool = True) -> int:
    """Serve the page on 127.0.0.1:port (0: a free port), print its URL, open it unless told not to;
    Ctrl-C or SIGTERM (KeyboardInterrupt, see the CLI) stops the server."""
    if not 0 <= port <= 65535:
        raise GamesimError(f"--port must be in 0..65535 (0: any free one), not {port}")
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
    except OSError as exc:
        raise GamesimError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror}); choose another --port, "
                           "or --port 0 for any free one") from None
    server.daemon_threads = True
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    print(url, flush=True)
    if open_browser:
        import webbrowser  # only when a browser is wanted

        webbrowser.open(url)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("gamesim explore: stopped", file=sys.stderr)
    finally:
        server.server_close()
    return 0
