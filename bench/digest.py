"""What the tree digest costs: prep + apply per write, snapshot load, memory.

    python -m bench.digest [--n 50000] [--nodes 200000] [--repeat 5]

Runs the same in-process work with ``zookeeper.digest.enabled`` true and
false (``zkpy.tree.digest.set_enabled``): create, setData and delete of
``--n`` znodes with 100-byte data through ``Prep.prepare`` and
``DataTree.apply`` (the pure hot path every write takes on every member: the
leader prepares and applies, followers apply); then parsing a snapshot of
``--nodes`` znodes, and the memory of that tree (tracemalloc). Times are
process CPU time, the best of ``--repeat`` runs, digests off and on taking
turns (the machine may be shared). Prints one table; no network, no disk.
"""

from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from typing import Any

from zkpy.auth.acl import AuthProviders
from zkpy.jute import schema as S
from zkpy.jute.protocol import Op, Perms
from zkpy.server.prep import Prep, Request
from zkpy.storage.snapshot import parse_snapshot, snapshot_bytes
from zkpy.tree import digest
from zkpy.tree.datatree import DataTree

OPEN = [S.ACL(Perms.ALL, S.Id("world", "anyone"))]
DATA = b"x" * 100


def _writes(n: int) -> tuple[float, float, float]:
    """Seconds per create, setData, delete (prep + apply)."""
    tree = DataTree()
    prep = Prep(tree, AuthProviders())
    zxid = 0

    def do(op: int, body: Any) -> None:
        nonlocal zxid
        zxid += 1
        req = Request(0x100, zxid, op, body, [])
        prep.prepare(req, zxid, 1_700_000_000_000 + zxid)
        tree.apply(req.hdr, req.txn, req.digest)
        prep.applied(zxid)

    do(Op.create, S.CreateRequest("/b", b"", OPEN, 0))
    out = []
    for make in (lambda i: (Op.create, S.CreateRequest(f"/b/n{i}", DATA, OPEN, 0)),
                 lambda i: (Op.setData, S.SetDataRequest(f"/b/n{i}", DATA, -1)),
                 lambda i: (Op.delete, S.DeleteRequest(f"/b/n{i}", -1))):
        bodies = [make(i) for i in range(n)]
        gc.collect()
        t = time.process_time()
        for op, body in bodies:
            do(op, body)
        out.append((time.process_time() - t) / n)
    assert tree.digests.mismatches == 0
    return out[0], out[1], out[2]


def _big_tree(nodes: int) -> DataTree:
    tree = DataTree()
    hdr = S.TxnHeader(1, 1, 1, 1, Op.create)
    tree.apply(hdr, S.CreateTxn("/t", b"", OPEN, False, 1))
    for i in range(nodes):
        hdr = S.TxnHeader(1, 1, i + 2, 1_700_000_000_000, Op.create)
        tree.apply(hdr, S.CreateTxn(f"/t/{i // 1000}-{i}", DATA, OPEN, False, i + 2))
    return tree


def _load(nodes: int) -> tuple[float, int]:
    """(seconds to parse a snapshot of ``nodes`` znodes, bytes the tree holds)."""
    blob = snapshot_bytes(_big_tree(nodes), {})
    gc.collect()
    t = time.process_time()
    tree, _ = parse_snapshot(blob, nodes + 1)
    took = time.process_time() - t
    del tree
    gc.collect()
    tracemalloc.start()
    tree, _ = parse_snapshot(blob, nodes + 1)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return took, size


def _run(n: int, nodes: int) -> tuple[float, ...]:
    return _writes(n) + _load(nodes)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--nodes", type=int, default=200000)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args(argv)
    runs: dict[bool, list[tuple[float, ...]]] = {False: [], True: []}
    for _ in range(args.repeat):
        for on in (False, True):
            digest.set_enabled(on)
            runs[on].append(_run(args.n, args.nodes))
    digest.set_enabled(True)
    rows = {on: [min(r[i] for r in rs) for i in range(len(rs[0]))] for on, rs in runs.items()}
    names = ("create us", "setData us", "delete us", f"load {args.nodes} s", "tree MB")
    scale = (1e6, 1e6, 1e6, 1, 1 / 1e6)
    print(f"{'':14}{'digest off':>12}{'digest on':>12}{'cost':>10}")
    for i, name in enumerate(names):
        off, on = rows[False][i] * scale[i], rows[True][i] * scale[i]
        print(f"{name:14}{off:12.2f}{on:12.2f}{on - off:+10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
