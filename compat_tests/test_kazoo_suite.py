"""Kazoo's own test-suite must pass on zkpy wherever it passes on Apache ZooKeeper.

One test per Kazoo test module, so it can be run per file::

    pytest compat_tests/test_kazoo_suite.py -m kazoo_suite -k test_lock

The selection comes from ``KAZOO_SUITE_TESTS`` (comma-separated module
names, or ``all`` for every module Kazoo ships; default: the list in
``compat_tests.kazoo_suite.DEFAULT_TESTS``);
``KAZOO_SUITE_SIZE`` sets the cluster sizes, comma-separated (default 1; CI
runs "1,3": a standalone server and a 3-server ensemble of each kind; "3+1"
adds an observer to three participants).  Each test runs the
module on Apache ZooKeeper (the reference) and then on zkpy via
``python -m compat_tests.kazoo_suite --server both`` and asserts that zkpy
passes every test the reference passes.  Slow: minutes per module.

``KAZOO_SUITE_KINDS`` adds mixed ensembles, semicolon-separated, each a
server kind per myid (``zookeeper,zkpy,zkpy;zookeeper,zookeeper,zkpy``): the
module runs on an all-ZooKeeper ensemble of that size and on the mixed one,
which must pass every test the former passes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from compat_tests.kazoo_suite import DEFAULT_TESTS

ROOT = Path(__file__).resolve().parent.parent

def _all_kazoo_modules() -> list[str]:
    import kazoo.tests

    folder = Path(kazoo.tests.__file__).parent
    return sorted(p.stem for p in folder.glob("test_*.py"))


_WANTED = os.environ.get("KAZOO_SUITE_TESTS", ",".join(DEFAULT_TESTS))
SELECTION = _all_kazoo_modules() if _WANTED.strip() == "all" else [
    t.strip() for t in _WANTED.split(",") if t.strip()
]
SIZES = [s.strip() for s in os.environ.get("KAZOO_SUITE_SIZE", "1").split(",") if s.strip()]
MIXES = [k.strip() for k in os.environ.get("KAZOO_SUITE_KINDS", "").split(";") if k.strip()]


@pytest.mark.kazoo_suite
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("module", SELECTION)
def test_kazoo_module_matches_reference(module, size, tmp_path):
    run_and_compare(module, ["--size", size], tmp_path)


@pytest.mark.kazoo_suite
@pytest.mark.parametrize("kinds", MIXES)
@pytest.mark.parametrize("module", SELECTION)
def test_kazoo_module_on_a_mixed_ensemble(module, kinds, tmp_path):
    size = str(len(kinds.split(",")))
    run_and_compare(module, ["--size", size, "--kinds", kinds], tmp_path)


def run_and_compare(module, options, tmp_path):
    summary_path = tmp_path / "summary.json"
    cmd = [
        sys.executable, "-m", "compat_tests.kazoo_suite",
        "--server", "both", *options, "--tests", module,
        "--json", str(summary_path), "--out-dir", str(tmp_path), "--quiet",
    ]
    proc = subprocess.run(cmd, cwd=str(ROOT), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
    assert summary_path.exists(), "harness produced no summary:\n" + proc.stdout[-5000:]
    summary = json.loads(summary_path.read_text())
    cmp = summary["comparison"]
    assert cmp["reference_passed"] > 0, (
        "no test of %s passed on Apache ZooKeeper -- is it installed?\n%s"
        % (module, proc.stdout[-5000:])
    )
    missing = ["%s [zkpy: %s]" % (m["test"], m["zkpy"]) for m in cmp["missing_on_zkpy"]]
    preflight = summary["runs"]["zkpy"].get("preflight_failure")
    assert not missing, (
        "zkpy passes %d of the %d tests of %s that pass on Apache ZooKeeper%s; missing:\n  %s"
        % (cmp["zkpy_passed_of_those"], cmp["reference_passed"], module,
           " (%s)" % preflight if preflight else "", "\n  ".join(missing))
    )
    assert proc.returncode == 0, proc.stdout[-5000:]


# The re-run of Kazoo's known races (compat_tests.kazoo_suite.KAZOO_RACES):
# fast checks of the harness itself, no server started.

def test_every_known_race_names_a_test_kazoo_ships():
    import importlib

    from compat_tests.kazoo_suite import KAZOO_RACES

    for node_id in KAZOO_RACES:
        path, cls, name = node_id.split("::")
        module = importlib.import_module(path[:-3].replace("/", "."))
        assert callable(getattr(getattr(module, cls), name)), node_id


def _junit(path, outcomes):
    cases = []
    for key, outcome in outcomes.items():
        classname, name = key.split("::")
        body = {"passed": "", "failed": "<failure message='x'/>"}[outcome]
        cases.append('<testcase classname="%s" name="%s">%s</testcase>' % (classname, name, body))
    path.write_text("<testsuites><testsuite>%s</testsuite></testsuites>" % "".join(cases))


def test_a_failed_known_race_is_run_again_until_it_passes(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from compat_tests import kazoo_suite as ks

    race = next(iter(ks.KAZOO_RACES))
    key = ks.result_key(race)
    assert key.startswith("kazoo.tests.test_sasl.") and key.endswith("::test_invalid_sasl_auth")
    outcomes = iter(["failed", "passed"])
    commands = []

    def fake_pytest(cmd, env, out_dir, log_path, args):
        commands.append(cmd)
        _junit(Path(cmd[cmd.index("--junitxml") + 1]), {key: next(outcomes)})
        return 0, False

    monkeypatch.setattr(ks, "run_pytest", fake_pytest)
    other = "kazoo.tests.test_client.TestClient::test_x"
    results = {key: "failed", other: "failed"}
    cmd = ["python", "-m", "pytest", "--junitxml", "first.xml", "--pyargs", "kazoo.tests.test_sasl"]
    reruns = ks.rerun_races("zkpy", cmd, {}, tmp_path, SimpleNamespace(), results)
    # two more attempts: the first fails again, the second passes
    assert reruns == {key: ["failed", "failed", "passed"]}
    assert results == {key: "passed", other: "failed"}  # any other failure stands
    assert len(commands) == 2
    assert all(c[-1].endswith(race) and "--pyargs" not in c for c in commands)


def test_a_known_race_that_keeps_failing_fails(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from compat_tests import kazoo_suite as ks

    key = ks.result_key(next(iter(ks.KAZOO_RACES)))

    def fake_pytest(cmd, env, out_dir, log_path, args):
        _junit(Path(cmd[cmd.index("--junitxml") + 1]), {key: "failed"})
        return 1, False

    monkeypatch.setattr(ks, "run_pytest", fake_pytest)
    results = {key: "failed"}
    reruns = ks.rerun_races("zkpy", ["pytest", "--junitxml", "x.xml"], {}, tmp_path,
                            SimpleNamespace(), results)
    assert reruns == {key: ["failed"] * ks.RACE_ATTEMPTS}
    assert results == {key: "failed"}
