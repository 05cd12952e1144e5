"""zkbench: zkpy beside Apache ZooKeeper (or zkpy beside an older zkpy),
measured the same way.  See bench/README.md.

    python -m bench.zkbench --servers zkpy,zookeeper --sizes 1,3 --loads heavy
    python -m bench.zkbench --servers zkpy@main,zkpy --sizes 3 --loads heavy
    python -m bench.zkbench --parts memory,restart,snap,watches,sessions
    python -m bench.zkbench --smoke          # CI: every part, tiny, < 1 min

Parts: ``throughput`` and ``latency`` run per group (each ``--sizes`` x
``--force-sync`` value: every kind's servers started once and kept running
while the measured load alternates between them); ``memory``, ``restart``,
``snap``, ``watches``, ``sessions`` start their own servers; ``generator``
measures the load generator alone.  Exit status 1 when any phase failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import shutil
import sys
import time

from bench import gencheck, latency, throughput
from bench.measure import Log, create_keys, remove_keys
from bench.probe import find_listening_pid, machine_info, machine_lines
from bench.scale import run as run_scale
from bench.scale_clients import sessions as scale_sessions
from bench.scale_clients import watches as scale_watches
from bench.scale_tree import memory as scale_memory
from bench.scale_tree import restart as scale_restart
from bench.scale_tree import snap as scale_snap
from bench.targets import (
    ExternalTarget,
    Kind,
    RevisionCheckout,
    Target,
    parse_kinds,
    server_settings,
)

GROUP_PARTS = ("throughput", "latency")
SCALE_PARTS = {  # part: (function, table columns: key, header, format, compared)
    "memory": (scale_memory, [
        ("znodes", "znodes", ",.0f", False), ("rss_per_znode", "RSS B/znode", ",.0f", True),
        ("heap_per_znode", "heap B/znode", ",.0f", True), ("rss_after_mib", "RSS MiB", ",.0f", True),
        ("create_ops_per_s", "creates/s", ",.0f", True),
        ("create_cpu_us_per_op", "us CPU/create", ".1f", True)]),
    "restart": (scale_restart, [
        ("znodes", "znodes", ",.0f", False), ("restart_s", "ready s", ".2f", True),
        ("rss_mib", "RSS MiB", ",.0f", True)]),
    "snap": (scale_snap, [
        ("join_s", "join s", ".2f", True), ("before_p99_us", "p99 before us", ",.0f", True),
        ("during_p50_us", "p50 SNAP us", ",.0f", True),
        ("during_p99_us", "p99 SNAP us", ",.0f", True),
        ("during_max_us", "max SNAP us", ",.0f", True),
        ("leader_cpu_s", "leader CPU s", ".2f", True),
        ("disconnects", "probe lost", ",.0f", False)]),
    "watches": (scale_watches, [
        ("watches", "watches", ",.0f", False), ("rss_per_watch", "RSS B/watch", ",.0f", True),
        ("heap_per_watch", "heap B/watch", ",.0f", True), ("fired_per_s", "fired/s", ",.0f", True),
        ("fire_cpu_us_per_watch", "us CPU/fired", ".2f", True), ("fire_s", "fire s", ".2f", True)]),
    "sessions": (scale_sessions, [
        ("sessions", "sessions", ",.0f", False), ("pings_per_s", "pings/s", ",.0f", False),
        ("server_cores", "server cores", ".3f", True),
        ("cpu_us_per_ping", "us CPU/ping", ".1f", True),
        ("rss_per_session", "RSS B/session", ",.0f", True),
        ("rtt_p99_us", "ping p99 us", ",.0f", True), ("open_s", "open s", ".1f", True)]),
}
ALL_PARTS = ("generator", *GROUP_PARTS, *SCALE_PARTS)
SMOKE = dict(sizes="1,3", force_sync="on", loads="8x8", reads="0,90", rounds=2,
             window=0.5, settle=0.1, warmup_window=0.3, warmup_min=0.0, warmup_max=1.0,
             steady_windows=2, steady_tolerance=10.0, latency_ops=30, latency_warm_ops=10, latency_warmup_max=1.0,
             parts=",".join(ALL_PARTS), scale_znodes=2000, scale_rounds=1, watch_znodes=50,
             watch_sessions=10, ping_sessions=100, ping_seconds=1.5, ping_interval=0.5,
             snap_baseline=0.3, scale_heap="512m", heap="512m", quiet=0.2)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.zkbench", description=__doc__.split("\n")[0])
    a = p.add_argument
    a("--servers", default="zkpy,zookeeper",
      help="kinds, in A-B order: zkpy, zkpy@<git-rev>, zookeeper; a zkpy kind may end in "
           "+mypyc or +pure (the compiled accelerator or not) (default zkpy,zookeeper)")
    a("--connect", metavar="HOST:PORT[,...]", help="measure servers already running instead "
      "(throughput and latency only; CPU/RSS need --server-pid)")
    a("--server-pid", default="", help="with --connect: comma-separated pids of the members")
    a("--parts", default="throughput,latency",
      help="comma-separated, or 'all': %s (default throughput,latency)" % ",".join(ALL_PARTS))
    a("--smoke", action="store_true", help="CI smoke run: every part, tiny sizes, < 1 min")
    g = p.add_argument_group("groups (throughput, latency)")
    g.add_argument("--sizes", default="1,3", help="1 = standalone, N = N-server ensemble (default 1,3)")
    g.add_argument("--force-sync", default="on", help="on, off or on,off (default on, as shipped)")
    g.add_argument("--loads", default="heavy", help="light (32x32), heavy (100x100), heavy250 "
                   "(250x100) or SESSIONSxINFLIGHT, comma-separated (default heavy)")
    g.add_argument("--reads", default="0,50,90,100", help="read percentages (default 0,50,90,100)")
    g.add_argument("--rounds", type=int, default=3, help="A-B-A-B rounds (default 3)")
    g.add_argument("--pin-servers", default=None, metavar="CPUS",
                   help="pin every server process (all its threads) to these CPUs, e.g. 1, and "
                        "the load generators to the others: on a machine whose CPUs differ in "
                        "speed from moment to moment, servers compared --together then share one")
    g.add_argument("--together", action="store_true",
                   help="measure every kind in the same window, each under its own load, "
                        "instead of one after another: for two builds of one server, whose "
                        "difference is smaller than this machine's drift between windows")
    g.add_argument("--window", type=float, default=5.0, help="seconds per measured window")
    g.add_argument("--settle", type=float, default=1.0,
                   help="seconds of load before each window's measurement starts (default 1); "
                        "the drain after it is not measured either")
    g.add_argument("--warmup-window", type=float, default=2.0, help="seconds per warm-up window")
    g.add_argument("--warmup-min", type=float, default=10.0, help="warm up at least this long (s)")
    g.add_argument("--warmup-max", type=float, default=180.0, help="warm-up cap (s)")
    g.add_argument("--steady-windows", type=int, default=3,
                   help="steady when the last N windows of every mix agree (default 3)")
    g.add_argument("--steady-tolerance", type=float, default=0.05,
                   help="... within this fraction: (max-min)/median (default 0.05)")
    g.add_argument("--steady-on", choices=("ops", "cpu", "both"), default="ops",
                   help="the figure that must be steady: ops/s, server CPU per op, or both "
                        "(default ops)")
    g.add_argument("--workers", type=int, default=2, help="load generator processes (default 2)")
    g.add_argument("--keys", type=int, default=1000, help="znodes the mixes use (default 1000)")
    g.add_argument("--value-size", type=int, default=1024, help="bytes per value (default 1024)")
    g.add_argument("--max-ops", type=int, default=None, help="request cap per window")
    g.add_argument("--latency-ops", type=int, default=1000,
                   help="sequential ops of each kind per latency round (default 1000)")
    g.add_argument("--latency-warm-ops", type=int, default=500,
                   help="ops of each kind per latency warm-up cycle (default 500)")
    g.add_argument("--latency-warmup-max", type=float, default=60.0,
                   help="cap of the latency warm-up in s (default 60; the servers have "
                        "already been warmed by the throughput part when it runs)")
    g.add_argument("--heap", default="1g", help="Apache ZooKeeper -Xmx for groups (default 1g)")
    s = p.add_argument_group("scale parts")
    s.add_argument("--scale-znodes", type=int, default=1_000_000, help="znodes (default 1M)")
    s.add_argument("--znode-size", type=int, default=100, help="bytes per znode (default 100)")
    s.add_argument("--scale-sessions", type=int, default=8, help="sessions creating the znodes")
    s.add_argument("--scale-rounds", type=int, default=1, help="A-B rounds per part (default 1)")
    s.add_argument("--scale-heap", default="2g", help="Apache ZooKeeper -Xmx (default 2g)")
    s.add_argument("--scale-force-sync", default="on", help="on or off (default on)")
    s.add_argument("--quiet", type=float, default=2.0,
                   help="seconds a server is left alone before its RSS is read (default 2)")
    s.add_argument("--snap-baseline", type=float, default=3.0,
                   help="seconds of probe before the follower is restarted (default 3)")
    s.add_argument("--watch-znodes", type=int, default=10_000, help="watched znodes (default 10000)")
    s.add_argument("--watch-sessions", type=int, default=100,
                   help="sessions watching every one of them (default 100: 1M watches)")
    s.add_argument("--ping-sessions", type=int, default=10_000, help="sessions (default 10000)")
    s.add_argument("--ping-seconds", type=float, default=30.0, help="seconds of pings (default 30)")
    s.add_argument("--ping-interval", type=float, default=None,
                   help="seconds between one session's pings (default a third of its timeout)")
    o = p.add_argument_group("output")
    o.add_argument("--ratios", default=None, help="pairs to compare, e.g. zkpy/zookeeper,zkpy/zkpy@main "
                   "(default: every kind against zookeeper, zkpy against each zkpy@rev)")
    o.add_argument("--json", metavar="FILE", help="write every window and summary to FILE")
    o.add_argument("--seed", type=int, default=1)
    o.add_argument("--timeout", type=float, default=60.0, help="idle/socket timeout (default 60 s)")
    o.add_argument("--keep-logs", action="store_true", help="keep the servers' directories")
    args = p.parse_args(argv)
    if args.smoke:
        explicit = {x.split("=")[0].lstrip("-").replace("-", "_") for x in (argv or sys.argv[1:])}
        for k, v in SMOKE.items():
            if k not in explicit:
                setattr(args, k, v)
    try:
        _normalise(args)
    except ValueError as exc:
        p.error(str(exc))
    return args


def _normalise(args: argparse.Namespace) -> None:
    args.reads = [float(x) for x in str(args.reads).split(",") if x.strip()]
    if any(not 0 <= x <= 100 for x in args.reads):
        raise ValueError("--reads: percentages between 0 and 100")
    args.sizes_list = [int(x) for x in str(args.sizes).split(",") if x.strip()]
    if any(n < 1 for n in args.sizes_list):
        raise ValueError("--sizes: positive numbers")
    flags = {"on": True, "yes": True, "off": False, "no": False}
    try:
        args.fsync_list = [flags[x.strip()] for x in str(args.force_sync).split(",") if x.strip()]
        args.scale_force_sync = flags[str(args.scale_force_sync).strip()]
    except KeyError as exc:
        raise ValueError("--force-sync: on, off or on,off (not %s)" % exc) from None
    parts = [x.strip() for x in str(args.parts).split(",") if x.strip()]
    args.parts_list = list(ALL_PARTS) if parts == ["all"] else parts
    unknown = [x for x in args.parts_list if x not in ALL_PARTS]
    if unknown:
        raise ValueError("--parts: unknown %s (known: %s)" % (unknown, ", ".join(ALL_PARTS)))
    args.loads_list = throughput.parse_loads(args.loads)
    args.kinds = [] if args.connect else parse_kinds(args.servers)
    if args.connect and any(x in SCALE_PARTS for x in args.parts_list):
        raise ValueError("--connect measures throughput and latency only")
    if args.rounds < 1 or args.workers < 1 or args.steady_windows < 1:
        raise ValueError("--rounds, --workers and --steady-windows must be positive")


def run_group(targets: list, args, log: Log, title: str) -> dict:
    """Start every target, create the keys, run throughput and latency."""
    out: dict = {"title": title, "loads": [], "failures": []}
    started: list = []
    try:
        for t in targets:
            t0 = time.monotonic()
            t.start(timeout=args.timeout + 60)
            started.append(t)
            log("  started %s in %.1f s" % (t.describe(), time.monotonic() - t0))
        keys = {}
        for t in targets:
            keys[t.label] = create_keys(t, args.keys, args.value_size, args.timeout)
        if "throughput" in args.parts_list:
            for load in args.loads_list:
                res = throughput.run(targets, keys[targets[0].label], load, args, log, title)
                out["loads"].append(res)
                out["failures"] += res["failures"]
        if "latency" in args.parts_list:
            out["latency"] = latency.run(targets, args, log, title)
            out["failures"] += out["latency"]["failures"]
        for t in targets:
            if isinstance(t, ExternalTarget):  # not ours: leave it as we found it
                remove_keys(t, keys[t.label], args.timeout)
    except Exception as exc:
        out["failures"].append("%s: %s: %s" % (title, type(exc).__name__, exc))
        log("  %s FAILED: %s: %s" % (title, type(exc).__name__, exc))
    finally:
        for t in targets:
            problems = t.log_problems()
            if problems:
                out.setdefault("log_problems", {})[t.label] = problems
                log("  [%s] %d suspicious line(s) in the server logs, e.g.: %s"
                    % (t.label, len(problems), problems[0]))
            failed = bool(out["failures"])
            if failed and t in started:
                log("  [%s] logs kept in %s; tail:" % (t.label, t.workdir))
                for ln in t.log_tails(10).splitlines():
                    log("    | " + ln)
            t.cleanup(failed=failed or args.keep_logs)
    return out


def header(args, log: Log, cmd: str, machine: dict) -> None:
    log("command: " + cmd)
    for line in machine_lines(machine):
        log(line)
    log("parts:   %s" % ", ".join(args.parts_list))
    if any(x in GROUP_PARTS for x in args.parts_list):
        log("groups:  sizes %s x forceSync %s; loads %s; reads %s %%; %d rounds A-B-A-B of %g s "
            "windows (each after %g s of unmeasured load; the drain after it unmeasured); warm-up: %g s windows cycling the mixes until "
            "the last %d of each agree within %.0f%% on %s (at least %g s, at most %g s)" % (
                ",".join(map(str, args.sizes_list)),
                ",".join("yes" if f else "no" for f in args.fsync_list),
                ", ".join("%s=%s" % (ld.name, ld.shape) for ld in args.loads_list),
                ",".join("%g" % x for x in args.reads), args.rounds, args.window, args.settle,
                args.warmup_window, args.steady_windows, 100 * args.steady_tolerance,
                {"ops": "ops/s", "cpu": "CPU/op", "both": "ops/s and CPU/op"}[args.steady_on],
                args.warmup_min, args.warmup_max))
    log("zoo.cfg: " + " ".join("%s=%s" % kv for kv in server_settings(True).items()
                               if kv[0] != "forceSync") + " forceSync=<per group>; "
        "Apache ZooKeeper -Xmx%s (scale parts -Xmx%s), other JVM options default"
        % (args.heap, args.scale_heap))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    lines: list[str] = []

    def log(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    cmd = "python -m bench.zkbench " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = machine_info()
    header(args, log, cmd, machine)
    results: dict = {"groups": [], "scale": {}, "failures": []}
    ctx: dict = {"checkouts": {}, "log": log, "cleanup_dirs": []}
    checkouts: list[RevisionCheckout] = []
    try:
        for k in args.kinds:
            if k.rev:
                co = RevisionCheckout(k.rev, compiled=k.accel == "require")
                checkouts.append(co)
                ctx["checkouts"][k.label] = co.dir
                log("%s: git %s, its zkpy/ exported to %s" % (k.label, co.sha[:12], co.dir))
        if "generator" in args.parts_list:
            g = gencheck.run(args, log)
            results["generator"] = g
            results["failures"] += g["failures"]
        if any(x in GROUP_PARTS for x in args.parts_list):
            for group in _groups(args, ctx, log):
                results["groups"].append(group)
                results["failures"] += group["failures"]
        for name in (x for x in args.parts_list if x in SCALE_PARTS):
            log("")
            log("scale part %s" % name)
            fn, columns = SCALE_PARTS[name]
            res = run_scale(name, fn, args.kinds, args, log, ctx, columns, _caption(name, args))
            results["scale"][name] = res
            results["failures"] += res["failures"]
    finally:
        for co in checkouts:
            co.cleanup()
        for d in ctx["cleanup_dirs"]:
            shutil.rmtree(d, ignore_errors=True)
    log("")
    if results["failures"]:
        log("FAILED (%d):" % len(results["failures"]))
        for f in results["failures"]:
            log("  " + f)
    else:
        log("every phase succeeded; no error replies")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": cmd, "machine": machine, "args": vars(args), "results": results,
                       "output": lines}, fh, indent=1, default=_json_default)
        print("results written to %s" % args.json)
    return 1 if results["failures"] else 0


def _groups(args, ctx: dict, log: Log):
    if args.connect:
        addrs = []
        for item in args.connect.split(","):
            host, _, port = item.strip().rpartition(":")
            addrs.append((host or "127.0.0.1", int(port)))
        pids = [int(x) for x in args.server_pid.split(",") if x.strip()]
        if not pids:
            pids = [p for p in (find_listening_pid(port) for _, port in addrs) if p]
        target = ExternalTarget(args.connect, addrs, pids)
        log("")
        log("group: %s" % target.describe())
        yield run_group([target], args, log, args.connect)
        return
    for fsync in args.fsync_list:
        for size in args.sizes_list:
            title = "%s, forceSync=%s" % ("standalone" if size == 1 else "%d servers" % size,
                                          "yes" if fsync else "no")
            log("")
            log("group: %s; every kind started once, kept running, the load alternating" % title)
            targets = [_target(k, size, fsync, args, ctx) for k in args.kinds]
            yield run_group(targets, args, log, title)


def _target(kind: Kind, size: int, fsync: bool, args, ctx: dict) -> Target:
    return Target(kind, size, server_settings(fsync), heap=args.heap,
                  source_root=ctx["checkouts"].get(kind.label))


def _caption(name: str, args) -> str:
    fs = "forceSync=%s" % ("yes" if args.scale_force_sync else "no")
    return {
        "memory": "standalone, %d znodes of %d B created through the client port"
                  % (args.scale_znodes, args.znode_size),
        "restart": "standalone started from a snapshot of %d znodes of %d B" % (
            args.scale_znodes, args.znode_size),
        "snap": "3 servers seeded with %d znodes of %d B; a wiped follower rejoins; the probe "
                "does one request at a time on the leader" % (args.scale_znodes, args.znode_size),
        "watches": "standalone, %d sessions x %d znodes = %d data watches, then every znode set "
                   "once" % (args.watch_sessions, args.watch_znodes,
                             args.watch_sessions * args.watch_znodes),
        "sessions": "standalone, %d sessions pinging for %g s" % (args.ping_sessions,
                                                                  args.ping_seconds),
    }[name] + "; " + fs


def _json_default(o: object) -> object:
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    return str(o)


if __name__ == "__main__":
    sys.exit(main())
