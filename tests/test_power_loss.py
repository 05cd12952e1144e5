"""Power loss in the deterministic simulation: zkpy's real storage code on disks that
lose what a power cut loses (``zkpy.testing.powersim``, ``zkpy.testing.simfs``).

``test_many_seeds`` runs ``zkpy.testing.powerload.run_seed`` for many seeds (a
standalone server, 3 or 5 members; writes, kills, power cuts of one member and of
all of them, at any file operation, disk errors, snapshots, SNAP/DIFF/TRUNC; then
the power stays on) and needs every acknowledged write in every member's tree.
The planted bugs below show the simulation catches what it exists to catch, and
the named scenarios replay the known shapes: ZOOKEEPER-2003, -2872, -4882, -5010.

ZKPY_POWER_SEEDS=n changes how many seeds run (default 200; ``tox -e powerloss``
runs 5000); ZKPY_POWER_SEED=n replays one:
``ZKPY_POWER_SEED=42 pytest tests/test_power_loss.py -k one_seed``.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any

import pytest

from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.storage.opwriter import OpWriter
from zkpy.storage.txnlog import LogWriter
from zkpy.storage.zabdisk import install_snapshot
from zkpy.testing.powerload import OPEN, SimClient, run_seed
from zkpy.testing.powersim import PowerSim
from zkpy.testing.simfs import SimFS
from zkpy.zab import events as ev
from zkpy.zab import messages as m

SEEDS = int(os.environ.get("ZKPY_POWER_SEEDS", "200"))
ONE_SEED = os.environ.get("ZKPY_POWER_SEED")


def test_many_seeds() -> None:
    stats: dict[str, int] = {}
    acked = 0
    for seed in range(SEEDS):
        try:
            result = run_seed(seed)
        except AssertionError as exc:
            raise AssertionError(f"seed {seed} failed (replay with ZKPY_POWER_SEED={seed}): "
                                 f"{exc}") from exc
        acked += result.acked
        for key, value in result.stats.items():
            stats[key] = stats.get(key, 0) + value
    print(f"{SEEDS} seeds, {acked} acknowledged writes kept: {stats}")
    if SEEDS >= 200:  # the seeds really cut power where it hurts
        for key in ("power cuts", "kills", "disk errors", "lost writes", "lost torn",
                    "lost dir_changes", "cut during start-up", "snapshots", "SNAP", "TRUNC",
                    "DIFF"):
            assert stats.get(key, 0) > 0, f"no {key} in {SEEDS} seeds: {stats}"


def test_one_seed() -> None:
    """Replays ZKPY_POWER_SEED (a failing seed from test_many_seeds); seed 0 by default."""
    print(run_seed(int(ONE_SEED or 0)))


# -- planted bugs ---------------------------------------------------------------------


class NoDirSyncForNewLogs(SimFS):
    """Planted bug (ClickHouse #111339's kind, ZOOKEEPER-2003): the directory is not
    synced after a new log file is created."""

    last = ""

    def create(self, path: str) -> Any:
        self.last = path
        return super().create(path)

    def sync_dir(self, path: str) -> None:
        if os.path.basename(self.last).startswith("log."):
            self.last = ""
            return
        super().sync_dir(path)


class NoDirSyncForEpochs(SimFS):
    """Planted bug: acceptedEpoch/currentEpoch are renamed into place and the
    directory is not synced."""

    last = ""

    def replace(self, src: str, dst: str) -> None:
        self.last = dst
        super().replace(src, dst)

    def sync_dir(self, path: str) -> None:
        if self.last.endswith("Epoch"):
            self.last = ""
            return
        super().sync_dir(path)


class _UnsyncedLog(LogWriter):
    def sync(self) -> None:
        pass


class AckBeforeFsync(OpWriter):
    """Planted bug: a batch is reported persisted (its ACKs released) without the
    log's fdatasync."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.writer.__class__ = _UnsyncedLog


@functools.cache
def _first_failure(planted: str, seeds: int) -> tuple[int, str] | None:
    kw: dict[str, Any] = {"dirsync": {"fs_factory": NoDirSyncForNewLogs},
                          "ack": {"store_factory": AckBeforeFsync}}[planted]
    for seed in range(seeds):
        try:
            run_seed(seed, **kw)
        except Exception as exc:  # a lost write, a divergence, a refusal, a Zab SafetyError
            return seed, f"{type(exc).__name__}: {exc}"
    return None


@pytest.mark.parametrize("planted", ["dirsync", "ack"])
def test_the_random_seeds_catch_a_planted_bug(planted: str) -> None:
    found = _first_failure(planted, 100)
    assert found is not None, f"{planted}: no seed of 100 noticed the planted bug"


# -- scripted scenarios ---------------------------------------------------------------


def _sim(size: int = 3, **kw: Any) -> PowerSim:
    sim = PowerSim(0, size, standalone=size == 1, **kw)
    sim.harsh = True  # every cut keeps nothing that was not synced
    sim.wait_for(sim.ready)
    return sim


def _power_cycle(sim: PowerSim, members: list[int] | None = None) -> None:
    for i in members or sim.ids:
        sim._off(i, power=True)
    sim.settle()
    for i in members or sim.ids:
        sim.restart(i)
    assert not sim.refusals, sim.refusals
    sim.wait_for(sim.ready)


def _client(sim: PowerSim, i: int | None = None) -> SimClient:
    if i is None:
        i = next(mb.id for mb in sim.members.values() if mb.replica.mode in ("leader",
                                                                              "standalone"))
    return SimClient(sim, i)


def _has(sim: PowerSim, path: str) -> dict[int, bool]:
    return {i: sim.members[i].core.tree.get(path) is not None for i in sim.ids}


def test_zookeeper_2003_a_new_log_file_outlives_a_power_cut() -> None:
    """ZOOKEEPER-2003 (cited by jzab's FileTxnLog for it): fsyncing a new log file
    does not make its name durable; without the directory's fsync a power cut
    takes the file, and every acknowledged write in it. Standalone and a member."""

    def run(fs_factory: Callable[[], SimFS], size: int) -> dict[int, bool]:
        sim = _sim(size, fs_factory=fs_factory)
        assert _client(sim).create("/a", b"x") == 0
        _power_cycle(sim)
        return _has(sim, "/a")

    for size in (1, 3):
        assert all(run(SimFS, size).values())
        assert not all(run(NoDirSyncForNewLogs, size).values())


def test_an_epoch_promise_survives_a_power_cut() -> None:
    """acceptedEpoch is a promise: a member that forgets it (its rename not
    synced) lets a second leader take an epoch already established, and two
    txns get the same zxid. Caught as "epoch established twice"."""

    def run(fs_factory: Callable[[], SimFS]) -> None:
        sim = _sim(3, fs_factory=fs_factory, separate_logs=True)
        assert _client(sim).create("/a") == 0
        for i in sim.ids:  # a snapshot syncs the directory: epoch 1's files are durable
            sim.start_snapshot(i)
        while sim.makers:
            sim.snapshot_work()
        for path in ("/b", "/c"):
            _power_cycle(sim)
            assert _client(sim).create(path) == 0
        assert all(all(_has(sim, p).values()) for p in ("/a", "/b", "/c"))

    run(SimFS)
    with pytest.raises(AssertionError, match="established by member"):
        run(NoDirSyncForEpochs)


def test_an_ack_needs_its_fsync() -> None:
    sim = _sim(1, store_factory=AckBeforeFsync)
    assert _client(sim).create("/a") == 0
    _power_cycle(sim)
    assert _has(sim, "/a") == {1: False}


class SnapStoredWithoutFsync(OpWriter):
    """Planted bug (ZOOKEEPER-2872's): the leader's SNAP is renamed into place but
    neither it nor its name is synced before the txns after it are."""

    def _write(self, ops: Any) -> int:
        rest = []
        for op in ops:
            if isinstance(op, ev.InstallSnapshot):
                super()._write(rest)
                rest = []
                self.writer.roll()
                install_snapshot(self.snap_dir, op.zxid, op.data, False, self.fs)
                self.last_zxid = op.zxid
            else:
                rest.append(op)
        return super()._write(rest)


def _follower(sim: PowerSim) -> int:
    return next(mb.id for mb in sim.members.values() if mb.replica.mode == "follower")


def test_zookeeper_2872_an_interrupted_snapshot_sync_loses_nothing() -> None:
    """ZOOKEEPER-2872: a learner that comes back in a later epoch and is synced by
    SNAP logs the txns after it; if the power goes before the snapshot is on disk
    it restarts from its older snapshot plus those txns, silently without the
    commits it had missed. zkpy stores a SNAP synced, name included, before
    anything after it (and the ACK of NEWLEADER waits for all of it)."""

    def run(store: Callable[..., OpWriter]) -> None:
        sim = _sim(3, log_window=1, store_factory=store)
        f = _follower(sim)
        c = _client(sim)
        assert c.create("/before") == 0
        sim._off(f, power=True)
        sim.settle()
        for i in range(5):  # committed while f is away: it can only get them by SNAP
            assert c.create(f"/missed{i}") == 0
        mark = len(sim.delivered)
        sim.restart(f)
        sim.wait_for(sim.ready)
        assert any(p.type == m.SNAP and d == f for _, d, p in sim.delivered[mark:])
        assert c.create("/after") == 0  # logged by f after the SNAP
        _power_cycle(sim, [f])
        assert c.create("/last") == 0
        for path in ("/before", "/missed4", "/after", "/last"):
            assert _has(sim, path)[f], path

    run(OpWriter)
    with pytest.raises(AssertionError):  # a digest divergence, or /missed4 missing on f
        run(SnapStoredWithoutFsync)


class DiskErrorsIgnored(OpWriter):
    """Planted bug (ZOOKEEPER-4882's kind): a batch whose write fails is reported
    persisted all the same, the server carrying on with its log behind its memory."""

    def write(self, ops: Any) -> int:
        try:
            return super().write(ops)
        except OSError:
            last = [op.zxid for op in ops if isinstance(op, ev.Append)]
            self.last_zxid = max(last + [self.last_zxid])
            return self.last_zxid


@pytest.mark.parametrize("kind", ["write", "sync"])
def test_zookeeper_4882_a_temporary_disk_error_loses_nothing(kind: str) -> None:
    """ZOOKEEPER-4882: a follower whose disk fails for a moment keeps committing
    in memory; after it rejoins its log has a hole, and after a restart the
    writes in the hole are gone. zkpy stops a server whose write or fsync fails
    (after cutting its log back to what was synced: a failed fsync leaves the
    pages readable but never durable), and it comes back from its disk."""

    def run(store: Callable[..., OpWriter]) -> None:
        sim = _sim(3, store_factory=store)
        f = _follower(sim)
        c = _client(sim)
        sim.fail(f, kind)
        for i in range(10):
            assert c.create(f"/foo{i}") == 0  # the leader and the third member commit
        if not sim.members[f].up:
            sim.restart(f)
        sim.wait_for(sim.ready)
        for i in range(10):
            assert c.create(f"/bar{i}") == 0
        _power_cycle(sim, [f])
        _power_cycle(sim)
        for path in ("/foo0", "/foo9", "/bar0", "/bar9"):
            assert all(_has(sim, path).values()), path

    run(OpWriter)
    with pytest.raises(AssertionError):  # a refusal to start (the hole), or a lost write
        run(DiskErrorsIgnored)


def test_zookeeper_5010_no_stale_ephemeral_after_a_diff_sync() -> None:
    """ZOOKEEPER-5010: a persistent node created, set and deleted, then an
    ephemeral requested; the leader dies with the ephemeral's proposal logged
    by some followers only; after re-election and DIFF syncs some followers
    kept the ephemeral, which the leader did not have, for ever. In zkpy a
    member applies only what is committed: every member agrees on it at once,
    and after the session expires it is gone everywhere; then the same after a
    power cut of the whole ensemble."""
    sim = _sim(5)
    leader = next(mb.id for mb in sim.members.values() if mb.replica.mode == "leader")
    a, b, c_, d = [i for i in sim.ids if i != leader]
    client = SimClient(sim, a)
    assert client.create("/p", b"1") == 0
    assert client.call(Op.setData, S.SetDataRequest("/p", b"2", -1), "/p") == 0
    assert client.call(Op.delete, S.DeleteRequest("/p", -1), "/p") == 0
    sim.paused |= {(leader, c_), (leader, d)}  # the proposal reaches a and b only
    sim.hold(leader)  # and the leader's own log never gets it
    client.request(Op.create, S.CreateRequest("/eph", b"", OPEN, 1), "/eph")
    sim.settle()
    assert not any(_has(sim, "/eph").values())  # acked by a and b: not a quorum of 5
    sim._off(leader, power=True)
    sim.paused.clear()
    sim.settle()
    sim.wait_for(sim.ready)
    live = [i for i in sim.ids if sim.members[i].up]
    assert len({_has(sim, "/eph")[i] for i in live}) == 1
    _power_cycle(sim)
    assert len(set(_has(sim, "/eph").values())) == 1 and not any(_has(sim, "/p").values())
    sim.advance(40_000)  # the session (30 s) expires: its ephemeral goes, everywhere
    sim.wait_for(sim.ready)
    assert not any(_has(sim, "/eph").values())
    new_leader = next(mb for mb in sim.members.values() if mb.replica.mode == "leader")
    known = set(new_leader.core.sessions.sessions)
    for i in sim.ids:
        owners = set(sim.members[i].core.tree.ephemerals)
        assert owners <= known, f"member {i} keeps ephemerals of unknown sessions {owners}"


# -- what the random seeds found, replayed ----------------------------------------------


class KillAtNextSync(SimFS):
    """The process is killed at its next sync (its writes in the page cache only)."""

    armed = False

    def _tick(self, kind: str) -> None:
        if self.armed and kind == "sync":
            self.armed = False
            self.cut_at(1, power=False)
        super()._tick(kind)


def test_a_restart_builds_only_on_what_is_durable(monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the seeds: a server killed between writing a batch and syncing it
    finds the batch in the page cache when it restarts, reports it as its
    history (a standalone server commits it) and logs after it, in a new file;
    the next power cut takes the batch and leaves a hole, and the server refuses
    to start (a standalone one's tree can diverge). Start-up now syncs what it
    loaded before anything is built on it."""

    def run() -> list[tuple[int, str]]:
        sim = _sim(3, fs_factory=KillAtNextSync)
        f = _follower(sim)
        c = _client(sim)
        assert c.create("/a") == 0
        fs = sim.fss[f]
        assert isinstance(fs, KillAtNextSync)
        fs.armed = True
        assert c.create("/b") == 0  # the other two commit it; f dies before its sync
        assert not sim.members[f].up
        sim.restart(f)
        sim.wait_for(sim.ready)
        assert c.create("/c") == 0
        sim._off(f, power=True)
        sim.restart(f)
        if not sim.refusals:
            sim.wait_for(sim.ready)
            assert all(_has(sim, p)[f] for p in ("/a", "/b", "/c"))
        return sim.refusals

    assert run() == []
    monkeypatch.setattr("zkpy.storage.recovery._make_durable", lambda *a: None)
    assert "are missing before it" in run()[0][1]


def test_a_new_log_with_a_torn_header_is_removed_at_start() -> None:
    """Found by the seeds: the power goes before a new log file's header is synced;
    start-up ignored the empty file, a later log then made it a damaged file in
    the middle, and the next start refused. It is now removed, durably."""
    sim = _sim(1)
    assert _client(sim).create("/a") == 0
    fs = sim.fss[1]
    sim.stores[1].writer.roll()  # the next write starts a new log file
    fs.cut_at(4)  # create, header, directory sync: then the power goes, the header unsynced
    assert _client(sim).create("/b") == -1000
    logs = [p for p in fs.files() if "/log." in p]
    assert len(logs) == 2 and min(fs.size(p) for p in logs) == 0
    sim.restart(1)
    sim.wait_for(sim.ready)
    assert [p for p in fs.files() if "/log." in p] == sorted(logs)[:1]
    assert _client(sim).create("/c") == 0
    _power_cycle(sim)
    assert _has(sim, "/a") == _has(sim, "/c") == {1: True}
