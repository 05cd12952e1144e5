"""An ensemble of N ZooKeeper-compatible servers, for fault tests: all of one
kind, or each member of its own (a mixed ensemble of zkpy and Apache ZooKeeper).

Contract:

* Builds on :mod:`zkpy.testing.launchers`: every member is a
  :class:`~zkpy.testing.launchers.BaseServer` (``ZkpyServer`` or
  ``ApacheZooKeeperServer``) wrapped in a :class:`Member` that knows its
  ``myid``, its kind and its quorum/election ports.  No Twisted, no client
  library: readiness and roles are read from the four-letter word ``srvr``
  (``Mode: leader`` / ``follower`` / ``observer``).
* ``Ensemble(["zookeeper", "zkpy", "zkpy"])`` chooses each member's kind;
  ``observers={3}`` makes members observers (``server.N=...:observer`` for
  everyone, ``peerType=observer`` for them).  :meth:`Member.become` restarts
  a member as the other kind on the same dataDir, myid and ports (a rolling
  migration's step).
* Everything binds to 127.0.0.1.  Each member gets a standard zoo.cfg
  (``server.N=127.0.0.1:quorumPort:electionPort`` for every member, a plain
  ``clientPort``, ``tickTime``/``initLimit``/``syncLimit``,
  ``4lw.commands.whitelist=*``, ``admin.enableServer=false``, any extra
  ``settings``) and a ``myid`` file in its ``dataDir``.  Ports are chosen
  once (below the kernel's ephemeral range, see :func:`pick_ports`) and
  kept across restarts.
* All members live under one temporary directory (``member-N/``).  Leaving
  the ``with`` block (or :meth:`Ensemble.cleanup`) stops every process it
  started and removes that directory -- unless the block raised or
  ``keep_workdir`` is set, in which case the logs stay and the path is
  printed to stderr.
* It never decides what a test expects: :meth:`Ensemble.start` and
  :meth:`Ensemble.wait_for_quorum` wait until exactly one leader is reported
  and every other live member follows, and raise ``ServerTimeout`` (with
  log tails) otherwise -- at once if a member exits on its own.

Typical use::

    with Ensemble("zookeeper", size=3) as ens:
        ens.start()
        client = KazooClient(ens.connect_string)
        ...
        ens.leader().kill()
        new_leader = ens.wait_for_quorum()

    with Ensemble(["zookeeper", "zkpy", "zkpy"]) as ens:   # one of each kind... and one more
        ens.start()
        ens.member(1).become("zkpy")                        # now all zkpy
"""

from __future__ import annotations

import random
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from zkpy.testing.launchers import (
    LOCALHOST,
    BaseServer,
    ServerError,
    ServerTimeout,
    server_from_name,
)

__all__ = ["Ensemble", "Member", "parse_mode", "pick_ports"]


