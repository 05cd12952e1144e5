"""Run Kazoo's own shipped test-suite against Apache ZooKeeper and/or zkpy.

    python -m compat_tests.kazoo_suite --server zookeeper|zkpy|both --size 1 \\
        [--tests test_client,test_lock,...] [-k EXPR] [--json summary.json]
    python -m compat_tests.kazoo_suite --server both --size 3 --kinds zookeeper,zkpy,zkpy

The test files are Kazoo's, unchanged (``pytest --pyargs kazoo.tests.X``).
Kazoo's harness (``kazoo/testing/common.py``) starts its servers itself as
``java -cp $ZOOKEEPER_CLASSPATH -D... QuorumPeerMain zoo.cfg``:

* for ``zookeeper`` we point ``ZOOKEEPER_CLASSPATH`` at the Debian jars;
* for ``zkpy`` we prepend ``compat_tests/java_shim`` to ``PATH``; its
  ``java`` execs ``python -m zkpy -D... zoo.cfg`` for QuorumPeerMain and the
  real java otherwise.
* ``--kinds zookeeper,zkpy,zkpy`` makes the zkpy run a mixed ensemble: the
  shim reads each server's myid and runs Apache ZooKeeper for the ones whose
  kind is ``zookeeper`` (``ZKPY_SHIM_KINDS``). The reference run is then an
  all-ZooKeeper ensemble of the same size, and the summary says how many of
  its passing tests pass on the mixed one.

With ``--server both`` the reference runs first, then zkpy, then a summary
("zkpy passes X of the Y tests that pass on Apache ZooKeeper") is printed
and, with ``--json``, written.  Exit status for ``both``: 0 when zkpy passes
every test the reference passes, else 1.  For a single server: pytest's
status (0 = all selected tests passed or skipped).

A few of Kazoo's tests race with Kazoo's own client threads (``KAZOO_RACES``
says which and why). One of those that fails is run again, alone, up to
``RACE_ATTEMPTS`` times in all, on either server alike; the summary keeps
every attempt (``reruns``), so a pass on a second attempt is visible.

Artefacts (junit xml, pytest output) go to ``compat_tests/.runs/<stamp>/``
unless ``--out-dir`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from zkpy.testing.launchers import ZkpyServer, find_real_java  # noqa: E402

SHIM_DIR = HERE / "java_shim"
RUNS_DIR = HERE / ".runs"
ZOOKEEPER_VERSION = "3.8.0"
PORT_OFFSETS = {"zookeeper": 21000, "zkpy": 24000}

DEFAULT_TESTS = [
    "test_client", "test_watchers", "test_lock", "test_barrier", "test_election",
    "test_party", "test_queue", "test_counter", "test_paths", "test_security",
]

# Tests whose outcome depends on which of two of Kazoo's client threads runs
# first, not on the server's answer. Each names the race. A failure of one of
# these is run again (see rerun_races); any other failure stands as it is.
KAZOO_RACES = {
    # KazooClient.start() returns when the connection thread reports
    # CONNECTED; SASL runs after that, on the connection thread. If the
    # server's AUTH_FAILED arrives before start() looks at `connected`,
    # start() raises KazooTimeoutError, not the AuthFailedError the test
    # expects; the faster the server answers, the likelier that is. Kazoo's
    # maintainers saw it on ZooKeeper too (python-zk/kazoo#547). The server's
    # side (an AUTH_FAILED reply, then the close) is the same either way.
    "kazoo/tests/test_sasl.py::TestSASLDigestAuthentication::test_invalid_sasl_auth":
        "start() races the SASL exchange",
    "kazoo/tests/test_sasl.py::TestLegacySASLDigestAuthentication::test_invalid_sasl_auth":
        "start() races the SASL exchange",
}
RACE_ATTEMPTS = 3


def result_key(node_id: str) -> str:
    """The junit name (``kazoo.tests.test_x.TestY::test_z``) of a node id
    relative to Kazoo's parent directory (``kazoo/tests/test_x.py::TestY::test_z``)."""
    path, _, rest = node_id.partition("::")
    parts = rest.split("::")
    module = path[:-3].replace("/", ".")
    return "%s::%s" % (".".join([module, *parts[:-1]]), parts[-1])


