"""Scale parts about a big data tree: memory per znode, restart time, and a
follower joining by SNAP while the leader serves.

Contract (each function measures one kind once; see :mod:`bench.scale`):

* :func:`memory` -- a fresh standalone server; RSS before and after
  creating ``--scale-znodes`` znodes of ``--znode-size`` bytes through the
  client port (``/scale/p<j>/c<k>``, 1000 per parent, pipelined over a few
  sessions); for the JVM also the heap in use after a full GC (``jcmd``)
  before and after, since its RSS is heap it chose to commit.
* :func:`restart` -- the same tree as a snapshot file (:mod:`bench.seed`),
  copied into a fresh data directory; time from process start until the
  server serves (``ruok`` is ``imok`` and ``srvr`` serves), node count
  checked.
* :func:`snap` -- a 3-server ensemble, every member seeded with that
  snapshot; a probe process sends one request at a time to the leader
  (setData and getData in turn); a follower is stopped, its data wiped,
  and started again, so it must be sent the whole tree (SNAP).  Reported:
  the probe's p50/p99/max before and while the follower joins (start to
  serving with the whole tree), the join time and the leader's CPU.  If the
  leader drops the probe's connection, the probe counts it, retries the
  request on a new session and the wait goes into that request's latency.
"""

from __future__ import annotations

import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path

from bench import seed, stats, wire
from bench.loadgen import Pool
from bench.measure import Log
from bench.probe import Probe, jvm_heap_after_gc
from bench.scale import finish, make_target, srvr_number
from bench.targets import Kind
from zkpy.storage.formats import VERSION_DIR


def snapshot_for(args, ctx: dict) -> tuple[Path, int]:
    """The seed snapshot, built once per run (``ctx`` caches it)."""
    if "snapshot" not in ctx:
        d = Path(tempfile.mkdtemp(prefix="zkbench-seed-"))
        ctx.setdefault("cleanup_dirs", []).append(d)
        t0 = time.monotonic()
        ctx["snapshot"] = seed.build_snapshot(args.scale_znodes, args.znode_size, d)
        ctx["log"]("  seed snapshot: %d znodes of %d B, %.0f MiB, built in %.1f s (%s)" % (
            ctx["snapshot"][1], args.znode_size, ctx["snapshot"][0].stat().st_size / 2**20,
            time.monotonic() - t0, ctx["snapshot"][0]))
    return ctx["snapshot"]