def pick_ports(count: int, host: str = LOCALHOST) -> list[int]:
    """*count* distinct ports that bind now, below the kernel's ephemeral
    range when there is room: a member keeps its ports across restarts, and
    no outgoing connection may take one while the member is down."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    held: list[socket.socket] = []
    try:
        while len(held) < count:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, random.randrange(10000, low) if low > 11000 else 0))
            except OSError:
                sock.close()
                continue
            held.append(sock)  # held until all are chosen: no duplicates
        return [sock.getsockname()[1] for sock in held]
    finally:
        for sock in held:
            sock.close()


def parse_mode(srvr: str) -> str | None:
    """The ``Mode:`` of a ``srvr`` answer (``leader``, ``follower``,
    ``standalone``, ...), or ``None`` when the server is not serving."""
    for line in srvr.splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip() or None
    return None


class Member:
    """One server of an :class:`Ensemble`: its launcher, ``myid`` and ports."""

    def __init__(self, myid: int, server: BaseServer, quorum_port: int,
                 election_port: int, options: Mapping[str, Mapping[str, Any]] | None = None,
                 ) -> None:
        self.myid, self.server = myid, server
        self.quorum_port, self.election_port = quorum_port, election_port
        self.paused = False
        self.wanted = False  # started by us and not stopped/killed since
        self._options = dict(options or {})  # launcher options per kind, for become()

    @property
    def kind(self) -> str:
        """``"zkpy"`` or ``"zookeeper"``."""
        return self.server.kind

    @property
    def observer(self) -> bool:
        return self.server.settings.get("peerType") == "observer"

    host = property(lambda self: self.server.host)
    port = property(lambda self: self.server.port)
    connect_string = property(lambda self: self.server.connect_string)
    pid = property(lambda self: self.server.pid)
    running = property(lambda self: self.server.running)

    def four_letter(self, word: str, timeout: float = 2.0) -> str:
        return self.server.four_letter(word, timeout=timeout)

    def mode(self, timeout: float = 1.0) -> str | None:
        """``leader``/``follower`` from ``srvr``; ``None`` when the member is
        stopped, paused, unreachable or not serving."""
        if self.paused or not self.running:
            return None
        try:
            return parse_mode(self.four_letter("srvr", timeout=timeout))
        except OSError:
            return None

    def start(self, timeout: float = 60, *, wait: bool = True,
              keep_config: bool = False) -> Member:
        """Write ``myid``, start the process; with ``wait``, until it serves
        (which needs a quorum).  ``keep_config``: reuse the zoo.cfg the
        member left (see :meth:`BaseServer.start`)."""
        self.server.data_dir.mkdir(parents=True, exist_ok=True)
        (self.server.data_dir / "myid").write_text("%d\n" % self.myid)
        self.wanted, self.paused = True, False
        self.server.start(timeout=timeout, wait=wait, keep_config=keep_config)
        return self

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM (SIGKILL after *timeout*)."""
        self.wanted = self.paused = False
        return self.server.stop(timeout=timeout)

    def kill(self) -> int | None:
        """SIGKILL."""
        self.wanted = self.paused = False
        return self.server.kill()

    def pause(self, timeout: float = 5.0) -> None:
        """SIGSTOP, and (on Linux) wait until every thread of the process is
        stopped: the signal takes effect a moment later, and a JVM thread can
        still read its socket in between."""
        self.server.pause()
        self.paused = True
        tasks = Path("/proc/%d/task" % self.pid)
        deadline = time.monotonic() + timeout
        while tasks.is_dir() and time.monotonic() < deadline:
            states = []
            for task in tasks.iterdir():
                try:
                    stat = (task / "stat").read_text()
                except OSError:
                    continue  # a thread that just ended
                states.append(stat[stat.rindex(")") + 2])
            if all(s in "tT" for s in states):
                return
            time.sleep(0.01)

    def resume(self) -> None:
        """SIGCONT."""
        self.server.resume()
        self.paused = False

    def restart(self, timeout: float = 60, *, wait: bool = True,
                keep_config: bool = False) -> Member:
        """Stop (if running) and start again with the same ports and data."""
        self.stop()
        return self.start(timeout=timeout, wait=wait, keep_config=keep_config)

    def become(self, kind: str, timeout: float = 60, *, wait: bool = True) -> Member:
        """Stop this member (SIGTERM) and start it again as *kind* on the same
        dataDir, myid, ports and zoo.cfg settings: one step of a rolling
        migration.  Its log goes on in the same ``server.log``."""
        self.stop()
        old = self.server
        new = server_from_name(kind, settings=old.settings, port=old.port,
                               workdir=old.workdir, **dict(self._options.get(kind, {})))
        new.system_properties.update(old.system_properties)
        old.cleanup()  # its directory is the ensemble's: left in place
        self.server = new
        return self.start(timeout=timeout, wait=wait)

    def __repr__(self) -> str:
        return "<Member %d %s %s pid=%s%s>" % (self.myid, self.kind, self.connect_string,
                                               self.pid, " paused" if self.paused else "")


