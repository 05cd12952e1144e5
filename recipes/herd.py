"""Measure the herd effect: watch notifications delivered for one release.

Set-up for each measurement: one holder and N waiters, each with its own
client session, all queued on the same lock and parked on their watches.
The holder releases once; we count the watch notifications the waiters'
sessions receive because of that release (until the new holder has the
lock and everybody else is parked again).

* :class:`~recipes.locks.NaiveLock`: every waiter watches the lock znode,
  so one release notifies all N waiters.
* :class:`~recipes.locks.FairLock`: each waiter watches its predecessor,
  so one release notifies exactly one waiter.

Run ``python -m recipes.herd`` (starts zkpy and Apache ZooKeeper itself) or
``python -m recipes.herd --hosts 127.0.0.1:2181`` for a running server.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
import uuid

from kazoo.client import KazooClient

from ._common import CancelledError, SessionLostError
from .locks import FairLock, NaiveLock

__all__ = ["measure_release", "herd_table", "main"]

KINDS = {"naive": NaiveLock, "fair": FairLock}


def _wait(pred, timeout: float, interval: float = 0.01) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def measure_release(hosts: str, kind: str, n_waiters: int, *, base: str = "/herd",
                    settle: float = 0.3, timeout: float = 30.0) -> int:
    """Notifications received by N waiting sessions when the holder of a
    *kind* (``"naive"`` or ``"fair"``) lock releases once."""
    cls = KINDS[kind]
    path = "%s/%s-%d-%s" % (base, kind, n_waiters, uuid.uuid4().hex[:8])
    clients = [KazooClient(hosts, timeout=15) for _ in range(n_waiters + 1)]
    for c in clients:
        c.start(timeout=15)
    try:
        locks = [cls(c, path, identifier="c%d" % i) for i, c in enumerate(clients)]
        holder, waiters = locks[0], locks[1:]
        if not holder.acquire(timeout=timeout):
            raise RuntimeError("holder could not take the lock")
        done = threading.Event()
        acquired: list = []

        def run(lock):
            try:
                if lock.acquire(timeout=timeout):
                    acquired.append(lock)
                    done.wait(timeout)
                    lock.release()
            except (CancelledError, SessionLostError):
                pass

        threads = [threading.Thread(target=run, args=(lk,), daemon=True) for lk in waiters]
        for t in threads:
            t.start()
        if not _wait(lambda: all(w.waiting for w in waiters), timeout):
            raise RuntimeError("waiters did not all park")
        before = sum(w.notifications for w in waiters)
        holder.release()
        if not _wait(lambda: bool(acquired), timeout):
            raise RuntimeError("nobody took the lock after the release")
        expected = n_waiters if kind == "naive" else 1

        def settled():
            others = [w for w in waiters if w not in acquired]
            return (sum(w.notifications for w in waiters) - before >= expected
                    and all(w.waiting for w in others))

        _wait(settled, 5.0)
        time.sleep(settle)
        _wait(lambda: all(w.waiting for w in waiters if w not in acquired), 5.0)
        count = sum(w.notifications for w in waiters) - before
        # tear down: cancel whoever still waits, let the holder go
        for w in waiters:
            if w not in acquired:
                w.cancel()
        done.set()
        for t in threads:
            t.join(timeout)
        for lk in locks:
            lk.close()
        return count
    finally:
        for c in clients:
            try:
                c.stop()
                c.close()
            except Exception:
                pass


def herd_table(hosts_by_server: dict[str, str], ns=(2, 8, 32)) -> list[tuple[str, int, int, int]]:
    rows = []
    for server, hosts in hosts_by_server.items():
        for n in ns:
            rows.append((server, n, measure_release(hosts, "naive", n),
                         measure_release(hosts, "fair", n)))
    return rows


def format_table(rows) -> str:
    head = ("server", "waiters N", "naive lock", "fair lock")
    lines = ["notifications per release (one holder, N parked waiters, one release)",
             "%-10s %9s %10s %9s" % head,
             "%-10s %9s %10s %9s" % tuple("-" * len(h) for h in head)]
    for server, n, naive, fair in rows:
        lines.append("%-10s %9d %10d %9d" % (server, n, naive, fair))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m recipes.herd", description=__doc__.split("\n")[0])
    ap.add_argument("--hosts", help="use this running server instead of starting servers")
    ap.add_argument("--servers", default="zkpy,zookeeper",
                    help="servers to start (default: zkpy,zookeeper)")
    ap.add_argument("-n", "--waiters", default="2,8,32", help="comma-separated N values")
    args = ap.parse_args(argv)
    ns = [int(x) for x in args.waiters.split(",") if x]
    if args.hosts:
        print(format_table(herd_table({args.hosts: args.hosts}, ns)))
        return 0
    from zkpy.testing.launchers import ServerError, server_from_name

    rows = []
    for name in [s for s in args.servers.split(",") if s]:
        try:
            srv = server_from_name(name)
        except ServerError as exc:
            print("skipping %s: %s" % (name, exc), file=sys.stderr)
            continue
        with srv:
            rows.extend(herd_table({name: srv.connect_string}, ns))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
