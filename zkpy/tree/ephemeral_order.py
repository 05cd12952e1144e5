"""The order in which ZooKeeper deletes a closing session's ephemerals.

PrepRequestProcessor lists them by iterating the session's ephemeral set, a
``java.util.HashSet<String>`` (DataTree.getEphemerals clones it), and that
order becomes the CloseSessionTxn's path list: the nodes are deleted, and
their watches fire, in it. A client watching several of them (or their
parent) sees the events in that order, so zkpy lists them the same way:
by HashMap bucket (``String.hashCode``, spread as ``h ^ (h >>> 16)``, masked
by the table size), and within a bucket in the order they were added (their
creation zxid). The table is assumed to have grown only as far as the set's
size now asks (16 buckets up to 12 entries, doubling at 3/4 full); a set
that once held more keeps a bigger table on ZooKeeper, and the order may then
differ.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

_MASK32 = 0xFFFFFFFF


def java_string_hash(s: str) -> int:
    """``String.hashCode`` as an unsigned 32-bit value (over UTF-16 code units)."""
    h = 0
    data = s.encode("utf-16-be", "surrogatepass")
    for i in range(0, len(data), 2):
        h = (31 * h + (data[i] << 8 | data[i + 1])) & _MASK32
    return h


def _table_size(n: int) -> int:
    size = 16
    while n > size * 3 // 4:
        size *= 2
    return size


def hash_set_order(paths: Iterable[str], added: Callable[[str], int]) -> list[str]:
    """``paths`` as a HashSet<String> would iterate them, ``added`` giving each
    one's insertion order (ties within a bucket)."""
    items = list(paths)
    mask = _table_size(len(items)) - 1

    def bucket(path: str) -> int:
        h = java_string_hash(path)
        return (h ^ (h >> 16)) & mask

    return sorted(items, key=lambda p: (bucket(p), added(p)))
