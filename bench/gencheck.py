"""Part ``generator``: how fast the load generator itself can go.

Contract: the same loads and read mixes as the throughput part, one window
each after a settle window, against :class:`bench.nullserver.NullServer`
(answers without doing anything); prints ops/s, the generator's CPU per
operation and its busiest process, and the null server's CPU.  Figures far
above what the real servers reach mean the generator is not their limit.
"""

from __future__ import annotations

from bench import throughput
from bench.loadgen import LoadError, Pool
from bench.measure import Log, fmt, window
from bench.nullserver import NullServer
from bench.targets import ExternalTarget


def run(args, log: Log) -> dict:
    ns = NullServer(args.value_size)
    target = ExternalTarget("null server", [ns.addr], ns.pids)
    keys = ["/zkbench/kv/k%07d" % i for i in range(args.keys)]
    rows, failures = [], []
    try:
        for load in throughput.parse_loads(args.loads):
            pool = Pool(target.addrs, load.sessions, args.workers, args.timeout)
            try:
                for pct in args.reads:
                    name = throughput.mix_name(pct)
                    pool.define(name, "mix", keys=keys, value_size=args.value_size,
                                read_pct=pct, seed=args.seed)
                    r = window(target, target.probe(), pool, name, load.in_flight, args.window,
                               None, ramp=args.settle)
                    r.update(load=load.name, mix=name)
                    rows.append(r)
                    if r.get("failed"):
                        failures.append("generator %s %s: %s" % (load.name, name, r["failed"]))
            finally:
                pool.close()
    except LoadError as exc:
        failures.append("generator: %s" % exc)
    finally:
        ns.stop()
    log("")
    log("== generator: the same load against a null server (answers only; no tree, no disk), "
        "%d generator process(es) ==" % args.workers)
    head = "%-10s %-6s %10s %10s %8s %12s" % ("load", "reads", "ops/s", "gen us/op", "gen %",
                                             "null cores")
    log(head)
    log("-" * len(head))
    for r in rows:
        log("%-10s %-6s %s %s %s %s%s" % (
            r["load"], r["mix"], fmt(r.get("ops_per_s")), fmt(r.get("gen_cpu_us_per_op"), ".1f"),
            fmt(100 * r["gen_busiest"] if "gen_busiest" in r else None, ".0f", 8),
            fmt(r.get("server_cores"), ".2f", 12),
            "  FAILED: " + r["failed"] if r.get("failed") else ""))
    log("The generator and the null server share the machine's cores: ops/s here is a lower "
        "bound of what the generator can push.")
    return {"rows": rows, "failures": failures}
