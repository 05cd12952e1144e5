"""zkbench: throughput, server CPU per operation, latency and memory of a
ZooKeeper-compatible server.

    python -m bench.zkbench --servers zkpy,zookeeper --rounds 2 --duration 5
    python -m bench.zkbench --connect 127.0.0.1:2181 [--server-pid PID]

The load generator is a raw-socket client speaking the ZooKeeper wire
protocol (jute frames built with zkpy's codec, replies parsed only as far as
the ReplyHeader), pipelining a window of requests on each of many sessions,
spread over one or two worker processes.  Server CPU time (user+system of the
server process and its children, from psutil) is read before and after each
phase, so every throughput figure comes with the server CPU microseconds it
cost per operation -- the steadier of the two numbers on a shared machine.

See bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import random
import resource
import selectors
import shlex
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable

import psutil

from zkpy.jute import schema as S
from zkpy.jute.codec import decode, encode
from zkpy.jute.protocol import Op

# --------------------------------------------------------------------------
# wire protocol

_HDR = struct.Struct(">iii")        # frame length, xid, type
_LEN = struct.Struct(">i")
_REPLY = struct.Struct(">iqi")      # xid, zxid, err (after the length)
OPEN_ACL = [S.ACL(31, S.Id("world", "anyone"))]

OP_GET = int(Op.getData)
OP_SET = int(Op.setData)
OP_CREATE = int(Op.create)
OP_DELETE = int(Op.delete)
OP_CLOSE = int(Op.closeSession)


class ProtocolError(RuntimeError):
    pass


def get_body(path: str) -> bytes:
    return encode(S.GetDataRequest(path, False))


def set_body(path: str, data: bytes) -> bytes:
    return encode(S.SetDataRequest(path, data, -1))


def create_body(path: str, data: bytes) -> bytes:
    return encode(S.CreateRequest(path, data, OPEN_ACL, 0))


def delete_body(path: str) -> bytes:
    return encode(S.DeleteRequest(path, -1))


class Conn:
    """One ZooKeeper session on a blocking socket (with a timeout)."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.xid = 0
        req = encode(S.ConnectRequest(0, 0, 30000, 0, b"\0" * 16, False))
        self.sock.sendall(_LEN.pack(len(req)) + req)
        frame = self.read_frame()
        try:
            resp, _ = decode(S.ConnectResponse, frame)
            self.session_id = resp.sessionId
            self.timeout_ms = resp.timeOut
        except Exception:
            # A server that omits the trailing readOnly byte: sessionId is at 8.
            (self.session_id,) = struct.unpack_from(">q", frame, 8)
            self.timeout_ms = struct.unpack_from(">i", frame, 4)[0]
        if self.timeout_ms <= 0:
            raise ProtocolError("session refused (negotiated timeout %d)" % self.timeout_ms)
        self.out = 0          # outstanding requests (pipelined use)
        self.plan_pos = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def read_frame(self) -> bytes:
        while True:
            if len(self.buf) >= 4:
                (n,) = _LEN.unpack_from(self.buf, 0)
                if len(self.buf) >= 4 + n:
                    frame = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return frame
            data = self.sock.recv(1 << 18)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data

    def frame(self, op: int, body: bytes) -> bytes:
        self.xid += 1
        return _HDR.pack(len(body) + 8, self.xid, op) + body

    def call(self, op: int, body: bytes) -> int:
        """Send one request, wait for its reply, return the error code."""
        self.sock.sendall(self.frame(op, body))
        while True:
            frame = self.read_frame()
            xid, _zxid, err = _REPLY.unpack_from(frame, 0)
            if xid == self.xid:
                return err
            if xid >= 0:
                raise ProtocolError("reply for xid %d while waiting for %d" % (xid, self.xid))

    def pipeline(self, items: Iterable[tuple[int, bytes]], window: int = 256) -> Counter:
        """Issue *items* keeping *window* in flight; returns a Counter of error codes."""
        errs: Counter = Counter()
        it = iter(items)
        out = 0
        exhausted = False
        while True:
            if not exhausted and out < window:
                parts = []
                for _ in range(window - out):
                    try:
                        op, body = next(it)
                    except StopIteration:
                        exhausted = True
                        break
                    parts.append(self.frame(op, body))
                if parts:
                    self.sock.sendall(b"".join(parts))
                    out += len(parts)
            if out == 0:
                return errs
            data = self.sock.recv(1 << 18)
            if not data:
                raise ConnectionError("server closed the connection")
            self.buf += data
            n, e = _parse_replies(self.buf)
            out -= n
            errs.update(e)

    def close(self) -> None:
        try:
            self.sock.settimeout(5)
            self.call(OP_CLOSE, b"")
        except Exception:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def _parse_replies(buf: bytearray) -> tuple[int, dict[int, int] | None]:
    """Consume every complete reply in *buf*; return (replies, {err: count} or None)."""
    off = 0
    n = 0
    errs = None
    end = len(buf)
    unpack_len = _LEN.unpack_from
    unpack_reply = _REPLY.unpack_from
    while end - off >= 4:
        (flen,) = unpack_len(buf, off)
        if end - off - 4 < flen:
            break
        xid, _zxid, err = unpack_reply(buf, off + 4)
        off += 4 + flen
        if xid < 0:       # watch notification / ping reply: not ours to count
            continue
        n += 1
        if err:
            if errs is None:
                errs = {}
            errs[err] = errs.get(err, 0) + 1
    if off:
        del buf[:off]
    return n, errs