# Kazoo's harness passes -Dlog4j.configuration=<its file> and reads
# <workdir>/zookeeper.log for its failure reports, so bind slf4j to log4j 1.2
# when those jars exist; otherwise slf4j-simple (stderr).
_BASE_JARS = ["/usr/share/java/zookeeper.jar", "/usr/share/java/netty-codec.jar"]
_LOG4J_JARS = ["/usr/share/java/slf4j-log4j12.jar", "/usr/share/java/log4j-1.2.jar"]
_SIMPLE_JARS = ["/usr/share/java/slf4j-simple.jar"]


def default_zookeeper_classpath() -> str:
    env = os.environ.get("ZOOKEEPER_CLASSPATH")
    if env:
        return env
    jars = list(_BASE_JARS)
    if all(os.path.exists(j) for j in _LOG4J_JARS):
        jars += _LOG4J_JARS
    elif all(os.path.exists(j) for j in _SIMPLE_JARS):
        jars += _SIMPLE_JARS
    return os.pathsep.join(jars)


def test_modules(spec: str | None) -> list[str]:
    names = [n.strip() for n in (spec.split(",") if spec else DEFAULT_TESTS) if n.strip()]
    mods = []
    for n in names:
        n = n[:-3] if n.endswith(".py") else n
        n = n.rsplit("/", 1)[-1]
        mods.append(n if n.startswith("kazoo.") else "kazoo.tests." + n)
    return mods


def kazoo_parent() -> str:
    import kazoo

    return str(Path(kazoo.__file__).resolve().parent.parent)


def parse_size(text: str) -> tuple[int, int]:
    """``"3"``: three participants; ``"3+1"``: three participants and one observer."""
    voters, _, observers = text.partition("+")
    try:
        parsed = int(voters), int(observers or 0)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not N or N+M" % text) from None
    if parsed[0] < 1 or parsed[1] < 0:
        raise argparse.ArgumentTypeError("%r: at least one participant" % text)
    return parsed


def parse_kinds(text: str) -> list[str]:
    """``"zookeeper,zkpy,zkpy"``: each server's kind, by myid."""
    kinds = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ("zookeeper", "zkpy")]
    if not kinds or bad:
        raise argparse.ArgumentTypeError("%r: a comma-separated list of zookeeper and zkpy"
                                         % text)
    return kinds


def server_env(kind: str, size: tuple[int, int] | int,
               kinds: list[str] | None = None) -> dict[str, str]:
    voters, observers = (size, 0) if isinstance(size, int) else size
    env = dict(os.environ)
    env["ZOOKEEPER_CLUSTER_SIZE"] = str(voters + observers)
    # Kazoo's harness: servers numbered from this id on are observers.
    env["ZOOKEEPER_OBSERVER_START_ID"] = str(voters + 1 if observers else -1)
    env["ZOOKEEPER_PORT_OFFSET"] = str(PORT_OFFSETS[kind])
    env["ZOOKEEPER_VERSION"] = ZOOKEEPER_VERSION
    env["ZOOKEEPER_CLASSPATH"] = default_zookeeper_classpath()
    env.pop("ZOOKEEPER_PATH", None)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if kind == "zkpy":
        real = find_real_java()
        if real:
            env["ZKPY_REAL_JAVA"] = real
        # ZKPY_SUITE_PYTHON lets the shim path be exercised with a stand-in.
        env["ZKPY_PYTHON"] = os.environ.get("ZKPY_SUITE_PYTHON", sys.executable)
        env["PATH"] = str(SHIM_DIR) + os.pathsep + env.get("PATH", "")
        if kinds:
            env["ZKPY_SHIM_KINDS"] = ",".join(kinds)
        pp = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(ROOT) + (os.pathsep + pp if pp else "")
    return env


# --------------------------------------------------------------------------
# junit parsing

_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


