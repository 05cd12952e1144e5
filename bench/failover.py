"""failover: how long a 3-server ensemble stops taking writes when its leader
is SIGKILLed, zkpy beside Apache ZooKeeper.

    python -m bench.failover --servers zkpy,zookeeper --rounds 2 [--kills 3] [--json out.json]

Each round starts a fresh ensemble of each kind in turn (A-B-A-B) with
:class:`zkpy.testing.ensemble.Ensemble`.  One Kazoo client, given every
member's address, writes steadily (one ``setData`` at a time, ``--interval``
apart).  Then ``--kills`` times: SIGKILL the member whose ``srvr`` says
``Mode: leader``; time (a) until a surviving member's ``srvr`` says
``Mode: leader`` and (b) until the first write *issued after the kill* is
acknowledged; read the survivors' CPU time (psutil) over (b); restart the
killed member and wait until all three serve again.  The client reconnects
with a short retry delay so that (b) is what the servers cost, not the
client's back-off.  A measurement, not a test; see bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import statistics
import sys
import threading
import time

from kazoo.client import KazooClient

from bench.probe import Probe, machine_info
from bench.targets import server_settings
from zkpy.testing.ensemble import Ensemble, Member

PATH = "/failover"


class Writer(threading.Thread):
    """One setData at a time on *client*; records (issued, acknowledged)
    monotonic times of every acknowledged write and counts failures."""

    def __init__(self, client: KazooClient, interval: float, op_timeout: float) -> None:
        super().__init__(name="failover-writer", daemon=True)
        self.client, self.interval, self.op_timeout = client, interval, op_timeout
        self.acks: list[tuple[float, float]] = []
        self.failures = 0
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            n += 1
            issued = time.monotonic()
            try:
                self.client.set_async(PATH, b"%d" % n).get(timeout=self.op_timeout)
            except Exception:
                self.failures += 1
                time.sleep(0.005)
                continue
            self.acks.append((issued, time.monotonic()))
            self.halt.wait(self.interval)

    def first_ack_after(self, t: float, timeout: float) -> float | None:
        """Acknowledgement time of the first write issued at or after *t*."""
        deadline = time.monotonic() + timeout
        seen = 0
        while time.monotonic() < deadline:
            acks = self.acks
            for issued, acked in acks[seen:]:
                if issued >= t:
                    return acked
            seen = len(acks)
            time.sleep(0.002)
        return None


def wait_new_leader(survivors: list[Member], timeout: float) -> tuple[float | None, Member | None]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in survivors:
            if m.mode(timeout=0.5) == "leader":
                return time.monotonic(), m
        time.sleep(0.01)
    return None, None


def cpu_of(members: list[Member]) -> float:
    return Probe([m.pid for m in members if m.running and m.pid]).cpu()


def client_member(ens: Ensemble, client: KazooClient) -> Member | None:
    try:
        host, port = client._connection._socket.getpeername()[:2]
    except Exception:
        return None
    return ens.member_at(host, port)


def one_kill(n: int, ens: Ensemble, client: KazooClient, writer: Writer, args, log) -> dict:
    leader = ens.wait_for_quorum(args.timeout)
    survivors = [m for m in ens.members if m is not leader]
    on = client_member(ens, client)
    session = client.client_id
    cpu0 = cpu_of(survivors)
    t_kill = time.monotonic()
    leader.kill()
    t_leader, new = wait_new_leader(survivors, args.timeout)
    t_write = writer.first_ack_after(t_kill, args.timeout)
    cpu1 = cpu_of(survivors)
    rec: dict = {
        "n": n, "killed": leader.myid, "client_on": on.myid if on else None,
        "new_leader": new.myid if new else None,
        "leader_ms": None if t_leader is None else 1000 * (t_leader - t_kill),
        "write_ms": None if t_write is None else 1000 * (t_write - t_kill),
        "survivor_cpu_ms": 1000 * (cpu1 - cpu0) if t_write is not None else None,
        "session_kept": client.client_id == session,
    }
    t0 = time.monotonic()
    leader.start(timeout=args.timeout)
    ens.wait_for_quorum(args.timeout)
    rec["rejoin_s"] = time.monotonic() - t0
    log("  [%s] kill %d: leader %d (client on %s) -> new leader %s by srvr after %s ms, "
        "first write after %s ms; survivors' CPU %s ms; %s; killed member serving again in "
        "%.1f s" % (ens.kind, n, leader.myid,
                    "the leader" if on is leader else ("member %d" % on.myid if on else "?"),
                    rec["new_leader"], _ms(rec["leader_ms"]), _ms(rec["write_ms"]),
                    _ms(rec["survivor_cpu_ms"]),
                    "same session" if rec["session_kept"] else "SESSION LOST", rec["rejoin_s"]))
    return rec


def _ms(v: float | None) -> str:
    return "-" if v is None else "%.0f" % v


def run_round(kind: str, rnd: int, args, log) -> dict:
    opts = {"jvm_args": ["-Xmx%s" % args.heap]} if kind == "zookeeper" else {}
    settings = server_settings(force_sync=args.force_sync)
    tick = int(settings.pop("tickTime"))  # type: ignore[call-overload]
    out: dict = {"server": kind, "round": rnd, "kills": [], "errors": []}
    try:
        ens = Ensemble(kind, 3, settings=settings, tick_time=tick, server_options=opts)
    except Exception as exc:
        out["errors"].append("cannot create ensemble: %s" % exc)
        log("round %d: %s: %s" % (rnd, kind, out["errors"][-1]))
        return out
    client = KazooClient(hosts=ens.connect_string, timeout=args.session_timeout,
                         connection_retry={"max_tries": -1, "delay": 0.05, "backoff": 1.5,
                                           "max_delay": 0.2})
    writer = Writer(client, args.interval, args.op_timeout)
    failed = False
    try:
        t0 = time.monotonic()
        leader = ens.start(timeout=args.timeout)
        out["start_s"] = time.monotonic() - t0
        log("round %d: %s ensemble serving in %.1f s (leader %d; pids %s; dir %s)" % (
            rnd, kind, out["start_s"], leader.myid,
            ",".join(str(m.pid) for m in ens.members), ens.workdir))
        client.start(timeout=args.timeout)
        client.ensure_path(PATH)
        writer.start()
        for k in range(1, args.kills + 1):
            time.sleep(args.settle)
            if writer.first_ack_after(time.monotonic() - 0.5, 2.0) is None:
                raise RuntimeError("writes are not flowing before kill %d" % k)
            rec = one_kill(k, ens, client, writer, args, log)
            out["kills"].append(rec)
            if rec["write_ms"] is None:
                raise RuntimeError("no write acknowledged within %ss of kill %d" % (args.timeout, k))
        out["writes_acked"], out["write_failures"] = len(writer.acks), writer.failures
    except Exception as exc:
        failed = True
        out["errors"].append("%s: %s" % (type(exc).__name__, exc))
        log("  [%s] FAILED: %s" % (kind, out["errors"][-1]))
    finally:
        writer.halt.set()
        writer.join(5)
        try:
            client.stop()
            client.close()
        except Exception:
            pass
        out["workdir"] = str(ens.workdir) if failed or args.keep_logs else None
        ens.cleanup(failed=failed or args.keep_logs)
    return out


def _stats(vals: list) -> tuple[float | None, float | None, float | None]:
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, None, None
    return statistics.median(vals), min(vals), max(vals)


def _f(v: float | None, width: int = 7) -> str:
    return ("-" if v is None else "%.0f" % v).rjust(width)


def report(runs: list[dict], labels: list[str], log) -> dict:
    summary: dict = {}
    lw = max([11] + [len(x) for x in labels])
    log("")
    log("== failover of a 3-server ensemble: SIGKILL the leader under a light write load; "
        "milliseconds from the kill (median/min/max over every kill of every round) ==")
    head = "%-*s | %5s | %23s | %23s | %9s | %s" % (
        lw, "server", "kills", "first write med/min/max", "new leader med/min/max",
        "cpu ms", "per-round median write ms")
    log(head)
    log("-" * len(head))
    for lab in labels:
        kills = [k for r in runs if r["server"] == lab for k in r["kills"]]
        w, ld, cpu = (_stats([k[f] for k in kills]) for f in
                      ("write_ms", "leader_ms", "survivor_cpu_ms"))
        per_round = [_stats([k["write_ms"] for k in r["kills"]])[0]
                     for r in runs if r["server"] == lab]
        summary[lab] = {"write_ms": w, "leader_ms": ld, "survivor_cpu_ms": cpu,
                        "kills": len(kills), "round_medians_write_ms": per_round}
        log(" | ".join([lab.ljust(lw), str(len(kills)).rjust(5), " ".join(_f(x) for x in w),
                        " ".join(_f(x) for x in ld), _f(cpu[0], 9),
                        " ".join(_f(x, 0) for x in per_round)]))
    if "zkpy" in summary and "zookeeper" in summary:
        a, b = summary["zkpy"], summary["zookeeper"]
        parts = []
        for key, name in (("write_ms", "first write"), ("leader_ms", "new leader"),
                          ("survivor_cpu_ms", "survivors' CPU")):
            if a[key][0] and b[key][0]:
                parts.append("%s %.2fx" % (name, a[key][0] / b[key][0]))
        summary["ratio_zkpy_zookeeper"] = parts
        log("ratio zkpy/zookeeper (medians): " + (", ".join(parts) or "-"))
    log("cpu ms: CPU time of the two survivors from the kill to the first acknowledged write "
        "(median).")
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.failover", description=__doc__.split("\n")[0])
    p.add_argument("--servers", default="zkpy,zookeeper",
                   help="comma-separated kinds, in order, once per round (default zkpy,zookeeper)")
    p.add_argument("--rounds", type=int, default=2, help="A-B-A-B rounds (default 2)")
    p.add_argument("--kills", type=int, default=3, help="leader kills per round (default 3)")
    p.add_argument("--interval", type=float, default=0.01,
                   help="pause between writes in seconds (default 0.01)")
    p.add_argument("--settle", type=float, default=2.0,
                   help="seconds of writes before each kill (default 2)")
    p.add_argument("--session-timeout", type=float, default=4.0,
                   help="Kazoo session timeout in seconds (default 4; the servers allow 4-40)")
    p.add_argument("--op-timeout", type=float, default=10.0,
                   help="give up on one write after this many seconds (default 10)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="start/election/recovery timeout in seconds (default 60)")
    p.add_argument("--force-sync", action="store_true", help="keep forceSync=yes")
    p.add_argument("--heap", default="512m", help="Apache ZooKeeper -Xmx (default 512m)")
    p.add_argument("--json", metavar="FILE", help="write every measurement to FILE")
    p.add_argument("--keep-logs", action="store_true", help="keep the ensembles' directories")
    args = p.parse_args(argv)
    kinds = []
    for name in args.servers.split(","):
        name = {"apache": "zookeeper", "zk": "zookeeper"}.get(name.strip().lower(), name.strip())
        if name not in ("zkpy", "zookeeper"):
            p.error("unknown server kind %r (zkpy, zookeeper)" % name)
        if name not in kinds:
            kinds.append(name)
    args.kinds = kinds
    if args.kills < 1 or args.rounds < 1:
        p.error("--kills and --rounds must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("kazoo").setLevel(logging.ERROR)  # reconnect chatter on every kill
    lines: list[str] = []

    def log(s: str = "") -> None:
        print(s, flush=True)
        lines.append(s)

    cmd = "python -m bench.failover " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = machine_info()
    log("command: " + cmd)
    log("machine: nproc=%s, %s; python %s; java %s" % (
        machine["nproc"], machine.get("cpu", "?"), machine["python"].split()[0],
        machine.get("java", "not found")))
    if machine.get("zkpy_revision"):
        log("zkpy:    git " + machine["zkpy_revision"])
    settings = server_settings(force_sync=args.force_sync)
    log("servers: 3-member ensembles on 127.0.0.1, fresh for every round; zoo.cfg: "
        + " ".join("%s=%s" % kv for kv in settings.items()))
    log("client:  Kazoo, all three members, session timeout %g s, reconnect delay 50-200 ms; "
        "one setData at a time, %g s apart; %d kill(s) per round, %g s of writes before each"
        % (args.session_timeout, args.interval, args.kills, args.settle))
    runs = []
    for rnd in range(1, args.rounds + 1):
        for kind in args.kinds:
            runs.append(run_round(kind, rnd, args, log))
    summary = report(runs, args.kinds, log)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"command": cmd, "machine": machine, "settings": settings, "runs": runs,
                       "summary": summary, "output": lines}, fh, indent=1, default=str)
        print("results written to %s" % args.json)
    return 1 if any(r["errors"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
