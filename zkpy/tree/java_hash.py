"""The order in which Java's hash tables of strings iterate, where ZooKeeper's
output follows it.

- A closing session's ephemerals: PrepRequestProcessor lists them by
  iterating the session's ephemeral set, a ``java.util.HashSet<String>``
  (DataTree.getEphemerals clones it), and that order becomes the
  CloseSessionTxn's path list: the nodes are deleted, and their watches fire,
  in it. A client watching several of them (or their parent) sees the events
  in that order (``hash_set_order``).
- ServerMetrics' summary sets and their keys, which ``mntr`` prints in the
  order of the ``ConcurrentHashMap`` holding them (``concurrent_map_order``).

Both tables iterate by bucket (``String.hashCode``, spread as
``h ^ (h >>> 16)``, masked by the table size), and within a bucket in the
order the keys were added. The table is assumed to have grown only as far as
the number of keys now asks (16 buckets, doubling at 3/4 full: a HashMap once
it holds more than 3/4, a ConcurrentHashMap once it reaches 3/4); a table
that once held more keeps its bigger size in Java, and the order may then
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


def _table_size(n: int, full_at_three_quarters: bool) -> int:
    size = 16
    while n > size * 3 // 4 or (full_at_three_quarters and n == size * 3 // 4):
        size *= 2
    return size


def _table_order(keys: Iterable[str], added: Callable[[str], int],
                 full_at_three_quarters: bool) -> list[str]:
    items = list(keys)
    mask = _table_size(len(items), full_at_three_quarters) - 1

    def bucket(key: str) -> int:
        h = java_string_hash(key)
        return (h ^ (h >> 16)) & mask

    return sorted(items, key=lambda k: (bucket(k), added(k)))


def hash_set_order(paths: Iterable[str], added: Callable[[str], int]) -> list[str]:
    """``paths`` as a HashSet<String> would iterate them, ``added`` giving each
    one's insertion order (ties within a bucket)."""
    return _table_order(paths, added, full_at_three_quarters=False)


def concurrent_map_order(keys: list[str]) -> list[str]:
    """The iteration order of a ConcurrentHashMap holding ``keys``, inserted in
    this order."""
    return _table_order(keys, {k: i for i, k in enumerate(keys)}.__getitem__,
                        full_at_three_quarters=True)
