"""reconfig: what changing an ensemble's membership costs, zkpy beside Apache ZooKeeper.

    python -m bench.reconfig --servers zkpy,zookeeper --rounds 2 [--ops 20] [--json out.json]

Each round starts a fresh 3-server ensemble of each kind in turn (A-B-A-B),
``reconfigEnabled=true``, the super user's digest set. It measures:

* reconfig latency: ``--ops`` times, add an observer (which never runs) and
  remove it again, one request at a time through one member, and the
  servers' CPU time (psutil, summed over the three) per reconfig;
* handover: remove the leader with a reconfig while a second client writes
  (one ``setData`` at a time, through the members that stay); the longest
  stretch without an acknowledged write from 1 s before the reconfig to
  ``--window`` s after it (the reply itself may be a ConnectionLoss when the
  answering member restarts its service; the new membership is checked).
  ZooKeeper hands over to a designated leader; zkpy's removed leader steps
  down and the remaining voters elect one, so this is where they differ.

A measurement, not a test; ops/s and latencies drift on a shared machine,
CPU per operation less so.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import sys
import time

from kazoo.client import KazooClient
from kazoo.exceptions import ConnectionLoss

from bench.failover import Writer, cpu_of
from bench.probe import machine_info
from bench.targets import server_settings
from zkpy.testing.ensemble import Ensemble

SUPER = {"zookeeper.DigestAuthenticationProvider.superDigest": "super:D/InIHSb7yEEbrWz8b9l71RjZJU="}
RETRY = {"max_tries": -1, "delay": 0.05, "backoff": 1.5, "max_delay": 0.2}
OBSERVER = "server.100=127.0.0.1:1:2:observer;127.0.0.1:3"


def run_round(kind: str, rnd: int, args: argparse.Namespace, log) -> dict:
    settings = server_settings(force_sync=False)
    settings["reconfigEnabled"] = "true"
    tick = int(settings.pop("tickTime"))
    opts: dict = {"system_properties": SUPER}
    if kind == "zookeeper":
        opts["jvm_args"] = ["-Xmx512m"]
    out: dict = {"server": kind, "round": rnd, "errors": []}
    ens = Ensemble(kind, 3, settings=settings, tick_time=tick, server_options=opts)
    admin = writer_client = None
    writer = None
    try:
        leader = ens.start(timeout=60)
        admin = KazooClient(hosts=ens.members[0].connect_string, timeout=10,
                            auth_data=[("digest", "super:test")], connection_retry=RETRY)
        admin.start(timeout=30)
        latencies = []
        cpu0 = cpu_of(ens.members)
        for _ in range(args.ops):
            for joining, leaving in ((OBSERVER, None), (None, "100")):
                t = time.perf_counter()
                admin.reconfig(joining=joining, leaving=leaving, new_members=None)
                latencies.append((time.perf_counter() - t) * 1000)
        out["reconfig_ms"] = statistics.median(latencies)
        out["reconfig_cpu_us"] = (cpu_of(ens.members) - cpu0) * 1e6 / len(latencies)

        staying = [m for m in ens.members if m is not leader]
        writer_client = KazooClient(hosts=",".join(m.connect_string for m in staying),
                                    timeout=10, connection_retry=RETRY)
        writer_client.start(timeout=30)
        writer_client.ensure_path("/failover")
        writer = Writer(writer_client, 0.005, 10.0)
        writer.start()
        time.sleep(1.0)
        admin.stop()
        admin = KazooClient(hosts=staying[0].connect_string, timeout=10,
                            auth_data=[("digest", "super:test")], connection_retry=RETRY)
        admin.start(timeout=30)
        sent = time.monotonic()
        try:
            admin.reconfig(joining=None, leaving=str(leader.myid), new_members=None)
        except ConnectionLoss:
            pass  # the member answering may restart its service: the outcome is checked below
        time.sleep(args.window)
        admin.sync("/")
        config = admin.get("/zookeeper/config")[0].decode()
        if "server.%d=" % leader.myid in config:
            raise RuntimeError("the leader was not removed")
        # The longest stretch without an acknowledged write around the reconfig.
        acks = [a for _, a in writer.acks if sent - 1.0 <= a <= sent + args.window]
        gaps = [b - a for a, b in zip(acks, acks[1:], strict=False)]
        out["handover_ms"] = max(gaps) * 1000 if gaps else None
        log("round %d: %-9s reconfig p50 %.1f ms, %.0f us CPU each; leader %d removed: "
            "longest gap between writes %s ms" % (
                rnd, kind, out["reconfig_ms"], out["reconfig_cpu_us"], leader.myid,
                "-" if out["handover_ms"] is None else "%.0f" % out["handover_ms"]))
    except Exception as exc:
        out["errors"].append("%s: %s" % (type(exc).__name__, exc))
        log("round %d: %s FAILED: %s" % (rnd, kind, out["errors"][-1]))
    finally:
        if writer is not None:
            writer.halt.set()
            writer.join(5)
        for c in (admin, writer_client):
            if c is not None:
                try:
                    c.stop()
                    c.close()
                except Exception:
                    pass
        ens.cleanup(failed=bool(out["errors"]))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.reconfig", description=__doc__.split("\n")[0])
    p.add_argument("--servers", default="zkpy,zookeeper")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--ops", type=int, default=20, help="add+remove pairs per round (default 20)")
    p.add_argument("--window", type=float, default=5.0,
                   help="seconds of writes watched after removing the leader (default 5)")
    p.add_argument("--json", metavar="FILE")
    args = p.parse_args(argv)
    kinds = [k.strip() for k in args.servers.split(",") if k.strip()]
    logging.getLogger("kazoo").setLevel(logging.ERROR)
    lines: list[str] = []

    def log(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    cmd = "python -m bench.reconfig " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = machine_info()
    log("command: " + cmd)
    log("machine: nproc=%s, %s" % (machine["nproc"], machine.get("cpu", "?")))
    runs = [run_round(kind, rnd, args, log)
            for rnd in range(1, args.rounds + 1) for kind in kinds]
    log("")
    log("%-10s %14s %16s %14s" % ("server", "reconfig p50", "CPU/reconfig", "handover"))
    summary: dict = {}
    for kind in kinds:
        ok = [r for r in runs if r["server"] == kind and not r["errors"]]
        if not ok:
            log("%-10s %14s" % (kind, "failed"))
            continue
        lat = statistics.median(r["reconfig_ms"] for r in ok)
        cpu = statistics.median(r["reconfig_cpu_us"] for r in ok)
        hand = [r["handover_ms"] for r in ok if r.get("handover_ms") is not None]
        summary[kind] = {"reconfig_ms": lat, "reconfig_cpu_us": cpu,
                         "handover_ms": statistics.median(hand) if hand else None}
        log("%-10s %11.1f ms %13.0f us %11s ms" % (
            kind, lat, cpu, "-" if not hand else "%.0f" % statistics.median(hand)))
    if "zkpy" in summary and "zookeeper" in summary:
        a, b = summary["zkpy"], summary["zookeeper"]
        log("ratio zkpy/zookeeper: reconfig latency %.2fx, CPU per reconfig %.2fx%s" % (
            a["reconfig_ms"] / b["reconfig_ms"], a["reconfig_cpu_us"] / b["reconfig_cpu_us"],
            ", handover %.2fx" % (a["handover_ms"] / b["handover_ms"])
            if a["handover_ms"] and b["handover_ms"] else ""))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": cmd, "machine": machine, "runs": runs, "summary": summary,
                       "output": lines}, fh, indent=1, default=str)
    return 0 if all(not r["errors"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