class Ensemble:
    """*size* servers forming one ensemble; nothing runs until :meth:`start`.

    :param kind: ``"zkpy"`` or ``"zookeeper"`` for every member, or a list of
        kinds, one per member (``["zookeeper", "zkpy", "zkpy"]``; *size* is
        then its length).
    :param settings: extra zoo.cfg entries for every member (``None`` drops a
        default, as in :class:`~zkpy.testing.launchers.BaseServer`).
    :param observers: myids that observe (they still count in *size*).
    :param tick_time, init_limit, sync_limit: the usual quorum timing.
    :param server_options: extra keyword arguments for each launcher
        (e.g. ``jvm_args`` for Apache ZooKeeper) when all are of one kind.
    :param kind_options: ``{kind: options}``: launcher options per kind (a
        mixed ensemble's, and what :meth:`Member.become` uses).
    :param keep_workdir: keep the directory even after a clean exit.
    """

    def __init__(self, kind: str | Sequence[str], size: int = 3,
                 settings: Mapping[str, object] | None = None, *,
                 observers: Sequence[int] = (), tick_time: int = 500, init_limit: int = 10,
                 sync_limit: int = 5, server_options: Mapping[str, Any] | None = None,
                 kind_options: Mapping[str, Mapping[str, Any]] | None = None,
                 keep_workdir: bool = False) -> None:
        kinds = [kind] * size if isinstance(kind, str) else list(kind)
        size = len(kinds)
        if size < 1:
            raise ValueError("an ensemble needs at least one server")
        self.kinds = kinds
        self.kind = kinds[0] if len(set(kinds)) == 1 else "+".join(kinds)
        self.keep_workdir = keep_workdir
        options = {k: dict((kind_options or {}).get(k, {})) for k in ("zkpy", "zookeeper")}
        if server_options:
            if len(set(kinds)) > 1:
                raise ValueError("a mixed ensemble takes launcher options per kind "
                                 "(kind_options), not server_options")
            options[kinds[0]].update(server_options)
        self.workdir = Path(tempfile.mkdtemp(prefix="zkpy-ensemble-%s-" % self.kind))
        self._cleaned = False
        ports = pick_ports(3 * size)
        client, quorum, election = ports[0::3], ports[1::3], ports[2::3]
        common: dict[str, object] = {
            "tickTime": tick_time, "initLimit": init_limit, "syncLimit": sync_limit,
            "4lw.commands.whitelist": "*", "admin.enableServer": "false",
        }
        for i in range(size):
            role = ":observer" if i + 1 in observers else ""
            common["server.%d" % (i + 1)] = "%s:%d:%d%s" % (LOCALHOST, quorum[i], election[i],
                                                           role)
        common.update(settings or {})
        self.members: list[Member] = []
        try:
            for i in range(size):
                own = dict(common)
                if i + 1 in observers:
                    own["peerType"] = "observer"
                srv = server_from_name(kinds[i], settings=own, port=client[i],
                                       workdir=self.workdir / ("member-%d" % (i + 1)),
                                       **options.get(kinds[i], {}))
                self.members.append(Member(i + 1, srv, quorum[i], election[i], options))
        except BaseException:
            self.cleanup()
            raise

    @property
    def connect_string(self) -> str:
        """Every member's ``host:port``, comma-separated."""
        return ",".join(m.connect_string for m in self.members)

    def member(self, myid: int) -> Member:
        return self.members[myid - 1]

    def member_at(self, host: str, port: int) -> Member | None:
        """The member listening on ``(host, port)`` (e.g. what a client's
        socket's ``getpeername()`` says)."""
        for m in self.members:
            if m.port == port and host in (m.host, "localhost"):
                return m
        return None

    # -- roles ----------------------------------------------------------------

    def modes(self) -> dict[int, str | None]:
        """``{myid: mode}`` for every member (``None``: down/paused/not serving)."""
        return {m.myid: m.mode() for m in self.members}

    def leader(self) -> Member | None:
        """The member whose ``srvr`` says ``Mode: leader`` (``None`` unless
        exactly one does)."""
        leaders = [m for m in self.members if m.mode() == "leader"]
        return leaders[0] if len(leaders) == 1 else None

    def followers(self) -> list[Member]:
        return [m for m in self.members if m.mode() == "follower"]

    def observers(self) -> list[Member]:
        return [m for m in self.members if m.mode() == "observer"]

    def wait_for_quorum(self, timeout: float = 30) -> Member:
        """Wait until exactly one member leads and every running, unpaused
        member serves as leader, follower or observer; return the leader."""
        deadline = time.monotonic() + timeout
        while True:
            modes = self.modes()
            leaders = [self.member(i) for i, mode in modes.items() if mode == "leader"]
            idle = [m.myid for m in self.members if m.running and not m.paused
                    and modes[m.myid] not in ("leader", "follower", "observer")]
            if len(leaders) == 1 and not idle:
                return leaders[0]
            crashed = [m.myid for m in self.members if m.wanted and not m.running]
            if crashed or time.monotonic() >= deadline:
                raise ServerTimeout("%s ensemble: no quorum after %ss (modes %s%s)\n%s" % (
                    self.kind, timeout, modes,
                    "; members %s exited on their own" % crashed if crashed else "",
                    self.log_tails()))
            time.sleep(0.1)

    # -- lifecycle --------------------------------------------------------------

    def start(self, timeout: float = 60) -> Member:
        """Start every member, then :meth:`wait_for_quorum`; returns the leader."""
        if self._cleaned:
            raise ServerError("ensemble already cleaned up")
        for m in self.members:
            if not m.running:
                m.start(timeout=timeout, wait=False)
        return self.wait_for_quorum(timeout)

    def stop_all(self, timeout: float = 10) -> None:
        """SIGTERM every member at once (no member waits for the others to go),
        then wait for each, SIGKILL after *timeout*."""
        for m in self.members:
            if m.running:
                m.server._signal(signal.SIGTERM)
        for m in self.members:
            m.stop(timeout=timeout)

    def log_tails(self, lines: int = 25) -> str:
        out = []
        for m in self.members:
            state = "running" if m.running else "exit status %s" % m.server.returncode
            out.append("--- member %d (%s %s, %s) %s" % (m.myid, m.kind, m.connect_string,
                                                       state, m.server.log_path))
            out.append(m.server.log_tail(lines))
        return "\n".join(out)

    def cleanup(self, *, failed: bool = False) -> None:
        """Stop everything; remove the directory unless *failed* or
        ``keep_workdir`` (then print where the logs are)."""
        if self._cleaned:
            return
        self._cleaned = True
        try:
            self.stop_all()
        finally:
            for m in self.members:
                m.server.cleanup()  # its directory is ours: left alone
            if failed or self.keep_workdir:
                print("%s ensemble logs kept in %s" % (self.kind, self.workdir), file=sys.stderr)
            else:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Ensemble:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.cleanup(failed=exc_type is not None)

    def __repr__(self) -> str:
        return "<Ensemble %s x%d %s>" % (self.kind, len(self.members), self.workdir)
