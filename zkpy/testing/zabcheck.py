"""Zab's safety invariants, checked incrementally while a simulation runs.

The simulator (``zkpy.testing.zabsim``) reports every apply, snapshot
install, restart, quorum-acked proposal and leader establishment here; each
report is checked at once and a broken invariant raises ``Violation``:

- one establishment per epoch: at most one leader gets a quorum of
  NEWLEADER acks for a given epoch;
- nothing committed is lost: every txn applied anywhere is in the history of
  every leader established afterwards (the applied txns form one global
  sequence, and it must be a prefix of that history);
- acknowledged is never lost: every txn whose proposal got a quorum of ACKs
  is in the history of every leader established afterwards;
- one order: each peer's applied sequence is a prefix of one global sequence
  (same zxids, same txns, same order);
- no going back: a peer's applied zxid only grows, except across a restart,
  where it resumes from what its disk kept.
"""

from __future__ import annotations

Entry = tuple[int, bytes]


class Violation(AssertionError):
    """A Zab safety invariant does not hold."""


class Checker:
    def __init__(self) -> None:
        self.global_seq: list[Entry] = []
        self.applied: dict[int, list[Entry]] = {}
        self.acked: dict[int, bytes] = {}
        self.established: dict[int, int] = {}  # epoch -> leader
        # The Leading objects whose established history was checked (once each).
        self.leaders_reported: list[object] = []

    def _fail(self, what: str) -> None:
        raise Violation(what)

    # -- applying ----------------------------------------------------------------------

    def on_commit(self, node: int, zxid: int, txn: bytes) -> None:
        seq = self.applied.setdefault(node, [])
        if seq and zxid <= seq[-1][0]:
            self._fail(f"peer {node}: applied zxid went back from 0x{seq[-1][0]:x} to 0x{zxid:x}")
        n = len(seq)
        if n < len(self.global_seq):
            if self.global_seq[n] != (zxid, txn):
                gz, gt = self.global_seq[n]
                self._fail(f"peer {node} applied 0x{zxid:x} {txn!r} as txn #{n}; "
                           f"elsewhere it was 0x{gz:x} {gt!r}")
        else:
            if self.global_seq and zxid <= self.global_seq[-1][0]:
                self._fail(f"peer {node}: global sequence zxid order broken at 0x{zxid:x}")
            self.global_seq.append((zxid, txn))
        seq.append((zxid, txn))

    def on_install(self, node: int, state: list[Entry]) -> None:
        """A SNAP replaced the peer's state: it must extend what it applied."""
        seq = self.applied.get(node, [])
        if state[:len(seq)] != seq:
            self._fail(f"peer {node}: snapshot install does not extend its applied txns")
        self._check_prefix(node, state)
        self.applied[node] = list(state)

    def on_restart(self, node: int, state: list[Entry]) -> None:
        """Restarted from disk: the applied sequence resumes from the snapshot."""
        self._check_prefix(node, state)
        self.applied[node] = list(state)

    def _check_prefix(self, node: int, state: list[Entry]) -> None:
        g = self.global_seq
        common = min(len(g), len(state))
        if state[:common] != g[:common]:
            self._fail(f"peer {node}: state is not a prefix of the global sequence")
        if len(state) > len(g):
            self.global_seq.extend(state[len(g):])

    # -- leaders ------------------------------------------------------------------------

    def on_quorum_acked(self, zxid: int, txn: bytes) -> None:
        known = self.acked.setdefault(zxid, txn)
        if known != txn:
            self._fail(f"two different txns got a quorum of ACKs as 0x{zxid:x}")

    def on_established(self, leader: int, epoch: int, history: list[Entry]) -> None:
        other = self.established.get(epoch)
        if other is not None:
            self._fail(f"epoch {epoch} established twice: by {other} and by {leader}")
        self.established[epoch] = leader
        held = dict(history)
        for zxid, txn in sorted(self.acked.items()):
            if held.get(zxid) != txn:
                self._fail(f"acknowledged txn 0x{zxid:x} {txn!r} lost: leader {leader} "
                           f"established epoch {epoch} without it")
        g = self.global_seq
        if history[:len(g)] != g:
            self._fail(f"committed txns lost: leader {leader}'s history for epoch {epoch} "
                       f"does not start with the {len(g)} txns applied so far")

    # -- at the end ----------------------------------------------------------------------

    def check_converged(self, live: list[int]) -> None:
        """After healing: every live peer applied the same txns, acked ones included."""
        seqs = {node: self.applied.get(node, []) for node in live}
        lengths = {node: len(s) for node, s in seqs.items()}
        if len(set(lengths.values())) > 1:
            self._fail(f"peers did not converge: applied counts {lengths}")
        some = next(iter(seqs.values()), [])
        have = dict(some)
        for zxid, txn in self.acked.items():
            if have.get(zxid) != txn:
                self._fail(f"acknowledged txn 0x{zxid:x} {txn!r} missing after healing")
