"""The write-ahead transaction log, in Apache ZooKeeper's ``log.<zxid>`` format.

A log file is a FileHeader ("ZKLG", version 2, dbid 0) followed by entries:
``long adler32(entry) | int len | entry bytes | byte 'B'``. Files are
preallocated with zeros (``preAllocSize``), so the end of the log is the first
entry whose length is zero.

``LogWriter`` appends and syncs; it does blocking file I/O and is meant to be
driven from one writer thread. A new log file's name is made durable (its
directory synced) before anything in it is acknowledged, as are preallocation
and every entry, by the sync after the batch. ``read_log`` reads a file back and tells a torn
tail (the last entry partial or failing its checksum, with nothing valid after
it: what a crash mid-write leaves, ignored with a warning) from damage in the
middle (a bad entry followed by more data: ``LogDamaged``, never papered over).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from zkpy.jute import schema as S
from zkpy.jute.codec import JuteError, decode
from zkpy.storage.formats import END_OF_RECORD, TXNLOG_MAGIC, VERSION, log_name
from zkpy.storage.fs import LOCAL, File, FileSystem

log = logging.getLogger("zkpy.storage")

_HEADER = S.FileHeader(TXNLOG_MAGIC, VERSION, 0).encode()
_ENTRY = struct.Struct(">qi")  # checksum, length
_EOR = bytes([END_OF_RECORD])


class LogDamaged(Exception):
    """A log is damaged somewhere other than its tail: refuse to start."""


@dataclass
class LogEntry:
    zxid: int
    data: bytes  # TxnHeader + body (+ digest), as stored
    end: int = 0  # the offset just past it in its file


class LogWriter:
    """Appends entries to the current log file and forces them to disk."""

    def __init__(self, directory: str, prealloc_bytes: int = 64 * 1024 * 1024,
                 force_sync: bool = True, fs: FileSystem = LOCAL) -> None:
        self.directory = directory
        self.prealloc = max(prealloc_bytes, 4096)
        self.force_sync = force_sync
        self.fs = fs
        self._file: File | None = None
        self._pos = 0
        self._size = 0
        self._synced = (0, 0)  # (end of the entries, file size) at the last sync
        self.path: str | None = None
        fs.makedirs(directory)

    def append(self, zxid: int, data: bytes) -> None:
        """Write one entry (not yet synced); opens ``log.<zxid>`` if no file is open."""
        if self._file is None:
            self._open(zxid)
        entry = _ENTRY.pack(_signed(zlib.adler32(data)), len(data)) + data + _EOR
        self._write(entry)

    def append_many(self, entries: list[tuple[int, bytes]]) -> None:
        if not entries:
            return
        if self._file is None:
            self._open(entries[0][0])
        parts = []
        for _, data in entries:
            parts.append(_ENTRY.pack(_signed(zlib.adler32(data)), len(data)))
            parts.append(data)
            parts.append(_EOR)
        self._write(b"".join(parts))

    def _open(self, zxid: int) -> None:
        self.path = os.path.join(self.directory, log_name(zxid))
        f = self.fs.create(self.path)
        f.write(_HEADER)
        self._file = f
        self._pos = len(_HEADER)
        self._size = self._pos
        self._synced = (0, 0)
        log.info("Creating new log file: %s", os.path.basename(self.path))
        if self.force_sync:
            # The file's name is durable only once its directory is synced
            # (ZOOKEEPER-2003): without this a power cut can take a log file
            # whose every entry was synced and acknowledged.
            self.fs.sync_dir(self.directory)

    def _write(self, blob: bytes) -> None:
        assert self._file is not None
        end = self._pos + len(blob)
        if end + 4096 > self._size:
            # Preallocate in big steps so fsync rarely has metadata to write.
            while self._size < end + 4096:
                self._size += self.prealloc
            self._file.truncate(self._size)
        self._file.pwrite(blob, self._pos)
        self._pos = end

    def sync(self) -> None:
        if self._file is not None and self.force_sync:
            self._file.sync()
            self._synced = (self._pos, self._size)

    def discard_unsynced(self) -> None:
        """A write or sync failed: cut the file back to what its last sync made
        durable, and close it. After a failed fsync Linux marks the pages clean,
        so the unsynced entries stay readable but may never reach the disk; a
        server restarted on them (without a power cycle) would build on entries
        the next power cut takes, and leave a hole. Best effort: if this fails
        too, the disk is beyond what a restart can fix."""
        f, self._file = self._file, None
        if f is None or not self.force_sync:
            return
        end, size = self._synced
        try:
            if self._pos > end:
                f.pwrite(bytes(self._pos - end), end)
            f.truncate(size)
            f.sync()
        except OSError as e:
            log.error("Could not cut %s back to its synced length: %s", self.path, e)
        finally:
            try:
                f.close()
            except OSError:
                pass

    def roll(self) -> None:
        """Close the current file; the next append starts ``log.<next zxid>``."""
        if self._file is not None:
            self.sync()
            self._file.close()
            self._file = None

    def close(self) -> None:
        self.roll()


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= 1 << 63 else v


def read_log(path: str, is_last: bool = True,
             on_torn: Callable[[int], None] | None = None,
             fs: FileSystem = LOCAL) -> Iterator[LogEntry]:
    """Entries of one log file, in order. A torn tail ends the iteration (with
    a warning, and ``on_torn(offset)``; offset 0: the header itself is torn) when
    this is the newest file; anything else raises LogDamaged."""
    blob = fs.read(path)
    name = os.path.basename(path)
    if is_last and blob[:len(_HEADER)] != _HEADER and _HEADER.startswith(blob.rstrip(b"\0")):
        # Nothing, or part of the header: a crash right after creating the file.
        log.warning("Log %s is empty or its header is partial; ignoring it", name)
        if on_torn is not None:
            on_torn(0)
        return
    try:
        hdr, off = decode(S.FileHeader, blob, 0)
    except JuteError:
        raise LogDamaged(f"{name}: unreadable file header") from None
    if hdr.magic != TXNLOG_MAGIC:
        raise LogDamaged(f"{name}: not a transaction log (magic 0x{hdr.magic:x})")
    end = len(blob)
    while off + _ENTRY.size <= end:
        crc, n = _ENTRY.unpack_from(blob, off)
        if n == 0 and crc == 0:
            return  # preallocated zeros: the end of the log
        body_start = off + _ENTRY.size
        problem = None
        if n <= 0 or body_start + n + 1 > end:
            problem = "partial entry"
        else:
            data = blob[body_start:body_start + n]
            if _signed(zlib.adler32(data)) != crc:
                problem = "checksum mismatch"
            elif blob[body_start + n] != END_OF_RECORD:
                problem = "missing end-of-record marker"
        if problem is not None:
            if is_last and not _more_after(blob, off, n):
                log.warning("Log %s ends in a torn entry at offset %d (%s); the entries "
                            "before it are kept, the torn one is dropped", name, off, problem)
                if on_torn is not None:
                    on_torn(off)
                return
            raise LogDamaged(f"{name}: {problem} at offset {off}, followed by more data: "
                             f"the log is damaged in the middle; refusing to start")
        try:
            (zxid,) = struct.unpack_from(">q", data, 8 + 4)
        except struct.error:
            raise LogDamaged(f"{name}: entry at offset {off} too short for a header") from None
        off = body_start + n + 1
        yield LogEntry(zxid, data, off)


def _more_after(blob: bytes, off: int, n: int) -> bool:
    """Is there anything after the bad entry at ``off`` that a torn write cannot
    have left? A torn write leaves a prefix of the entries then zeros (or the end
    of the file), so: non-zero bytes past the entry's extent, or -- when its
    length field cannot be trusted -- any valid entry further on."""
    data_end = len(blob.rstrip(b"\0"))
    body_start = off + _ENTRY.size
    if data_end <= body_start:
        return False
    extent = body_start + n + 1
    if 0 < n and extent <= len(blob) and data_end > extent:
        return True
    # The length field may be what is damaged: look for a sound entry anywhere after.
    for p in range(off + 1, data_end - _ENTRY.size):
        m = int.from_bytes(blob[p + 8:p + 12], "big", signed=True)
        if 0 < m and p + _ENTRY.size + m < len(blob) \
                and blob[p + _ENTRY.size + m] == END_OF_RECORD:
            crc = int.from_bytes(blob[p:p + 8], "big", signed=True)
            if _signed(zlib.adler32(blob[p + _ENTRY.size:p + _ENTRY.size + m])) == crc:
                return True
    return False


def zero_tail(path: str, offset: int, fs: FileSystem = LOCAL) -> None:
    """Overwrite a torn tail with zeros (synced) so the file reads as ending cleanly there."""
    size = fs.size(path)
    f = fs.open_rw(path)
    try:
        while offset < size:
            n = min(size - offset, 1 << 20)
            f.pwrite(bytes(n), offset)
            offset += n
        f.sync()
    finally:
        f.close()
