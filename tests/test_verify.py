"""`gamesim verify`: every claim passes on gamesim's updates, and FAILS when fed a wrong one."""

import dataclasses

import pytest

from gamesim import updates as u
from gamesim.algorithms import ALGORITHMS
from gamesim.claims import CLAIMS, verify
from gamesim.cli import main


@pytest.fixture(scope="module")
def quick_results():
    return {r.claim.name: r for r in verify(quick=True)}


def test_every_claim_passes_quick(quick_results):
    assert set(quick_results) == set(CLAIMS)
    failed = {name: r.ratios for name, r in quick_results.items() if not r.passed}
    assert not failed


def _with_step(name, step):
    return {name: dataclasses.replace(ALGORITHMS[name], step=step)}


def _flip(update):
    """The same update with the preference sign flipped: the learner plays to lose."""
    return lambda s, A, r, eta, tau, t, p: update(s, -A, r, eta, tau)


SABOTAGE = {
    "inpo-lemma5": _with_step("inpo", _flip(u.omd_update)),
    "inpo-thm3": _with_step("inpo", _flip(u.omd_update)),
    "inpo-thm4": _with_step("inpo", _flip(u.omd_update)),
    "nash-md-thm1": _with_step("nash-md", _flip(u.nash_md_update)),
    "sppo-thm41": _with_step("sppo", lambda s, A, r, eta, tau, t, p: u.hedge_update(s, -A, eta)),
    "mmd-thm34": _with_step("mmd", lambda s, A, r, eta, tau, t, p: u.mmd_update(s, A, r, eta, 2 * tau)),
    "nash-md-bias": _with_step("nash-md", lambda s, A, r, eta, tau, t, p: u.omd_update(s, A, r, eta, tau)),
    "online-ipo-prop41": _with_step("online-ipo",
                                    lambda s, A, r, eta, tau, t, p: u.ipo_md_update(s, A, r, eta, 2 * tau, 0.0)),
    "refresh-last-iterate": {name: dataclasses.replace(
        ALGORITHMS[name], params={**ALGORITHMS[name].params,
                                  "refresh_every": dataclasses.replace(ALGORITHMS[name].params["refresh_every"],
                                                                       default=10 ** 9)})
        for name in ("comal", "mpo")},
    "hedge-cycles": _with_step("sppo", lambda s, A, r, eta, tau, t, p: u.extragradient_update(s, A, r, eta, 0.0)),
}


@pytest.mark.parametrize("name", CLAIMS)
def test_every_claim_fails_on_a_wrong_update(name):
    result, = verify([name], quick=True, algorithms=SABOTAGE[name])
    assert not result.passed, result.ratios


def test_cli_verify_exit_codes(capsys):
    assert main(["verify", "hedge-cycles", "--quick"]) == 0
    assert "PASS" in capsys.readouterr().out
    assert main(["verify", "no-such-claim"]) == 2
    assert "unknown claim" in capsys.readouterr().err
