"""`gamesim verify`: every claim passes on gamesim's updates, every mutant in the library is killed by a
claim about its own algorithm, and the sharp checks' predictions agree with independent computations."""

import functools
import json

import jax
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gamesim import load_game, simulate, solve
from gamesim.dynamics import theory
from gamesim.dynamics import updates as u
from gamesim.dynamics.algorithms import get_algorithm
from gamesim.studies.claims import BUILTIN_CLAIMS, CLAIMS, verify
from gamesim.cli import main
from gamesim.studies.mutants import kill_matrix, library

pytestmark = pytest.mark.slow  # every claim on its games, and the mutants: minutes


@functools.cache
def _quick_results():
    return {r.claim.name: r for r in verify(sorted(BUILTIN_CLAIMS), quick=True)}


@pytest.fixture
def quick_results():
    """Every claim's quick verdict, computed once per process: a module-scoped fixture is torn down
    and rebuilt when pytest-xdist runs another file's test between this file's (measured: twice,
    130 s each)."""
    return _quick_results()


def test_every_claim_passes_quick(quick_results):
    failed = {name: r.ratios for name, r in quick_results.items() if not r.passed}
    assert not failed
    for name, r in quick_results.items():
        kinds = {c.kind for per_game in r.checks.values() for c in per_game.values()}
        assert r.claim.kind == "observation" or "sharp" in kinds, name  # a bound alone proves little
        assert set(r.ratios) == set(CLAIMS[name].quick_games)


CHEAP_FIRST = ("online-ipo-prop42", "xpo-stationary", "omwu-last-iterate", "mpo-thm34", "iterative-dpo-bt",
               "nash-md-thm1", "comal-lemma4", "omwu-regularized", "mmd-thm34", "nash-md-constant", "apo-bt",
               "egpo-linear", "inpo-thm3", "omd-linear", "online-ipo-prop41", "theorem-schedule", "inpo-thm4",
               "ipo-md-prop5", "inpo-lemma5", "sppo-thm41", "hedge-cycles")
"""The claims in the order the mutation matrix tries them: by the time a quick check of the correct
update took (measured), the observation that kills nothing last. With first_kill the order changes
only how long the matrix takes, not whether a mutant is killed."""
PARTS = (("inpo", "omd", "nash-md", "sppo", "dno", "iterative-ipo"),
         ("ipo-md", "nash-md-pg", "extragradient", "optimistic-omd", "mmd"),
         ("online-ipo", "comal", "mpo", "apo", "xpo", "iterative-dpo"))
"""The mutation matrix in three parts of about 45 mutants, one test class each, so that `--dist
loadscope` can run them on both workers (the largest piece of the suite)."""


def test_the_mutation_matrix_parts_cover_the_library_and_the_claims():
    assert sorted(CHEAP_FIRST) == sorted(BUILTIN_CLAIMS)
    per_algorithm = {}
    for m in library():
        per_algorithm[m.algorithm] = per_algorithm.get(m.algorithm, 0) + 1
    assert sorted(a for part in PARTS for a in part) == sorted(per_algorithm)
    assert min(per_algorithm.values()) >= 5 and sum(per_algorithm.values()) >= 100


def _every_mutant_is_killed(part):
    rows = kill_matrix(quick=True, claims=CHEAP_FIRST, first_kill=True, algorithms=part)
    assert sorted({r.mutant.algorithm for r in rows}) == sorted(part)
    assert not [(r.mutant.algorithm, r.mutant.name, r.verdicts) for r in rows if not r.killed]
    for r in rows:
        assert all(r.mutant.algorithm in CLAIMS[c].algorithms for c in r.verdicts)


def _mutation_class(i, part):
    class TestMutationMatrix:
        def test_every_mutant_is_killed_by_a_claim_about_its_own_algorithm(self):
            _every_mutant_is_killed(part)

    TestMutationMatrix.__name__ = TestMutationMatrix.__qualname__ = f"TestMutationMatrix{i}"
    return TestMutationMatrix


for _i, _part in enumerate(PARTS):
    globals()[f"TestMutationMatrix{_i}"] = _mutation_class(_i, _part)


def test_local_rate_is_the_spectral_radius_of_the_closed_form_jacobian():
    """OMD's step linearized at π*_τ (derived): J = (I − 1π*ᵀ)[(1 − ητ)I + ηA(diag π* − π*π*ᵀ)];
    since AΣ is skew-adjoint in the Σ inner product, its modes have modulus ≥ 1 − ητ."""
    game, eta, tau = load_game("random:n=10,seed=4,ref_seed=5"), 0.7, 0.3
    star = solve(game, tau).policy
    S = np.diag(star) - np.outer(star, star)
    J = (np.eye(10) - np.outer(np.ones(10), star)) @ ((1 - eta * tau) * np.eye(10) + eta * game.payoff[0] @ S)
    rho, _ = theory.local_rate(get_algorithm("omd").step, np.log(star)[None], game.payoff,
                               np.log(game.stacked_reference), eta, tau)
    np.testing.assert_allclose(rho, np.abs(np.linalg.eigvals(J)).max(), rtol=1e-12)
    assert rho >= 1 - eta * tau - 1e-12


