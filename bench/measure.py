"""Shared steps of the throughput and latency parts: the key set every
target gets, one measured window with the server's CPU around it, the
warm-up loop, and the choice of which kinds are compared.

Contract: a window's record always says whether it failed and why (error
replies, bad replies, a dead member, a worker failure); callers never see
a figure without its failure state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from bench import stats, wire
from bench.loadgen import LoadError, Pool

Log = Callable[[str], None]
ROOT = "/zkbench"


def create_keys(target, count: int, value_size: int, timeout: float) -> list[str]:
    """``/zkbench/kv/k<i>`` with *value_size* bytes each, created through the
    first member; every other member syncs before it is read from."""
    conn = wire.Conn.open(target.addrs[0], timeout)
    try:
        for path in (ROOT, ROOT + "/kv"):
            err = conn.call(wire.create(path, b""))
            if err not in (0, wire.ERR_NODEEXISTS):
                raise wire.ProtocolError("create %s: error %d" % (path, err))
        data = wire.value(value_size)
        keys = ["%s/kv/k%07d" % (ROOT, i) for i in range(count)]
        bad = wire.pipeline(conn, [wire.create(k, data) for k in keys], ok=(0, wire.ERR_NODEEXISTS))
        if bad:
            raise wire.ProtocolError("creating %d keys: errors %s" % (count, dict(bad)))
    finally:
        conn.close()
    for addr in target.addrs[1:]:
        member = wire.Conn.open(addr, timeout)
        try:
            if member.call(wire.sync(ROOT + "/kv")):
                raise wire.ProtocolError("sync on %s:%d failed" % addr)
        finally:
            member.close()
    return keys


def remove_keys(target, keys: list[str], timeout: float) -> None:
    """Delete what :func:`create_keys` and the latency part made (for a server
    that is not ours)."""
    conn = wire.Conn.open(target.addrs[0], timeout)
    try:
        paths = [*keys, ROOT + "/kv", ROOT + "/lat", ROOT]
        wire.pipeline(conn, [wire.delete(p) for p in paths], ok=(0, -101))  # NONODE is fine
    finally:
        conn.close()


def window(target, probe, pool: Pool, plan: str, in_flight: int, seconds: float,
           max_ops: int | None, ramp: float = 0.0) -> dict:
    """One window of *plan* on *pool*: *ramp* s of load, then *seconds* s
    measured, then a drain.  The server CPU (summed over the members, and
    each member's) is read at the two marks, as the workers count replies."""
    try:
        mark_a, mark_b = pool.start_run(plan, in_flight, seconds, max_ops, ramp)
        time.sleep(max(0.0, mark_a - time.monotonic()))
        c0, w0 = probe.cpu_each(), time.monotonic()
        time.sleep(max(0.0, (mark_b or 0.0) - time.monotonic()))
        c1, w1 = probe.cpu_each(), time.monotonic()
        res = pool.collect_run(seconds, ramp)
    except LoadError as exc:
        return _judge(target, {"failed": str(exc), "ops": 0})
    member_cpu = [b - a for a, b in zip(c0, c1, strict=False)]
    res["server_cpu_each_s"] = member_cpu
    res["server_cpu_s"] = sum(member_cpu) if member_cpu else None
    res["server_cpu_us_per_op"] = stats.per_op(res["server_cpu_s"], res["ops"])
    res["server_cores"] = (res["server_cpu_s"] / (w1 - w0)
                           if res["server_cpu_s"] is not None and w1 > w0 else None)
    return _judge(target, res)


def windows_together(targets: list, probes: dict, pools: dict, plan: str, in_flight: int,
                     seconds: float, max_ops: int | None, ramp: float = 0.0) -> dict[str, dict]:
    """One window of *plan* on every target at once, each under its own pool's
    load, measured over the same marks: what drifts on a shared machine between
    one window and the next (other work, the host's CPU) then falls on all alike."""
    start_at = time.monotonic() + 0.1
    marks = {}
    try:
        for t in targets:
            marks[t.label] = pools[t.label].start_run(plan, in_flight, seconds, max_ops, ramp,
                                                      delay=start_at - time.monotonic())
        mark_a = max(a for a, _ in marks.values())
        mark_b = min(b for _, b in marks.values())
        time.sleep(max(0.0, mark_a - time.monotonic()))
        c0, w0 = {t.label: probes[t.label].cpu_each() for t in targets}, time.monotonic()
        time.sleep(max(0.0, mark_b - time.monotonic()))
        c1, w1 = {t.label: probes[t.label].cpu_each() for t in targets}, time.monotonic()
    except LoadError as exc:
        return {t.label: _judge(t, {"failed": str(exc), "ops": 0}) for t in targets}
    out = {}
    for t in targets:
        try:
            res = pools[t.label].collect_run(seconds, ramp) if t.label in marks else {
                "failed": "not started", "ops": 0}
        except LoadError as exc:
            res = {"failed": str(exc), "ops": 0}
        member_cpu = [b - a for a, b in zip(c0[t.label], c1[t.label], strict=False)]
        res["server_cpu_each_s"] = member_cpu
        res["server_cpu_s"] = sum(member_cpu) if member_cpu else None
        res["server_cpu_us_per_op"] = stats.per_op(res["server_cpu_s"], res["ops"])
        res["server_cores"] = (res["server_cpu_s"] / (w1 - w0)
                               if res["server_cpu_s"] is not None and w1 > w0 else None)
        out[t.label] = _judge(t, res)
    return out


def _judge(target, res: dict) -> dict:
    """Mark the window failed (with every reason) when anything went wrong."""
    problems = []
    if res.get("failed"):
        problems.append(res["failed"])
    if res.get("errors"):
        problems.append("error replies %s" % res["errors"])
    if res.get("bad_replies"):
        problems.append("%d replies of the wrong length" % res["bad_replies"])
    dead = target.dead()
    if dead:
        problems.append(dead)
    if problems:
        res["failed"] = "; ".join(problems)
    return res


def short(r: dict) -> str:
    """One window as a log line."""
    if r.get("failed") and not r.get("ops"):
        return "FAILED: " + r["failed"]
    s = "%8.0f ops/s" % (r.get("ops_per_s") or 0)
    if r.get("server_cpu_us_per_op") is not None:
        s += ", server %6.1f us CPU/op (%.2f cores)" % (r["server_cpu_us_per_op"],
                                                        r["server_cores"] or 0)
    if r.get("gen_cpu_us_per_op") is not None:
        s += ", generator %.1f us/op (busiest worker %.0f%%)" % (
            r["gen_cpu_us_per_op"], 100 * r["gen_busiest"])
    if r.get("failed"):
        s += "  FAILED: " + r["failed"]
    return s


def ratio_pairs(labels: Sequence[str], wanted: str | None = None) -> list[tuple[str, str]]:
    """Which kinds are compared: ``--ratios a/b,...`` if given; else every kind
    against ``zookeeper``, and ``zkpy`` against each ``zkpy@<rev>``; with
    neither, every kind against the first."""
    if wanted:
        pairs = []
        for item in wanted.split(","):
            a, _, b = item.strip().partition("/")
            if a not in labels or b not in labels:
                raise ValueError("--ratios %s: both must be among %s" % (item, ", ".join(labels)))
            pairs.append((a, b))
        return pairs
    pairs = [(x, "zookeeper") for x in labels if x != "zookeeper" and "zookeeper" in labels]
    pairs += [("zkpy", x) for x in labels if x.startswith("zkpy@") and "zkpy" in labels]
    if not pairs and len(labels) > 1:
        pairs = [(x, labels[0]) for x in labels[1:]]
    return pairs


def warm_up(label: str, run_cycle: Callable[[], dict[str, dict]], args, log: Log,
            whats: Sequence[str] = ("ops_per_s",), cap: float | None = None) -> dict:
    """Run cycles (one window of every workload; *run_cycle* returns
    {workload: window record}) until, for every workload and every figure in
    *whats*, the last ``args.steady_windows`` values agree within
    ``args.steady_tolerance`` (and at least ``args.warmup_min`` s have
    passed), or *cap* (default ``args.warmup_max``) s are up.  Prints one
    line per cycle."""
    cap = args.warmup_max if cap is None else cap
    series: dict[str, list[float]] = {}
    trace = []
    start = time.monotonic()
    cycle = 0
    while True:
        cycle += 1
        parts = []
        for w, r in run_cycle().items():
            trace.append({"cycle": cycle, "workload": w, **{k: v for k, v in r.items()
                                                             if not isinstance(v, list)}})
            if r.get("failed"):
                log("  [%s] warm-up %s FAILED: %s" % (label, w, r["failed"]))
                return {"steady": False, "failed": r["failed"], "trace": trace}
            for what in whats:
                series.setdefault("%s %s" % (w, what), []).append(r[what])
            parts.append("%s %s" % (w, _fmt_metric(r, whats[0])))
        elapsed = time.monotonic() - start
        spreads = [stats.relative_range(s[-args.steady_windows:])
                   for s in series.values() if len(s) >= args.steady_windows]
        log("  [%s] warm-up %3.0f s, cycle %d: %s%s" % (
            label, elapsed, cycle, " | ".join(parts),
            "; spread of last %d: %s" % (args.steady_windows, " ".join(
                "%.1f%%" % (100 * v) if v is not None else "-" for v in spreads))
            if spreads else ""))
        steady = stats.all_steady(series, args.steady_windows, args.steady_tolerance)
        if steady and elapsed >= args.warmup_min:
            log("  [%s] warm-up: steady after %.0f s (last %d windows of each workload within "
                "%.0f%%)" % (label, elapsed, args.steady_windows, 100 * args.steady_tolerance))
            return {"steady": True, "seconds": elapsed, "trace": trace}
        if elapsed >= cap:
            log("  [%s] warm-up: NOT steady after %.0f s (cap); measuring anyway, flagged"
                % (label, elapsed))
            return {"steady": False, "seconds": elapsed, "trace": trace}


def _fmt_metric(r: dict, what: str) -> str:
    if r.get("ops_per_s") is not None:
        cpu = r.get("server_cpu_us_per_op")
        return "%.0f/s %s" % (r["ops_per_s"], "%.0fus" % cpu if cpu is not None else "")
    return "%.0f us" % r[what]


def fmt(v: float | None, spec: str = ",.0f", width: int = 10) -> str:
    return ("-" if v is None else format(v, spec)).rjust(width)
