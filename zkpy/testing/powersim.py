"""Ensemble members whose disks lose power: zkpy's real storage code, power cut.

``PowerSim`` is a ``zkpy.testing.replicasim.Sim`` (the production request
pipeline: ServerCore + Zab Peer + Replica per member, deterministic, in
memory) whose members keep their data directories on simulated disks
(``zkpy.testing.simfs.SimFS``) and run the storage code production runs:

- each batch of persist ops goes through ``zkpy.storage.opwriter.OpWriter``
  (txn log, epoch files, TRUNC, SNAP install: what ``zkpy.net.disk`` runs on
  its thread), and only when it returns are the batch's ACKs released;
- a member starts from its disk the way ``zkpy.__main__`` starts a server:
  the data directory made, ``zkpy.storage.recovery.load`` (snapshot, the log
  after it, epochs, torn tails repaired), a standalone server's start-up
  snapshot;
- fuzzy snapshots as ``zkpy.net.snapshots`` takes them: a log roll, then the
  tree serialized a slice at a time while commits go on, then the file.

Why here and not in ``zkpy.testing.zabsim``: the storage code reads what it
writes (txn headers for zxids, snapshots it parses, digests), so it needs
real transactions and real trees, which only the Replica pipeline makes; and
"acknowledged" means a client saw the reply, which only it answers. zabsim
keeps its opaque txns for fast protocol coverage.

Faults: ``power_cut(i)`` (the member stops; its disk keeps what a power cut
could keep), ``power_cut_soon(i, n)`` (the power goes at the n-th file
operation from now: between two writes, or a write and its sync, of
whatever the member does next), ``kill(i)`` (SIGKILL: the process stops, the
page cache survives), ``fail(i, kind)`` (the next write or sync fails with
EIO: the member stops, as ``DiskWriter`` stops a server that cannot
persist). ``RecoveryError`` at a restart is recorded in ``refusals`` with the
member stopped; everything else that goes wrong raises.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from typing import Any

from zkpy.server.core import CoreSettings, ServerCore
from zkpy.server.replica import Replica
from zkpy.storage.formats import snapshot_name
from zkpy.storage.fs import FileSystem
from zkpy.storage.opwriter import OpWriter, Roll
from zkpy.storage.recovery import RecoveryError, load
from zkpy.storage.snapshot import SnapshotMaker, write_snapshot, write_tree
from zkpy.testing.replicasim import Member, Sim, _SimDisk, _SimLinks
from zkpy.testing.simfs import PowerCut, SimFS
from zkpy.zab import events as ev
from zkpy.zab.peer import Peer

PREALLOC = 4096  # small, so preallocation happens often


def data_dir(i: int) -> str:
    return f"/data/{i}/version-2"


def log_dir(i: int) -> str:
    """With ``separate_logs``: a dataLogDir of its own (another directory to sync)."""
    return f"/datalog/{i}/version-2"


class PowerSim(Sim):
    def __init__(self, seed: int, size: int = 3, *, standalone: bool = False,
                 snap_count: int = 30, separate_logs: bool = False,
                 fs_factory: Callable[[], SimFS] = SimFS,
                 store_factory: Callable[..., OpWriter] = OpWriter, **kw: Any) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.standalone = standalone
        self.snap_count = snap_count
        self.separate_logs = separate_logs
        self.harsh = False  # power cuts keep nothing unsynced (named scenarios)
        self.store_factory = store_factory
        self.fss: dict[int, SimFS] = {i: fs_factory() for i in range(1, size + 1)}
        self.stores: dict[int, OpWriter] = {}
        self.makers: dict[int, SnapshotMaker] = {}
        self.commits_seen: dict[int, int] = {}
        self.snap_due: dict[int, int] = {}
        self.refusals: list[tuple[int, str]] = []
        self.epoch_leaders: dict[int, int] = {}
        self.leaders: set[Any] = set()  # every Leading that got established
        self.stats: dict[str, int] = {}
        super().__init__(size, **kw)
        for i in self.ids:
            self._started(i)
        self.settle()

    def count(self, key: str, n: int = 1) -> None:
        self.stats[key] = self.stats.get(key, 0) + n

    # -- a member's start, from its disk ---------------------------------------------------

    def _boot(self, i: int) -> None:
        fs = self.fss[i]
        directory = data_dir(i)
        logs = log_dir(i) if self.separate_logs else directory
        fs.makedirs(directory)  # zkpy.__main__._build_server
        fs.makedirs(logs)
        state = load(directory, logs, fs)
        core = ServerCore(CoreSettings(server_id=i, tick_time=self.tick_time, **self.settings),
                          self.now)
        core.restore(state.tree, state.sessions, self.now)
        disk = ev.DiskState(state.accepted_epoch, state.current_epoch, state.snapshot_zxid,
                            state.log)
        if self.standalone:
            peer = Peer(i, frozenset({i}), disk, standalone=True)
        else:
            peer = Peer(i, frozenset(self.ids), disk, **self.peer_args)
        self.stores[i] = self.store_factory(directory, logs, state.last_zxid,
                                           prealloc_bytes=PREALLOC, force_sync=True, fs=fs)
        replica = Replica(core, peer, _SimLinks(self, i), _SimDisk(self, i))
        self.members[i] = Member(i, core, peer, replica)
        self.makers.pop(i, None)
        self.commits_seen[i] = 0
        self.snap_due[i] = self._threshold()

    def _started(self, i: int) -> None:
        """MemberServer.start after the Start step: a standalone server's clean snapshot."""
        member = self.members[i]
        if not self.standalone or not member.up:
            return
        core, fs = member.core, self.fss[i]
        path = os.path.join(data_dir(i), snapshot_name(core.last_zxid))
        if not fs.exists(path):
            try:
                write_tree(path, core.tree, core.session_timeouts(), True, fs)
            except PowerCut as cut:
                self._off(i, cut.power)
            except OSError:
                self.count("disk errors")
                self._off(i, power=False)

    def restart(self, i: int) -> None:
        """Start ``i`` from its disk; a RecoveryError leaves it stopped (``refusals``)."""
        assert not self.members[i].up, f"member {i} is running"
        try:
            self._boot(i)
        except PowerCut as cut:
            self._lost(i, cut.power)
            self.count("cut during start-up")
            return
        except RecoveryError as e:
            self.refusals.append((i, str(e)))
            self.fss[i].crash()
            return
        except OSError:
            self.count("disk errors")  # the server exits at start-up
            self.fss[i].crash()
            return
        self.count("restarts")
        self.step(i, ev.Start())
        self._started(i)
        self.settle()

    def step(self, i: int, event: ev.Event) -> None:
        super().step(i, event)
        self._check_epoch(i)

    def _check_epoch(self, i: int) -> None:
        """Zab: one leader per epoch, ever (what acceptedEpoch's durability buys)."""
        lead = self.members[i].peer.leading
        if lead is None or not lead.established or self.standalone or lead in self.leaders:
            return
        self.leaders.add(lead)
        first = self.epoch_leaders.setdefault(lead.epoch, i)
        if len(self.leaders) > len(self.epoch_leaders):
            raise AssertionError(f"seed {self.seed}: epoch {lead.epoch} established by member "
                                 f"{first} and again by member {i}")

    def ready(self) -> bool:
        """Serving: a standalone server up, or one leader with every running member synced."""
        if self.standalone:
            member = self.members[self.ids[0]]
            return member.up and member.core.serving
        return self.stable() and all(mb.core.serving for mb in self.members.values() if mb.up)

    # -- the disk -------------------------------------------------------------------------------

    def sync(self, i: int) -> None:
        """Carry out what ``i`` handed its disk, through the production OpWriter;
        release the ACKs only once it returned (everything synced)."""
        member = self.members[i]
        if not member.pending or not member.up:
            return
        batches, member.pending = member.pending, []
        ops = [op for ops, _ in batches for op in ops]
        try:
            last = self.stores[i].write(ops)
        except PowerCut as cut:
            self._off(i, cut.power)
            return
        except OSError:
            self.count("disk errors")
            self._off(i, power=False)  # DiskWriter._failed: the server stops
            return
        self.count("batches")
        after = [send for _, sends in batches for send in sends]
        member.replica.persisted(after, last, self.now)
        self.digests.see(i, member.core.tree)
        self._check_epoch(i)

    # -- fuzzy snapshots (zkpy.net.member._maybe_snapshot, zkpy.net.snapshots) --------------

    def _threshold(self) -> int:
        half = max(self.snap_count // 2, 1)
        return half + self.rng.randrange(half)

    def snapshot_work(self) -> None:
        """Count commits, start snapshots that are due, move the running ones on."""
        for i in self.ids:
            member = self.members[i]
            if not member.up:
                continue
            commits = member.core.stats.commits
            new, self.commits_seen[i] = commits - self.commits_seen[i], commits
            self.snap_due[i] -= new
            if self.snap_due[i] <= 0 and i not in self.makers:
                self.start_snapshot(i)
            maker = self.makers.get(i)
            if maker is not None and maker.step(self.rng.randint(1, 40)):
                self._write_snapshot(i, self.makers.pop(i))

    def start_snapshot(self, i: int) -> None:
        member = self.members[i]
        self.snap_due[i] = self._threshold()
        member.replica.driver.disk.submit([Roll()], [])  # type: ignore[list-item]
        self.makers[i] = SnapshotMaker(member.core.tree, member.core.session_timeouts())

    def _write_snapshot(self, i: int, maker: SnapshotMaker) -> None:
        path = os.path.join(data_dir(i), snapshot_name(maker.zxid))
        try:
            write_snapshot(path, maker.head(), maker.chunks, True, maker.digest, self.fss[i])
        except PowerCut as cut:
            self._off(i, cut.power)
            return
        except OSError:
            self.count("disk errors")
            self._off(i, power=False)
            return
        self.count("snapshots")

    # -- faults -------------------------------------------------------------------------------

    def _off(self, i: int, power: bool) -> None:
        """Stop ``i`` (what Sim.crash does, without settling): its queues,
        unsynced batches and client connections die; its disk loses what a power
        cut loses (``power``) or nothing (a killed process)."""
        member = self.members[i]
        if member.up:
            member.up = False
            member.pending.clear()
            for other in self.ids:
                if other != i:
                    self._drop_link(i, other)
                    self.local.append((other, ev.ConnectionLost(i)))
            for conn in list(member.core.connections.values()):
                conn.closer()
        self.makers.pop(i, None)
        self._lost(i, power)

    def _lost(self, i: int, power: bool) -> None:
        if power:
            self.fss[i].power_cut(None if self.harsh else self.rng)
            self.count("power cuts")
        else:
            self.fss[i].crash()
            self.count("kills")

    def crash(self, i: int) -> None:
        self.kill(i)

    def kill(self, i: int) -> None:
        self._off(i, power=False)
        self.settle()

    def power_cut(self, i: int) -> None:
        self._off(i, power=True)
        self.settle()

    def power_cut_soon(self, i: int, n: int, power: bool = True) -> None:
        """The power of ``i`` goes at its n-th file operation from now (``power``
        False: its process is killed there)."""
        self.fss[i].cut_at(n, power)

    def fail(self, i: int, kind: str) -> None:
        self.fss[i].fail(kind)

    def fs(self, i: int) -> FileSystem:
        return self.fss[i]
