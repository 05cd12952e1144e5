"""The file system zkpy's storage code does all its file I/O through.

Every byte the txn log, snapshots, epoch files, TRUNC, SNAP install,
recovery, purge, backups and dynamic config files write or read goes through
a ``FileSystem``, so a test can swap the real one for a simulated disk that
loses what a power cut loses (``zkpy.testing.simfs``). The contract is what
POSIX promises and no more:

- ``File.sync`` (fdatasync) makes that file's bytes and size durable, not
  its name: a new file, a rename, a removal or a new directory is durable
  only once its directory is synced (``sync_dir``);
- bytes written and not synced may be lost or kept, in any prefix of the
  writes, the last one torn at any byte; directory changes not synced may be
  lost or kept.

``OsFileSystem`` is the real one, a thin layer over ``os`` (one call per
operation, no buffering of its own). With ``ZKPY_FS_JOURNAL=<path>`` in the
environment (tests only) the process uses ``JournalFileSystem`` instead: the
same operations, each also recorded in a side file (``zkpy.storage.fsjournal``),
so a test can SIGKILL the process and roll its data directory back to what
a power cut could have left (``ZKPY_FS_SLOW_SYNC_MS`` makes its syncs slow).

Helpers: ``write_atomically`` (temporary name, sync, rename, sync the
directory: the old file or the new one, never half of one) and
``sync_path`` (make a file that is already there durable).
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from zkpy.storage import fsjournal


class File(Protocol):
    """A file open for writing (and the position ``write`` appends at)."""

    def write(self, data: bytes) -> None:
        """Write at the current position and move past it."""

    def pwrite(self, data: bytes, offset: int) -> None:
        """Write at ``offset`` (the position does not move)."""

    def truncate(self, size: int) -> None:
        """Cut or extend (with zeros) the file to ``size`` bytes."""

    def sync(self) -> None:
        """fdatasync: the file's bytes and size are durable (not its name)."""

    def close(self) -> None: ...


class FileSystem(Protocol):
    def create(self, path: str) -> File:
        """Open ``path`` for writing, created if missing, emptied if not."""

    def open_rw(self, path: str) -> File:
        """Open an existing file for writing, at position 0, keeping its bytes."""

    def read(self, path: str) -> bytes: ...

    def exists(self, path: str) -> bool: ...

    def isdir(self, path: str) -> bool: ...

    def size(self, path: str) -> int: ...

    def listdir(self, path: str) -> list[str]: ...

    def makedirs(self, path: str) -> None:
        """Create ``path`` and its missing parents, each made durable in its parent."""

    def replace(self, src: str, dst: str) -> None:
        """Rename ``src`` over ``dst`` (same directory), atomically."""

    def remove(self, path: str) -> None: ...

    def rmdir(self, path: str) -> None: ...

    def sync_file(self, path: str) -> None:
        """fsync a file already there (what recovery relies on must be durable)."""

    def sync_dir(self, path: str) -> None:
        """fsync a directory: its entries (new, renamed, removed) are durable."""


class OsFile:
    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> None:
        n = os.write(self.fd, data)
        if n < len(data):  # rare for a file: finish what was not written
            view = memoryview(data)[n:]
            while view:
                view = view[os.write(self.fd, view):]

    def pwrite(self, data: bytes, offset: int) -> None:
        n = os.pwrite(self.fd, data, offset)
        if n < len(data):  # rare for a file: finish what was not written
            view = memoryview(data)[n:]
            offset += n
            while view:
                n = os.pwrite(self.fd, view, offset)
                view, offset = view[n:], offset + n

    def truncate(self, size: int) -> None:
        os.ftruncate(self.fd, size)

    def sync(self) -> None:
        os.fdatasync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


