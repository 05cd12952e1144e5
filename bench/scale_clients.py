"""Scale parts about many clients: a million watches, and ten thousand
sessions that only ping.

Contract (each function measures one kind once; see :mod:`bench.scale`):

* :func:`watches` -- a fresh standalone server with ``--watch-znodes``
  znodes; ``--watch-sessions`` sessions each set a data watch (getData with
  watch) on every one of them, pipelined; ``wchs`` must then count them all.
  Memory per watch is the RSS growth over the watch count (for the JVM also
  the heap after a full GC).  Then one more session sets every znode once,
  and the time from the first setData to the last notification received
  gives the firing rate; every session must receive exactly one
  notification per znode, and ``wchs`` must count none left.
* :func:`sessions` -- a fresh standalone server; ``--ping-sessions``
  sessions are opened (pipelined handshakes), then each pings every
  ``--ping-interval`` s (default a third of the session timeout, as
  ZooKeeper's clients do when idle) for ``--ping-seconds``.  Reported: the
  server's CPU (cores, and per ping), RSS per session, ping round trips;
  every ping must be answered before its next one is due.
"""

from __future__ import annotations

import time

from bench import stats, wire
from bench.loadgen import Pool
from bench.measure import Log
from bench.probe import jvm_heap_after_gc
from bench.scale import finish, make_target, watch_total
from bench.targets import Kind

WATCH_VALUE = 16
SESSION_TIMEOUT_MS = 30000


def _create_paths(t, paths: list[str], timeout: float) -> None:
    conn = wire.Conn.open(t.addrs[0], timeout)
    try:
        data = wire.value(WATCH_VALUE)
        bad = wire.pipeline(conn, [wire.create("/watched", b"")]
                            + [wire.create(p, data) for p in paths])
        if bad:
            raise wire.ProtocolError("creating %d znodes: errors %s" % (len(paths), dict(bad)))
    finally:
        conn.close()


