"""A standalone server in memory: the production pipeline on a disk that is a list.

``standalone(settings, now)`` builds what ``zkpy.net.member.MemberServer``
builds for a standalone server (a ``ServerCore``, a ``Peer(standalone=True)``
and the ``Replica`` joining them) with a ``MemoryDisk`` instead of the disk
thread and no sockets, and starts it. Unit tests of the request pipeline
commit through exactly the engine production uses: a write is logged, synced,
acknowledged by the server itself and only then applied and answered.

``MemoryDisk`` syncs each batch as soon as it is handed over, unless ``held``:
then batches wait for ``release()``, which is how a test keeps writes in
flight. What it synced is kept in a ``zkpy.testing.zabsim.MemDisk``, so a test
can restart from it (``restart``) as from a real data directory.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from zkpy.server.core import CoreSettings, ServerCore
from zkpy.server.host import Host
from zkpy.server.replica import Replica
from zkpy.storage.snapshot import parse_snapshot, snapshot_bytes
from zkpy.testing.zabsim import MemDisk
from zkpy.zab.driver import Durable, NoLinks
from zkpy.zab.events import PersistOp, Start
from zkpy.zab.peer import Peer


@dataclass
class MemoryDisk:
    synced: MemDisk = field(default_factory=MemDisk)
    held: bool = False
    pending: list[tuple[list[PersistOp], list[Durable]]] = field(default_factory=list)
    replica: Replica | None = None
    batches: int = 0

    def submit(self, ops: list[PersistOp], after: list[Durable]) -> None:
        self.pending.append((list(ops), after))
        if not self.held:
            self.sync()

    def sync(self) -> None:
        """Everything handed over so far is on disk: release what waited for it."""
        if not self.pending:
            return
        batches, self.pending = self.pending, []
        for ops, _after in batches:
            for op in ops:
                self.synced.apply(op)
        self.batches += 1
        assert self.replica is not None
        replica = self.replica
        replica.persisted([send for _, sends in batches for send in sends],
                          self.synced.last_zxid(), replica.now)

    def hold(self) -> None:
        self.held = True

    def release(self) -> None:
        self.held = False
        self.sync()


def standalone(settings: CoreSettings, now: int, disk: MemoryDisk | None = None,
               host: Host | None = None) -> Replica:
    """A started standalone server over ``disk`` (a new, empty one by default)."""
    disk = disk if disk is not None else MemoryDisk()
    core = ServerCore(settings, now, host)
    zxid, data = disk.synced.snapshot
    if data:
        tree, sessions = parse_snapshot(data, zxid)
        core.restore(tree, sessions, now)
    me = settings.server_id
    peer = Peer(me, {me}, disk.synced.state(), standalone=True)
    replica = Replica(core, peer, NoLinks(), disk)
    disk.replica = replica
    replica.step(Start(), now)
    return replica


def snapshot(replica: Replica) -> None:
    """Store a snapshot of the tree on the replica's disk (what a fuzzy snapshot
    plus log roll leaves behind), so a restart loads it."""
    disk = replica.driver.disk
    assert isinstance(disk, MemoryDisk)
    core = replica.core
    disk.synced.snapshot = (core.last_zxid, snapshot_bytes(core.tree, core.session_timeouts()))
    disk.synced.log = [e for e in disk.synced.log if e[0] > core.last_zxid]


def restart(replica: Replica, now: int) -> Replica:
    """The same server started again from what its disk synced (a crash loses
    whatever was still held)."""
    disk = replica.driver.disk
    assert isinstance(disk, MemoryDisk)
    disk.pending.clear()
    disk.held = False
    return standalone(replica.core.settings, now, disk, replica.core.host)
