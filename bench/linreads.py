"""linearizableReads beside sync+read and plain reads, on 3-member zkpy ensembles.

    python -m bench.linreads [--seconds 5] [--rounds 3] [--sessions 48] [--in-flight 8]
                             [--reads 100,90] [--latency-ops 1000] [--json out.json]

Three ways to read, on two ensembles started once (one with
``linearizableReads=true``, one without), the modes alternating round by
round:

- ``plain``: getData on the ensemble without the setting: ZooKeeper's reads,
  answered from the member's tree (maybe stale);
- ``sync+read``: a sync then the getData, pipelined, on the same ensemble:
  what a client does today for a read that sees every acknowledged write;
- ``linear``: getData on the ensemble with the setting.

Throughput: ``--sessions`` sessions spread over the three members (a third
on the leader), each keeping ``--in-flight`` requests out, ``--reads`` percent
getData (the rest setData of ``--value-size`` bytes) on ``--keys`` keys.
Reported per mode and mix: logical operations per second (a sync+read pair
is one read), and server CPU (all three members, user + system) per logical
operation and per read. Latency: one session on a follower, one read at a
time (for sync+read the pair, timed together), idle and under the
throughput load: p50/p90/p99 in microseconds. Medians over the rounds.

The machine is shared: read the spread, not just the medians. Every window
with an error reply or a dead member is reported as failed and left out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

from bench import stats, wire
from bench.loadgen import Pool, build_mix, build_sync_mix
from bench.measure import create_keys, window
from bench.targets import Kind, Target, server_settings

MODES = ("plain", "sync+read", "linear")


def _plan_shares(builder: Any, args: argparse.Namespace, read_pct: float) -> tuple[float, float]:
    """(getData, setData) per request of a plan: to turn replies into reads and writes."""
    plan = builder(0, 1, keys=["/k"], value_size=args.value_size, read_pct=read_pct,
                   seed=7)[0]
    gets = sum(1 for r in plan if r[0] == wire.OP_GET)
    sets = sum(1 for r in plan if r[0] == wire.OP_SET)
    return gets / len(plan), sets / len(plan)


def _latency(addr: tuple[str, int], key: str, count: int, value_size: int,
             sync_first: bool, until: float | None = None) -> dict[str, float | None]:
    """``count`` reads one at a time (or fewer, if ``until`` comes first)."""
    conn = wire.Conn.open(addr)
    get, sync = wire.get(key, value_size), wire.sync(key)
    lat = []
    clock = time.perf_counter_ns
    try:
        for _ in range(count):
            t0 = clock()
            if sync_first and conn.call(sync):
                raise wire.ProtocolError("sync failed")
            if conn.call(get):
                raise wire.ProtocolError("getData failed")
            lat.append((clock() - t0) / 1000.0)
            if until is not None and time.monotonic() >= until:
                break
    finally:
        conn.close()
    lat.sort()
    out: dict[str, float | None] = {f"p{p}_us": stats.percentile(lat, p) for p in (50, 90, 99)}
    out["n"] = len(lat)
    return out


def _measure(mode: str, target: Target, pool: Pool, args: argparse.Namespace,
             read_pct: float, keys: list[str], follower: tuple[str, int]) -> dict[str, Any]:
    plan = f"{mode}-{read_pct:g}"
    builder = build_sync_mix if mode == "sync+read" else build_mix
    get_share, set_share = _plan_shares(builder, args, read_pct)
    res = window(target, target.probe(), pool, plan, args.in_flight, args.seconds, None,
                 ramp=1.0)
    out: dict[str, Any] = {"failed": res.get("failed")}
    if not res.get("failed") and res["ops"]:
        reads, writes = res["ops"] * get_share, res["ops"] * set_share
        rate = res["ops_per_s"] * (get_share + set_share)  # replies/s -> logical ops/s
        out.update(ops_per_s=rate,
                   cpu_us_per_op=res["server_cpu_s"] * 1e6 / (reads + writes),
                   cpu_us_per_read=(res["server_cpu_s"] * 1e6 / reads) if read_pct == 100
                   else None)
    sync_first = mode == "sync+read"
    out["idle"] = _latency(follower, keys[0], args.latency_ops, args.value_size, sync_first)
    # Under load: the same plan at a quarter of the in-flight, the probe beside it
    # for as long as the load lasts.
    _, end = pool.start_run(plan, max(1, args.in_flight // 4), args.seconds, None, 0.5)
    time.sleep(0.6)
    out["loaded"] = _latency(follower, keys[0], args.latency_ops, args.value_size, sync_first,
                             until=end)
    loaded = pool.collect_run(args.seconds, 0.5)
    if loaded.get("errors") or loaded.get("bad_replies"):
        out["failed"] = "under the latency probe: %s" % loaded
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sessions", type=int, default=48)
    ap.add_argument("--in-flight", type=int, default=8)
    ap.add_argument("--reads", default="100,90")
    ap.add_argument("--keys", type=int, default=1000)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--latency-ops", type=int, default=1000)
    ap.add_argument("--force-sync", default="on", choices=("on", "off"))
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    mixes = [float(x) for x in args.reads.split(",")]
    settings = server_settings(args.force_sync == "on")
    off = Target(Kind("zkpy", "zkpy"), 3, settings)
    on = Target(Kind("zkpy-linear", "zkpy"), 3, {**settings, "linearizableReads": "true"})
    targets = {"plain": off, "sync+read": off, "linear": on}
    pools: dict[int, Pool] = {}
    rounds: list[dict[str, Any]] = []
    try:
        for t in (off, on):
            t.start()
        keys = {id(t): create_keys(t, args.keys, args.value_size, 60) for t in (off, on)}
        for t in (off, on):
            pools[id(t)] = Pool(t.addrs, args.sessions, workers=2)
        for mode in MODES:
            pool, t = pools[id(targets[mode])], targets[mode]
            builder = "sync_mix" if mode == "sync+read" else "mix"
            for pct in mixes:
                pool.define(f"{mode}-{pct:g}", builder, keys=keys[id(t)],
                            value_size=args.value_size, read_pct=pct, seed=7)
        for r in range(args.rounds):
            row: dict[str, Any] = {}
            order = MODES if r % 2 == 0 else MODES[::-1]
            for pct in mixes:
                for mode in order:
                    t = targets[mode]
                    follower = t.addrs[t.follower_index() or 0]
                    row[f"{mode} {pct:g}%"] = m = _measure(mode, t, pools[id(t)], args, pct,
                                                            keys[id(t)], follower)
                    print(f"round {r + 1} {mode:9} {pct:3g}% reads: {_line(m)}", flush=True)
            rounds.append(row)
    finally:
        for pool in pools.values():
            pool.close()
        for t in (off, on):
            t.cleanup()
    summary = _summary(rounds)
    print("\nmedians over %d rounds (3 members, %d sessions x %d in flight, %s):"
          % (args.rounds, args.sessions, args.in_flight, "forceSync " + args.force_sync))
    for name, s in summary.items():
        print(f"  {name:16} {_line(s)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rounds": rounds, "summary": summary}, f, indent=1)
    return 1 if any(m.get("failed") for row in rounds for m in row.values()) else 0


def _line(m: dict[str, Any]) -> str:
    if m.get("failed"):
        return "FAILED: %s" % m["failed"]

    def f(v: float | None, spec: str = ",.0f") -> str:
        return "-" if v is None else format(v, spec)

    idle, loaded = m.get("idle") or {}, m.get("loaded") or {}
    return (f"{f(m.get('ops_per_s'))} ops/s, CPU {f(m.get('cpu_us_per_op'))} us/op"
            f" ({f(m.get('cpu_us_per_read'))} us/read); follower read latency us "
            f"idle p50/p90/p99 {f(idle.get('p50_us'))}/{f(idle.get('p90_us'))}/"
            f"{f(idle.get('p99_us'))}, loaded {f(loaded.get('p50_us'))}/"
            f"{f(loaded.get('p90_us'))}/{f(loaded.get('p99_us'))}")


def _summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in rounds[0] if rounds else ():
        ok = [row[name] for row in rounds if not row[name].get("failed")]
        if not ok:
            out[name] = {"failed": "every round"}
            continue
        med: dict[str, Any] = {}
        for key in ("ops_per_s", "cpu_us_per_op", "cpu_us_per_read"):
            vals = [m[key] for m in ok if m.get(key) is not None]
            med[key] = statistics.median(vals) if vals else None
        for part in ("idle", "loaded"):
            med[part] = {k: statistics.median(m[part][k] for m in ok)
                         for k in ("p50_us", "p90_us", "p99_us")}
        out[name] = med
    return out


if __name__ == "__main__":
    sys.exit(main())
