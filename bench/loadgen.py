"""The load generator: sessions held open in worker processes, driven in
windows by the parent.

Contract:

* A :class:`Pool` forks ``workers`` processes; session *i* (of ``sessions``)
  goes to member ``i % len(addrs)`` and to worker ``i % workers``.  The
  sessions stay open until :meth:`Pool.close` (closeSession on each); an
  idle worker pings its sessions so that they outlive the other kind's turn.
* What a session sends is a *plan* built inside the worker by a named
  builder (:data:`BUILDERS`) from small arguments: a cyclic mix of getData
  and setData, or a finite list (creates, watches, sets).  Each session
  keeps ``in_flight`` requests outstanding; every reply that comes back is
  answered with the next request in the same write.  A timed window stops
  issuing at its deadline and drains what is in flight; those replies count.
* Every reply is checked (:func:`bench.wire.consume_replies`); error codes and
  bad replies are returned, never dropped.  A worker that fails reports the
  reason and the parent raises :class:`LoadError`.
* Each worker reports its own CPU time over a window, so the generator's
  cost per operation is printed beside the server's.
"""

from __future__ import annotations

import multiprocessing as mp
import random
import selectors
import time
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from bench import wire
from bench.probe import self_cpu

PLAN_SIZE = 16384  # requests in a cyclic plan before it repeats


class LoadError(RuntimeError):
    """A worker failed (connection lost, protocol error, timeout)."""


# --------------------------------------------------------------------------
# plan builders: (session index, sessions in total, **kw) -> (plan, cyclic, first position)

Plan = tuple[Sequence[wire.Request], bool, int]
_cache: dict[tuple, list[wire.Request]] = {}


def build_mix(i: int, n: int, *, keys: Sequence[str], value_size: int, read_pct: float,
              seed: int) -> Plan:
    """getData/setData on random *keys*, *read_pct* % reads; every session
    shares one plan and starts at its own offset."""
    ck = ("mix", tuple(keys), value_size, read_pct, seed)
    if ck not in _cache:
        rng = random.Random(seed)
        data = wire.value(value_size)
        gets = [wire.get(k, value_size) for k in keys]
        sets = [wire.set_(k, data) for k in keys]
        _cache[ck] = [gets[j] if rng.random() * 100.0 < read_pct else sets[j]
                      for j in (rng.randrange(len(keys)) for _ in range(PLAN_SIZE))]
    return _cache[ck], True, (i * 977) % PLAN_SIZE


def build_sync_mix(i: int, n: int, *, keys: Sequence[str], value_size: int, read_pct: float,
                   seed: int) -> Plan:
    """``build_mix`` with each getData preceded by a sync of its key (what a
    client does for a read that must see every write acknowledged before it:
    the pair is pipelined, the server answers the read after the sync)."""
    ck = ("sync_mix", tuple(keys), value_size, read_pct, seed)
    if ck not in _cache:
        plan, _, _ = build_mix(0, 1, keys=keys, value_size=value_size, read_pct=read_pct,
                               seed=seed)
        syncs = {k: wire.sync(k) for k in keys}
        out: list[wire.Request] = []
        for req in plan:
            if req[0] == wire.OP_GET:
                out.append(syncs[_path_of(req)])
            out.append(req)
        _cache[ck] = out
    return _cache[ck], True, (i * 977) % len(_cache[ck])


def _path_of(req: wire.Request) -> str:
    (n,) = wire.LEN.unpack_from(req[1], 0)
    return req[1][4:4 + n].decode()


def build_tree_parents(i: int, n: int, *, prefix: str, parents: int) -> Plan:
    """Create ``prefix/p<j>`` for the parents j this session owns (j % n == i)."""
    return [wire.create("%s/p%d" % (prefix, j), b"") for j in range(i, parents, n)], False, 0