class OsFileSystem:
    """The real file system."""

    def create(self, path: str) -> File:
        return OsFile(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644))

    def open_rw(self, path: str) -> File:
        return OsFile(os.open(path, os.O_WRONLY))

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def isdir(self, path: str) -> bool:
        return os.path.isdir(path)

    def size(self, path: str) -> int:
        return os.path.getsize(path)

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def makedirs(self, path: str) -> None:
        for made in _missing_dirs(path, os.path.isdir):
            try:
                self.mkdir(made)
            except FileExistsError:
                continue  # made meanwhile by someone else: synced by them
            self.sync_dir(os.path.dirname(made))

    def mkdir(self, path: str) -> None:
        os.mkdir(path)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def remove(self, path: str) -> None:
        os.remove(path)

    def rmdir(self, path: str) -> None:
        os.rmdir(path)

    def sync_file(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync_dir(self, path: str) -> None:
        fd = os.open(path or ".", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _missing_dirs(path: str, isdir: Callable[[str], bool]) -> list[str]:
    """The directories ``makedirs(path)`` must create, outermost first."""
    missing = []
    p = os.path.abspath(path)
    while not isdir(p):
        missing.append(p)
        parent = os.path.dirname(p)
        if parent == p:
            break
        p = parent
    return list(reversed(missing))


def write_atomically(fs: FileSystem, path: str, chunks: Iterable[bytes],
                     fsync: bool = True) -> None:
    """Write ``path`` through ``path + ".tmp"``: synced, renamed over ``path``, the
    directory synced. A crash or power cut leaves the old file or the new one."""
    tmp = path + ".tmp"
    f = fs.create(tmp)
    try:
        for chunk in chunks:
            f.write(chunk)
        if fsync:
            f.sync()
    finally:
        f.close()
    fs.replace(tmp, path)
    if fsync:
        fs.sync_dir(os.path.dirname(path))


class JournalFile:
    """An ``OsFile`` whose every write, truncation and sync is journaled."""

    __slots__ = ("fs", "file", "fid", "pos")

    def __init__(self, fs: JournalFileSystem, file: OsFile, fid: int) -> None:
        self.fs = fs
        self.file = file
        self.fid = fid
        self.pos = 0

    def write(self, data: bytes) -> None:
        self.pwrite(data, self.pos)
        self.pos += len(data)

    def pwrite(self, data: bytes, offset: int) -> None:
        self.fs.journaled("write", {"fid": self.fid, "off": offset},
                          lambda: self.file.pwrite(data, offset), bytes(data))

    def truncate(self, size: int) -> None:
        self.fs.journaled("truncate", {"fid": self.fid, "size": size},
                          lambda: self.file.truncate(size))

    def sync(self) -> None:
        self.fs.journaled("sync", {"fid": self.fid}, self.file.sync)

    def close(self) -> None:
        self.fs.journaled("close", {"fid": self.fid}, self.file.close)


class JournalFileSystem(OsFileSystem):
    """The real file system, every change also appended to a journal
    (``zkpy.storage.fsjournal``). Under one lock, so the journal's order is the
    order the changes happened in: the record first, then the change (a
    ``failed`` record follows a change that raised). A change is complete once
    any record follows it; the last one may or may not have happened when the
    process was killed. A sync that returned is followed by a ``synced``
    record, written before the caller can act on it (reply to a client, ACK a
    proposal): without it a kill between the sync's return and the next change
    would leave that sync last, and the replay could not tell it from a sync
    still under way. The journal is synced after every sync, so it holds every
    sync the server relied on. Tests only (``ZKPY_FS_JOURNAL``): it writes
    every byte twice."""

    SYNCS = ("sync", "syncfile", "syncdir")

    def __init__(self, journal: str, slow_sync_ms: float = 0) -> None:
        self.fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        # A slow disk: every sync takes this long (a SIGKILL then mostly lands
        # while a batch is written and not yet synced).
        self.slow_sync = slow_sync_ms / 1000.0

    def journaled(self, op: str, args: dict[str, Any], action: Callable[[], Any],
                  payload: bytes = b"") -> Any:
        with self.lock:
            os.write(self.fd, fsjournal.encode(op, args, payload))
            if self.slow_sync and op in self.SYNCS:
                time.sleep(self.slow_sync)
            try:
                result = action()
            except BaseException:
                os.write(self.fd, fsjournal.encode("failed", {}))
                raise
            if op in self.SYNCS:
                os.write(self.fd, fsjournal.encode("synced", {}))
                os.fsync(self.fd)
            return result

    def _opened(self, op: str, path: str, opener: Callable[[str], File]) -> File:
        fid = next(self._ids)
        f = self.journaled(op, {"path": os.path.abspath(path), "fid": fid},
                           lambda: opener(path))
        return JournalFile(self, f, fid)

    def create(self, path: str) -> File:
        return self._opened("create", path, super().create)

    def open_rw(self, path: str) -> File:
        return self._opened("open", path, super().open_rw)

    def _change(self, op: str, action: Callable[[], None], **paths: str) -> None:
        self.journaled(op, {k: os.path.abspath(v) for k, v in paths.items()}, action)

    def mkdir(self, path: str) -> None:
        self._change("mkdir", lambda: os.mkdir(path), path=path)

    def replace(self, src: str, dst: str) -> None:
        self._change("replace", lambda: os.replace(src, dst), src=src, dst=dst)

    def remove(self, path: str) -> None:
        self._change("remove", lambda: os.remove(path), path=path)

    def rmdir(self, path: str) -> None:
        self._change("rmdir", lambda: os.rmdir(path), path=path)

    def sync_file(self, path: str) -> None:
        self._change("syncfile", lambda: super(JournalFileSystem, self).sync_file(path),
                     path=path)

    def sync_dir(self, path: str) -> None:
        self._change("syncdir", lambda: super(JournalFileSystem, self).sync_dir(path),
                     path=path or ".")


def _from_environment() -> FileSystem:
    journal = os.environ.get("ZKPY_FS_JOURNAL")
    if not journal:
        return OsFileSystem()
    return JournalFileSystem(journal, float(os.environ.get("ZKPY_FS_SLOW_SYNC_MS", "0")))


#: The file system of this process (the real one, or a journaled one in tests).
LOCAL: FileSystem = _from_environment()
