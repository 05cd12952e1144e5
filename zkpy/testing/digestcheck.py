"""Cross-member tree-digest check for simulations: the same zxid, the same digest.

Every member's tree carries Apache ZooKeeper's tree digest (``zkpy.tree.digest``).
Applying the same committed history gives the same digest at every zxid, so a
simulation calls ``DigestWitness.see(member, tree)`` after each step it runs
on a member, and the witness compares the digest each member shows at its
``last_zxid`` with what any member showed at that zxid before. A member still
replaying the fuzzy part of a snapshot (``tree.digests.target`` set) is not
yet at a state named by a zxid and is skipped, as ZooKeeper skips it. A
member whose own check counted a mismatch (the digest a txn carried is not
its tree's: the leader's prediction and the member's apply disagree) is
reported too, even if every member agrees.

A finding is a ``DigestDivergence`` (raised at once when ``strict``, the
default; otherwise kept in ``divergences`` as (zxid, member, message)).
"""

from __future__ import annotations

from typing import Any


class DigestDivergence(AssertionError):
    """Members hold different trees at the same zxid, or a txn's digest was wrong."""


class DigestWitness:
    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self.seen: dict[int, tuple[int, Any]] = {}  # zxid -> (digest, first member seen at it)
        self.mismatches: dict[Any, int] = {}  # member -> mismatches already reported
        self.divergences: list[tuple[int, Any, str]] = []
        self.checks = 0

    def see(self, member: Any, tree: Any) -> None:
        if not tree.digest_on:
            return
        zxid = tree.last_zxid
        counted = tree.digests.mismatches
        if counted > self.mismatches.get(member, 0):
            self.mismatches[member] = counted
            self._found(zxid, member, f"member {member} counted {counted} digest mismatches "
                                      f"(by zxid 0x{zxid:x})")
        if tree.digests.target is not None:
            return
        digest = tree.digest
        first = self.seen.setdefault(zxid, (digest, member))
        self.checks += 1
        if first[0] != digest:
            self._found(zxid, member, f"zxid 0x{zxid:x}: member {first[1]} has tree digest "
                                      f"{first[0]}, member {member} has {digest}")

    def _found(self, zxid: int, member: Any, message: str) -> None:
        if any(m == message for _, _, m in self.divergences):
            return
        self.divergences.append((zxid, member, message))
        if self.strict:
            raise DigestDivergence(message)