def memory(kind: Kind, args, log: Log, ctx: dict) -> dict:
    t = make_target(kind, 1, args, ctx)
    rec: dict = {}
    try:
        t.start(timeout=args.timeout)
        probe, pid, is_jvm = t.probe(), t.pids[0], kind.kind == "zookeeper"
        time.sleep(args.quiet)
        heap0 = jvm_heap_after_gc(pid) if is_jvm else None
        rss0 = probe.rss()
        rec.update(_create_tree(t, args))
        total = rec["znodes"]
        time.sleep(args.quiet)
        rss1 = probe.rss()
        rec.update(rss_before_mib=rss0 / 2**20, rss_after_mib=rss1 / 2**20,
                   rss_per_znode=(rss1 - rss0) / total,
                   node_count=srvr_number(t.servers[0], "Node count"))
        if is_jvm:
            heap1 = jvm_heap_after_gc(pid)
            rec["rss_after_gc_mib"] = probe.rss() / 2**20
            if heap0 is not None and heap1 is not None:
                rec["heap_per_znode"] = (heap1 - heap0) / total
        if (rec["node_count"] or 0) < total:
            rec["failed"] = "srvr reports %s znodes, expected at least %d" % (rec["node_count"], total)
        log("  [%s] %d znodes: RSS %.0f -> %.0f MiB = %.0f B/znode%s; created at %.0f/s, "
            "%.1f us server CPU each" % (
                kind.label, total, rec["rss_before_mib"], rec["rss_after_mib"], rec["rss_per_znode"],
                "; live heap %.0f B/znode after full GC (RSS then %.0f MiB)" % (
                    rec["heap_per_znode"], rec["rss_after_gc_mib"]) if "heap_per_znode" in rec
                else "", rec["create_ops_per_s"] or 0, rec["create_cpu_us_per_op"] or 0))
    except Exception as exc:
        rec["failed"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        finish(t, rec, log, kind.label, args.keep_logs)
    return rec


def _create_tree(t, args) -> dict:
    """``/scale/p<j>/c<k>`` through the client port, pipelined over a few sessions."""
    probe = t.probe()
    parents, per = seed.tree_shape(args.scale_znodes)
    conn = wire.Conn.open(t.addrs[0], args.timeout)
    try:
        if conn.call(wire.create(seed.PREFIX, b"")):
            raise wire.ProtocolError("create %s failed" % seed.PREFIX)
    finally:
        conn.close()
    pool = Pool(t.addrs, args.scale_sessions, args.workers, args.timeout)
    try:
        pool.define("parents", "tree_parents", prefix=seed.PREFIX, parents=parents)
        n = pool.define("children", "tree_children", prefix=seed.PREFIX, parents=parents,
                        per_parent=per, data_size=args.znode_size)
        c0 = probe.cpu()
        runs = [pool.run("parents", 100), pool.run("children", 100)]
        c1 = probe.cpu()
    finally:
        pool.close()
    _check_runs(runs)
    return {"znodes": n + parents, "create_ops_per_s": runs[1]["ops_per_s"],
            "create_cpu_us_per_op": stats.per_op(c1 - c0, n + parents)}


def _check_runs(runs: list[dict]) -> None:
    for r in runs:
        if r["errors"] or r["bad_replies"]:
            raise wire.ProtocolError("error replies %s, %d bad replies"
                                     % (r["errors"], r["bad_replies"]))


def restart(kind: Kind, args, log: Log, ctx: dict) -> dict:
    snapshot, expect = snapshot_for(args, ctx)
    wd = Path(tempfile.mkdtemp(prefix="zkbench-restart-"))
    t = make_target(kind, 1, args, ctx, workdir=wd)
    rec: dict = {"znodes": expect}
    try:
        seed.seed(snapshot, t.servers[0].data_dir)
        t0 = time.monotonic()
        t.start(timeout=max(args.timeout, 600))
        rec["restart_s"] = time.monotonic() - t0
        rec["node_count"] = srvr_number(t.servers[0], "Node count")
        rec["rss_mib"] = t.probe().rss() / 2**20
        if (rec["node_count"] or 0) < expect:
            rec["failed"] = "srvr reports %s znodes, expected at least %d" % (rec["node_count"], expect)
        log("  [%s] serving %s znodes %.2f s after start; RSS %.0f MiB" % (
            kind.label, rec["node_count"], rec["restart_s"], rec["rss_mib"]))
    except Exception as exc:
        rec["failed"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        finish(t, rec, log, kind.label, args.keep_logs)
        if not rec.get("failed") and not args.keep_logs:
            shutil.rmtree(wd, ignore_errors=True)
    return rec


def _probe_main(addr: tuple[str, int], path: str, stop, out, give_up: float) -> None:
    """One session, one request at a time (setData, getData, ...) until *stop*.
    A lost connection is counted and the request retried on a new session
    (as a client would); its sample then runs from the first send to the
    answer on the new session."""
    samples: list[tuple[float, float, int]] = []
    disconnects = 0
    try:
        conn = wire.Conn.open(addr, 30.0)
        conn.call(wire.create(path, b""))
        data = wire.value(100)
        reqs = [wire.set_(path, data), wire.get(path, len(data))]
        i = 0
        while not stop.is_set():
            t0 = time.monotonic()
            while True:
                try:
                    err = conn.call(reqs[i & 1])
                    break
                except (OSError, ConnectionError, wire.ProtocolError):
                    disconnects += 1
                    conn.abort()
                    conn = _reconnect(addr, t0 + give_up)
            samples.append((t0, (time.monotonic() - t0) * 1e6, err))
            i += 1
        conn.close()
        out.put({"samples": samples, "disconnects": disconnects})
    except Exception as exc:
        out.put({"samples": samples, "disconnects": disconnects,
                 "error": "%s: %s" % (type(exc).__name__, exc)})


def _reconnect(addr: tuple[str, int], deadline: float) -> wire.Conn:
    while True:
        try:
            return wire.Conn.open(addr, 10.0)
        except (OSError, ConnectionError, wire.ProtocolError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _latency_of(samples: list, lo: float, hi: float) -> dict:
    lat = sorted(s[1] for s in samples if lo <= s[0] < hi)
    return {"n": len(lat), "p50_us": stats.percentile(lat, 50),
            "p99_us": stats.percentile(lat, 99), "max_us": lat[-1] if lat else None}


def snap(kind: Kind, args, log: Log, ctx: dict) -> dict:
    snapshot, expect = snapshot_for(args, ctx)
    t = make_target(kind, 3, args, ctx)
    rec: dict = {"znodes": expect}
    mpc = mp.get_context("fork")
    stop, out = mpc.Event(), mpc.Queue()
    prober = None
    try:
        for s in t.servers:
            seed.seed(snapshot, s.data_dir)
        t.start(timeout=max(args.timeout, 600))
        li = t.leader_index()
        fi = next(i for i, m in enumerate(t.modes()) if m == "follower")
        assert li is not None and t.ensemble is not None
        leader, follower = t.ensemble.members[li], t.ensemble.members[fi]
        prober = mpc.Process(target=_probe_main, args=(
            t.addrs[li], "/snapprobe", stop, out, max(args.timeout, 600)), daemon=True)
        prober.start()
        time.sleep(args.snap_baseline)
        leader_probe = Probe([leader.pid])
        cpu_leader = leader_probe.cpu()
        t_start, t_synced = _rejoin(follower, expect, max(args.timeout, 600))
        rec["leader_cpu_s"] = leader_probe.cpu() - cpu_leader
        time.sleep(args.snap_baseline)
        stop.set()
        got = out.get(timeout=60)
        if got.get("error"):
            raise RuntimeError("probe: " + got["error"])
        errs = sum(1 for s in got["samples"] if s[2])
        if errs:
            raise RuntimeError("probe got %d error replies" % errs)
        before = _latency_of(got["samples"], 0, t_start)
        during = _latency_of(got["samples"], t_start, t_synced)
        rec.update(disconnects=got["disconnects"], join_s=t_synced - t_start,
                   before_p50_us=before["p50_us"],
                   before_p99_us=before["p99_us"], during_p50_us=during["p50_us"],
                   during_p99_us=during["p99_us"], during_max_us=during["max_us"],
                   during_n=during["n"], leader=leader.myid, follower=follower.myid)
        log("  [%s] follower %d rejoined with %d znodes in %.2f s; leader %d's probe p50/p99/max "
            "%.0f/%.0f/%.0f us during (before: %.0f/%.0f us); leader CPU %.2f s" % (
                kind.label, follower.myid, expect, rec["join_s"], leader.myid,
                during["p50_us"] or 0, during["p99_us"] or 0, during["max_us"] or 0,
                before["p50_us"] or 0, before["p99_us"] or 0, rec["leader_cpu_s"]))
        if rec["disconnects"]:
            log("  [%s] the leader closed the probe's connection %d time(s); each retried on a "
                "new session, the wait counted in its sample" % (kind.label, rec["disconnects"]))
    except Exception as exc:
        rec["failed"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        stop.set()
        if prober is not None:
            prober.join(10)
            if prober.is_alive():
                prober.terminate()
        finish(t, rec, log, kind.label, args.keep_logs)
    return rec


def _rejoin(follower, expect: int, timeout: float) -> tuple[float, float]:
    """Stop *follower*, delete its data, start it; wait until it serves as a
    follower with *expect* znodes.  Returns (start, serving) times."""
    follower.stop()
    shutil.rmtree(follower.server.data_dir / VERSION_DIR, ignore_errors=True)
    t_start = time.monotonic()
    follower.start(wait=False)
    deadline = t_start + timeout
    while not (follower.mode() == "follower"
               and (srvr_number(follower.server, "Node count") or 0) >= expect):
        if time.monotonic() > deadline or not follower.running:
            raise RuntimeError("follower %d did not rejoin with %d znodes in %.0f s"
                               % (follower.myid, expect, timeout))
        time.sleep(0.05)
    return t_start, time.monotonic()
