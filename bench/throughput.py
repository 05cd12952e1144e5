"""Throughput with server CPU per operation, kinds side by side (A-B-A-B).

Contract: for one load shape (sessions x requests in flight) on targets
that are already running with their keys created, it (1) opens one
:class:`~bench.loadgen.Pool` per target and keeps it open, (2) warms each
target with the same rule (:func:`bench.measure.warm_up` over every read
mix), (3) measures ``rounds`` rounds, in each round every read mix on every
target in turn (A-B-A-B), each window preceded by an unmeasured settle
window, and (4) prints per mix the medians over rounds and, for each
compared pair, the round-by-round ratios' min/median/max.  Every window's
record goes into the returned dict; a failed window is reported and counted,
never averaged in.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from bench import stats
from bench.loadgen import LoadError, Pool
from bench.measure import Log, fmt, ratio_pairs, short, warm_up, window, windows_together
from bench.probe import parse_cpus, pin

LOAD_PRESETS = {"light": (32, 32), "heavy": (100, 100), "heavy250": (250, 100)}
STEADY_FIGURES = {"ops": ("ops_per_s",), "cpu": ("server_cpu_us_per_op",),
                  "both": ("ops_per_s", "server_cpu_us_per_op")}


@dataclass(frozen=True)
class Load:
    name: str
    sessions: int
    in_flight: int

    @property
    def shape(self) -> str:
        return "%d sessions x %d in flight" % (self.sessions, self.in_flight)


def parse_loads(spec: str) -> list[Load]:
    """``light,heavy,heavy250`` (32x32, 100x100, 250x100) or ``SxW`` items."""
    out = []
    for item in (x.strip() for x in spec.split(",")):
        if not item:
            continue
        if item in LOAD_PRESETS:
            s, w = LOAD_PRESETS[item]
        else:
            a, sep, b = item.partition("x")
            if not sep or not a.isdigit() or not b.isdigit() or int(a) < 1 or int(b) < 1:
                raise ValueError("load %r: light, heavy, heavy250 or SESSIONSxINFLIGHT" % item)
            s, w = int(a), int(b)
        out.append(Load(item, s, w))
    return out


def mix_name(pct: float) -> str:
    return "%g%%" % pct


def run(targets: list, keys: list[str], load: Load, args, log: Log, title: str) -> dict:
    """Warm up, then A-B-A-B; returns {"warmup": ..., "windows": ..., "summary": ...}."""
    out: dict = {"load": load.name, "sessions": load.sessions, "in_flight": load.in_flight,
                 "warmup": {}, "windows": [], "summary": {}, "failures": []}
    mixes = [mix_name(p) for p in args.reads]
    pools: dict[str, Pool] = {}
    probes = {t.label: t.probe() for t in targets}
    try:
        for t in targets:
            pools[t.label] = Pool(t.addrs, load.sessions, args.workers, args.timeout)
            for pct in args.reads:
                pools[t.label].define(mix_name(pct), "mix", keys=keys, value_size=args.value_size,
                                      read_pct=pct, seed=args.seed)
        log("  load %s: %s over %d generator process(es) per target; sessions spread over "
            "the members" % (load.name, load.shape, args.workers))
        if getattr(args, "pin_servers", None):
            servers = parse_cpus(args.pin_servers)
            others = set(os.sched_getaffinity(0)) - servers or servers
            for t in targets:
                for pid in t.pids:
                    pin(pid, servers)
            for p in pools.values():
                for pid in p.pids:
                    pin(pid, others)
            log("  pinned: servers to CPU %s, load generators to CPU %s"
                % (",".join(map(str, sorted(servers))), ",".join(map(str, sorted(others)))))
        for t in targets:
            def cycle(t=t) -> dict[str, dict]:
                return {mix: window(t, probes[t.label], pools[t.label], mix, load.in_flight,
                                    args.warmup_window, args.max_ops, ramp=args.settle)
                        for mix in mixes}
            w = warm_up(t.label, cycle, args, log, STEADY_FIGURES[args.steady_on])
            out["warmup"][t.label] = w
            if w.get("failed"):
                out["failures"].append("%s warm-up: %s" % (t.label, w["failed"]))
                return out
        for rnd in range(1, args.rounds + 1):
            for mix in mixes:
                together = (windows_together(targets, probes, pools, mix, load.in_flight,
                                             args.window, args.max_ops, ramp=args.settle)
                            if getattr(args, "together", False) else None)
                for t in targets:
                    r = together[t.label] if together is not None else window(
                        t, probes[t.label], pools[t.label], mix, load.in_flight, args.window,
                        args.max_ops, ramp=args.settle)
                    r.update(server=t.label, round=rnd, mix=mix)
                    out["windows"].append(r)
                    log("  [%s] round %d %5s reads: %s" % (t.label, rnd, mix, short(r)))
                    if r.get("failed"):
                        out["failures"].append("%s round %d %s reads: %s"
                                               % (t.label, rnd, mix, r["failed"]))
    except LoadError as exc:
        out["failures"].append(str(exc))
        log("  FAILED: %s" % exc)
    finally:
        for p in pools.values():
            p.close()
    out["summary"] = report(out, [t.label for t in targets], mixes, args, log, title, load)
    return out


def report(out: dict, labels: list[str], mixes: list[str], args, log: Log,
           title: str, load: Load) -> dict:
    """The table of one load shape; returns medians and ratio spreads per mix."""
    summary: dict = {}
    steady = {lab: out["warmup"].get(lab, {}).get("steady") for lab in labels}
    log("")
    log("== %s: %s (%s), %d B values, %d keys; %d round(s) of %g s windows, %s ==" % (
        title, load.name, load.shape, args.value_size, args.keys, args.rounds, args.window,
        "every kind in the same windows" if getattr(args, "together", False) else "A-B-A-B"))
    if not all(steady.values()):
        log("   warm-up NOT steady for: %s (their figures may still be rising)"
            % ", ".join(k for k, v in steady.items() if not v))
    lw = max([16] + [len(x) for x in labels])
    head = "%-6s %-*s %10s %21s %10s %17s %9s %7s %7s %s" % (
        "reads", lw, "server", "ops/s med", "ops/s min..max", "us/op med", "us/op min..max",
        "gen us/op", "gen %", "cores", "failed")
    log(head)
    log("-" * len(head))
    for mix in mixes:
        summary[mix] = {}
        for lab in labels:
            ws = [w for w in out["windows"] if w["server"] == lab and w["mix"] == mix]
            ok = [w for w in ws if not w.get("failed")]
            ops = [w["ops_per_s"] for w in ok]
            cpu = [w["server_cpu_us_per_op"] for w in ok]
            s = {"ops_per_s": stats.median(ops), "cpu_us_per_op": stats.median(cpu),
                 "rounds_ops_per_s": [w.get("ops_per_s") if not w.get("failed") else None
                                      for w in ws],
                 "rounds_cpu_us_per_op": [w.get("server_cpu_us_per_op")
                                          if not w.get("failed") else None for w in ws],
                 "failed_windows": len(ws) - len(ok)}
            summary[mix][lab] = s
            log("%-6s %-*s %s %s %s %s %s %s %s %s" % (
                mix, lw, lab, fmt(s["ops_per_s"]), _range(ops, ",.0f", 21), fmt(
                    s["cpu_us_per_op"], ".1f"), _range(cpu, ".1f", 17),
                fmt(stats.median(w["gen_cpu_us_per_op"] for w in ok), ".1f", 9),
                fmt(stats.median(100 * w["gen_busiest"] for w in ok), ".0f", 7),
                fmt(stats.median(w["server_cores"] for w in ok), ".2f", 7),
                s["failed_windows"] or ""))
        for a, b in ratio_pairs(labels, args.ratios):
            sa, sb = summary[mix][a], summary[mix][b]
            r_ops = stats.spread(stats.pairwise_ratios(sa["rounds_ops_per_s"],
                                                       sb["rounds_ops_per_s"]))
            r_cpu = stats.spread(stats.pairwise_ratios(sa["rounds_cpu_us_per_op"],
                                                       sb["rounds_cpu_us_per_op"]))
            summary[mix]["%s/%s" % (a, b)] = {"ops_per_s": r_ops, "cpu_us_per_op": r_cpu}
            log("%-6s %-*s ops/s %s; CPU/op %s" % (
                mix, lw, "%s/%s" % (a, b), r_ops.text() if r_ops else "-",
                r_cpu.text() if r_cpu else "-"))
    log("ops/s: replies per second between the window's marks (after %g s of load; the drain "
        "after it not counted); us/op: server CPU (user+system, every member) per reply over the "
        "same marks; gen: load generator CPU per reply and its busiest process; cores: server "
        "CPU seconds per second; ratios are per round (A-B pairs)." % args.settle)
    return summary


def _range(vals: list[float], spec: str, width: int) -> str:
    if not vals:
        return "-".rjust(width)
    return ("%s..%s" % (format(min(vals), spec), format(max(vals), spec))).rjust(width)