def parse_junit(path: Path) -> dict[str, str]:
    """``{"module.Class::test": "passed"|"failed"|"error"|"skipped"}``."""
    results: dict[str, str] = {}
    if not path.exists():
        return results
    tree = ET.parse(path)
    for case in tree.iter("testcase"):
        name = "%s::%s" % (case.get("classname", ""), case.get("name", ""))
        status = "passed"
        for child in case:
            if child.tag == "failure":
                status = max(status, "failed", key=_RANK.get)
            elif child.tag == "error":
                status = max(status, "error", key=_RANK.get)
            elif child.tag == "skipped":
                status = max(status, "skipped", key=_RANK.get)
        old = results.get(name)
        results[name] = status if old is None else max(old, status, key=_RANK.get)
    return results


def counts(results: dict[str, str]) -> dict[str, int]:
    out = {"total": len(results), "passed": 0, "failed": 0, "skipped": 0, "error": 0}
    for status in results.values():
        out[status] += 1
    return out


# --------------------------------------------------------------------------
# running


def preflight_zkpy(out_dir: Path) -> str | None:
    """Start zkpy once with our launcher; a reason string if it cannot."""
    srv = ZkpyServer()
    try:
        srv.start(timeout=30)
        return None
    except Exception as exc:  # the reason is what we want
        (out_dir / "zkpy-preflight.log").write_text(srv.log_text())
        return "zkpy did not start: %s" % str(exc).splitlines()[0]
    finally:
        srv.cleanup()


def run_suite(kind: str, args, out_dir: Path) -> dict:
    junit = out_dir / ("junit-%s.xml" % kind)
    log_path = out_dir / ("pytest-%s.log" % kind)
    ini = out_dir / "pytest.ini"
    ini.write_text("[pytest]\n")
    modules = test_modules(args.tests)
    cmd = [
        sys.executable, "-m", "pytest",
        # rootdir = the directory holding the kazoo package, so that node
        # ids and junit classnames read kazoo.tests.test_x.TestY
        "-c", str(ini), "--rootdir", kazoo_parent(),
        "-p", "no:hypothesispytest", "-p", "no:cacheprovider",
        "--junitxml", str(junit), "-o", "junit_family=xunit2",
        "-rfE", "-q",
        "--pyargs", *modules,
    ]
    if args.k:
        cmd += ["-k", args.k]
    cmd += list(args.pytest_args or [])
    env = server_env(kind, args.size, args.kinds if kind == "zkpy" else None)
    if kind == "zkpy":
        env["ZKPY_JAVA_SHIM_LOG"] = str(out_dir / "java-shim.log")
    record = {"server": kind, "command": cmd, "junit": str(junit), "log": str(log_path),
              "env": {k: env[k] for k in ("ZOOKEEPER_CLUSTER_SIZE", "ZOOKEEPER_OBSERVER_START_ID",
                                          "ZOOKEEPER_PORT_OFFSET", "ZOOKEEPER_VERSION",
                                          "ZOOKEEPER_CLASSPATH")}}
    if kind == "zkpy" and args.kinds:
        record["kinds"] = args.kinds

    if kind == "zkpy" and not args.no_preflight:
        reason = preflight_zkpy(out_dir)
        if reason:
            print("[kazoo_suite] %s -- not running the suite against zkpy" % reason, flush=True)
            record.update(returncode=None, preflight_failure=reason, results={},
                          counts=counts({}), seconds=0.0)
            return record

    print("[kazoo_suite] %s: %s" % (kind, " ".join(cmd)), flush=True)
    started = time.monotonic()
    returncode, timed_out = run_pytest(cmd, env, out_dir, log_path, args)
    results = parse_junit(junit)
    record.update(returncode=returncode, timed_out=timed_out, results=results,
                  counts=counts(results), seconds=round(time.monotonic() - started, 1))
    c = record["counts"]
    print("[kazoo_suite] %s: %d tests: %d passed, %d failed, %d errors, %d skipped (%.0fs)"
          % (kind, c["total"], c["passed"], c["failed"], c["error"], c["skipped"],
             record["seconds"]), flush=True)
    if not timed_out:
        reruns = rerun_races(kind, cmd, env, out_dir, args, results)
        if reruns:
            record.update(reruns=reruns, counts=counts(results))
    return record


