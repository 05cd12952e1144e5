"""Cross-member tree-digest check for simulations: the same zxid, the same digest.

Every member's tree carries Apache ZooKeeper's tree digest (``zkpy.tree.digest``).
Applying the same committed history gives the same digest at every zxid, so a
simulation calls ``DigestWitness.see(member, tree)`` after each step it runs
on a member, and the witness compares the digest each member shows at its
``last_zxid`` with what any member showed at that zxid before. A member still
replaying the fuzzy part of a snapshot (``tree.digests.target`` set) is not
yet at a state named by a zxid and is skipped, as ZooKeeper skips it.

A difference is a ``DigestDivergence`` (raised at once when ``strict``, the
default; otherwise kept in ``divergences`` for the test to look at).
"""

from __future__ import annotations

from typing import Any


class DigestDivergence(AssertionError):
    """Two members hold different trees at the same zxid."""


class DigestWitness:
    def __init__(self, strict: bool = True) -> None:
        self.strict = strict
        self.seen: dict[int, tuple[int, Any]] = {}  # zxid -> (digest, first member seen at it)
        self.divergences: list[tuple[int, Any, int, Any, int]] = []
        self.checks = 0

    def see(self, member: Any, tree: Any) -> None:
        if not tree.digest_on or tree.digests.target is not None:
            return
        zxid, digest = tree.last_zxid, tree.digest
        first = self.seen.setdefault(zxid, (digest, member))
        self.checks += 1
        if first[0] == digest:
            return
        found = (zxid, first[1], first[0], member, digest)
        if found in self.divergences:
            return
        self.divergences.append(found)
        if self.strict:
            raise DigestDivergence(
                f"zxid 0x{zxid:x}: member {first[1]} has tree digest {first[0]}, "
                f"member {member} has {digest}")
