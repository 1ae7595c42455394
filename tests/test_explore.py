"""`gamesim explore`: the request handling against the engine's own answers, bad input as 400 with
gamesim's message, plugin algorithms offered and run, and the page itself in a headless Chromium."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import gamesim
from gamesim.dynamics.algorithms import ALGORITHMS, Algorithm, get_algorithm
from gamesim.studies import explore

ROOT = Path(__file__).parents[1]
BASE = {"game": "cycle3", "algorithm": "inpo", "eta": "0.5", "tau": "0.1", "iterations": "1000", "init": "0.6 0.3 0.1"}
NOT_COMPLEMENTARY = "0.5 0.9 0.9\n0.9 0.5 0.9\n0.1 0.1 0.5"


def ask(**changes):
    """(status, JSON answer) of GET /api/run with BASE's settings changed by `changes`."""
    status, kind, body = explore.respond("/api/run?" + urllib.parse.urlencode(BASE | changes))
    assert kind == "application/json"
    return status, json.loads(body)


def test_a_known_game_gives_the_engine_s_answer():
    """INPO on cycle3 at τ = 0.1 reaches π*_τ (whose gap in the original game is 0.0245), and the
    answer is the engine's own run to the last bit."""
    status, answer = ask()
    assert status == 200
    star = gamesim.solve("cycle3", 0.1).policy
    np.testing.assert_allclose(answer["policy"], star, atol=1e-10)
    assert answer["final"]["gap"] == pytest.approx(gamesim.duality_gap("cycle3", star, 0.0), abs=1e-10)
    assert answer["final"]["gap"] == pytest.approx(0.0245, abs=1e-4)
    direct = gamesim.simulate("cycle3", "inpo", eta=0.5, tau=0.1, iterations=1000, record_every=10,
                              init=[0.6, 0.3, 0.1]).final()
    assert answer["final"] == {k: direct[k] for k in explore.SHOWN}
    assert answer["svg"].lstrip().startswith("<?xml") and "<svg" in answer["svg"]


def test_a_typed_matrix_is_the_game():
    """A typed matrix runs as that game: rock-paper-scissors typed equals the built-in `rps`; the
    figure depends on the settings (another η, another SVG) and not on anything else (same settings,
    same SVG)."""
    rps = "0.5 0 1\n1 0.5 0\n0 1 0.5"
    _, typed = ask(game="", matrix=rps, algorithm="sppo", tau="0")
    _, builtin = ask(game="rps", algorithm="sppo", tau="0")
    assert typed["final"] == builtin["final"]
    assert typed["final"]["gap"] > 0.1  # Hedge's last iterate cycles on RPS
    _, again = ask(game="rps", algorithm="sppo", tau="0")
    _, other = ask(game="rps", algorithm="sppo", tau="0", eta="0.2")
    assert again["svg"] == builtin["svg"] != other["svg"]


@pytest.mark.parametrize("changes, message", [
    ({"matrix": NOT_COMPLEMENTARY}, "complementary"),
    ({"matrix": "0.5 0.5\n0.5 0.5"}, "must be 3 × 3"),
    ({"matrix": "0.5 x 1\n1 0.5 0\n0 1 0.5"}, "'x' is not a number"),
    ({"algorithm": "inpoo"}, "did you mean 'inpo'"),
    ({"eta": "30"}, "eta·tau ≤ 1"),
    ({"eta": "1e20", "tau": "0"}, "eta"),
    ({"tau": "-1"}, "tau"),
    ({"eta": "fast"}, "eta must be a number"),
    ({"iterations": "777"}, "iterations must be one of"),
    ({"init": "0.5 0.6 0.1"}, "sum"),
    ({"game": "random:n=10"}, "valid: rps, cycle3"),
    ({"game": "cycle33"}, "did you mean 'cycle3'"),
    ({"game": "/etc/passwd"}, "unknown game"),  # no files from the disk: the page offers built-ins and a typed matrix
])
def test_bad_input_is_400_with_gamesim_s_message(changes, message):
    status, answer = ask(**changes)
    assert status == 400
    assert message in answer["error"] and "\n" not in answer["error"]
    assert set(answer) == {"error"}


def test_unknown_paths_are_404_and_the_page_ships():
    assert explore.respond("/etc/passwd")[0] == 404
    status, kind, page = explore.respond("/")
    assert status == 200 and kind.startswith("text/html")
    assert b"<script" in page and b"http" not in page.replace(b"http://www.w3.org", b"")  # no external assets
    assert "studies/*.html" in (ROOT / "pyproject.toml").read_text()  # shipped as package data


@pytest.mark.slow  # compiles two more loops
def test_a_registered_algorithm_is_offered_and_runs_as_written(monkeypatch):
    """An algorithm registered after start (as --plugin does) is in the options and runs its own
    step: OMD at twice the learning rate, so its run at η is OMD's at 2η, not OMD's at η."""
    omd = get_algorithm("omd")
    doubled = Algorithm("test-explore-double", lambda s, A, r, eta, tau, t, p: omd.step(s, A, r, 2 * eta, tau, t, p),
                        "a test", "π*_τ")
    monkeypatch.setitem(ALGORITHMS, doubled.name, doubled)
    body = explore.respond("/api/options")[2]
    assert doubled.name in [a["name"] for a in json.loads(body)["algorithms"]]
    _, mine = ask(algorithm=doubled.name, eta="0.2", iterations="100")
    _, same = ask(algorithm="omd", eta="0.4", iterations="100")
    _, plain = ask(algorithm="omd", eta="0.2", iterations="100")
    np.testing.assert_allclose(mine["policy"], same["policy"], atol=1e-14)
    assert abs(mine["final"]["kl_to_eq"] - plain["final"]["kl_to_eq"]) > 1e-3


