"""zkpy.testing.simfs: the simulated disk keeps exactly what a power cut may keep.

Every assertion here is over many power cuts (seeded), and says both sides:
what was synced always survives, and what was not is sometimes lost (so the
model really takes it away) and sometimes kept.
"""

from __future__ import annotations

import errno
import random

import pytest

from zkpy.storage.fs import write_atomically
from zkpy.storage.txnlog import LogWriter, read_log
from zkpy.testing.simfs import PowerCut, SimFS

CUTS = 200


def _fs() -> SimFS:
    fs = SimFS()
    fs.makedirs("/d")
    return fs


def _outcomes(build, look, cuts: int = CUTS) -> set:
    """``look(fs)`` after ``build(fs)`` and a power cut, over many seeds."""
    seen = set()
    for seed in range(cuts):
        fs = _fs()
        build(fs)
        fs.power_cut(random.Random(seed))
        seen.add(look(fs))
    return seen


def test_synced_bytes_survive_and_unsynced_ones_are_a_torn_prefix() -> None:
    def build(fs: SimFS) -> None:
        f = fs.create("/d/f")
        f.write(b"durable-")
        f.sync()
        fs.sync_dir("/d")
        f.write(b"0123456789")
        f.write(b"abcdefghij")

    seen = _outcomes(build, lambda fs: fs.read("/d/f"))
    full = b"durable-0123456789abcdefghij"
    assert all(full.startswith(s) and s.startswith(b"durable-") for s in seen)
    assert b"durable-" in seen and full in seen
    assert any(8 < len(s) < 18 for s in seen)  # the first write torn
    assert any(18 < len(s) < len(full) for s in seen)  # the second torn after the first kept


def test_a_new_file_needs_its_directory_synced() -> None:
    def unsynced_dir(fs: SimFS) -> None:
        f = fs.create("/d/new")
        f.write(b"x")
        f.sync()  # the bytes are durable, the name is not

    assert _outcomes(unsynced_dir, lambda fs: fs.exists("/d/new")) == {True, False}

    def synced_dir(fs: SimFS) -> None:
        unsynced_dir(fs)
        fs.sync_dir("/d")

    assert _outcomes(synced_dir, lambda fs: fs.read("/d/new")) == {b"x"}


def test_a_rename_is_atomic_and_lost_without_a_directory_sync() -> None:
    def build(fs: SimFS, sync_dir: bool) -> None:
        write_atomically(fs, "/d/epoch", [b"1\n"])
        f = fs.create("/d/epoch.tmp")
        f.write(b"2\n")
        f.sync()
        f.close()
        fs.replace("/d/epoch.tmp", "/d/epoch")
        if sync_dir:
            fs.sync_dir("/d")

    def look(fs: SimFS) -> bytes:
        return fs.read("/d/epoch")

    assert _outcomes(lambda fs: build(fs, False), look) == {b"1\n", b"2\n"}
    assert _outcomes(lambda fs: build(fs, True), look) == {b"2\n"}


def test_removals_and_new_directories_are_directory_changes() -> None:
    def build(fs: SimFS) -> None:
        f = fs.create("/d/old")
        f.sync()
        fs.sync_dir("/d")
        fs.remove("/d/old")
        fs.mkdir("/d/sub")

    seen = _outcomes(build, lambda fs: (fs.exists("/d/old"), fs.isdir("/d/sub")))
    # A prefix of the directory's changes: the mkdir never survives without the removal.
    assert seen == {(True, False), (False, False), (False, True)}


def test_makedirs_makes_each_new_directory_durable() -> None:
    seen = _outcomes(lambda fs: fs.makedirs("/d/a/b/c"), lambda fs: fs.isdir("/d/a/b/c"))
    assert seen == {True}


def test_a_crash_loses_nothing_and_kills_open_files() -> None:
    fs = _fs()
    f = fs.create("/d/f")
    f.write(b"kept in the page cache")
    fs.crash()
    assert fs.read("/d/f") == b"kept in the page cache" and fs.exists("/d/f")
    with pytest.raises(OSError) as e:
        f.write(b"more")
    assert e.value.errno == errno.EBADF


def test_cut_at_strikes_between_operations_and_the_power_stays_off() -> None:
    fs = _fs()
    f = fs.create("/d/f")
    fs.cut_at(2)
    f.write(b"a")
    with pytest.raises(PowerCut):
        f.sync()
    with pytest.raises(PowerCut):
        fs.create("/d/g")  # nothing more happens until the cut is carried out
    fs.power_cut(random.Random(1))
    assert not fs.exists("/d/g")
    fs.create("/d/g")


def test_a_failed_sync_loses_the_writes_for_good() -> None:
    for seed in range(50):
        fs = _fs()
        f = fs.create("/d/f")
        f.sync()
        fs.sync_dir("/d")
        f.write(b"never durable")
        fs.fail("sync")
        with pytest.raises(OSError):
            f.sync()
        assert fs.read("/d/f") == b"never durable"  # still in the page cache
        f.sync()  # "succeeds", as a retried fsync does on Linux
        fs.power_cut(random.Random(seed))
        assert fs.read("/d/f") == b""


def test_the_log_writer_on_the_simulated_disk() -> None:
    """zkpy's own log writer: what it synced is readable after any cut."""
    for seed in range(CUTS):
        fs = _fs()
        w = LogWriter("/d/log", 4096, True, fs)
        w.append_many([(1, b"\0" * 12 + (1).to_bytes(8, "big") + b"one")])
        w.sync()
        w.append_many([(2, b"\0" * 12 + (2).to_bytes(8, "big") + b"two")])
        fs.power_cut(random.Random(seed))
        zxids = [e.zxid for e in read_log("/d/log/log.1", True, fs=fs)]
        assert zxids in ([1], [1, 2])