def rerun_races(kind: str, cmd: list[str], env: dict[str, str], out_dir: Path, args,
                results: dict[str, str]) -> dict[str, list[str]]:
    """Run each failed test of ``KAZOO_RACES`` again, alone, until it passes
    or has had ``RACE_ATTEMPTS`` attempts; *results* gets its last outcome.
    Returns every attempt's outcome per test."""
    reruns: dict[str, list[str]] = {}
    # the first run's command without its test selection and report file
    base = cmd[:cmd.index("--junitxml")] + ["-rfE", "-q"]
    for index, (node_id, why) in enumerate(KAZOO_RACES.items()):
        key = result_key(node_id)
        if results.get(key) not in ("failed", "error"):
            continue
        attempts = [results[key]]
        while attempts[-1] != "passed" and len(attempts) < RACE_ATTEMPTS:
            n = len(attempts) + 1
            junit = out_dir / ("junit-%s-race%d-attempt%d.xml" % (kind, index, n))
            log_path = junit.with_suffix(".log")
            print("[kazoo_suite] %s: %s failed (%s); attempt %d of %d"
                  % (kind, key, why, n, RACE_ATTEMPTS), flush=True)
            run_pytest(base + ["--junitxml", str(junit), "-o", "junit_family=xunit2",
                               os.path.join(kazoo_parent(), node_id)],
                       env, out_dir, log_path, args)
            attempts.append(parse_junit(junit).get(key, "error"))
        results[key] = attempts[-1]
        reruns[key] = attempts
    return reruns


def run_pytest(cmd: list[str], env: dict[str, str], out_dir: Path, log_path: Path,
               args) -> tuple[int | None, bool]:
    """Run *cmd* in its own process group, its output to *log_path*; kill the
    group after ``args.timeout`` seconds. Returns (exit status, timed out)."""
    timed_out = []

    def on_timeout(pid: int) -> None:
        # pytest and the servers Kazoo's harness started share the process
        # group created for this run (start_new_session=True).
        timed_out.append(True)
        try:
            os.killpg(pid, signal.SIGTERM)
            time.sleep(20)
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=str(out_dir), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace",
                                start_new_session=True)
        timer = threading.Timer(args.timeout, on_timeout, (proc.pid,))
        timer.daemon = True
        timer.start()
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if not args.quiet:
                    sys.stdout.write(line)
                    sys.stdout.flush()
            proc.wait()
        except BaseException:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            proc.wait()
            raise
        finally:
            timer.cancel()
    return proc.returncode, bool(timed_out)


def load_reference(path: str, modules: list[str]) -> dict:
    """An earlier reference junit report, restricted to *modules*."""
    # kazoo.tests.test_x.TestY::test_z, or kazoo.tests.test_x::test_z for a module-level test
    prefixes = tuple(m + sep for m in modules for sep in (".", "::"))
    results = {t: s for t, s in parse_junit(Path(path)).items() if t.startswith(prefixes)}
    return {"server": "zookeeper", "junit": path, "results": results, "counts": counts(results),
            "returncode": None, "reused": True}


