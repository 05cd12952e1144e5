"""Power cuts of real zkpy processes: one server, one member, the whole ensemble.

A SIGKILL leaves a process's unsynced writes in the page cache; a power cut
does not. Each server here runs with ``ZKPY_FS_JOURNAL`` (its file system
layer journals every change, ``zkpy.storage.fs``); after the SIGKILL its data
directory is rolled back to what a power cut could have left
(``zkpy.testing.powercut.PowerCutDisk``: unsynced bytes lost or kept in any
prefix, the last write torn, unsynced directory changes lost or kept), and
only then is it restarted. Clients pipeline creates of unique nodes the whole
time; every create a client saw acknowledged must be on every member after.

    pytest compat_tests/test_power_loss.py
    ZKPY_POWER_CYCLES=20 ZKPY_POWER_SEED=7 pytest compat_tests/test_power_loss.py

The same fault in the deterministic simulation, for thousands of seeds, is
tests/test_power_loss.py.
"""

from __future__ import annotations

import os
import random
import struct
import threading
import time
from collections import deque
from pathlib import Path

from kazoo.client import KazooClient

from compat_tests.test_durability import Raw, create_body
from zkpy.jute.protocol import Op
from zkpy.testing.ensemble import Ensemble
from zkpy.testing.launchers import ZkpyServer
from zkpy.testing.powercut import PowerCutDisk

CYCLES = int(os.environ.get("ZKPY_POWER_CYCLES", "4"))
SEED = int(os.environ.get("ZKPY_POWER_SEED", "20240917"))
# Small preallocation and frequent snapshots: cuts land in new log files, log
# rolls and snapshot writes, not only in appends.
SETTINGS = {"snapCount": 60, "preAllocSize": 16, "tickTime": 500}


class Creator(threading.Thread):
    """Pipelines creates of /pw/<name>-<n> until told to stop or its connection
    dies; ``acked`` lists the paths whose create was answered with success."""

    def __init__(self, name: str, address: tuple[str, int], window: int,
                 stop: threading.Event) -> None:
        super().__init__(daemon=True, name=f"creator-{name}")
        self.label, self.address, self.window, self.stop = name, address, window, stop
        self.acked: list[str] = []
        self.failed = 0

    def run(self) -> None:
        try:
            conn = Raw(self.address, timeout_ms=4000)
        except OSError:
            return
        pending: deque[tuple[int, str]] = deque()
        n = 0
        try:
            while not self.stop.is_set() or pending:
                while not self.stop.is_set() and len(pending) < self.window:
                    n += 1
                    path = f"/pw/{self.label}-{n}"
                    pending.append((conn.send(Op.create, create_body(path, path.encode())),
                                    path))
                xid, _, err, _ = conn.reply()
                want, path = pending.popleft()
                assert xid == want, (xid, want)
                if err == 0:
                    self.acked.append(path)
                else:
                    self.failed += 1
        except (OSError, ConnectionError, struct.error):
            return
        finally:
            conn.abandon()


def _load(addresses: list[tuple[str, int]], rng: random.Random, cycle: int,
          stop: threading.Event) -> list[Creator]:
    creators = [Creator(f"{cycle}x{i}", a, rng.choice([1, 8, 32]), stop)
                for i, a in enumerate(addresses)]
    for c in creators:
        c.start()
    return creators


def _joined(creators: list[Creator], acked: set[str]) -> None:
    for c in creators:
        c.join(30)
        assert not c.is_alive(), f"{c.name} hangs"
        acked.update(c.acked)


def _check(connect_string: str, acked: set[str], what: str) -> int:
    zk = KazooClient(connect_string, timeout=15)
    zk.start(timeout=30)
    try:
        zk.sync("/pw")
        there = {f"/pw/{name}" for name in zk.get_children("/pw")}
        missing = sorted(acked - there)
        assert not missing, (f"{what}: {len(missing)} acknowledged creates lost, "
                             f"e.g. {missing[:5]}")
        for path in sorted(acked)[:: max(len(acked) // 50, 1)]:
            assert zk.get(path)[0] == path.encode(), path
        return len(there)
    finally:
        zk.stop()
        zk.close()


def _make_root(address: tuple[str, int]) -> None:
    conn = Raw(address)
    try:
        err, _ = conn.call(Op.create, create_body("/pw", b""))
        assert err in (0, -110), err  # made now, or in an earlier run
    finally:
        conn.abandon()


def test_power_cuts_of_a_standalone_server(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    srv = ZkpyServer(settings=SETTINGS, workdir=tmp_path / "standalone")
    disk = PowerCutDisk(srv.data_dir, tmp_path / "journal", rng)
    srv.extra_env.update(disk.env(slow_sync_ms=15))
    acked: set[str] = set()
    try:
        for cycle in range(CYCLES):
            disk.prepare()
            srv.start()
            _make_root(srv.address)
            _check(srv.connect_string, acked, f"standalone, cycle {cycle}")
            stop = threading.Event()
            creators = _load([srv.address] * 3, rng, cycle, stop)
            time.sleep(rng.uniform(0.3, 1.5))
            srv.kill()
            _joined(creators, acked)
            lost = disk.after_kill(power=True)
            print(f"cycle {cycle}: {len(acked)} acknowledged so far; the cut took {lost}")
        disk.prepare()
        srv.start()
        total = _check(srv.connect_string, acked, "standalone, at the end")
        print(f"{CYCLES} power cuts: {len(acked)} acknowledged creates, {total} nodes kept; "
              f"{disk.stats}")
    finally:
        srv.cleanup()


def test_power_cuts_of_one_member_and_of_the_whole_ensemble() -> None:
    rng = random.Random(SEED + 1)
    with Ensemble("zkpy", 3, settings=SETTINGS) as ens:
        disks = {}
        for mb in ens.members:
            disks[mb.myid] = PowerCutDisk(mb.server.data_dir,
                                          ens.workdir / f"journal-{mb.myid}", rng)
            mb.server.extra_env.update(disks[mb.myid].env(slow_sync_ms=15))
            disks[mb.myid].prepare()
        leader = ens.start()
        _make_root(leader.server.address)
        acked: set[str] = set()
        for cycle in range(CYCLES):
            stop = threading.Event()
            creators = _load([mb.server.address for mb in ens.members], rng, cycle, stop)
            time.sleep(rng.uniform(0.3, 1.0))
            if cycle % 2 == 0:  # one member: the leader, or a follower
                leader = ens.wait_for_quorum(30)
                victim = leader if cycle % 4 == 0 else rng.choice(ens.followers())
                victim.kill()
                time.sleep(rng.uniform(0.2, 0.8))  # the others carry on without it
                disks[victim.myid].after_kill(power=True)
                disks[victim.myid].prepare()
                victim.start(wait=False)
                stop.set()
                _joined(creators, acked)
                what = f"member {victim.myid} power-cut (cycle {cycle})"
            else:  # all of them at once
                for mb in ens.members:
                    mb.kill()
                _joined(creators, acked)
                for mb in ens.members:
                    disks[mb.myid].after_kill(power=True)
                    disks[mb.myid].prepare()
                ens.start()
                what = f"whole ensemble power-cut (cycle {cycle})"
            ens.wait_for_quorum(60)
            for mb in ens.members:
                _check(mb.connect_string, acked, f"{what}, read on member {mb.myid}")
            print(f"{what}: {len(acked)} acknowledged so far")
        print("cuts took:", {i: d.stats for i, d in disks.items()})