@given(seed=st.integers(0, 10 ** 6), tau=st.floats(0.05, 2.0), share=st.floats(0.05, 1.0),
       name=st.sampled_from(["omd", "nash-md"]), schedule=st.sampled_from(["constant", "theorem"]))
def test_the_a_priori_b_bounds_every_iterate(seed, tau, share, name, schedule):
    """INPO's Assumption A constant, derived before the run, bounds |log(π_t/π_ref)| on the run."""
    game = load_game(f"random:n=6,seed={seed},ref_seed={seed + 1}")
    eta = None if schedule == "theorem" else share / tau
    traj = simulate(game, name, eta=eta, tau=tau, schedule=schedule, iterations=200, record_every=1)
    measured = np.abs(np.log(traj.policies) - np.log(game.reference)).max()
    assert measured <= theory.assumption_a_bound(game, tau) * (1 + 1e-12)


def test_mixture_limit_is_the_fixed_point_of_eq13():
    """Prop. 5.2's shortcut: π = softmax(log π_ref + Aπ*_{τ/(1−β)}/τ) solves π ∝ π_ref exp(Pπ'/τ), π' ∝ π^{1−β}π_ref^β."""
    game, tau, beta = load_game("skew:n=12,rank=4,seed=2,ref_seed=1"), 0.15, 0.3
    pi = theory.mixture_limit(game, tau, beta)
    mix = pi ** (1 - beta) * game.reference ** beta
    mix /= mix.sum()
    fixed = game.reference * np.exp(game.P @ mix / tau)
    np.testing.assert_allclose(pi, fixed / fixed.sum(), atol=1e-13)


def test_a_substituted_algorithm_is_what_the_claims_run():
    """OMD is INPO's update, so it passes INPO's claims; a half step does not."""
    assert verify(["inpo-lemma5", "inpo-thm4"], quick=True, algorithms={"inpo": "omd"})[0].passed
    half = get_algorithm("inpo").__class__(**{**get_algorithm("inpo").__dict__,
                                              "step": lambda s, A, r, eta, tau, t, p: u.omd_update(s, A, r, eta / 2, tau)})
    assert not any(r.passed for r in verify(["inpo-lemma5", "inpo-thm4"], quick=True, algorithms={"inpo": half}))


def _strict(text):
    return json.loads(text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))


def test_cli_verify_prints_every_check_and_strict_json(capsys):
    assert main(["verify", "online-ipo-prop42", "hedge-cycles", "--quick"]) == 0
    out = capsys.readouterr().out
    assert "online-ipo-prop42  PASS" in out and "sharp" in out and "bound" in out and "≤ 1e-12" in out
    assert main(["verify", "online-ipo-prop42", "--quick", "--json"]) == 0
    result, = _strict(capsys.readouterr().out)
    check, = result["checks"]
    assert check["kind"] == "sharp" and check["passed"] and set(check["games"]) == set(CLAIMS["online-ipo-prop42"].quick_games)
    assert {"ratio", "measured", "allowed", "note"} <= set(check["games"]["cycle3"])


def test_cli_verify_mutants_prints_the_kill_matrix(capsys):
    assert main(["verify", "online-ipo-prop42", "--quick", "--mutants"]) == 0
    out = capsys.readouterr().out
    n = len([m for m in library(["online-ipo"])])
    assert f"score: {n} of {n} mutants killed" in out and "(correct update)" in out and "SURVIVED" not in out
    assert main(["verify", "online-ipo-prop42", "--quick", "--mutants", "--json"]) == 0
    report = _strict(capsys.readouterr().out)
    assert report["score"] == {"killed": n, "mutants": n} and report["claims"][0]["passed"]


@pytest.mark.parametrize("argv, message", [
    (["verify", "no-such-claim"], "unknown claim"),
    (["verify", "inpo-thm3", "--substitute", "inpo"], "NAME=ALGORITHM"),
    (["verify", "inpo-thm3", "--substitute", "inpo=nope"], "unknown algorithm 'nope'"),
    (["verify", "inpo-thm3", "--mutants", "--substitute", "inpo=omd"], "without --substitute"),
])
def test_cli_verify_errors(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_jax_stays_float32_outside(quick_results):
    """The checks compute in float64 inside jax.enable_x64 only."""
    assert not jax.config.jax_enable_x64