def build_tree_children(i: int, n: int, *, prefix: str, parents: int, per_parent: int,
                        data_size: int, op: str = "create") -> Plan:
    """Create (or ``op="delete"``/``"set"``) ``prefix/p<j>/c<k>`` for the
    items this session owns (item index % n == i)."""
    data = wire.value(data_size)
    make: Callable[[str], wire.Request] = {
        "create": lambda p: wire.create(p, data), "delete": wire.delete,
        "set": lambda p: wire.set_(p, data)}[op]
    total = parents * per_parent
    return [make("%s/p%d/c%d" % (prefix, j // per_parent, j % per_parent))
            for j in range(i, total, n)], False, 0


def build_watch_all(i: int, n: int, *, paths: Sequence[str], value_len: int) -> Plan:
    """getData with a watch on every path: each session watches all of them."""
    return [wire.get(p, value_len, watch=True) for p in paths], False, 0


def build_set_spread(i: int, n: int, *, paths: Sequence[str], value_size: int) -> Plan:
    """setData on the paths this session owns (index % n == i)."""
    data = wire.value(value_size)
    return [wire.set_(p, data) for p in paths[i::n]], False, 0


BUILDERS: dict[str, Callable[..., Plan]] = {
    "mix": build_mix, "sync_mix": build_sync_mix, "tree_parents": build_tree_parents,
    "tree_children": build_tree_children, "watch_all": build_watch_all,
    "set_spread": build_set_spread,
}


# --------------------------------------------------------------------------
# the worker side


class _Worker:
    def __init__(self, conns: list[wire.Conn], indices: list[int], total: int,
                 timeout: float) -> None:
        self.conns, self.indices, self.total, self.timeout = conns, indices, total, timeout
        self.plans: dict[str, list[Plan]] = {}
        self.ping_interval = max(1.0, min(c.timeout_ms for c in conns) / 3000.0) if conns else 10.0

    def define(self, name: str, builder: str, kw: dict) -> dict:
        self.plans[name] = [BUILDERS[builder](i, self.total, **kw) for i in self.indices]
        return {"requests": sum(len(p[0]) if not p[1] else 0 for p in self.plans[name])}

    def _arm(self, name: str) -> selectors.BaseSelector:
        """Give every session its part of plan *name*; a selector over them."""
        sel = selectors.DefaultSelector()
        for c, (plan, cyclic, first) in zip(self.conns, self.plans[name], strict=True):
            if c.outstanding:
                raise LoadError("session 0x%x still has replies outstanding" % c.session_id)
            c.plan, c.cyclic, c.pos, c.rpos = plan, cyclic, first, first
            sel.register(c.sock, selectors.EVENT_READ, c)
        return sel

    def run(self, name: str, in_flight: int, seconds: float | None, budget: int | None,
            start_at: float, ramp: float = 0.0) -> dict:
        """Drive plan *name* from *start_at*.  With *seconds*: *ramp* s of load
        unmeasured, *seconds* s measured (replies and this process's CPU
        counted between the two marks), then no more requests and a drain of
        what is in flight (not measured).  Without: the whole (finite) plan,
        all of it measured."""
        sel = self._arm(name)
        errors: Counter = Counter()
        bad = done = issued = 0
        budget = budget if budget is not None else 1 << 62
        time.sleep(max(0.0, start_at - time.monotonic()))
        t_start = time.monotonic()
        mark_a = start_at + ramp if seconds is not None else t_start
        mark_b = mark_a + seconds if seconds is not None else float("inf")
        snap_a = snap_b = None  # (time, replies so far, CPU so far) at the marks
        for c in self.conns:
            issued += wire.issue(c, min(in_flight, budget - issued))
        outstanding, last, now = issued, t_start, t_start
        try:
            while outstanding > 0:
                events = sel.select(timeout=0.02 if snap_b is None else 1.0)
                now = time.monotonic()
                if snap_a is None and now >= mark_a:
                    snap_a = (now, done, self_cpu())
                if snap_b is None and now >= mark_b:
                    snap_b = (now, done, self_cpu())
                if not events:
                    if now - last > self.timeout:
                        raise TimeoutError("no reply for %.0f s with %d requests outstanding"
                                           % (now - last, outstanding))
                    continue
                last = now
                stop = snap_b is not None or issued >= budget
                for key, _mask in events:
                    c = key.data
                    c.recv_into_buf()
                    n, b = wire.consume_replies(c, errors)
                    bad += b
                    outstanding -= n
                    done += n
                    if n and not stop:
                        k = wire.issue(c, min(n, budget - issued))
                        issued += k
                        outstanding += k
        finally:
            sel.close()
        end = (now, done, self_cpu())
        a = snap_a or end
        b = snap_b or end
        return {"ops": b[1] - a[1], "errors": dict(errors), "bad": bad, "t0": a[0], "t1": b[0],
                "cpu": b[2] - a[2], "all_ops": done, "drain_s": end[0] - b[0]}

    def await_events(self, expect: int, timeout: float) -> dict:
        """Read until every session has had *expect* watch notifications."""
        sel = selectors.DefaultSelector()
        for c in self.conns:
            sel.register(c.sock, selectors.EVENT_READ, c)
        cpu0, start = self_cpu(), time.monotonic()
        t_last = None
        errors: Counter = Counter()
        try:
            while any(c.events < expect for c in self.conns):
                if time.monotonic() - start > timeout:
                    break
                for key, _mask in sel.select(timeout=min(1.0, self.ping_interval)):
                    c = key.data
                    before = c.events
                    c.recv_into_buf()
                    wire.consume_replies(c, errors)
                    if c.events != before:
                        t_last = time.monotonic()
        finally:
            sel.close()
        return {"events": sum(c.events for c in self.conns), "short": sum(
            1 for c in self.conns if c.events < expect), "t_last": t_last,
            "errors": dict(errors), "cpu": self_cpu() - cpu0}

    def ping_for(self, seconds: float, interval: float, start_at: float) -> dict:
        """Each session pings every *interval* s (staggered) for *seconds*;
        returns pings sent, answered, and every round-trip time."""
        n = len(self.conns)
        sent_at: dict[int, float] = {}
        rtts: list[float] = []
        sent = late = 0
        sel = selectors.DefaultSelector()
        for c in self.conns:
            sel.register(c.sock, selectors.EVENT_READ, c)
        errors: Counter = Counter()
        time.sleep(max(0.0, start_at - time.monotonic()))
        cpu0, t0 = self_cpu(), time.monotonic()
        end = t0 + seconds
        due = [t0 + interval * (j / max(1, n)) for j in range(n)]
        nxt = 0
        try:
            while True:
                now = time.monotonic()
                while now < end and due[nxt] <= now:
                    c = self.conns[nxt]
                    if c.pings < c.pings_sent:
                        late += 1  # the previous ping is still unanswered
                    else:
                        c.send_ping()
                        sent_at[id(c)] = now
                        sent += 1
                    due[nxt] += interval
                    nxt = (nxt + 1) % n
                if now >= end and not sent_at:
                    break
                if now > end + self.timeout:
                    raise TimeoutError("%d pings unanswered after %.0f s" % (len(sent_at),
                                                                          self.timeout))
                for key, _mask in sel.select(timeout=0.01):
                    c = key.data
                    c.recv_into_buf()
                    wire.consume_replies(c, errors)
                    if c.pings >= c.pings_sent and id(c) in sent_at:
                        rtts.append(time.monotonic() - sent_at.pop(id(c)))
        finally:
            sel.close()
        return {"sent": sent, "answered": len(rtts), "late": late, "rtts": rtts,
                "t0": t0, "t1": time.monotonic(), "cpu": self_cpu() - cpu0,
                "errors": dict(errors)}

    def keepalive(self) -> None:
        """Ping every session once and read every ping answer owed (idle
        sessions expire)."""
        errors: Counter = Counter()
        for c in self.conns:
            c.send_ping()
        sel = selectors.DefaultSelector()
        for c in self.conns:
            sel.register(c.sock, selectors.EVENT_READ, c)
        deadline = time.monotonic() + self.timeout
        try:
            while any(c.pings < c.pings_sent for c in self.conns):
                if time.monotonic() > deadline:
                    raise TimeoutError("ping replies missing after %.0f s" % self.timeout)
                for key, _mask in sel.select(timeout=1.0):
                    key.data.recv_into_buf()
                    wire.consume_replies(key.data, errors)
        finally:
            sel.close()

    def close(self) -> dict:
        closed = close_all(self.conns, self.timeout)
        return {"closed": closed}


def close_all(conns: list[wire.Conn], timeout: float) -> int:
    """closeSession on every session at once, then wait for each answer."""
    for c in conns:
        try:
            c.sock.sendall(c.frame(wire.OP_CLOSE, b""))
        except OSError:
            pass
    closed = 0
    deadline = time.monotonic() + timeout
    for c in conns:
        try:
            c.sock.settimeout(max(0.1, deadline - time.monotonic()))
            while True:
                xid = wire.REPLY.unpack_from(c.read_frame(), 0)[0]
                if xid == c.xid:
                    closed += 1
                    break
        except (OSError, ConnectionError):
            pass
        c.abort()
    return closed


def _worker_main(pipe: Any, addrs: list[tuple[str, int]], indices: list[int], total: int,
                 timeout: float, session_timeout_ms: int) -> None:
    try:
        conns = wire.open_sessions(addrs, timeout, session_timeout_ms)
    except Exception as exc:
        pipe.send({"error": "opening sessions: %s: %s" % (type(exc).__name__, exc)})
        return
    w = _Worker(conns, indices, total, timeout)
    try:
        w.keepalive()  # and collect the answers to pings sent while opening
    except Exception as exc:
        pipe.send({"error": "first ping: %s: %s" % (type(exc).__name__, exc)})
        return
    pipe.send({"ready": len(conns)})
    broken = None
    while True:
        if not pipe.poll(w.ping_interval):
            if broken is None:
                try:
                    w.keepalive()
                except Exception as exc:
                    broken = "keepalive: %s: %s" % (type(exc).__name__, exc)
            continue
        cmd, kw = pipe.recv()
        if cmd == "close":
            pipe.send(w.close() if broken is None else {"closed": 0})
            return
        if broken is not None:
            pipe.send({"error": broken})
            continue
        try:
            pipe.send(getattr(w, cmd)(**kw))
        except Exception as exc:
            broken = "%s: %s" % (type(exc).__name__, exc)
            pipe.send({"error": broken, "traceback": traceback.format_exc(limit=4)})


# --------------------------------------------------------------------------
# the parent side


class Pool:
    """*sessions* sessions over *workers* processes against *addrs*."""

    def __init__(self, addrs: list[tuple[str, int]], sessions: int, workers: int = 2,
                 timeout: float = 60.0, session_timeout_ms: int = 30000) -> None:
        self.sessions, self.timeout = sessions, timeout
        self.workers = max(1, min(workers, sessions))
        ctx = mp.get_context("fork")
        self.pipes, self.procs = [], []
        for w in range(self.workers):
            indices = list(range(w, sessions, self.workers))
            mine = [addrs[i % len(addrs)] for i in indices]
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker_main, args=(
                child, mine, indices, sessions, timeout, session_timeout_ms), daemon=True)
            p.start()
            child.close()
            self.pipes.append(parent)
            self.procs.append(p)
        try:
            self._collect(timeout + 30 + sessions / 10)
        except BaseException:
            self.kill()
            raise

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p.pid]

    def send(self, cmd: str, **kw: Any) -> None:
        for pipe in self.pipes:
            pipe.send((cmd, kw))

    def _collect(self, timeout: float) -> list[dict]:
        got, errors = [], []
        deadline = time.monotonic() + timeout
        for w, pipe in enumerate(self.pipes):
            if not pipe.poll(max(0.0, deadline - time.monotonic())):
                errors.append("worker %d: no answer in %.0f s" % (w, timeout))
                continue
            try:
                res = pipe.recv()
            except EOFError:
                errors.append("worker %d exited (status %s)" % (w, self.procs[w].exitcode))
                continue
            if "error" in res:
                errors.append("worker %d: %s" % (w, res["error"]))
            got.append(res)
        if errors:
            raise LoadError("; ".join(errors))
        return got

    def collect(self, timeout: float | None = None) -> list[dict]:
        return self._collect(self.timeout + 30 if timeout is None else timeout)

    def call(self, cmd: str, timeout: float | None = None, **kw: Any) -> list[dict]:
        self.send(cmd, **kw)
        return self.collect(timeout)

    def define(self, name: str, builder: str, **kw: Any) -> int:
        """Build plan *name* in every worker; returns its finite request count."""
        return sum(r["requests"] for r in self.call("define", timeout=self.timeout + 300,
                                                    name=name, builder=builder, kw=kw))

    def start_run(self, name: str, in_flight: int, seconds: float | None = None,
                  budget: int | None = None, ramp: float = 0.0,
                  delay: float = 0.05) -> tuple[float, float | None]:
        """Start plan *name* in every worker (see :meth:`_Worker.run`); returns
        the monotonic times at which measuring starts and ends (``None``: at
        the end of a finite plan)."""
        start_at = time.monotonic() + delay
        for w, pipe in enumerate(self.pipes):
            share = None if budget is None else budget // self.workers + (
                1 if w < budget % self.workers else 0)
            pipe.send(("run", {"name": name, "in_flight": in_flight, "seconds": seconds,
                               "budget": share, "start_at": start_at, "ramp": ramp}))
        if seconds is None:
            return start_at, None
        return start_at + ramp, start_at + ramp + seconds

    def run(self, name: str, in_flight: int, seconds: float | None = None,
            budget: int | None = None, ramp: float = 0.0) -> dict:
        self.start_run(name, in_flight, seconds, budget, ramp)
        return self.collect_run(seconds, ramp)

    def collect_run(self, seconds: float | None, ramp: float) -> dict:
        wait = ramp + seconds + self.timeout + 30 if seconds is not None else 24 * 3600
        return merge_runs(self.collect(wait))

    def close(self) -> int:
        closed = 0
        try:
            closed = sum(r.get("closed", 0) for r in self.call("close", timeout=self.timeout + 60))
        except LoadError:
            pass
        finally:
            self.kill()
        return closed

    def kill(self) -> None:
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(5)
        for pipe in self.pipes:
            pipe.close()


def merge_runs(results: list[dict]) -> dict:
    """One figure for a window from every worker's report: replies between
    the marks, each worker's rate over its own marks, summed."""
    errors: Counter = Counter()
    for r in results:
        errors.update({int(k): v for k, v in r["errors"].items()})
    ops = sum(r["ops"] for r in results)
    cpu = sum(r["cpu"] for r in results)
    rates = [r["ops"] / (r["t1"] - r["t0"]) for r in results if r["t1"] > r["t0"]]
    return {
        "ops": ops, "seconds": max(r["t1"] for r in results) - min(r["t0"] for r in results),
        "ops_per_s": sum(rates) if rates else None,
        "all_ops": sum(r["all_ops"] for r in results),
        "drain_s": max(r["drain_s"] for r in results),
        "errors": {str(k): v for k, v in sorted(errors.items())},
        "bad_replies": sum(r["bad"] for r in results),
        "gen_cpu_s": cpu,
        "gen_cpu_us_per_op": cpu * 1e6 / ops if ops else None,
        "gen_busiest": max((r["cpu"] / (r["t1"] - r["t0"]) if r["t1"] > r["t0"] else 0.0)
                           for r in results),
    }