def test_the_server_answers_bad_requests_and_keeps_serving():
    """Over HTTP: a bad matrix is 400 with the message, the next good request still runs, and a
    request that names another host (a web page's DNS rebinding) is refused."""
    server = explore.ThreadingHTTPServer(("127.0.0.1", 0), explore._Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api/run?"
    try:
        with pytest.raises(urllib.error.HTTPError) as bad:
            urllib.request.urlopen(url + urllib.parse.urlencode(BASE | {"matrix": NOT_COMPLEMENTARY}), timeout=60)
        assert bad.value.code == 400 and "complementary" in json.loads(bad.value.read())["error"]
        with urllib.request.urlopen(url + urllib.parse.urlencode(BASE), timeout=60) as good:
            assert json.loads(good.read())["final"]["gap"] == pytest.approx(0.0245, abs=1e-4)
        rebound = urllib.request.Request(url + urllib.parse.urlencode(BASE), headers={"Host": "attacker.example:80"})
        with pytest.raises(urllib.error.HTTPError) as foreign:  # a web page reaching the server by DNS rebinding
            urllib.request.urlopen(rebound, timeout=60)
        assert foreign.value.code == 403
    finally:
        server.shutdown()
        server.server_close()


PLUGIN = """
import gamesim
from gamesim.dynamics.algorithms import get_algorithm

omd = get_algorithm("omd")
gamesim.register_algorithm(gamesim.Algorithm(
    "half-omd", lambda s, A, r, eta, tau, t, p: omd.step(s, A, r, eta / 2, tau, t, p), "a test plugin", "π*_τ"))
"""


@pytest.mark.slow
def test_the_page_in_a_headless_browser(tmp_path):
    """The real thing: `gamesim explore --no-browser --port 0 --plugin FILE` in its own process,
    Chromium on its URL. The first plot appears; another game redraws the plot and the final gap;
    the plugin's algorithm is offered and runs; a typed bad matrix shows gamesim's message; SIGTERM
    stops the server."""
    chromium, driver = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (os.path.exists(chromium) and os.path.exists(driver)) and not os.environ.get("CI"):
        pytest.skip("needs Chromium and chromedriver (Debian: apt-get install chromium chromium-driver); CI installs them")
    from selenium import webdriver  # the test extra's; only this test drives a browser
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.support.ui import Select, WebDriverWait

    plugin = tmp_path / "half.py"
    plugin.write_text(PLUGIN)
    server, url = start_server("--plugin", str(plugin))
    browser = None
    try:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
            options.add_argument(flag)
        browser = webdriver.Chrome(service=Service(executable_path=driver), options=options)
        browser.get(url)
        wait = WebDriverWait(browser, 60)
        shown = lambda: (browser.find_element("id", "figure").get_attribute("innerHTML"),
                         browser.find_element("id", "gap").text)
        wait.until(lambda b: "<svg" in shown()[0] and shown()[1])
        first = shown()
        assert float(first[1]) == pytest.approx(0.0245, abs=1e-4)  # cycle3, INPO, τ = 0.1: π*_τ's gap

        Select(browser.find_element("id", "game")).select_by_value("biased_rps")
        wait.until(lambda b: "<svg" in shown()[0] and shown()[0] != first[0] and shown()[1] != first[1])
        second = shown()

        algorithm = Select(browser.find_element("id", "algorithm"))
        assert "half-omd" in [o.get_attribute("value") for o in algorithm.options]
        algorithm.select_by_value("half-omd")
        wait.until(lambda b: "<svg" in shown()[0] and shown()[0] != second[0])
        assert "half-omd on biased_rps" in shown()[0] and browser.find_element("id", "error").text == ""

        matrix = browser.find_element("id", "matrix")
        matrix.clear()
        matrix.send_keys(NOT_COMPLEMENTARY)
        wait.until(lambda b: "complementary" in b.find_element("id", "error").text)
        assert "<svg" not in shown()[0] and shown()[1] == ""
        assert browser.find_element("id", "game").get_attribute("value") == "custom"
    finally:
        if browser is not None:
            browser.quit()
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    assert code == 0, server.stderr.read()


def start_server(*flags):
    """`gamesim explore --no-browser --port 0 FLAGS` in its own process, and its printed URL."""
    server = subprocess.Popen([sys.executable, "-m", "gamesim.cli", "explore", "--no-browser", "--port", "0", *flags],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=os.environ | {"PYTHONPATH": str(ROOT)})
    url = server.stdout.readline().strip()
    assert url.startswith("http://127.0.0.1:"), server.stderr.read()
    return server, url


@pytest.mark.slow  # a server process and 2 s of waiting
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads the server's CPU time from /proc")
def test_an_idle_server_spends_no_cpu_and_stops_on_sigterm():
    """Waiting for the page's requests costs nothing (the command line's SIGTERM watcher sleeps on
    its socket, it does not spin), and SIGTERM stops the server at once with exit 0."""
    server, url = start_server()

    def cpu_seconds():
        fields = Path(f"/proc/{server.pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    try:
        urllib.request.urlopen(url, timeout=30).read()
        before = cpu_seconds()
        time.sleep(2)
        assert cpu_seconds() - before < 0.2
    finally:
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=30)
    stderr = server.stderr.read()
    assert code == 0 and stderr.strip() == "gamesim explore: stopped", stderr


def test_a_bad_or_busy_port_is_a_one_line_error(capsys):
    from gamesim.cli import main

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for flag, message in ((str(port), "cannot listen on 127.0.0.1:"), ("70000", "--port must be in 0..65535")):
            assert main(["explore", "--no-browser", "--port", flag]) == 2
            err = capsys.readouterr().err
            assert message in err and err.count("\n") == 1
