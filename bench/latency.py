"""Sequential latency: one session, one request at a time, kinds A-B-A-B.

Contract: on targets that are already running, one session per target goes
to a follower (ensembles) or to the server (standalone).  A *sequence* is
``ops`` creates of ``value_size`` bytes, then as many getData, setData and
deletes of the same znodes, each timed from before the send to after its
reply (requests are encoded outside the timed region).  Sequences of
``warm_ops`` run until the p50 of every operation is steady (the same rule
as throughput's warm-up), then ``rounds`` rounds alternate the kinds.
Reported: p50/p90/p99/max per operation (median over rounds of each
percentile) and, per compared pair, the round-by-round p50 ratios'
min/median/max and their geometric mean over the four operations.  Any
error reply fails the round.
"""

from __future__ import annotations

import time

from bench import stats, wire
from bench.measure import ROOT, Log, fmt, ratio_pairs, warm_up

OPS = ("create", "get", "set", "delete")


def sequence(conn: wire.Conn, base: str, count: int, data: bytes) -> dict:
    """Time *count* of each operation on ``base/l<i>``; returns per-op sorted
    latencies in microseconds and any error codes."""
    paths = ["%s/l%07d" % (base, i) for i in range(count)]
    makers = {"create": lambda p: wire.create(p, data), "get": lambda p: wire.get(p, len(data)),
              "set": lambda p: wire.set_(p, data), "delete": wire.delete}
    out: dict = {"errors": {}}
    clock = time.perf_counter_ns
    for name in OPS:
        reqs = [makers[name](p) for p in paths]
        lat = []
        for req in reqs:
            t0 = clock()
            err = conn.call(req)
            lat.append((clock() - t0) / 1000.0)
            if err:
                out["errors"][name] = out["errors"].get(name, 0) + 1
        lat.sort()
        out[name] = lat
    return out


def summarise(seq: dict) -> dict:
    res: dict = {"errors": seq["errors"]}
    for name in OPS:
        lat = seq[name]
        res[name] = {"p50_us": stats.percentile(lat, 50), "p90_us": stats.percentile(lat, 90),
                     "p99_us": stats.percentile(lat, 99), "max_us": lat[-1] if lat else None,
                     "n": len(lat)}
    return res


def run(targets: list, args, log: Log, title: str) -> dict:
    out: dict = {"rounds": [], "warmup": {}, "failures": [], "through": {}}
    data = wire.value(args.value_size)
    conns = {}
    try:
        for t in targets:
            i = t.follower_index() if t.size > 1 else 0
            if i is None:
                raise RuntimeError("%s: no member reports Mode: follower" % t.label)
            conns[t.label] = wire.Conn.open(t.addrs[i], args.timeout, session_timeout_ms=40000)
            out["through"][t.label] = "member %d (%s)" % (i + 1, "follower" if t.size > 1
                                                          else "standalone")
            err = conns[t.label].call(wire.create(ROOT + "/lat", b""))
            if err not in (0, wire.ERR_NODEEXISTS):
                raise wire.ProtocolError("create %s/lat: error %d" % (ROOT, err))
        base = ROOT + "/lat"
        def keep_others(label: str) -> None:  # the idle sessions must not expire
            for other, c in conns.items():
                if other != label:
                    c.ping()

        for t in targets:
            def cycle(t=t) -> dict[str, dict]:
                keep_others(t.label)
                s = summarise(sequence(conns[t.label], base, args.latency_warm_ops, data))
                failed = {"failed": "error replies %s" % s["errors"]} if s["errors"] else {}
                return {op: {"p50_us": s[op]["p50_us"], **failed} for op in OPS}
            out["warmup"][t.label] = warm_up(t.label + " latency", cycle, args, log, ("p50_us",),
                                             cap=args.latency_warmup_max)
        for rnd in range(1, args.rounds + 1):
            for t in targets:
                keep_others(t.label)
                s = summarise(sequence(conns[t.label], base, args.latency_ops, data))
                s.update(server=t.label, round=rnd)
                out["rounds"].append(s)
                log("  [%s] latency round %d (us, p50/p99): %s%s" % (
                    t.label, rnd, "  ".join("%s %.0f/%.0f" % (op, s[op]["p50_us"], s[op]["p99_us"])
                                            for op in OPS),
                    "  FAILED: error replies %s" % s["errors"] if s["errors"] else ""))
                if s["errors"]:
                    out["failures"].append("%s latency round %d: error replies %s"
                                           % (t.label, rnd, s["errors"]))
    except (OSError, wire.ProtocolError, RuntimeError) as exc:
        out["failures"].append("latency: %s: %s" % (type(exc).__name__, exc))
        log("  latency FAILED: %s: %s" % (type(exc).__name__, exc))
    finally:
        for c in conns.values():
            c.close()
    out["summary"] = report(out, [t.label for t in targets], args, log, title)
    return out


def report(out: dict, labels: list[str], args, log: Log, title: str) -> dict:
    summary: dict = {}
    log("")
    log("== %s: sequential latency, one request at a time through %s; %d ops of each kind per "
        "round, %d B values; microseconds, median over %d round(s) of each percentile ==" % (
            title, "a follower" if any("follower" in v for v in out["through"].values())
            else "the server", args.latency_ops, args.value_size, args.rounds))
    lw = max([16] + [len(x) for x in labels])
    head = "%-*s %-7s %9s %9s %9s %9s" % (lw, "server", "op", "p50", "p90", "p99", "max")
    log(head)
    log("-" * len(head))
    for lab in labels:
        rounds = [r for r in out["rounds"] if r["server"] == lab and not r["errors"]]
        summary[lab] = {}
        for op in OPS:
            vals = {q: stats.median(r[op][q] for r in rounds)
                    for q in ("p50_us", "p90_us", "p99_us", "max_us")}
            vals["rounds_p50_us"] = [r[op]["p50_us"] for r in rounds]
            summary[lab][op] = vals
            log("%-*s %-7s %s %s %s %s" % (lw, lab, op, *(fmt(vals[q], ",.0f", 9) for q in
                                                         ("p50_us", "p90_us", "p99_us", "max_us"))))
    for a, b in ratio_pairs(labels, args.ratios):
        parts, mids = [], []
        for op in OPS:
            sp = stats.spread(stats.pairwise_ratios(summary[a][op]["rounds_p50_us"],
                                                    summary[b][op]["rounds_p50_us"]))
            summary.setdefault("%s/%s" % (a, b), {})[op] = sp
            if sp:
                parts.append("%s %s" % (op, sp.text()))
                mids.append(sp.mid)
        gm = stats.geomean(mids)
        log("p50 ratio %s/%s: %s; geomean %s" % (a, b, "; ".join(parts) or "-",
                                                 "%.2fx" % gm if gm else "-"))
    return summary
