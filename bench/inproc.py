"""Instructions per request through the standalone pipeline, in process (no sockets).

    python -m bench.inproc                    # this checkout
    python -m bench.inproc --tree /tmp/base   # another checkout's zkpy (git archive REV zkpy)

Counts, with valgrind's callgrind, the instructions one setData and one
getData cost through the whole standalone pipeline (decode, route, prep,
Zab, an in-memory disk, commit, reply, the host's real clock, and the
metrics folded as a tick would), as (workload - setup) / operations. Unlike
CPU time on a shared machine, an instruction count does not move with other load, so a change of
a few percent is seen (CPU time on 2 busy cores varies by 20 %).
``--run setData|getData|setup N`` is the workload itself (what valgrind runs).

    python -m bench.inproc --cpu /tmp/base .  # CPU time per request, interleaved
    python -m bench.inproc --size 3           # three members in one process

With ``--size 3`` the pipeline is an ensemble's (``zkpy.testing.replicasim``:
three members, each a core, a Zab peer and a replica, stepped as the quorum
links step them, a whole read per step), the clients spread over the members
as the benchmark's are, and every quorum packet encoded and split again on its
way (``zkpy.zab.messages``), so the count is every member's work for a
replicated write: the follower's forward, the leader's proposal and commit,
both followers' log and apply, the replies. Left out: the sockets, the
reactor, the log files (an in-memory disk) and the sim's own bookkeeping,
which is counted too but is the same for both trees.

CPU time per request (user and system, the trees' runs interleaved, medians)
counts what an instruction count cannot: system calls, such as a clock read
where the kernel offers no vDSO.
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import subprocess
import sys
from typing import Any

OPS = {"setData": 4000, "getData": 8000}


def _frame(*records: Any) -> bytes:
    body = b"".join(r.encode() for r in records)
    return struct.pack(">i", len(body)) + body


def _setup() -> tuple[Any, Any, list[Any], list[bytes]]:
    from zkpy.jute import schema as S
    from zkpy.jute.protocol import Op
    from zkpy.net.host import SystemHost
    from zkpy.server.core import CoreSettings
    from zkpy.testing.standalone import MemoryDisk, standalone

    open_acl = [S.ACL(31, S.Id("world", "anyone"))]
    disk = MemoryDisk()
    # The real host: its clock is what the core times its stages with.
    core = standalone(CoreSettings(), 1_700_000_000_000, disk, host=SystemHost()).core
    out: list[bytes] = []
    conns = []
    for i in range(10):
        c = core.connect("127.0.0.1", 40000 + i, out.append, lambda: None, core.now)
        c.receive(_frame(S.ConnectRequest(0, 0, 10000, 0, bytes(16), False)), core.now)
        core.flush()
        conns.append(c)
    conns[0].receive(_frame(S.RequestHeader(1, Op.create), S.CreateRequest("/k", b"", open_acl, 0)),
                     core.now)
    for i in range(100):
        conns[0].receive(_frame(S.RequestHeader(2 + i, Op.create),
                                S.CreateRequest(f"/k/{i}", b"x" * 1024, open_acl, 0)), core.now)
    core.flush()
    return disk, core, conns, out


def _setup_ensemble(size: int) -> tuple[Any, list[Any], list[bytes]]:
    """An ensemble of ``size`` in one process, stable, with 10 connections on
    each member and the same znodes as ``_setup``; returns (sim, conns, out)."""
    from zkpy.jute import schema as S
    from zkpy.jute.protocol import Op
    from zkpy.testing.replicasim import Sim
    from zkpy.zab import messages as m

    class WireSim(Sim):
        """Each quorum packet goes through the wire's encoding and back."""

        def _send(self, i: int, d: int, pkt: Any) -> None:
            data = m.encode_packet(pkt)
            split = m.split_packet(data)
            assert split is not None
            super()._send(i, d, split[0])

    class NoWitness:
        def see(self, member: Any, tree: Any) -> None:
            pass  # (the sim's digest check is a test's, not a server's work)

    sim = WireSim(size)
    sim.digests = NoWitness()  # type: ignore[assignment]
    sim.batch_reads = True  # one step per read, as zkpy.net.peerlinks
    sim.wait_stable()
    open_acl = [S.ACL(31, S.Id("world", "anyone"))]
    out: list[bytes] = []
    conns = []
    for member in sim.members.values():
        core = member.core
        for _ in range(10):
            c = core.connect("127.0.0.1", 40000 + len(conns), out.append, lambda: None, sim.now)
            c.receive(_frame(S.ConnectRequest(0, 0, 10000, 0, bytes(16), False)), sim.now)
            core.flush()
            sim.settle()
            conns.append(c)
    conns[0].receive(_frame(S.RequestHeader(1, Op.create), S.CreateRequest("/k", b"", open_acl, 0)),
                     sim.now)
    sim.settle()
    for i in range(100):
        conns[0].receive(_frame(S.RequestHeader(2 + i, Op.create),
                                S.CreateRequest(f"/k/{i}", b"x" * 1024, open_acl, 0)), sim.now)
    conns[0].core.flush()
    sim.settle()
    assert all(len(mb.core.tree) >= 101 for mb in sim.members.values())
    return sim, conns, out


