"""The power-cut harness of compat_tests/test_power_loss.py: what it may take.

``PowerCutDisk`` replays a killed process's file journal and then keeps only
what a disk could have kept. It must never take what the process was told
was durable (a sync that returned), or the power-loss tests blame the server
for the harness; and it must be free to take anything else.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from zkpy.storage import fsjournal
from zkpy.storage.fs import JournalFileSystem
from zkpy.testing.powercut import PowerCutDisk

SEEDS = range(64)


def _disk(tmp_path: Path, seed: int) -> tuple[PowerCutDisk, JournalFileSystem, str]:
    data = tmp_path / f"data-{seed}"
    (data / "version-2").mkdir(parents=True)
    disk = PowerCutDisk(data, tmp_path / f"journal-{seed}", random.Random(seed))
    disk.prepare()
    fs = JournalFileSystem(disk.journal)
    return disk, fs, os.path.join(disk.root, "log.1")


def test_a_sync_that_returned_survives_every_cut(tmp_path: Path) -> None:
    # The process wrote, synced, and was killed before it changed anything
    # else: the journal ends with that sync. Every cut keeps the bytes.
    for seed in SEEDS:
        disk, fs, path = _disk(tmp_path, seed)
        f = fs.create(path)
        f.write(b"acknowledged")
        f.sync()
        fs.sync_dir(disk.root)
        disk.after_kill(power=True)
        assert disk.fs.read(path) == b"acknowledged", seed


def test_a_file_sync_that_returned_survives_when_it_is_the_last_change(
        tmp_path: Path) -> None:
    # As a server's log after its first batch: the name made durable first,
    # then appends and the sync the replies waited for, then the kill.
    for seed in SEEDS:
        disk, fs, path = _disk(tmp_path, seed)
        f = fs.create(path)
        fs.sync_dir(disk.root)
        f.write(b"batch")
        f.sync()
        disk.after_kill(power=True)
        assert disk.fs.read(path) == b"batch", seed


def _kept(tmp_path: Path, then: Callable[[Any, JournalFileSystem], None]) -> set[bytes]:
    """What the cuts of every seed kept of a log file whose name is durable,
    after ``then(file, fs)`` wrote to it and the process was killed."""
    kept = set()
    for seed in SEEDS:
        disk, fs, path = _disk(tmp_path, seed)
        f = fs.create(path)
        fs.sync_dir(disk.root)
        then(f, fs)
        disk.after_kill(power=True)
        kept.add(disk.fs.read(path))
    return kept


def test_a_sync_killed_before_it_returned_may_lose_the_writes(tmp_path: Path) -> None:
    # The record of a sync is written before the sync; the process killed in
    # between was never told it was durable, so the cut is free to drop it.
    def write_and_start_a_sync(f: Any, fs: JournalFileSystem) -> None:
        f.write(b"batch")
        os.write(fs.fd, fsjournal.encode("sync", {"fid": f.fid}))

    kept = _kept(tmp_path, write_and_start_a_sync)
    assert b"" in kept and b"batch" in kept, kept


def test_unsynced_writes_may_be_lost(tmp_path: Path) -> None:
    def sync_then_write(f: Any, fs: JournalFileSystem) -> None:
        f.write(b"synced,")
        f.sync()
        f.write(b"not yet")

    kept = _kept(tmp_path, sync_then_write)
    assert kept <= {b"synced," + b"not yet"[:n] for n in range(8)}
    assert b"synced," in kept and b"synced,not yet" in kept, kept


def test_a_plain_kill_keeps_everything(tmp_path: Path) -> None:
    disk, fs, path = _disk(tmp_path, 0)
    f = fs.create(path)
    f.write(b"in the page cache")
    disk.after_kill(power=False)
    assert disk.fs.read(path) == b"in the page cache"
