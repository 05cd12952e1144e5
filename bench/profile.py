"""Where a zkpy server's time goes under the benchmark's load: py-spy on a leader and a follower.

    python -m bench.profile --size 3 --reads 0          # 3 servers, writes only
    python -m bench.profile --size 1 --reads 50         # standalone

Starts zkpy (pure Python unless the accelerator is built), puts the
benchmark's load on it (``bench.zkbench --connect``, heavy by default, every
reply checked), waits ``--warmup`` seconds, then samples the leader and one
follower (standalone: the server) with ``py-spy record`` for ``--seconds``
and prints, for each, the call tree of its event-loop thread with the idle
samples (waiting in ``epoll_wait``) left out, and the functions with the
most samples of their own. The raw samples stay in ``--out`` for other cuts
(``py-spy`` is not a dependency: ``pip install py-spy``).

A profile says where the time goes, not how fast anything is: figures for
comparison come from ``bench.zkbench`` (see bench/README.md).
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from bench.targets import Kind, Target, server_settings

# A sample is idle when the event loop waits for I/O, or the log thread for work.
_IDLE = ("epollreactor.py:", "disk.py:")
_IDLE_CALLS = ("EPollReactor.doPoll", "LogThread._run")
_LOOP = "ReactorBase.mainLoop"
# py-spy names a module by its path below sys.path's entry, or in full.
_OURS = re.compile(r"[(/]zkpy/")


def _frame(f: str) -> str:
    """``name (path/to/module.py:123)`` -> ``name (module.py)``."""
    return re.sub(r" \((?:.*/)?([^/:]+\.py):\d+\)$", r" (\1)", f)


def parse_raw(lines: Iterable[str]) -> list[tuple[list[str], int]]:
    """py-spy's ``--format raw`` (folded stacks: ``a;b;c count``), outermost first."""
    out = []
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            out.append((stack.split(";"), int(count)))
    return out


def busy_loop_samples(samples: list[tuple[list[str], int]]) -> list[tuple[list[str], int]]:
    """The event-loop thread's busy samples (idle ones left out), each stack
    from the first zkpy frame below the reactor's main loop."""
    busy = []
    for frames, n in samples:
        try:
            at = next(i for i, f in enumerate(frames) if f.startswith(_LOOP))
        except StopIteration:
            continue  # another thread
        leaf = frames[-1]
        if leaf.startswith(_IDLE_CALLS) and any(k in leaf for k in _IDLE):
            continue
        # Twisted's frames above zkpy's first say only how the reactor got
        # there: the tree starts at the first zkpy frame (or, for time spent
        # in Twisted alone, at the reactor's own frame that was running).
        ours = next((i for i in range(at + 1, len(frames)) if _OURS.search(frames[i])), None)
        if ours is None:
            busy.append(([f"(the reactor) {_frame(leaf)}"], n))
        else:
            busy.append(([_frame(f) for f in frames[ours:]], n))
    return busy


def tree(samples: list[tuple[list[str], int]], depth: int, min_share: float) -> list[str]:
    """The call tree, each line ``share% name``, children by share, cut at ``depth``
    levels and below ``min_share`` percent of all samples."""
    root: dict[str, list] = {}
    for frames, n in samples:
        node = root
        for f in frames[:depth]:
            entry = node.setdefault(f, [0, {}])
            entry[0] += n
            node = entry[1]
    total = sum(n for _, n in samples) or 1
    lines: list[str] = []

    def walk(node: dict[str, list], indent: int) -> None:
        for name, (n, children) in sorted(node.items(), key=lambda kv: -kv[1][0]):
            if 100 * n / total >= min_share:
                lines.append(f"{'  ' * indent}{100 * n / total:5.1f}% {name}")
                walk(children, indent + 1)
    walk(root, 0)
    return lines