def watches(kind: Kind, args, log: Log, ctx: dict) -> dict:
    t = make_target(kind, 1, args, ctx)
    rec: dict = {}
    watchers = None
    try:
        t.start(timeout=args.timeout)
        paths = ["/watched/n%06d" % i for i in range(args.watch_znodes)]
        _create_paths(t, paths, args.timeout)
        watchers = Pool(t.addrs, args.watch_sessions, args.workers, args.timeout)
        rec.update(_set_watches(t, kind, watchers, paths, args))
        rec.update(_fire(t, watchers, paths, args))
        log("  [%s] %d watches (%d sessions x %d znodes): RSS +%.0f B/watch%s, set at %.0f/s; "
            "fired all in %.2f s = %.0f notifications/s, %.2f us server CPU each (generator "
            "%.2f us each)" % (
                kind.label, rec["watches"], args.watch_sessions, len(paths), rec["rss_per_watch"],
                ", live heap +%.0f B/watch" % rec["heap_per_watch"] if "heap_per_watch" in rec
                else "", rec["set_rate"] or 0, rec["fire_s"], rec["fired_per_s"],
                rec["fire_cpu_us_per_watch"] or 0, rec["gen_cpu_us_per_event"] or 0))
    except Exception as exc:
        rec["failed"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        if watchers is not None:
            watchers.close()
        finish(t, rec, log, kind.label, args.keep_logs)
    return rec


def _set_watches(t, kind: Kind, watchers: Pool, paths: list[str], args) -> dict:
    """Every session watches every path; memory before and after, wchs checked."""
    probe, pid, is_jvm = t.probe(), t.pids[0], kind.kind == "zookeeper"
    expect = args.watch_sessions * len(paths)
    watchers.define("watch", "watch_all", paths=paths, value_len=WATCH_VALUE)
    time.sleep(args.quiet)
    heap0 = jvm_heap_after_gc(pid) if is_jvm else None
    rss0, c0 = probe.rss(), probe.cpu()
    r = watchers.run("watch", 100)
    c1 = probe.cpu()
    _check(r)
    time.sleep(args.quiet)
    rss1 = probe.rss()
    heap1 = jvm_heap_after_gc(pid) if is_jvm else None
    counted = watch_total(t.servers[0])
    if counted != expect:
        raise RuntimeError("wchs counts %s watches, expected %d" % (counted, expect))
    rec = {"watches": expect, "wchs": counted, "rss_per_watch": (rss1 - rss0) / expect,
           "set_cpu_us_per_watch": stats.per_op(c1 - c0, expect), "set_rate": r["ops_per_s"]}
    if heap0 is not None and heap1 is not None:
        rec["heap_per_watch"] = (heap1 - heap0) / expect
    return rec


def _fire(t, watchers: Pool, paths: list[str], args) -> dict:
    """Set every path once from another session; every watcher must hear each."""
    probe = t.probe()
    expect = args.watch_sessions * len(paths)
    firer = Pool(t.addrs, 4, 1, args.timeout)
    try:
        firer.define("fire", "set_spread", paths=paths, value_size=WATCH_VALUE)
        watchers.send("await_events", expect=len(paths), timeout=args.timeout + 600)
        c0, t_fire = probe.cpu(), time.monotonic()
        fr = firer.run("fire", 100)
        got = watchers.collect(args.timeout + 660)
        c1 = probe.cpu()
    finally:
        firer.close()
    _check(fr)
    events = sum(g["events"] for g in got)
    t_last = max((g["t_last"] for g in got if g["t_last"] is not None), default=None)
    if events != expect or any(g["short"] for g in got) or t_last is None:
        raise RuntimeError("%d notifications received, expected %d" % (events, expect))
    left = watch_total(t.servers[0])
    if left:
        raise RuntimeError("wchs counts %s watches after every znode was set" % left)
    return {"fire_s": t_last - t_fire, "fired_per_s": events / (t_last - t_fire),
            "fire_cpu_us_per_watch": stats.per_op(c1 - c0, events),
            "gen_cpu_us_per_event": stats.per_op(sum(g["cpu"] for g in got), events)}


def _check(r: dict) -> None:
    if r["errors"] or r["bad_replies"]:
        raise wire.ProtocolError("error replies %s, %d bad replies" % (r["errors"],
                                                                        r["bad_replies"]))


def sessions(kind: Kind, args, log: Log, ctx: dict) -> dict:
    t = make_target(kind, 1, args, ctx)
    rec: dict = {"sessions": args.ping_sessions}
    pool = None
    try:
        t.start(timeout=args.timeout)
        probe = t.probe()
        time.sleep(args.quiet)
        rss0 = probe.rss()
        t0 = time.monotonic()
        pool = Pool(t.addrs, args.ping_sessions, args.workers, args.timeout,
                    session_timeout_ms=SESSION_TIMEOUT_MS)
        rec["open_s"] = time.monotonic() - t0
        time.sleep(args.quiet)
        rec["rss_per_session"] = (probe.rss() - rss0) / args.ping_sessions
        interval = args.ping_interval or SESSION_TIMEOUT_MS / 3000.0
        c0, w0 = probe.cpu(), time.monotonic()
        pool.send("ping_for", seconds=args.ping_seconds, interval=interval,
                  start_at=time.monotonic() + 0.2)
        got = pool.collect(args.ping_seconds + args.timeout + 60)
        c1, w1 = probe.cpu(), time.monotonic()
        sent = sum(g["sent"] for g in got)
        answered = sum(g["answered"] for g in got)
        late = sum(g["late"] for g in got)
        rtts = sorted(x for g in got for x in g["rtts"])
        rec.update(pings=sent, pings_per_s=sent / args.ping_seconds, ping_interval_s=interval,
                   server_cores=(c1 - c0) / (w1 - w0),
                   cpu_us_per_ping=stats.per_op(c1 - c0, sent),
                   rtt_p50_us=(stats.percentile(rtts, 50) or 0) * 1e6,
                   rtt_p99_us=(stats.percentile(rtts, 99) or 0) * 1e6,
                   rtt_max_us=(rtts[-1] if rtts else 0) * 1e6, late=late)
        if answered != sent or late:
            rec["failed"] = "%d of %d pings answered, %d not answered before the next was due" % (
                answered, sent, late)
        log("  [%s] %d sessions opened in %.1f s (RSS +%.0f B each); %d pings in %g s "
            "(every %.1f s each): server %.3f cores, %.1f us CPU per ping; RTT p50/p99/max "
            "%.0f/%.0f/%.0f us" % (
                kind.label, args.ping_sessions, rec["open_s"], rec["rss_per_session"], sent,
                args.ping_seconds, interval, rec["server_cores"], rec["cpu_us_per_ping"] or 0,
                rec["rtt_p50_us"], rec["rtt_p99_us"], rec["rtt_max_us"]))
    except Exception as exc:
        rec["failed"] = "%s: %s" % (type(exc).__name__, exc)
    finally:
        if pool is not None:
            t0 = time.monotonic()
            closed = pool.close()
            rec["close_s"] = time.monotonic() - t0
            if closed != args.ping_sessions and not rec.get("failed"):
                rec["failed"] = "only %d of %d sessions closed cleanly" % (closed,
                                                                           args.ping_sessions)
        finish(t, rec, log, kind.label, args.keep_logs)
    return rec
