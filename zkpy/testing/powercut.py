"""Cutting the power of a real server process: its data directory rolled back
to what a power cut could have left.

A zkpy server started with ``ZKPY_FS_JOURNAL=<file>`` in its environment
journals every change it makes to its files (``zkpy.storage.fs``,
``zkpy.storage.fsjournal``). ``PowerCutDisk`` keeps, between runs of one
server, the durable state of its ``<dataDir>/version-2`` as a
``zkpy.testing.simfs.SimFS``:

- ``prepare()`` before each start: writes that state out to the real
  directory and empties the journal (``env()`` is what the process needs);
- ``after_kill(power)`` once the process was SIGKILLed: replays the journal
  on the SimFS, checks the result is byte for byte what the real directory
  holds (a change that bypassed the journal would show here), then, for a
  power cut, keeps only what a disk could have kept (``SimFS.power_cut``:
  unsynced writes lost or kept in any prefix, the last one torn, unsynced
  directory changes lost or kept); for a plain kill, everything.

So "SIGKILL, roll back, restart" is a power cut of that server, with the
real process, threads and OS doing the writing, and "SIGKILL all, roll back
each, restart" is a power cut of the whole ensemble. The rest of the data
directory (``myid``, the pid file) is the launcher's and is left alone.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

from zkpy.storage import fsjournal
from zkpy.storage.formats import VERSION_DIR
from zkpy.storage.fs import JournalFileSystem
from zkpy.testing.simfs import SimFS


class JournalMismatch(AssertionError):
    """The journal does not account for what the data directory holds."""


class PowerCutDisk:
    def __init__(self, data_dir: str | os.PathLike[str], journal: str | os.PathLike[str],
                 rng: random.Random) -> None:
        self.data_dir = os.path.abspath(data_dir)
        self.root = os.path.join(self.data_dir, VERSION_DIR)
        self.journal = os.path.abspath(journal)
        self.rng = rng
        self.fs = SimFS()
        self.fs.makedirs(self.data_dir)
        self.loaded = False
        self.stats: dict[str, int] = {}

    def env(self, slow_sync_ms: int = 0) -> dict[str, str]:
        """The process's environment: journal here (and, with ``slow_sync_ms``,
        a disk whose syncs are that slow, so kills land between writes and syncs)."""
        return {"ZKPY_FS_JOURNAL": self.journal, "ZKPY_FS_SLOW_SYNC_MS": str(slow_sync_ms)}

    # -- before a start -----------------------------------------------------------------

    def prepare(self) -> None:
        """The real directory := the durable state; an empty journal."""
        if not self.loaded:
            self._load()
            self.loaded = True
        else:
            self._materialize()
        Path(self.journal).write_bytes(b"")

    def _load(self) -> None:
        """Take what is there before the first start as durable."""
        if not os.path.isdir(self.root):
            return
        fs = self.fs
        for here, _dirs, files in os.walk(self.root):
            fs.makedirs(here)
            for name in files:
                path = os.path.join(here, name)
                f = fs.create(path)
                f.write(Path(path).read_bytes())
                f.sync()
                f.close()
            fs.sync_dir(here)

    def _materialize(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
        if not self.fs.isdir(self.root):
            return
        os.makedirs(self.root)
        for name in self.fs.listdir(self.root):
            self._write_out(os.path.join(self.root, name))

    def _write_out(self, path: str) -> None:
        if self.fs.isdir(path):
            os.makedirs(path, exist_ok=True)
            for name in self.fs.listdir(path):
                self._write_out(os.path.join(path, name))
        else:
            Path(path).write_bytes(self.fs.read(path))

    # -- after a SIGKILL ------------------------------------------------------------------

    def after_kill(self, power: bool) -> dict[str, int]:
        """Replay the journal, check it against the directory, then cut the power
        (``power``) or not; returns what the cut took."""
        self._replay(Path(self.journal).read_bytes())
        self._check()
        if not power:
            self.fs.crash()
            return {}
        self.stats["unsynced at the cut"] = (self.stats.get("unsynced at the cut", 0)
                                             + self.fs.unsynced())
        lost = self.fs.power_cut(self.rng)
        for key, value in lost.items():
            self.stats[key] = self.stats.get(key, 0) + value
        self.stats["power cuts"] = self.stats.get("power cuts", 0) + 1
        return lost

    def _mine(self, path: str) -> bool:
        return path == self.root or path.startswith(self.root + os.sep)

    def _replay(self, blob: bytes) -> None:
        """Apply the journal; its last change may or may not have happened (the
        process was killed after recording it): applied only if the directory
        shows it. A sync is never taken as done unless a record follows it:
        its ``synced`` record, written before the process could act on it."""
        records: list[fsjournal.Record] = []
        for rec in fsjournal.decode(blob):
            if rec.op == "failed":
                records.pop()  # it raised: it did not happen
            else:
                records.append(rec)
        files: dict[int, Any] = {}
        for n, rec in enumerate(records):
            if n == len(records) - 1 and (rec.op in JournalFileSystem.SYNCS
                                          or not self._differences()):
                break
            try:
                self._apply(rec, files)
            except OSError as e:
                raise JournalMismatch(f"replaying {rec.op} {rec.args}: {e} (a change to "
                                      f"{self.root} that bypassed the journal?)") from None

    def _apply(self, rec: fsjournal.Record, files: dict[int, Any]) -> None:
        fs, args, op = self.fs, rec.args, rec.op
        if op == "synced":
            return  # only marks the sync before it as done
        if op in ("create", "open"):
            if self._mine(args["path"]):
                opener = fs.create if op == "create" else fs.open_rw
                files[args["fid"]] = opener(args["path"])
        elif op in ("write", "truncate", "sync", "close"):
            f = files.get(args["fid"])
            if f is None:
                return  # a file outside the data directory
            if op == "write":
                f.pwrite(rec.payload, args["off"])
            elif op == "truncate":
                f.truncate(args["size"])
            else:
                getattr(f, op)()
        elif op == "replace":
            if self._mine(args["src"]) or self._mine(args["dst"]):
                fs.replace(args["src"], args["dst"])
        elif op == "syncdir":
            if self._mine(args["path"]) or args["path"] == self.data_dir:
                fs.sync_dir(args["path"])
        elif self._mine(args["path"]):
            {"mkdir": fs.mkdir, "rmdir": fs.rmdir, "remove": fs.remove,
             "syncfile": fs.sync_file}[op](args["path"])

    def _differences(self) -> list[str]:
        real: dict[str, bytes] = {}
        if os.path.isdir(self.root):
            for here, _dirs, files in os.walk(self.root):
                for name in files:
                    path = os.path.join(here, name)
                    real[path] = Path(path).read_bytes()
        replayed = self.fs.files(self.root) if self.fs.isdir(self.root) else {}
        return sorted(p for p in set(real) | set(replayed) if real.get(p) != replayed.get(p))

    def _check(self) -> None:
        differ = self._differences()
        if differ:
            raise JournalMismatch(f"{self.root}: the journal does not account for {differ}")