# --------------------------------------------------------------------------
# server probe (CPU time and RSS of a pid and its children)


class Probe:
    """CPU and RSS of a server process (or of every member of an ensemble)."""

    def __init__(self, pid: int | list[int] | None) -> None:
        pids = pid if isinstance(pid, list) else [pid] if pid else []
        self.pid = pids[0] if pids else None
        self.roots = [psutil.Process(p) for p in pids]
        self.proc = self.roots[0] if self.roots else None

    def _procs(self) -> list[psutil.Process]:
        procs = []
        for root in self.roots:
            procs.append(root)
            try:
                procs += root.children(recursive=True)
            except psutil.Error:
                pass
        return procs

    def cpu(self) -> float | None:
        if self.proc is None:
            return None
        total = 0.0
        for p in self._procs():
            try:
                t = p.cpu_times()
            except psutil.Error:
                continue
            total += t.user + t.system
        return total

    def rss(self) -> int | None:
        if self.proc is None:
            return None
        total = 0
        for p in self._procs():
            try:
                total += p.memory_info().rss
            except psutil.Error:
                continue
        return total


def find_listening_pid(host: str, port: int) -> int | None:
    """Best effort: the pid listening on *port* (only visible for our own user's processes)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return c.pid
    return None


# --------------------------------------------------------------------------
# throughput workers


def _build_plan(keys: list[str], value: bytes, read_pct: float, seed: int,
                size: int = 16384) -> list[tuple[int, bytes]]:
    rng = random.Random(seed)
    gets = [get_body(k) for k in keys]
    sets = [set_body(k, value) for k in keys]
    plan = []
    for _ in range(size):
        i = rng.randrange(len(keys))
        if rng.random() * 100.0 < read_pct:
            plan.append((OP_GET, gets[i]))
        else:
            plan.append((OP_SET, sets[i]))
    return plan


def _issue(c: Conn, plan: list[tuple[int, bytes]], k: int) -> None:
    parts = []
    pos = c.plan_pos
    xid = c.xid
    mask = len(plan) - 1
    pack = _HDR.pack
    for _ in range(k):
        op, body = plan[pos]
        pos = (pos + 1) & mask
        xid += 1
        parts.append(pack(len(body) + 8, xid, op))
        parts.append(body)
    c.plan_pos = pos
    c.xid = xid
    c.sock.sendall(b"".join(parts))
    c.out += k


def _worker(wid: int, addrs: list[tuple[str, int]], n_sessions: int, window: int,
            keys: list[str], value: bytes, read_pct: float, seed: int,
            duration: float, budget: int, timeout: float,
            start_barrier, end_barrier, results) -> None:
    res: dict = {"worker": wid, "ops": 0, "errors": {}, "error": None,
                 "t_start": None, "t_end": None, "cpu": 0.0}
    conns: list[Conn] = []
    try:
        plan = _build_plan(keys, value, read_pct, seed)
        for i in range(n_sessions):  # an ensemble's members share the sessions
            conns.append(Conn(*addrs[(wid + i) % len(addrs)], timeout))
    except Exception as exc:  # reported, not raised: the parent must not hang
        res["error"] = "connect: %s: %s" % (type(exc).__name__, exc)
    try:
        start_barrier.wait(timeout)
    except Exception:
        res["error"] = res["error"] or "start barrier broken"
    if res["error"] is None:
        try:
            _run_load(conns, plan, window, duration, budget, timeout, res)
        except Exception as exc:
            res["error"] = "%s: %s" % (type(exc).__name__, exc)
    results.put(res)
    try:
        end_barrier.wait(timeout)
    except Exception:
        pass
    for c in conns:
        if res["error"] is None:
            c.close()
        else:
            try:
                c.sock.close()
            except OSError:
                pass


def _run_load(conns: list[Conn], plan: list, window: int, duration: float,
              budget: int, timeout: float, res: dict) -> None:
    sel = selectors.DefaultSelector()
    for i, c in enumerate(conns):
        c.plan_pos = (i * 977) % len(plan)
        sel.register(c.sock, selectors.EVENT_READ, c)
    errors: Counter = Counter()
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.monotonic()
    deadline = t0 + duration
    issued = 0
    done = 0
    for c in conns:
        k = min(window, budget - issued)
        if k > 0:
            _issue(c, plan, k)
            issued += k
    outstanding = issued
    last = t0
    while outstanding > 0:
        events = sel.select(timeout=1.0)
        now = time.monotonic()
        if not events:
            if now - last > timeout:
                raise TimeoutError("no reply for %.0f s with %d requests outstanding"
                                   % (now - last, outstanding))
            continue
        last = now
        stop = now >= deadline or issued >= budget
        for key, _mask in events:
            c = key.data
            data = c.sock.recv(1 << 18)
            if not data:
                raise ConnectionError("server closed the connection (%d requests outstanding)"
                                      % outstanding)
            c.buf += data
            n, e = _parse_replies(c.buf)
            if e:
                errors.update(e)
            c.out -= n
            outstanding -= n
            done += n
            if not stop and n:
                k = min(n, budget - issued)
                if k > 0:
                    _issue(c, plan, k)
                    issued += k
                    outstanding += k
    t1 = time.monotonic()
    ru1 = resource.getrusage(resource.RUSAGE_SELF)
    sel.close()
    res.update(ops=done, errors=dict(errors), t_start=t0, t_end=t1,
               cpu=(ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime))


def run_throughput(addrs: list[tuple[str, int]], probe: Probe, args, keys: list[str],
                   read_pct: float, duration: float, seed: int) -> dict:
    ctx = mp.get_context("fork")
    nw = max(1, min(args.workers, args.sessions))
    start_b = ctx.Barrier(nw + 1)
    end_b = ctx.Barrier(nw + 1)
    results = ctx.Queue()
    value = _value(args.value_size)
    procs = []
    for w in range(nw):
        sess = args.sessions // nw + (1 if w < args.sessions % nw else 0)
        budget = args.max_ops // nw + (1 if w < args.max_ops % nw else 0)
        p = ctx.Process(target=_worker, args=(
            w, addrs, sess, args.window, keys, value, read_pct, seed * 100 + w,
            duration, budget, args.timeout, start_b, end_b, results), daemon=True)
        p.start()
        procs.append(p)
    out: dict = {"read_pct": read_pct, "duration_target": duration}
    try:
        start_b.wait(args.timeout + 30)
        cpu0 = probe.cpu()
        w0 = time.monotonic()
        got = []
        for _ in range(nw):
            got.append(results.get(timeout=duration + args.timeout + 30))
        cpu1 = probe.cpu()
        w1 = time.monotonic()
        end_b.wait(30)
    except Exception as exc:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(5)
        out["error"] = "benchmark coordination failed: %s: %s" % (type(exc).__name__, exc)
        return out
    for p in procs:
        p.join(30)
        if p.is_alive():
            p.terminate()
            p.join(5)
    errs = [r["error"] for r in got if r["error"]]
    ops = sum(r["ops"] for r in got)
    errors: Counter = Counter()
    for r in got:
        errors.update({int(k): v for k, v in r["errors"].items()})
    out["errors"] = {str(k): v for k, v in sorted(errors.items())}
    if errs:
        out["error"] = "; ".join(sorted(set(errs)))
        return out
    t_start = min(r["t_start"] for r in got)
    t_end = max(r["t_end"] for r in got)
    elapsed = t_end - t_start
    out.update(
        ops=ops,
        seconds=elapsed,
        ops_per_s=ops / elapsed if elapsed > 0 else None,
        server_cpu_s=(cpu1 - cpu0) if cpu0 is not None else None,
        server_cpu_us_per_op=((cpu1 - cpu0) * 1e6 / ops) if cpu0 is not None and ops else None,
        server_cpu_util=((cpu1 - cpu0) / (w1 - w0)) if cpu0 is not None else None,
        client_cpu_us_per_op=sum(r["cpu"] for r in got) * 1e6 / ops if ops else None,
        client_busy_max=max(r["cpu"] / (r["t_end"] - r["t_start"]) for r in got),
    )
    return out


# --------------------------------------------------------------------------
# the other phases


def _value(size: int) -> bytes:
    return bytes((i * 31 + 7) & 0xFF for i in range(size))


def ensure_path(conn: Conn, path: str) -> None:
    cur = ""
    for part in path.strip("/").split("/"):
        cur += "/" + part
        err = conn.call(OP_CREATE, create_body(cur, b""))
        if err not in (0, -110):  # OK, NODEEXISTS
            raise ProtocolError("create %s failed with error %d" % (cur, err))


def create_keys(conn: Conn, base: str, count: int, value: bytes) -> list[str]:
    keys = ["%s/k%07d" % (base, i) for i in range(count)]
    errs = conn.pipeline((OP_CREATE, create_body(k, value)) for k in keys)
    bad = {k: v for k, v in errs.items() if k != -110}
    if bad:
        raise ProtocolError("creating %d keys: errors %s" % (count, bad))
    return keys


def run_memory(conn: Conn, probe: Probe, base: str, count: int, size: int) -> dict:
    out: dict = {"znodes": count, "znode_bytes": size}
    if count <= 0:
        return out
    data = _value(size)
    ensure_path(conn, base)
    time.sleep(0.5)
    rss0 = probe.rss()
    t0 = time.monotonic()
    errs = conn.pipeline((OP_CREATE, create_body("%s/m%07d" % (base, i), data))
                         for i in range(count))
    t1 = time.monotonic()
    time.sleep(1.0)
    rss1 = probe.rss()
    out.update(create_seconds=t1 - t0, create_ops_per_s=count / (t1 - t0),
               errors={str(k): v for k, v in errs.items()})
    if rss0 is not None and rss1 is not None:
        out.update(rss_before=rss0, rss_after=rss1,
                   rss_delta_per_znode=(rss1 - rss0) / count)
    return out


def _pct(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = max(0, min(len(sorted_vals) - 1, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[k]


def run_latency(conn: Conn, base: str, count: int, value: bytes) -> dict:
    out: dict = {}
    if count <= 0:
        return out
    ensure_path(conn, base)
    paths = ["%s/l%07d" % (base, i) for i in range(count)]
    ops = [
        ("create", lambda p: (OP_CREATE, create_body(p, value))),
        ("get", lambda p: (OP_GET, get_body(p))),
        ("set", lambda p: (OP_SET, set_body(p, value))),
        ("delete", lambda p: (OP_DELETE, delete_body(p))),
    ]
    clock = time.perf_counter_ns
    for name, make in ops:
        reqs = [make(p) for p in paths]   # encoded outside the timed region
        lat = []
        errors = 0
        for op, body in reqs:
            t0 = clock()
            err = conn.call(op, body)
            lat.append((clock() - t0) / 1000.0)
            if err:
                errors += 1
        lat.sort()
        out[name] = {"n": len(lat), "errors": errors,
                     "p50_us": _pct(lat, 50), "p90_us": _pct(lat, 90),
                     "p99_us": _pct(lat, 99), "max_us": lat[-1],
                     "mean_us": sum(lat) / len(lat)}
    return out


def delete_tree(conn: Conn, paths_deepest_first: Iterable[str]) -> None:
    conn.pipeline((OP_DELETE, delete_body(p)) for p in paths_deepest_first)


# --------------------------------------------------------------------------
# one round against one server


def read_mix_name(pct: float) -> str:
    return "read%g" % pct


OP_SYNC = 9


class EnsembleTarget:
    """An ensemble of --ensemble N members standing in for one server in the
    round loop: the load is spread over every member, CPU and RSS are summed."""

    def __init__(self, kind: str, size: int, settings: dict, server_options: dict) -> None:
        from zkpy.testing.ensemble import Ensemble

        self.ensemble = Ensemble(kind, size, settings, tick_time=int(settings.get("tickTime", 2000)),
                                 server_options=server_options)
        self.keep_workdir = False
        self.workdir = self.ensemble.workdir
        first = self.ensemble.members[0]
        self.host, self.port = first.host, first.port

    def start(self, timeout: float) -> None:
        self.ensemble.start(timeout=timeout)

    @property
    def addrs(self) -> list[tuple[str, int]]:
        return [(m.host, m.port) for m in self.ensemble.members]

    @property
    def pids(self) -> list[int]:
        return [m.pid for m in self.ensemble.members if m.pid]

    pid = property(lambda self: self.pids[0])
    connect_string = property(lambda self: self.ensemble.connect_string)
    running = property(lambda self: all(m.running for m in self.ensemble.members))
    returncode = property(lambda self: [m.server.returncode for m in self.ensemble.members])
    log_path = property(lambda self: self.workdir)

    def log_text(self) -> str:
        return "\n".join(m.server.log_text() for m in self.ensemble.members)

    def log_tail(self, lines: int = 25) -> str:
        return self.ensemble.log_tails(lines)

    def cleanup(self) -> None:
        self.ensemble.keep_workdir = self.keep_workdir
        self.ensemble.cleanup()


def run_suite(host: str, port: int, probe: Probe, args, root: str, label: str,
              alive=lambda: None, log=print, addrs: list[tuple[str, int]] | None = None) -> dict:
    """Run every phase against host:port (the load spread over *addrs* when
    given: an ensemble's members); *alive* returns an error string when the
    server died."""
    addrs = addrs or [(host, port)]
    res: dict = {"phases": {}, "memory": None, "latency": None, "errors": []}
    value = _value(args.value_size)
    conn = Conn(host, port, args.timeout)
    try:
        ensure_path(conn, root + "/kv")
        t0 = time.monotonic()
        keys = create_keys(conn, root + "/kv", args.keys, value)
        for addr in addrs:  # every member has the keys before any is read from it
            if addr != (host, port):
                member = Conn(*addr, timeout=args.timeout)
                path = (root + "/kv").encode()
                member.call(OP_SYNC, struct.pack(">i", len(path)) + path)
                member.close()
        log("  [%s] %d keys of %d B created in %.1f s" % (label, len(keys), len(value),
                                                          time.monotonic() - t0))
        if args.warmup > 0:
            w = run_throughput(addrs, probe, args, keys, 50.0, args.warmup, args.seed + 999)
            log("  [%s] warm-up %.0f s (50%% reads): %s" % (label, args.warmup, _short(w)))
            if w.get("error"):
                res["errors"].append("warm-up: " + w["error"])
                return res
        if args.znodes > 0:
            m = run_memory(conn, probe, root + "/mem", args.znodes, args.znode_size)
            res["memory"] = m
            if "rss_delta_per_znode" in m:
                log("  [%s] memory: %d znodes of %d B, RSS %+.1f MiB -> %.0f B/znode"
                    % (label, m["znodes"], m["znode_bytes"],
                       (m["rss_after"] - m["rss_before"]) / 2**20, m["rss_delta_per_znode"]))
            else:
                log("  [%s] memory: %d znodes created (no server pid: RSS unknown)"
                    % (label, m["znodes"]))
        for pct in args.reads:
            r = run_throughput(addrs, probe, args, keys, pct, args.duration, args.seed)
            res["phases"][read_mix_name(pct)] = r
            log("  [%s] %3g%% reads: %s" % (label, pct, _short(r)))
            dead = alive()
            if r.get("error") or dead:
                res["errors"].append("%g%% reads: %s" % (pct, r.get("error") or dead))
                return res
        if args.latency_ops > 0:
            lat = run_latency(conn, root + "/lat", args.latency_ops, value)
            res["latency"] = lat
            log("  [%s] latency (us, p50/p99): %s" % (label, "  ".join(
                "%s %.0f/%.0f" % (k, v["p50_us"], v["p99_us"]) for k, v in lat.items())))
        if args.cleanup:
            t0 = time.monotonic()
            paths = []
            paths += ["%s/mem/m%07d" % (root, i) for i in range(args.znodes)]
            paths += keys
            paths += [root + "/mem", root + "/lat", root + "/kv", root]
            delete_tree(conn, paths)
            log("  [%s] removed %s (%.1f s)" % (label, root, time.monotonic() - t0))
    except Exception as exc:
        dead = alive()
        res["errors"].append("%s: %s%s" % (type(exc).__name__, exc,
                                          " (%s)" % dead if dead else ""))
    finally:
        conn.close()
    return res


def _short(r: dict) -> str:
    if r.get("error"):
        return "ERROR " + r["error"]
    s = "%d ops in %.2f s = %.0f ops/s" % (r["ops"], r["seconds"], r["ops_per_s"])
    if r.get("server_cpu_us_per_op") is not None:
        s += ", server %.1f us CPU/op (%.0f%% of a core)" % (
            r["server_cpu_us_per_op"], 100 * r["server_cpu_util"])
    s += ", client %.1f us/op (busiest worker %.0f%%)" % (
        r["client_cpu_us_per_op"], 100 * r["client_busy_max"])
    if r.get("errors"):
        s += ", error replies %s" % r["errors"]
    return s


# --------------------------------------------------------------------------
# servers, machine description, report


def server_settings(force_sync: bool) -> dict:
    return {
        "tickTime": 2000,
        "initLimit": 10,
        "syncLimit": 5,
        "minSessionTimeout": 4000,
        "maxSessionTimeout": 40000,
        "maxClientCnxns": 0,
        "4lw.commands.whitelist": "*",
        "admin.enableServer": "false",
        "forceSync": "yes" if force_sync else "no",
    }


def machine_info() -> dict:
    info: dict = {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version() + " (" + sys.executable + ")",
        "platform": platform.platform(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        sha = subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--", "zkpy"],
                               capture_output=True, text=True, timeout=10).stdout.split()
        if sha:
            info["zkpy_revision"] = sha + (" + uncommitted changes in zkpy/" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    info["mem_total_gib"] = round(psutil.virtual_memory().total / 2**30, 1)
    try:
        from zkpy.testing.launchers import find_real_java
        java = find_real_java()
        if java:
            out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
            info["java"] = (out.stderr or out.stdout).strip().splitlines()[0]
    except Exception as exc:
        info["java"] = "unknown (%s)" % exc
    return info


def _median(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return statistics.median(vals) if vals else None


def _fmt(v, spec: str = ",.0f", width: int = 10) -> str:
    if v is None:
        return "-".rjust(width)
    return format(v, spec).rjust(width)


def report(runs: list[dict], labels: list[str], args, log=print) -> dict:
    """Print the tables; return the summary dict (medians, ratios)."""
    summary: dict = {"throughput": {}, "latency": {}, "memory": {}}
    rounds = max((r["round"] for r in runs), default=0)
    by = {(r["server"], r["round"]): r for r in runs}
    lw = max([11] + [len(x) for x in labels])
    ratio_pair = None
    if "zkpy" in labels and "zookeeper" in labels:
        ratio_pair = ("zkpy", "zookeeper")
    elif len(labels) == 2:
        ratio_pair = (labels[0], labels[1])

    for pct in args.reads:
        name = read_mix_name(pct)
        kind = {0: "setData only", 100: "getData only"}.get(pct, "getData/setData mix")
        log("")
        log("== %g%% reads (%s, %d B values, %d keys; %d sessions x %d in flight, %d worker(s); "
            "%g s per phase) ==" % (pct, kind, args.value_size, args.keys, args.sessions,
                                     args.window, args.workers, args.duration))
        head = "%-*s" % (lw, "server")
        for rnd in range(1, rounds + 1):
            head += " | %10s %9s" % ("r%d ops/s" % rnd, "cpu us/op")
        head += " | %10s %9s | %s" % ("med ops/s", "us/op", "client busy%/server core%")
        log(head)
        log("-" * len(head))
        med: dict = {}
        for lab in labels:
            line = "%-*s" % (lw, lab)
            o, c, notes = [], [], []
            for rnd in range(1, rounds + 1):
                ph = by.get((lab, rnd), {}).get("result", {}).get("phases", {}).get(name)
                if not ph or ph.get("error"):
                    line += " | %10s %9s" % ("FAILED" if ph else "-", "-")
                    continue
                o.append(ph["ops_per_s"])
                c.append(ph.get("server_cpu_us_per_op"))
                line += " | %s %s" % (_fmt(ph["ops_per_s"]), _fmt(ph.get("server_cpu_us_per_op"),
                                                                     ".1f", 9))
                notes.append("%.0f/%s" % (100 * ph["client_busy_max"],
                                          "-" if ph.get("server_cpu_util") is None
                                          else "%.0f" % (100 * ph["server_cpu_util"])))
            mo, mc = _median(o), _median(c)
            med[lab] = {"ops_per_s": mo, "server_cpu_us_per_op": mc,
                        "rounds_ops_per_s": o, "rounds_cpu_us_per_op": c}
            line += " | %s %s | %s" % (_fmt(mo), _fmt(mc, ".1f", 9), " ".join(notes))
            log(line)
        if ratio_pair and all(med.get(x, {}).get("ops_per_s") for x in ratio_pair):
            a, b = med[ratio_pair[0]], med[ratio_pair[1]]
            r_ops = a["ops_per_s"] / b["ops_per_s"]
            r_cpu = (a["server_cpu_us_per_op"] / b["server_cpu_us_per_op"]
                     if a["server_cpu_us_per_op"] and b["server_cpu_us_per_op"] else None)
            med["ratio"] = {"pair": list(ratio_pair), "ops_per_s": r_ops, "cpu_us_per_op": r_cpu}
            log("ratio %s/%s (medians): ops/s %.2fx, server CPU us/op %s"
                % (ratio_pair[0], ratio_pair[1], r_ops,
                   "%.2fx" % r_cpu if r_cpu is not None else "-"))
        summary["throughput"][name] = med

    if any(by[k].get("result", {}).get("latency") for k in by):
        log("")
        log("== latency, one session, one request at a time (%d ops each, %d B values; "
            "microseconds, median over rounds of each percentile) ==" % (args.latency_ops,
                                                                      args.value_size))
        head = "%-*s %-7s %9s %9s %9s %9s" % (lw, "server", "op", "p50", "p90", "p99", "max")
        log(head)
        log("-" * len(head))
        for lab in labels:
            summary["latency"][lab] = {}
            for op in ("create", "get", "set", "delete"):
                vals = {}
                for q in ("p50_us", "p90_us", "p99_us", "max_us"):
                    vals[q] = _median([
                        (by.get((lab, rnd), {}).get("result", {}).get("latency") or {})
                        .get(op, {}).get(q) for rnd in range(1, rounds + 1)])
                summary["latency"][lab][op] = vals
                log("%-*s %-7s %s %s %s %s" % (lw, lab, op, *(_fmt(vals[q], ",.0f", 9) for q in
                                                          ("p50_us", "p90_us", "p99_us", "max_us"))))
        if ratio_pair:
            a, b = (summary["latency"].get(x, {}) for x in ratio_pair)
            parts = []
            for op in ("create", "get", "set", "delete"):
                x, y = a.get(op, {}).get("p50_us"), b.get(op, {}).get("p50_us")
                if x and y:
                    parts.append("%s %.2fx" % (op, x / y))
            if parts:
                log("ratio %s/%s p50: %s" % (ratio_pair[0], ratio_pair[1], ", ".join(parts)))

    if any(by[k].get("result", {}).get("memory") for k in by) and args.znodes > 0:
        log("")
        log("== memory: server RSS delta after creating %d znodes of %d B (no GC forced; "
            "for the JVM this is heap growth, not live data) ==" % (args.znodes, args.znode_size))
        head = "%-*s" % (lw, "server")
        for rnd in range(1, rounds + 1):
            head += " | %12s" % ("r%d B/znode" % rnd)
        head += " | %10s | %s" % ("median", "RSS before -> after (MiB), create ops/s")
        log(head)
        log("-" * len(head))
        for lab in labels:
            line = "%-*s" % (lw, lab)
            vals, notes = [], []
            for rnd in range(1, rounds + 1):
                m = by.get((lab, rnd), {}).get("result", {}).get("memory") or {}
                v = m.get("rss_delta_per_znode")
                vals.append(v)
                line += " | %s" % _fmt(v, ",.0f", 12)
                if v is not None:
                    notes.append("%.0f->%.0f @%.0f" % (m["rss_before"] / 2**20,
                                                       m["rss_after"] / 2**20,
                                                       m["create_ops_per_s"]))
            mv = _median(vals)
            summary["memory"][lab] = {"rss_delta_per_znode": mv, "rounds": vals}
            line += " | %s | %s" % (_fmt(mv), "; ".join(notes))
            log(line)
    return summary


# --------------------------------------------------------------------------
# main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.zkbench",
        description="Benchmark ZooKeeper-compatible servers: throughput with server CPU "
                    "per op, sequential latency, memory per znode.")
    tgt = p.add_mutually_exclusive_group()
    tgt.add_argument("--servers", default=None,
                     help="comma-separated server kinds to start here, in order "
                          "(zkpy, zookeeper); default zkpy,zookeeper")
    tgt.add_argument("--connect", metavar="HOST:PORT",
                     help="measure one already-running server instead")
    p.add_argument("--server-pid", type=int, default=None,
                   help="with --connect: pid of the server for CPU/RSS (found automatically "
                        "when it listens locally under our user)")
    p.add_argument("--rounds", type=int, default=2,
                   help="A-B-A-B rounds; each round starts each server afresh (default 2)")
    p.add_argument("--duration", type=float, default=5.0, help="seconds per throughput phase")
    p.add_argument("--warmup", type=float, default=None,
                   help="seconds of 50%% reads before measuring (default min(2, duration))")
    p.add_argument("--max-ops", type=int, default=2_000_000,
                   help="request cap per throughput phase (default 2,000,000)")
    p.add_argument("--reads", default="0,50,90,100",
                   help="read percentages of the throughput phases (default 0,50,90,100)")
    p.add_argument("--sessions", type=int, default=32, help="sessions in total (default 32)")
    p.add_argument("--window", type=int, default=32,
                   help="requests in flight per session (default 32)")
    p.add_argument("--workers", type=int, default=2,
                   help="load-generator processes (default 2)")
    p.add_argument("--keys", type=int, default=1000, help="znodes read/written (default 1000)")
    p.add_argument("--value-size", type=int, default=1024, help="bytes per value (default 1024)")
    p.add_argument("--znodes", type=int, default=100_000,
                   help="znodes created for the memory measurement (0 to skip; default 100000)")
    p.add_argument("--znode-size", type=int, default=100,
                   help="bytes per memory-test znode (default 100)")
    p.add_argument("--latency-ops", type=int, default=2000,
                   help="sequential ops per type for latency (0 to skip; default 2000)")
    p.add_argument("--force-sync", action="store_true",
                   help="leave forceSync=yes (both servers fsync their transaction log, group-committed)")
    p.add_argument("--ensemble", type=int, default=1, metavar="N",
                   help="run each kind as an ensemble of N servers (sessions spread over the "
                        "members, CPU summed over them; the memory phase is skipped)")
    p.add_argument("--heap", default="1g", help="Apache ZooKeeper -Xmx (default 1g)")
    p.add_argument("--root", default=None, help="znode under which to work "
                   "(default /zkbench, or a unique name with --connect)")
    p.add_argument("--json", metavar="FILE", help="write all results to FILE")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--timeout", type=float, default=30.0,
                   help="socket/idle timeout in seconds (default 30)")
    p.add_argument("--keep-logs", action="store_true",
                   help="keep the servers' temp directories (kept anyway when a server fails)")
    args = p.parse_args(argv)
    try:
        args.reads = [float(x) for x in args.reads.split(",") if x.strip()]
    except ValueError:
        p.error("--reads: comma-separated numbers please")
    if any(not 0 <= x <= 100 for x in args.reads):
        p.error("--reads: percentages between 0 and 100")
    if args.warmup is None:
        args.warmup = min(2.0, args.duration)
    if args.connect is None and args.servers is None:
        args.servers = "zkpy,zookeeper"
    if args.keys < 1:
        p.error("--keys must be at least 1")
    if args.workers < 1 or args.sessions < 1 or args.window < 1:
        p.error("--workers, --sessions and --window must be positive")
    return args


def _log_problems(text: str, limit: int = 12) -> list[str]:
    keys = ("Traceback", "ERROR", "Error", "Unhandled", "CRITICAL", "Exception")
    # Apache ZooKeeper logs a WARN with this exception whenever a client
    # closes its socket after closeSession: expected, not a problem.
    benign = ("EndOfStreamException",)
    lines = [ln for ln in text.splitlines()
             if any(k in ln for k in keys) and not any(b in ln for b in benign)]
    return lines[:limit]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out_lines: list[str] = []

    def log(s: str = "") -> None:
        print(s, flush=True)
        out_lines.append(s)

    cmd = "python -m bench.zkbench " + shlex.join(sys.argv[1:] if argv is None else argv)
    machine = machine_info()
    log("command: " + cmd)
    log("machine: nproc=%s (usable %s), %s, %.1f GiB RAM; %s" % (
        machine["nproc"], machine.get("usable_cpus"), machine.get("cpu", "?"),
        machine["mem_total_gib"], machine["platform"]))
    log("python:  " + machine["python"])
    log("java:    " + machine.get("java", "not found"))
    if machine.get("zkpy_revision"):
        log("zkpy:    git " + machine["zkpy_revision"])
    try:
        log("loadavg: %.2f (1 min) before starting (other work on this machine "
            "shows up as noise in ops/s)" % os.getloadavg()[0])
    except OSError:
        pass
    settings = server_settings(args.force_sync)
    if args.ensemble > 1:
        args.znodes = 0  # RSS per znode means nothing summed over three copies
    runs: list[dict] = []

    if args.connect:
        host, _, port_s = args.connect.rpartition(":")
        host = host or "127.0.0.1"
        port = int(port_s)
        pid = args.server_pid or find_listening_pid(host, port)
        args.cleanup = True
        labels = [args.connect]
        log("target:  existing server %s, pid %s (%s); the same server is reused each round, "
            "under a fresh root znode that is deleted afterwards" % (
                args.connect, pid or "unknown", "CPU/RSS measured" if pid else
                "no CPU/RSS: pass --server-pid"))
        log("load:    %d sessions x %d in flight over %d worker process(es)" % (
            args.sessions, args.window, args.workers))
        probe = Probe(pid)
        for rnd in range(1, args.rounds + 1):
            root = args.root or "/zkbench-%s-%d-r%d" % (socket.gethostname(), os.getpid(), rnd)
            log("round %d: %s" % (rnd, args.connect))
            res = run_suite(host, port, probe, args, root, args.connect, log=log)
            for e in res["errors"]:
                log("  [%s] FAILED: %s" % (args.connect, e))
            runs.append({"server": args.connect, "round": rnd, "result": res})
    else:
        from zkpy.testing.launchers import server_from_name
        labels = []
        for name in args.servers.split(","):
            name = name.strip().lower()
            name = {"apache": "zookeeper", "zk": "zookeeper"}.get(name, name)
            if name not in ("zkpy", "zookeeper"):
                log("unknown server kind %r (zkpy, zookeeper)" % name)
                return 2
            if name not in labels:
                labels.append(name)
        args.cleanup = False
        log("servers: %s, each started afresh for every round (new process, empty tree), "
            "same zoo.cfg:" % " and ".join(labels))
        log("         " + " ".join("%s=%s" % kv for kv in settings.items()))
        if args.force_sync:
            log("         forceSync=yes: both servers fsync their transaction log before "
                "acknowledging a write (group commit)")
        else:
            log("         forceSync=no: both servers write their transaction log and "
                "snapshots, but without fsync")
        if "zookeeper" in labels:
            log("         Apache ZooKeeper JVM: -Xmx%s (other JVM options default)" % args.heap)
        log("load:    %d sessions x %d in flight over %d worker process(es); warm-up %g s; "
            "phases %g s or %d requests" % (args.sessions, args.window, args.workers,
                                            args.warmup, args.duration, args.max_ops))
        for rnd in range(1, args.rounds + 1):
            for lab in labels:
                kw: dict = {"settings": settings}
                if lab == "zookeeper":
                    kw["jvm_args"] = ["-Xmx%s" % args.heap]
                try:
                    srv = (EnsembleTarget(lab, args.ensemble, settings,
                                          {k: v for k, v in kw.items() if k != "settings"})
                           if args.ensemble > 1 else server_from_name(lab, **kw))
                except Exception as exc:
                    log("round %d: %s: cannot create server: %s" % (rnd, lab, exc))
                    runs.append({"server": lab, "round": rnd,
                                 "result": {"errors": [str(exc)], "phases": {}}})
                    continue
                entry: dict = {"server": lab, "round": rnd}
                try:
                    t0 = time.monotonic()
                    srv.start(timeout=90)
                    log("round %d: %s pid %d on %s (ready in %.1f s, dir %s)" % (
                        rnd, lab, srv.pid, srv.connect_string, time.monotonic() - t0,
                        srv.workdir))
                    probe = Probe(srv.pids if args.ensemble > 1 else srv.pid)

                    def alive(srv=srv) -> str | None:
                        if srv.running:
                            return None
                        return "server exited with status %s" % srv.returncode

                    res = run_suite(srv.host, srv.port, probe, args, args.root or "/zkbench",
                                    lab, alive=alive, log=log,
                                    addrs=srv.addrs if args.ensemble > 1 else None)
                except Exception as exc:
                    res = {"errors": ["start: %s: %s" % (type(exc).__name__, exc)], "phases": {}}
                entry["result"] = res
                problems = _log_problems(srv.log_text())
                if problems:
                    entry["log_problems"] = problems
                if res["errors"] or not srv.running:
                    srv.keep_workdir = True
                    for e in res["errors"]:
                        log("  [%s] FAILED: %s" % (lab, e))
                    if not srv.running:
                        log("  [%s] server exited with status %s" % (lab, srv.returncode))
                    log("  [%s] log kept in %s; tail:" % (lab, srv.log_path))
                    for ln in srv.log_tail(25).splitlines():
                        log("    | " + ln)
                elif problems:
                    log("  [%s] %d suspicious line(s) in the server log, e.g.: %s"
                        % (lab, len(problems), problems[0]))
                if args.keep_logs:
                    srv.keep_workdir = True
                entry["workdir"] = str(srv.workdir) if srv.keep_workdir else None
                srv.cleanup()
                runs.append(entry)

    summary = report(runs, labels, args, log=log)
    log("")
    log("ops/s drifts by up to ~30% between runs on a shared machine; server CPU us/op is "
        "the steadier figure. 'client busy%' near 100 means the load generator, not the "
        "server, may be the limit.")
    if args.json:
        doc = {"command": cmd, "machine": machine, "settings": settings,
               "args": {k: v for k, v in vars(args).items()},
               "runs": runs, "summary": summary, "output": out_lines}
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=1, default=str)
        print("results written to %s" % args.json)
    failed = any(r.get("result", {}).get("errors") for r in runs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
