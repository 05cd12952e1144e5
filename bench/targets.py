"""The systems under test: one server or an ensemble of one kind, started here
(or already running elsewhere), with the addresses clients spread over and
the processes whose CPU and memory are read.

Contract:

* Kinds: ``zkpy`` (this checkout), ``zkpy@<git-rev>`` (that revision's
  ``zkpy`` package, exported with ``git archive`` into a temporary directory
  and run with ``PYTHONPATH`` pointing there; the benchmark's own code is
  always this checkout's; ``zkpy@<git-rev>+mypyc`` builds that revision's
  accelerator there first) and ``zookeeper`` (Apache ZooKeeper 3.8 through
  :mod:`zkpy.testing.launchers`). A zkpy kind may end in ``+mypyc`` or
  ``+pure``: its servers run with ``ZKPY_ACCEL=require`` or ``off`` (the
  compiled hot modules of ``python -m zkpy.build_accel``, or the Python ones),
  so ``--servers zkpy+pure,zkpy+mypyc`` compares the two A-B-A-B.
* Every kind gets the same zoo.cfg (:func:`server_settings`); a size of 1 is
  a standalone server, more is an :class:`~zkpy.testing.ensemble.Ensemble`.
* Everything binds 127.0.0.1; :meth:`Target.cleanup` stops what it started
  and removes its directories unless a failure asks to keep the logs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.probe import REPO_ROOT, Probe
from zkpy.testing.ensemble import Ensemble, parse_mode
from zkpy.testing.launchers import BaseServer, four_letter, server_from_name

KIND_ALIASES = {"apache": "zookeeper", "zk": "zookeeper"}
# A zkpy kind's ``+variant``: the ZKPY_ACCEL its servers run with (see zkpy/accel.py).
ACCEL_VARIANTS = {"mypyc": "require", "pure": "off"}


def server_settings(force_sync: bool) -> dict[str, object]:
    """The zoo.cfg lines both kinds get (everything else is each one's default)."""
    return {
        "tickTime": 2000,
        "initLimit": 10,
        "syncLimit": 5,
        "minSessionTimeout": 4000,
        "maxSessionTimeout": 40000,
        "maxClientCnxns": 0,
        "4lw.commands.whitelist": "*",
        "admin.enableServer": "false",
        "forceSync": "yes" if force_sync else "no",
    }


@dataclass(frozen=True)
class Kind:
    """One entry of ``--servers``: a label, the server kind, and a git
    revision for an older zkpy."""

    label: str
    kind: str
    rev: str | None = None
    accel: str | None = None  # ZKPY_ACCEL for the servers, None: the environment's


def parse_kinds(spec: str) -> list[Kind]:
    """``"zkpy@main,zkpy,zookeeper"`` -> kinds in that order (duplicates dropped)."""
    out: list[Kind] = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        base, plus, variant = item.partition("+")
        name, _, rev = base.partition("@")
        name = KIND_ALIASES.get(name.lower(), name.lower())
        if name not in ("zkpy", "zookeeper"):
            raise ValueError("unknown server kind %r (zkpy, zkpy@<git-rev>, zookeeper)" % item)
        if rev and name != "zkpy":
            raise ValueError("only zkpy takes a revision: %r" % item)
        if plus and (name != "zkpy" or variant not in ACCEL_VARIANTS):
            raise ValueError("%r: only zkpy takes a variant, +%s"
                             % (item, " or +".join(ACCEL_VARIANTS)))
        label = ("%s@%s" % (name, rev) if rev else name) + (plus + variant)
        k = Kind(label, name, rev or None, ACCEL_VARIANTS.get(variant))
        if k.label not in [x.label for x in out]:
            out.append(k)
    return out


class RevisionCheckout:
    """The ``zkpy`` package of one git revision, in a temporary directory;
    ``compiled``: with that revision's accelerator built there (a ``+mypyc``
    kind; about a minute and a half on two cores)."""

    def __init__(self, rev: str, repo: Path = REPO_ROOT, *, compiled: bool = False) -> None:
        self.rev = rev
        try:
            self.sha = subprocess.run(
                ["git", "-C", str(repo), "rev-parse", "--verify", rev + "^{commit}"],
                capture_output=True, text=True, timeout=30, check=True).stdout.strip()
        except subprocess.CalledProcessError as exc:
            raise ValueError("zkpy@%s: not a git revision of %s (%s)"
                             % (rev, repo, exc.stderr.strip())) from None
        self.dir = Path(tempfile.mkdtemp(prefix="zkbench-rev-%s-" % self.sha[:10]))
        try:
            archive = subprocess.run(["git", "-C", str(repo), "archive", "--format=tar",
                                      self.sha, "zkpy"], capture_output=True, timeout=120,
                                     check=True).stdout
            tar_path = self.dir / "src.tar"
            tar_path.write_bytes(archive)
            with tarfile.open(tar_path) as tar:
                tar.extractall(self.dir, filter="data")
            tar_path.unlink()
            if compiled:
                env = dict(os.environ, PYTHONPATH=str(self.dir), ZKPY_ACCEL="off")
                built = subprocess.run([sys.executable, "-m", "zkpy.build_accel"], cwd=self.dir,
                                       env=env, capture_output=True, text=True, timeout=1800)
                if built.returncode != 0:
                    raise RuntimeError("zkpy@%s: building its accelerator failed:\n%s"
                                       % (rev, (built.stdout + built.stderr)[-2000:]))
        except BaseException:
            self.cleanup()
            raise

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Target:
    """*size* servers of one kind, not started until :meth:`start`."""

    def __init__(self, kind: Kind, size: int, settings: dict[str, object], *,
                 heap: str = "1g", source_root: Path | None = None,
                 workdir: Path | None = None) -> None:
        self.kind, self.size, self.label = kind, size, kind.label
        opts: dict[str, object] = {}
        if kind.kind == "zookeeper":
            opts["jvm_args"] = ["-Xmx%s" % heap]
        elif source_root is not None:
            opts["source_root"] = source_root
        if kind.accel is not None:
            opts["env"] = {"ZKPY_ACCEL": kind.accel}
        self.ensemble: Ensemble | None = None
        self.server: BaseServer | None = None
        if size > 1:
            tick = int(settings.get("tickTime", 2000))  # type: ignore[call-overload]
            rest = {k: v for k, v in settings.items() if k != "tickTime"}
            self.ensemble = Ensemble(kind.kind, size, rest, tick_time=tick, server_options=opts)
            self.servers = [m.server for m in self.ensemble.members]
            self.workdir = self.ensemble.workdir
        else:
            if workdir is not None:
                opts["workdir"] = workdir
            self.server = server_from_name(kind.kind, settings=settings, **opts)
            self.servers = [self.server]
            self.workdir = self.server.workdir

    # -- lifecycle --------------------------------------------------------------

    def start(self, timeout: float = 120) -> None:
        if self.ensemble is not None:
            self.ensemble.start(timeout=timeout)
        else:
            assert self.server is not None
            self.server.start(timeout=timeout)

    def cleanup(self, failed: bool = False) -> None:
        if self.ensemble is not None:
            self.ensemble.cleanup(failed=failed)
        elif self.server is not None:
            self.server.keep_workdir = self.server.keep_workdir or failed
            self.server.cleanup()

    # -- what clients and probes need ---------------------------------------------

    @property
    def addrs(self) -> list[tuple[str, int]]:
        return [s.address for s in self.servers]

    @property
    def pids(self) -> list[int]:
        """The members' pids (of those running)."""
        return [s.pid for s in self.servers if s.pid and s.running]

    def probe(self) -> Probe:
        return Probe(self.pids)

    def dead(self) -> str | None:
        """Why the target is no longer whole, or ``None``."""
        gone = [(i + 1, s.returncode) for i, s in enumerate(self.servers) if not s.running]
        if not gone:
            return None
        return ", ".join("member %d exited with status %s" % g for g in gone)

    def modes(self) -> list[str | None]:
        out = []
        for s in self.servers:
            try:
                out.append(parse_mode(s.four_letter("srvr", timeout=2.0)))
            except OSError:
                out.append(None)
        return out

    def leader_index(self) -> int | None:
        modes = self.modes()
        return modes.index("leader") if "leader" in modes else None

    def follower_index(self) -> int | None:
        modes = self.modes()
        return modes.index("follower") if "follower" in modes else None

    def log_problems(self, limit: int = 12) -> list[str]:
        return log_problems("\n".join(s.log_text() for s in self.servers), limit)

    def log_tails(self, lines: int = 25) -> str:
        if self.ensemble is not None:
            return self.ensemble.log_tails(lines)
        assert self.server is not None
        return self.server.log_tail(lines)

    def describe(self) -> str:
        what = "standalone" if self.size == 1 else "%d-server ensemble" % self.size
        return "%s %s on %s (pids %s; dir %s)" % (
            self.label, what, ",".join("%s:%d" % a for a in self.addrs),
            ",".join(map(str, self.pids)), self.workdir)


class ExternalTarget:
    """A server (or ensemble) that is already running: nothing is started or
    stopped; CPU and RSS only when its pids are known."""

    def __init__(self, label: str, addrs: list[tuple[str, int]], pids: list[int]) -> None:
        self.label, self.size, self._addrs, self._pids = label, len(addrs), addrs, pids
        self.workdir = None

    addrs = property(lambda self: list(self._addrs))
    pids = property(lambda self: list(self._pids))

    def start(self, timeout: float = 120) -> None:
        for host, port in self._addrs:
            if four_letter(host, port, "ruok", timeout=5).strip() != "imok":
                raise RuntimeError("%s:%d does not answer ruok" % (host, port))

    def cleanup(self, failed: bool = False) -> None:
        pass

    def probe(self) -> Probe:
        return Probe(self._pids)

    def dead(self) -> str | None:
        return None

    def modes(self) -> list[str | None]:
        out = []
        for host, port in self._addrs:
            try:
                out.append(parse_mode(four_letter(host, port, "srvr", timeout=2.0)))
            except OSError:
                out.append(None)
        return out

    leader_index = Target.leader_index
    follower_index = Target.follower_index

    def log_problems(self, limit: int = 12) -> list[str]:
        return []

    def log_tails(self, lines: int = 25) -> str:
        return ""

    def describe(self) -> str:
        return "%s (already running; pids %s)" % (
            ",".join("%s:%d" % a for a in self._addrs), ",".join(map(str, self._pids)) or "unknown")


def log_problems(text: str, limit: int = 12) -> list[str]:
    """Lines of a server log that look like trouble."""
    keys = ("Traceback", "ERROR", "Error", "Unhandled", "CRITICAL", "Exception")
    # Apache ZooKeeper logs a WARN with this exception whenever a client
    # closes its socket after closeSession: expected, not a problem.
    benign = ("EndOfStreamException",)
    lines = [ln for ln in text.splitlines()
             if any(k in ln for k in keys) and not any(b in ln for b in benign)]
    return lines[:limit]