def self_top(samples: list[tuple[list[str], int]], count: int) -> list[tuple[str, int]]:
    """The functions with the most samples of their own (the leaf of a stack)."""
    own: collections.Counter[str] = collections.Counter()
    for frames, n in samples:
        if frames:
            own[frames[-1]] += n
    return own.most_common(count)


def report(name: str, raw: Path, depth: int, min_share: float) -> None:
    samples = parse_raw(raw.read_text().splitlines())
    busy = busy_loop_samples(samples)
    total = sum(n for _, n in busy)
    print(f"\n== {name}: {total} busy samples of its event-loop thread ({raw}) ==")
    for line in tree(busy, depth, min_share):
        print(line)
    print(f"-- most samples of their own ({name})")
    for f, n in self_top(busy, 15):
        print(f"{100 * n / max(total, 1):5.1f}% {f}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=3, help="1 = standalone, 3 = three servers")
    p.add_argument("--reads", type=int, default=0, help="read percentage of the load")
    p.add_argument("--load", default="heavy", help="as bench.zkbench --loads")
    p.add_argument("--warmup", type=float, default=20, help="seconds of load before sampling")
    p.add_argument("--seconds", type=int, default=20, help="seconds of sampling")
    p.add_argument("--rate", type=int, default=200, help="samples per second")
    p.add_argument("--depth", type=int, default=14, help="levels of the tree to print")
    p.add_argument("--min-share", type=float, default=1.0, help="leave out below this %%")
    p.add_argument("--out", default="profile-out", help="where the raw samples go")
    args = p.parse_args(argv)
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy is not installed (pip install py-spy)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # The servers as zkbench runs them (its zoo.cfg, forceSync as shipped).
    target = Target(Kind("zkpy", "zkpy"), args.size, server_settings(force_sync=True))
    load = None
    try:
        target.start()
        servers = target.servers
        if args.size == 1:
            targets = {"server": servers[0].pid}
        else:
            leader, follower = target.leader_index(), target.follower_index()
            if leader is None or follower is None:
                print(f"no leader and follower to sample: {target.modes()}", file=sys.stderr)
                return 1
            targets = {"leader": servers[leader].pid, "follower": servers[follower].pid}
        budget = args.warmup + args.seconds + 30
        load = subprocess.Popen(
            [sys.executable, "-m", "bench.zkbench",
             "--connect", ",".join("%s:%d" % a for a in target.addrs),
             "--server-pid", ",".join(map(str, target.pids)), "--parts", "throughput",
             "--reads", str(args.reads), "--loads", args.load, "--rounds", "50",
             "--warmup-min", str(budget), "--warmup-max", str(budget)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)  # its generator processes go with it (killpg)
        time.sleep(args.warmup)
        if load.poll() is not None:
            print(f"the load ended early (exit {load.returncode})", file=sys.stderr)
            return 1
        spies = {name: subprocess.Popen(
            [spy, "record", "-r", str(args.rate), "-d", str(args.seconds), "-f", "raw",
             "-o", str(out / f"{name}.txt"), "-p", str(pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for name, pid in targets.items()}
        errors = {name: proc.communicate()[1] for name, proc in spies.items()}
        failed = [name for name, proc in spies.items() if proc.returncode]
        for name in failed:
            print(f"py-spy failed on the {name} (it needs ptrace rights):\n{errors[name]}",
                  file=sys.stderr)
        if failed:
            return 1
    finally:
        if load is not None:
            try:
                os.killpg(load.pid, signal.SIGTERM)  # zkbench and its generators
            except ProcessLookupError:
                pass
            load.wait(timeout=30)
        target.cleanup()
    print(f"zkpy {args.size} server(s), load {args.load}, {args.reads} % reads, "
          f"{args.seconds:g} s at {args.rate} Hz after {args.warmup:g} s "
          f"(ZKPY_ACCEL={os.environ.get('ZKPY_ACCEL', 'auto')})")
    for name in targets:
        report(name, out / f"{name}.txt", args.depth, args.min_share)
    return 0


if __name__ == "__main__":
    sys.exit(main())
