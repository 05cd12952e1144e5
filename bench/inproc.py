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


def run(op: str, n: int) -> float:
    """The workload; returns the CPU seconds (user and system) it took."""
    import time

    from zkpy.jute import schema as S
    from zkpy.jute.protocol import Op

    disk, core, conns, out = _setup()
    if op == "setData":
        reqs = [_frame(S.RequestHeader(1000 + i, Op.setData),
                       S.SetDataRequest(f"/k/{i % 100}", b"y" * 1024, -1)) for i in range(n)]
        disk.hold()
    elif op == "getData":
        reqs = [_frame(S.RequestHeader(1000 + i, Op.getData),
                       S.GetDataRequest(f"/k/{i % 100}", False)) for i in range(n)]
    else:
        return 0.0
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


def _instructions(tree: str, op: str, n: int) -> int:
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
           "-m", "bench.inproc", "--run", op, str(n)]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(cmd, env=env, cwd=here, capture_output=True, text=True, check=True)
    found = re.search(r"Collected : (\d+)", done.stderr)
    if found is None:
        raise RuntimeError(done.stderr[-2000:])
    return int(found.group(1))


def _cpu_us(tree: str, op: str, n: int) -> float:
    """CPU microseconds per request of one run of the workload (not under valgrind)."""
    env = dict(os.environ, PYTHONPATH=tree)
    cmd = [sys.executable, "-m", "bench.inproc", "--run", op, str(n), "--print-cpu"]
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(cmd, env=env, cwd=here, capture_output=True, text=True, check=True)
    return float(done.stdout.strip()) * 1e6 / n


def compare_cpu(trees: list[str], rounds: int) -> None:
    """CPU time per request, the trees' runs interleaved ``rounds`` times; the
    median of each. CPU time counts what instructions do not: system calls (a
    clock read is one where the kernel offers no vDSO, as in some sandboxes)."""
    for op, n in OPS.items():
        runs: dict[str, list[float]] = {t: [] for t in trees}
        for _ in range(rounds):
            for tree in trees:
                runs[tree].append(_cpu_us(tree, op, n * 5))
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
    parser.add_argument("--run", nargs=2, metavar=("OP", "N"), help=argparse.SUPPRESS)
    parser.add_argument("--print-cpu", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        sys.path.insert(0, os.environ.get("PYTHONPATH", "."))
        cpu = run(args.run[0], int(args.run[1]))
        if args.print_cpu:
            print(cpu)
        return 0
    if args.cpu is not None:
        compare_cpu([os.path.abspath(t) for t in args.cpu or [args.tree]], args.rounds)
        return 0
    tree = os.path.abspath(args.tree)
    base = _instructions(tree, "setup", 0)
    for op, n in OPS.items():
        per_op = (_instructions(tree, op, n) - base) / n
        print(f"{tree}: {op} {per_op:,.0f} instructions per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