def _requests(op: str, n: int) -> list[bytes] | None:
    """The workload's ``n`` framed requests over /k/0../k/99 (None: ``setup``,
    no workload)."""
    from zkpy.jute import schema as S
    from zkpy.jute.protocol import Op

    if op == "setData":
        return [_frame(S.RequestHeader(1000 + i, Op.setData),
                       S.SetDataRequest(f"/k/{i % 100}", b"y" * 1024, -1)) for i in range(n)]
    if op == "getData":
        return [_frame(S.RequestHeader(1000 + i, Op.getData),
                       S.GetDataRequest(f"/k/{i % 100}", False)) for i in range(n)]
    return None


def _as_a_server() -> None:
    """The collector as a server runs it once started (``zkpy.net.heap.settle``:
    what is alive frozen, young collections every 200,000 net allocations), so the
    count is the server's, not the default collector's."""
    from zkpy.net import heap

    heap.settle()


def run_ensemble(size: int, op: str, n: int) -> float:
    """The workload on an ensemble: requests spread over every member's
    connections, the ensemble settled every 100; returns its CPU seconds."""
    import time

    sim, conns, out = _setup_ensemble(size)
    _as_a_server()
    reqs = _requests(op, n)
    if reqs is None:
        return 0.0
    cores = [mb.core for mb in sim.members.values()]
    started = time.process_time()
    for i, r in enumerate(reqs):
        c = conns[i % len(conns)]
        c.receive(r, sim.now)
        if i % 100 == 99:
            for core in cores:
                core.flush()
            sim.settle()
            out.clear()
    for core in cores:
        core.flush()
    sim.settle()
    for core in cores:
        core.fold_metrics()  # what the next tick does with what the requests noted
    elapsed = time.process_time() - started
    if op == "setData":  # every member applied every write
        assert {mb.peer.applied for mb in sim.members.values()} == {sim.leader().peer.applied}
    return elapsed


def run(op: str, n: int) -> float:
    """The workload; returns the CPU seconds (user and system) it took."""
    import time

    disk, core, conns, out = _setup()
    _as_a_server()
    reqs = _requests(op, n)
    if reqs is None:
        return 0.0
    if op == "setData":
        disk.hold()
    started = time.process_time()
    for i, r in enumerate(reqs):
        conns[i % 10].receive(r, core.now)
        if i % 100 == 99:
            core.flush()
            if op == "setData":
                disk.sync()
            out.clear()
    disk.release()
    core.flush()
    fold = getattr(core, "fold_metrics", None)
    if fold is not None:
        fold()  # what the next tick does with what the requests noted
    return time.process_time() - started


def _instructions(tree: str, op: str, n: int, size: int) -> int:
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           "-m", "bench.inproc", "--run", op, str(n), "--size", str(size)]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(cmd, env=env, cwd=here, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(done.stderr[-2000:])
    return int(found.group(1))


def _cpu_us(tree: str, op: str, n: int, size: int) -> float:
    """CPU microseconds per request of one run of the workload (not under valgrind)."""
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = [sys.executable, "-m", "bench.inproc", "--run", op, str(n), "--print-cpu",
           "--size", str(size)]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(cmd, env=env, cwd=here, capture_output=True, text=True, check=True)
    return float(done.stdout.strip()) * 1e6 / n


def compare_cpu(trees: list[str], rounds: int, size: int) -> None:
    """CPU time per request, the trees' runs interleaved ``rounds`` times; the
    median of each. CPU time counts what instructions do not: system calls (a
    clock read is one where the kernel offers no vDSO, as in some sandboxes)."""
    for op, n in OPS.items():
        runs: dict[str, list[float]] = {t: [] for t in trees}
        for _ in range(rounds):
            for tree in trees:
                runs[tree].append(_cpu_us(tree, op, n * 5, size))
        for tree in trees:
            ordered = sorted(runs[tree])
            print(f"{tree}: {op} {ordered[len(ordered) // 2]:.1f} us CPU per request "
                  f"(median of {rounds}; {ordered[0]:.1f}-{ordered[-1]:.1f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", default=os.getcwd(),
                        help="the directory holding the zkpy package to measure")
    parser.add_argument("--cpu", nargs="*", metavar="TREE",
                        help="CPU time per request instead, interleaving these trees' runs "
                             "(default: --tree)")
    parser.add_argument("--rounds", type=int, default=7, help="runs per tree with --cpu")
    parser.add_argument("--size", type=int, default=1,
                        help="1: a standalone server; more: an ensemble of that many members")
    parser.add_argument("--run", nargs=2, metavar=("OP", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--print-cpu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        sys.path.insert(0, os.environ.get("PYTHONPATH", "."))
        op, n = args.run[0], int(args.run[1])
        cpu = run(op, n) if args.size == 1 else run_ensemble(args.size, op, n)
        if args.print_cpu:
            print(cpu)
        return 0
    if args.cpu is not None:
        compare_cpu([os.path.abspath(t) for t in args.cpu or [args.tree]], args.rounds, args.size)
        return 0
    tree = os.path.abspath(args.tree)
    base = _instructions(tree, "setup", 0, args.size)
    where = "standalone" if args.size == 1 else f"{args.size} members"
    for op, n in OPS.items():
        per_op = (_instructions(tree, op, n, args.size) - base) / n
        print(f"{tree}: {op} {per_op:,.0f} instructions per request ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
