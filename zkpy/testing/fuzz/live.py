"""Fuzzing real server processes over sockets: every port, then every server must serve.

    python -m zkpy.testing.fuzz live [--scale smoke|issue] [--seed N] [--frames N]
        [--connections N] [--admin N] [--rounds N] [--workers N]

Two worlds, each started with ``zkpy.testing.launchers``:

1. a standalone server (AdminServer on, quorum-free) takes ``--frames``
   fuzzed client frames over many connections (``hostile.client_connection``:
   requests of every opcode after a real handshake, broken framing, hostile
   handshakes), then ``--admin`` hostile AdminServer requests (mutated paths,
   queries, headers and snapshot/restore bodies);
2. a 3-member ensemble takes ``--connections`` hostile quorum and election
   connections (mutated learner handshakes and streams, mutated initial
   messages and votes, from ids outside the ensemble) spread over its members,
   and a quarter of ``--frames`` client frames on the members' client ports.

Each flood runs in ``--rounds`` rounds. After every round: every server
process is alive, answers ``ruok``, serves a client (create, read, delete on
each member), the leader of the start leads the rest; once a janitor removed
what the hostile clients created and their sessions expired (polled, within
``SETTLE_SECONDS``), no connection, watch, ephemeral or learner is left over
(``mntr``), and each server's RSS is recorded. The contract holds when all of that does and the RSS after the last
round is within ``RSS_SLACK`` of the RSS after the first (a leak grows with
every round; a working set does not).

Inputs are drawn per worker from ``random.Random(f"{seed}:{phase}:{worker}")``:
the same seed sends the same bytes (the servers' interleaving of concurrent
connections is the operating system's).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from zkpy.testing.fuzz.hostile import (
    Sent,
    admin_request,
    client_connection,
    peer_connection,
    worker_rng,
)
from zkpy.testing.fuzz.mutate import Mutator

SUPER = "super:secret"
RSS_SLACK = 0.25  # the last round's RSS may be this much above the first's (plus 16 MiB)
SCALES = {
    # frames, hostile quorum/election connections, admin requests, rounds, workers
    "smoke": (3_000, 300, 100, 2, 4),
    "issue": (1_000_000, 20_000, 5_000, 4, 8),
}
# How long what hostile connections held may take to go once they closed: their
# sessions' timeouts (maxSessionTimeout 4 s) and a tick, with room for a busy machine.
SETTLE_SECONDS = 15.0
REFUSED_IN_A_ROW = 50  # a server refusing this many connections in a row is down


class LiveViolation(AssertionError):
    """A real server broke the contract (the message says how, with log tails)."""


@dataclass
class Report:
    seed: int
    frames: int = 0
    client_connections: int = 0
    peer_connections: int = 0
    admin_requests: int = 0
    closed_by_server: int = 0
    rss: dict[str, list[int]] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, sent: Sent, kind: str) -> None:
        with self.lock:  # the client and the peer floods run at once
            self._add(sent, kind)

    def _add(self, sent: Sent, kind: str) -> None:
        self.frames += sent.frames
        self.closed_by_server += sent.closed_by_server
        if kind == "client":
            self.client_connections += sent.connections
        elif kind == "peer":
            self.peer_connections += sent.connections
        else:
            self.admin_requests += sent.connections

    def text(self) -> str:
        rss = "; ".join(f"{name}: " + " -> ".join(f"{v / 2**20:.0f}" for v in series) + " MiB"
                        for name, series in self.rss.items())
        return (f"seed {self.seed}: {self.frames} fuzzed client frames on "
                f"{self.client_connections} connections, {self.peer_connections} hostile "
                f"quorum/election connections, {self.admin_requests} hostile AdminServer "
                f"requests ({self.closed_by_server} closed by the servers) in "
                f"{self.seconds:.0f}s; every server serving; RSS per round: {rss}")

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started


def super_digest(user_password: str = SUPER) -> str:
    user = user_password.split(":", 1)[0]
    digest = base64.b64encode(hashlib.sha1(user_password.encode()).digest()).decode()
    return f"{user}:{digest}"


_COMMON = {"tickTime": 200, "minSessionTimeout": 400, "maxSessionTimeout": 4000,
           "forceSync": "no", "maxClientCnxns": 0, "4lw.commands.whitelist": "*"}
_ENV = {"PYTHONFAULTHANDLER": "1"}  # stacks on SIGABRT (dump_stuck)
_PROPS = {"zookeeper.DigestAuthenticationProvider.superDigest": super_digest(),
          "zookeeper.extendedTypesEnabled": "true"}


# -- the floods ----------------------------------------------------------------------------


def _flood(report: Report, kind: str, phase: str, seed: int, workers: int, quota: int,
           one: Callable[[Mutator, int], Sent], measure: Callable[[Sent], int]) -> None:
    """Hostile connections over ``workers`` threads, each with its own seed, until
    they made ``quota`` of what ``measure`` counts (connections, or frames)."""
    def work(worker: int) -> list[Sent]:
        mut = Mutator(worker_rng(seed, phase, worker))
        share = quota // workers + (1 if worker < quota % workers else 0)
        out: list[Sent] = []
        done = refused = 0
        j = worker
        while done < share:
            sent = one(mut, j)
            out.append(sent)
            done += measure(sent)
            refused = refused + 1 if sent.refused else 0
            if refused >= REFUSED_IN_A_ROW:
                raise LiveViolation(f"{kind} flood: {refused} connections in a row refused")
            j += workers
        return out

    with ThreadPoolExecutor(workers) as pool:
        for results in pool.map(work, range(workers)):
            for sent in results:
                report.add(sent, kind)


def client_flood(report: Report, addresses: list[tuple[str, int]], frames: int, seed: int,
                 phase: str, workers: int) -> None:
    per = 128  # requests per connection (most connections)

    def one(mut: Mutator, j: int) -> Sent:
        return client_connection(addresses[j % len(addresses)], mut, per)

    _flood(report, "client", phase, seed, workers, frames, one, lambda sent: sent.frames)


def peer_flood(report: Report, ensemble: Any, connections: int, seed: int, phase: str,
               workers: int) -> None:
    from zkpy.testing.fuzz.quorumwire import HOSTILE_SIDS, election_stream, learner_stream

    members = ensemble.members

    def one(mut: Mutator, j: int) -> Sent:
        member = members[j % len(members)]
        rng = mut.rng
        sid = rng.choice(HOSTILE_SIDS)
        if j % 2 == 0:
            stream = learner_stream(sid, rng.choice((0, 1, 2)), observer=rng.random() < 0.2)
            address = (member.host, member.quorum_port)
        else:
            stream = election_stream(sid, rng.randrange(4), rng.choice((b"", b"version=1")))
            address = (member.host, member.election_port)
        if rng.random() < 0.05:
            stream = rng.randbytes(rng.randint(1, 64))
        return peer_connection(address, mut, stream)

    _flood(report, "peer", phase, seed, workers, connections, one,
           lambda sent: sent.connections)


def admin_flood(report: Report, address: tuple[str, int], requests: int, seed: int,
                workers: int) -> None:
    from zkpy.net.adminserver import COMMANDS
    from zkpy.testing.fuzz.seeds import sample

    commands = [n for cmd in COMMANDS for n in cmd.names]
    snapshot = sample().snapshot

    def one(mut: Mutator, j: int) -> Sent:
        return admin_request(address, mut, commands, snapshot)

    _flood(report, "admin", "admin", seed, workers, requests, one,
           lambda sent: sent.connections)


# -- the checks ------------------------------------------------------------------------------


def _mntr(server: Any) -> dict[str, str]:
    text = server.four_letter("mntr", timeout=5)
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def serves(servers: list[Any], what: str) -> None:
    """Each server is alive and a client creates, reads and deletes a znode on it."""
    from kazoo.client import KazooClient

    for server in servers:
        if not server.running:
            raise LiveViolation(f"{what}: the server on {server.connect_string} exited:\n"
                                f"{server.log_tail(60)}")
        if server.four_letter("ruok", timeout=5).strip() != "imok":
            raise LiveViolation(f"{what}: {server.connect_string} does not answer ruok")
        zk = KazooClient(hosts=server.connect_string, timeout=10)
        try:
            zk.start(timeout=20)
            path = zk.create("/live-probe-", b"ok", sequence=True, ephemeral=True)
            if zk.get(path)[0] != b"ok":
                raise LiveViolation(f"{what}: {server.connect_string} read back the wrong data")
            zk.delete(path)
        except LiveViolation:
            raise
        except Exception as e:
            raise LiveViolation(f"{what}: {server.connect_string} does not serve: {e!r}\n"
                                f"{server.log_tail(60)}") from e
        finally:
            zk.stop()
            zk.close()


def clean(server: Any) -> None:
    """Remove what the hostile clients created (as the super user)."""
    from kazoo.client import KazooClient

    zk = KazooClient(hosts=server.connect_string, timeout=10,
                     auth_data=[("digest", SUPER)])
    try:
        zk.start(timeout=20)
        for parent in ("/", "/zookeeper/quota"):
            for child in zk.get_children(parent):
                path = parent.rstrip("/") + "/" + child
                if path not in ("/zookeeper",):
                    zk.delete(path, recursive=True)
    finally:
        zk.stop()
        zk.close()


def nothing_left(server: Any, what: str, learners: int | None = None) -> None:
    """What hostile connections held is gone once they are: connections, watches,
    ephemerals (their sessions expired), and on a leader, learners."""
    deadline = time.monotonic() + SETTLE_SECONDS
    while True:
        m = _mntr(server)
        left = {k: int(m.get(k, "0")) for k in ("zk_watch_count", "zk_ephemerals_count")}
        # The connection asking mntr is one of them.
        left["zk_num_alive_connections"] = int(m.get("zk_num_alive_connections", "1")) - 1
        if learners is not None and m.get("zk_server_state") == "leader":
            left["zk_learners"] = int(m.get("zk_learners", "0")) - learners
        if not any(left.values()):
            return
        if time.monotonic() > deadline:
            raise LiveViolation(f"{what}: {server.connect_string} still holds {left} after "
                                "every hostile connection closed")
        time.sleep(0.5)


def rss(server: Any) -> int:
    import psutil

    return int(psutil.Process(server.pid).memory_info().rss)


def bounded(report: Report) -> None:
    for name, series in report.rss.items():
        first, last = series[0], series[-1]
        if last > first * (1 + RSS_SLACK) + 16 * 2**20:
            raise LiveViolation(f"{name}: RSS grew from {first / 2**20:.0f} MiB after the first "
                                f"round to {last / 2**20:.0f} MiB after the last: {series}")


# -- the worlds -----------------------------------------------------------------------------


def standalone_world(report: Report, frames: int, admin: int, rounds: int, workers: int) -> None:
    from zkpy.testing.launchers import ZkpyServer, free_port

    admin_port = free_port()
    settings = dict(_COMMON, **{"admin.enableServer": "true", "admin.serverPort": admin_port,
                                "admin.serverAddress": "127.0.0.1"})
    props = dict(_PROPS, **{"zookeeper.admin.rateLimiterIntervalInMS": "0"})
    server = ZkpyServer(settings, system_properties=props, env=_ENV)
    failed = True
    try:
        server.start(timeout=60)
        series = report.rss.setdefault("standalone", [])
        for r in range(rounds):
            client_flood(report, [server.address], frames // rounds, report.seed, f"client{r}",
                         workers)
            admin_flood(report, ("127.0.0.1", admin_port), admin // rounds, report.seed + r,
                        workers)
            _settle([server], f"standalone round {r + 1}")
            series.append(rss(server))
            print(f"standalone round {r + 1}/{rounds}: {report.text()}", flush=True)
        failed = False
    finally:
        if failed:
            dump_stuck([server])
            print(f"standalone server log: {server.log_tail(80)}", file=sys.stderr)
        server.cleanup()


def ensemble_world(report: Report, frames: int, connections: int, rounds: int,
                   workers: int) -> None:
    from zkpy.testing.ensemble import Ensemble

    ensemble = Ensemble("zkpy", 3, dict(_COMMON), tick_time=200,
                        server_options={"system_properties": _PROPS, "env": _ENV})
    failed = True
    try:
        first = ensemble.start(timeout=90).myid
        servers = [m.server for m in ensemble.members]
        for r in range(rounds):
            addresses = [s.address for s in servers]
            with ThreadPoolExecutor(2) as both:
                clients = both.submit(client_flood, report, addresses, frames // rounds,
                                      report.seed, f"members{r}", max(workers // 2, 1))
                peers = both.submit(peer_flood, report, ensemble, connections // rounds,
                                    report.seed, f"peers{r}", max(workers // 2, 1))
                clients.result()
                peers.result()
            leader = ensemble.wait_for_quorum(60).myid
            _settle(servers, f"ensemble round {r + 1}", learners=2)
            if leader != first:
                raise LiveViolation(f"ensemble round {r + 1}: server {leader} leads, not "
                                    f"{first}: hostile connections from outside the ensemble "
                                    f"moved it\n{ensemble.log_tails()}")
            for m in ensemble.members:
                report.rss.setdefault(f"member {m.myid}", []).append(rss(m.server))
            print(f"ensemble round {r + 1}/{rounds}: {report.text()}", flush=True)
        failed = False
    finally:
        if failed:
            dump_stuck([m.server for m in ensemble.members])
        ensemble.cleanup(failed=failed)  # on failure the logs stay (it prints where)


def dump_stuck(servers: list[Any]) -> None:
    """A server that does not answer ``ruok`` in 5 s gets SIGABRT: faulthandler
    (PYTHONFAULTHANDLER, set for every server here) writes every thread's stack
    to its log before it dies, which tells a hang from a slow machine."""
    for server in servers:
        if not server.running or server.pid is None:
            continue
        try:
            if server.four_letter("ruok", timeout=5).strip() == "imok":
                continue
        except OSError:
            pass
        print(f"{server.connect_string} does not answer: SIGABRT for its stacks "
              f"(pid {server.pid})", file=sys.stderr, flush=True)
        os.kill(server.pid, signal.SIGABRT)


def _settle(servers: list[Any], what: str, learners: int | None = None) -> None:
    serves(servers, what)
    clean(servers[0])
    for server in servers:
        nothing_left(server, what, learners)


# -- the command line ---------------------------------------------------------------------------


def run(seed: int, frames: int, connections: int, admin: int, rounds: int,
        workers: int) -> Report:
    report = Report(seed)
    standalone_world(report, frames * 3 // 4, admin, rounds, workers)
    ensemble_world(report, frames // 4, connections, rounds, workers)
    bounded(report)
    return report


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m zkpy.testing.fuzz live",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="smoke")
    parser.add_argument("--seed", type=int, default=0)
    for name in ("frames", "connections", "admin", "rounds", "workers"):
        parser.add_argument(f"--{name}", type=int, default=None)
    args = parser.parse_args(argv)
    frames, connections, admin, rounds, workers = SCALES[args.scale]
    report = run(args.seed, args.frames or frames, args.connections or connections,
                 args.admin or admin, args.rounds or rounds, args.workers or workers)
    print("contract held: " + report.text())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
