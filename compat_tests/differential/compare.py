"""Making two servers' replies comparable.

A reply is turned into plain data (tuples, dicts, bytes, ints, strings) in
which the fields that legitimately differ between two servers are wrapped:

* ``Zxid(v)``  -- compared by order: the zxids each server has shown are kept
  in an order-preserving one-to-one map, so ``a < b`` on one server must be
  ``a' < b'`` on the other and equal zxids stay equal;
* times are not compared by value; a Stat keeps only their relations
  (``ctime == mtime``, ``mtime >= ctime``, both set or both zero);
* ephemeralOwner is replaced by the label of the session that owns the node
  (``"c0#1"``), 0, or kept as a number for container/TTL encodings.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Zxid:
    value: int

    def __repr__(self) -> str:
        return f"zxid(0x{self.value:x})"


STAT_FIELDS = ("czxid", "mzxid", "ctime", "mtime", "version", "cversion", "aversion",
               "ephemeralOwner", "dataLength", "numChildren", "pzxid")


def stat_view(stat: Any, owner_label) -> dict[str, Any]:
    """A Stat (kazoo ZnodeStat or jute Stat) as comparable data."""
    if stat is None:
        return None  # type: ignore[return-value]
    g = {f: getattr(stat, f) for f in STAT_FIELDS}
    return {
        "czxid": Zxid(g["czxid"]),
        "mzxid": Zxid(g["mzxid"]),
        "pzxid": Zxid(g["pzxid"]),
        "ctime==mtime": g["ctime"] == g["mtime"],
        "mtime>=ctime": g["mtime"] >= g["ctime"],
        "ctime>0": g["ctime"] > 0,
        "version": g["version"],
        "cversion": g["cversion"],
        "aversion": g["aversion"],
        "ephemeralOwner": owner_label(g["ephemeralOwner"]),
        "dataLength": g["dataLength"],
        "numChildren": g["numChildren"],
    }


class ZxidOrder:
    """An order-preserving bijection between zxids of server A and server B."""

    def __init__(self) -> None:
        self.a: list[int] = []
        self.b: list[int] = []
        self.a2b: dict[int, int] = {}
        self.b2a: dict[int, int] = {}

    def match(self, za: int, zb: int) -> str | None:
        """None if (za, zb) is consistent with every earlier pair, else why not."""
        if za in self.a2b:
            if self.a2b[za] == zb:
                return None
            return (f"zxid 0x{za:x} was paired with 0x{self.a2b[za]:x} earlier, "
                    f"now with 0x{zb:x}")
        if zb in self.b2a:
            return (f"zxid 0x{zb:x} (second server) was paired with 0x{self.b2a[zb]:x} "
                    f"earlier, now with 0x{za:x}")
        ia = bisect.bisect(self.a, za)
        ib = bisect.bisect(self.b, zb)
        if ia != ib:
            return (f"zxid order differs: 0x{za:x} ranks {ia} among the first server's "
                    f"{len(self.a)} earlier zxids, 0x{zb:x} ranks {ib}")
        self.a.insert(ia, za)
        self.b.insert(ib, zb)
        self.a2b[za] = zb
        self.b2a[zb] = za
        return None


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 300 else r[:140] + f"...<{len(r)} chars>..." + r[-60:]


def diff(a: Any, b: Any, order: ZxidOrder, where: str = "") -> list[str]:
    """Differences between two normalized replies (empty list: they agree)."""
    out: list[str] = []
    if isinstance(a, Zxid) and isinstance(b, Zxid):
        why = order.match(a.value, b.value)
        if why:
            out.append(f"{where or 'value'}: {why}")
        return out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            if k not in a or k not in b:
                out.append(f"{where}.{k}: only on one server "
                           f"({_short(a.get(k))} vs {_short(b.get(k))})")
                continue
            out.extend(diff(a[k], b[k], order, f"{where}.{k}"))
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)) and type(a) is type(b):
        if len(a) != len(b):
            return [f"{where}: {_short(a)} vs {_short(b)} (lengths {len(a)} and {len(b)})"]
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out.extend(diff(x, y, order, f"{where}[{i}]"))
        return out
    if a != b or type(a) is not type(b):
        out.append(f"{where or 'value'}: {_short(a)} vs {_short(b)}")
    return out
