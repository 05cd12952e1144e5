"""Restart time with a big data tree: zkpy beside Apache ZooKeeper.

    python -m bench.restart [--znodes 1000000] [--runs 3] [--no-zookeeper]

Builds a DataTree of N znodes in process (1000 parents of N/1000 children,
``--data-size`` bytes each), writes it as ``snapshot.<zxid>`` with
``write_tree`` (no log), then times each server from process start until
``ruok`` answers ``imok`` and ``srvr`` says it is serving, checking the znode
count that ``srvr`` reports. Both servers start on the same data directory
(zkpy first, so Apache ZooKeeper's own start-up snapshot does not change what
zkpy loads). A measurement, not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time

from zkpy.jute import schema as S
from zkpy.storage.formats import VERSION_DIR, snapshot_name
from zkpy.storage.snapshot import write_tree
from zkpy.testing.launchers import ApacheZooKeeperServer, ZkpyServer, find_apache_zookeeper
from zkpy.tree.datatree import DataTree, Node


def build_tree(n: int, data_size: int) -> DataTree:
    tree = DataTree()
    acl = tree.intern_acl([S.ACL(31, S.Id("world", "anyone"))])
    data = b"x" * data_size
    now = int(time.time() * 1000)
    zxid = 0
    fanout = 1000
    parents = max(1, n // fanout)
    root = tree.nodes["/"]
    top = Node(b"", acl, 1, now, 0)
    zxid = 1
    tree.nodes["/r"] = top
    root.children.add("r")
    root.ccount += 1
    root.pzxid = 1
    top.children = set()
    made = 1
    for p in range(parents):
        zxid += 1
        ppath = f"/r/p{p}"
        parent = Node(b"", acl, zxid, now, 0)
        parent.children = set()
        tree.nodes[ppath] = parent
        top.children.add(f"p{p}")
        top.ccount += 1
        top.pzxid = zxid
        made += 1
        for c in range(min(fanout, n - made)):
            zxid += 1
            tree.nodes[f"{ppath}/c{c}"] = Node(data, acl, zxid, now, 0)
            parent.children.add(f"c{c}")
            parent.ccount += 1
            parent.pzxid = zxid
            made += 1
        if made >= n:
            break
    tree.last_zxid = zxid
    return tree


def timed_start(srv, timeout: float) -> float:
    t0 = time.monotonic()
    srv.start(timeout=timeout)
    return time.monotonic() - t0


def node_count(srv) -> int | None:
    m = re.search(r"Node count: (\d+)", srv.four_letter("srvr"))
    return int(m.group(1)) if m else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--znodes", type=int, default=1_000_000)
    p.add_argument("--data-size", type=int, default=20)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--heap", default="2g", help="Apache ZooKeeper -Xmx")
    p.add_argument("--no-zookeeper", action="store_true")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args(argv)

    wd = tempfile.mkdtemp(prefix="zkpy-restart-")
    vdir = os.path.join(wd, "data", VERSION_DIR)
    os.makedirs(vdir)
    t0 = time.monotonic()
    tree = build_tree(args.znodes, args.data_size)
    t1 = time.monotonic()
    snap = os.path.join(vdir, snapshot_name(tree.last_zxid))
    write_tree(snap, tree, {}, fsync=True)
    t2 = time.monotonic()
    total = len(tree)
    print(f"built {total:,} znodes in {t1 - t0:.1f}s; snapshot {os.path.getsize(snap) / 2**20:.0f} MiB "
          f"written in {t2 - t1:.1f}s ({snap})")
    del tree

    settings = {"tickTime": 2000, "forceSync": "yes"}
    results: dict[str, list[float]] = {}
    zkpy = ZkpyServer(settings=settings, workdir=wd)
    kinds = [("zkpy", zkpy)]
    if not args.no_zookeeper:
        install, reason = find_apache_zookeeper()
        if install is None:
            print("Apache ZooKeeper skipped:", reason)
        else:
            kinds.append(("zookeeper", ApacheZooKeeperServer(
                settings=settings, workdir=wd, port=zkpy.port, install=install,
                jvm_args=[f"-Xmx{args.heap}"])))
    try:
        for label, srv in kinds:
            times = []
            for run in range(args.runs):
                secs = timed_start(srv, args.timeout)
                count = node_count(srv)
                srv.stop(timeout=60)
                times.append(secs)
                print(f"{label} run {run + 1}: ready in {secs:.2f}s, srvr node count {count}")
            results[label] = times
    finally:
        for _, srv in kinds:
            srv.kill()
        import shutil

        shutil.rmtree(wd, ignore_errors=True)
    print()
    print(f"restart to ruok=imok with {total:,} znodes (median of {args.runs}):")
    for label, times in results.items():
        print(f"  {label:10s} {statistics.median(times):7.2f}s   (runs: "
              + ", ".join(f"{t:.2f}" for t in times) + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
