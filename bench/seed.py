"""A big data tree as a snapshot file both kinds load, and data directories
seeded with it.

Contract: :func:`build_snapshot` builds, in this process, a tree of *n*
znodes of *data_size* bytes (``/scale/p<j>/c<k>``, 1000 children per
parent: the same shape the client-side scale tests create) and writes it
with zkpy's snapshot writer in Apache ZooKeeper's format (no transaction
log).  :func:`seed` copies it into a server's ``dataDir/version-2``.
Nothing here starts a server.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from zkpy.jute import schema as S
from zkpy.storage.formats import VERSION_DIR, snapshot_name
from zkpy.storage.snapshot import write_tree
from zkpy.tree.datatree import DataTree, Node

FANOUT = 1000
PREFIX = "/scale"


def tree_shape(n: int) -> tuple[int, int]:
    """(parents, children per parent) for about *n* znodes: *n* rounded up
    to whole parents of up to 1000 children."""
    parents = max(1, -(-n // FANOUT))
    return parents, max(1, min(n, FANOUT))


def build_tree(n: int, data_size: int) -> DataTree:
    tree = DataTree()
    acl = tree.intern_acl([S.ACL(31, S.Id("world", "anyone"))])
    data = b"x" * data_size
    now = int(time.time() * 1000)
    parents, per_parent = tree_shape(n)
    root = tree.nodes["/"]
    zxid = 1
    top = Node(b"", acl, zxid, now, 0)
    top.children = set()
    tree.nodes[PREFIX] = top
    root.children.add(PREFIX)
    root.ccount += 1
    root.pzxid = zxid
    for p in range(parents):
        zxid += 1
        parent = Node(b"", acl, zxid, now, 0)
        parent.children = set()
        ppath = "%s/p%d" % (PREFIX, p)
        tree.nodes[ppath] = parent
        top.children.add(ppath)
        top.ccount += 1
        top.pzxid = zxid
        for c in range(per_parent):
            zxid += 1
            cpath = "%s/c%d" % (ppath, c)
            tree.nodes[cpath] = Node(data, acl, zxid, now, 0)
            parent.children.add(cpath)
            parent.ccount += 1
            parent.pzxid = zxid
    tree.last_zxid = zxid
    tree.rehash()  # built without apply: the digest the snapshot's trailer carries
    return tree


def build_snapshot(n: int, data_size: int, directory: Path) -> tuple[Path, int]:
    """Write the tree's snapshot into *directory*; returns (file, znodes in
    the tree, ``/`` and the parents included)."""
    tree = build_tree(n, data_size)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / snapshot_name(tree.last_zxid)
    write_tree(str(path), tree, {}, fsync=True)
    return path, len(tree)


def seed(snapshot: Path, data_dir: Path) -> None:
    """Copy *snapshot* into ``data_dir/version-2`` (emptied first; ``myid``
    and anything else in *data_dir* itself stay)."""
    vdir = data_dir / VERSION_DIR
    shutil.rmtree(vdir, ignore_errors=True)
    vdir.mkdir(parents=True)
    shutil.copyfile(snapshot, vdir / snapshot.name)
    os.sync()