def compare(ref: dict, cand: dict) -> dict:
    ref_pass = {t for t, s in ref["results"].items() if s == "passed"}
    cand_pass = {t for t, s in cand["results"].items() if s == "passed"}
    missing = sorted(ref_pass - cand_pass)
    return {
        "reference_passed": len(ref_pass),
        "zkpy_passed_of_those": len(ref_pass & cand_pass),
        "missing_on_zkpy": [{"test": t, "zkpy": cand["results"].get(t, "not run")} for t in missing],
        "only_on_zkpy": sorted(cand_pass - ref_pass),
        "ok": not missing and bool(ref_pass),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m compat_tests.kazoo_suite",
        description="Run Kazoo's shipped tests against Apache ZooKeeper and/or zkpy.")
    ap.add_argument("--server", choices=("zookeeper", "zkpy", "both"), default="both")
    ap.add_argument("--size", type=parse_size, default=(1, 0),
                    help="servers: N participants, or N+M with M observers (default 1)")
    ap.add_argument("--kinds", type=parse_kinds,
                    help="a mixed ensemble for the zkpy run: each server's kind by myid, "
                         "e.g. zookeeper,zkpy,zkpy (as many as --size counts)")
    ap.add_argument("--tests", help="comma-separated kazoo test modules (default: %s)"
                    % ",".join(DEFAULT_TESTS))
    ap.add_argument("-k", help="pytest -k expression")
    ap.add_argument("--json", help="write the summary JSON here")
    ap.add_argument("--out-dir", help="artefact directory (default compat_tests/.runs/<stamp>)")
    ap.add_argument("--reference-junit",
                    help="reuse this junit xml as the zookeeper result instead of running it")
    ap.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per server run")
    ap.add_argument("--no-preflight", action="store_true",
                    help="run the suite against zkpy even if a plain start fails")
    ap.add_argument("--quiet", action="store_true", help="do not echo pytest output")
    ap.add_argument("--baseline", action="store_true",
                    help="with one server: exit 0 when the suite ran and some tests passed "
                         "(a reference baseline: its own failures are recorded, not judged)")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest args (after --)")
    args = ap.parse_args(argv)
    if args.kinds and len(args.kinds) != sum(args.size):
        ap.error("--kinds names %d servers, --size %d" % (len(args.kinds), sum(args.size)))

    if args.out_dir:
        out_dir = Path(args.out_dir)
    else:
        out_dir = RUNS_DIR / ("%s-%s-%d" % (time.strftime("%Y%m%d-%H%M%S"), args.server, os.getpid()))
    out_dir.mkdir(parents=True, exist_ok=True)

    runs: dict[str, dict] = {}
    if args.server in ("zookeeper", "both"):
        if args.reference_junit:
            runs["zookeeper"] = load_reference(args.reference_junit, test_modules(args.tests))
        else:
            runs["zookeeper"] = run_suite("zookeeper", args, out_dir)
    if args.server in ("zkpy", "both"):
        runs["zkpy"] = run_suite("zkpy", args, out_dir)

    summary: dict = {
        "tests": test_modules(args.tests), "k": args.k,
        "size": "%d+%d" % args.size if args.size[1] else str(args.size[0]),
        "kinds": args.kinds,
        "out_dir": str(out_dir),
        "counts": {k: v["counts"] for k, v in runs.items()},
        "runs": {k: {kk: vv for kk, vv in v.items() if kk != "results"} for k, v in runs.items()},
        "results": {k: v["results"] for k, v in runs.items()},
    }
    print()
    for kind, run in runs.items():
        c = run["counts"]
        extra = " (%s)" % run["preflight_failure"] if run.get("preflight_failure") else ""
        print("%-9s total %d: passed %d, failed %d, errors %d, skipped %d%s"
              % (kind, c["total"], c["passed"], c["failed"], c["error"], c["skipped"], extra))
        for test, attempts in run.get("reruns", {}).items():
            print("%-9s run again (a race in Kazoo's client): %s: %s"
                  % (kind, test, ", ".join(attempts)))

    status: int
    if args.server == "both":
        cmp = compare(runs["zookeeper"], runs["zkpy"])
        summary["comparison"] = cmp
        label = "the mixed ensemble (%s)" % ",".join(args.kinds) if args.kinds else "zkpy"
        print("%s passes %d of the %d tests that pass on Apache ZooKeeper"
              % (label, cmp["zkpy_passed_of_those"], cmp["reference_passed"]))
        if cmp["missing_on_zkpy"]:
            print("passing on Apache ZooKeeper but not on zkpy:")
            for item in cmp["missing_on_zkpy"]:
                print("  %s  [zkpy: %s]" % (item["test"], item["zkpy"]))
        if cmp["only_on_zkpy"]:
            print("passing on zkpy only: %s" % ", ".join(cmp["only_on_zkpy"]))
        status = 0 if cmp["ok"] else 1
    elif args.baseline:
        status = 0 if runs[args.server]["counts"]["passed"] > 0 else 1
    else:
        rc = runs[args.server].get("returncode")
        status = rc if isinstance(rc, int) else 1
    summary["exit_status"] = status
    json_path = Path(args.json) if args.json else out_dir / "summary.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(summary, indent=1) + "\n")
    print("summary: %s" % json_path)
    return status


if __name__ == "__main__":
    sys.exit(main())
