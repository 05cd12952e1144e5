"""Fuzz targets for what a server reads from disk: snapshots, the SNAP stream,
txn logs, epoch files and the dynamic config file.

Each target takes one input (bytes) and raises ``ContractViolation`` (or lets
an unexpected exception through) when the contract breaks. The contract: a
damaged file fails its load with the one error type of its format
(``SnapshotInvalid``, ``SnapStreamError``, ``RecoveryError`` for a data
directory, ``ConfigError`` for a configuration) whose message says what is
wrong; a file that loads gives a server that starts and serves (a standalone
server in memory is started from it and a client creates, reads and deletes
a znode).

Files are written to a scratch directory (``/dev/shm`` when there is one)
that each target keeps and overwrites; ``close()`` removes it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any

from zkpy.admin import fourletter
from zkpy.config import ConfigError, load_config
from zkpy.server.core import CoreSettings, ServerCore
from zkpy.server.replica import Replica
from zkpy.storage import snapstream
from zkpy.storage.formats import VERSION_DIR, log_name, snapshot_name
from zkpy.storage.recovery import RecoveryError, StartState, load
from zkpy.storage.snapshot import SnapshotInvalid, parse_snapshot, snapshot_bytes
from zkpy.storage.zabdisk import ACCEPTED_EPOCH, CURRENT_EPOCH
from zkpy.testing.fuzz.client import ContractViolation, probe
from zkpy.testing.fuzz.seeds import T0, log_file, sample
from zkpy.testing.standalone import MemoryDisk
from zkpy.zab.driver import NoLinks
from zkpy.zab.events import DiskState, Start
from zkpy.zab.membership import parse_config_text
from zkpy.zab.messages import MAX_EPOCH
from zkpy.zab.peer import Peer


def _scratch() -> str:
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="zkpy-fuzz-", dir=base)


def serve_from(state: StartState) -> ServerCore:
    """A standalone server started from what ``load`` found, as MemberServer
    starts one (ContractViolation if it cannot serve)."""
    core = ServerCore(CoreSettings(extended_types=True, four_letter_words=frozenset({"*"})), T0)
    core.restore(state.tree, state.sessions, T0)
    disk_state = DiskState(state.accepted_epoch, state.current_epoch, state.snapshot_zxid,
                           list(state.log))
    peer = Peer(1, {1}, disk_state, standalone=True)
    disk = MemoryDisk()
    replica = Replica(core, peer, NoLinks(), disk)
    disk.replica = replica
    replica.step(Start(), T0)
    probe(core, T0, 4000, strict=False)
    for word in ("mntr", "srvr", "cons", "dump", "wchs", "conf", "hash"):
        fourletter.run(core, word, None)
    # What a standalone server writes first thing: its state as a snapshot. It loads.
    again = snapshot_bytes(core.tree, core.session_timeouts())
    try:
        parse_snapshot(again, core.last_zxid)
    except SnapshotInvalid as e:
        raise ContractViolation(f"a loaded tree saved as a snapshot does not load: {e}") from e
    return core


class _FileTarget:
    def __init__(self) -> None:
        self.dir = _scratch()
        self.snap_dir = os.path.join(self.dir, VERSION_DIR)
        os.makedirs(self.snap_dir, exist_ok=True)

    def _clear(self) -> None:
        for name in os.listdir(self.snap_dir):
            path = os.path.join(self.snap_dir, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            else:
                os.remove(path)

    def _write(self, name: str, data: bytes) -> str:
        path = os.path.join(self.snap_dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def _load(self) -> StartState | None:
        try:
            return load(self.snap_dir, self.snap_dir)
        except RecoveryError as e:
            if not str(e):
                raise ContractViolation("a RecoveryError without a message") from e
            return None

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class SnapshotTarget:
    """Bytes as a snapshot file: SnapshotInvalid, or a tree a server serves from."""

    def run(self, data: bytes) -> None:
        try:
            tree, sessions = parse_snapshot(data, 0x100)
        except SnapshotInvalid as e:
            _said(e)
            return
        serve_from(StartState(tree, sessions, 0x100, "snapshot.100"))


class SnapStreamTarget:
    """Bytes after a SNAP packet, fed in pieces: SnapStreamError while reading,
    SnapshotInvalid when the tree they carry cannot be loaded."""

    def run(self, data: bytes) -> None:
        piece = 1 + (data[0] if data else 0) * 3
        stream = data[1:]
        reader = snapstream.SnapStreamReader()
        end = None
        try:
            for at in range(piece, len(stream) + piece, piece):
                end = reader.feed(stream[:at])
                if end is not None:
                    break
        except snapstream.SnapStreamError as e:
            _said(e)
            return
        if end is None:
            return  # the stream is not over yet: the reader waits for more
        if end > len(stream):
            raise ContractViolation(f"the stream ends at {end}, past the {len(stream)} bytes")
        try:
            tree, sessions = parse_snapshot(snapstream.snapshot_of(stream[:end]), 0x100,
                                            trailer=False)
        except SnapshotInvalid as e:
            _said(e)
            return
        serve_from(StartState(tree, sessions, 0x100, "snapshot.100"))


class DataDirTarget(_FileTarget):
    """A data directory: the sample snapshot, then byte 0 says what else holds the
    rest of the input: 0 the newest log, 1 a log before a good one, 2 the newest
    snapshot, 3 the epoch files (acceptedEpoch, then a newline, currentEpoch)."""

    def run(self, data: bytes) -> None:
        kind = data[0] % 4 if data else 0
        blob = data[1:]
        seed = sample()
        self._clear()
        self._write(snapshot_name(seed.snapshot_zxid), seed.snapshot)
        first = seed.log[0][0]
        if kind == 0:
            self._write(log_name(first), blob)
        elif kind == 1:
            self._write(log_name(first), blob)
            self._write(log_name(first + 0x100), log_file([(first + 0x100, seed.log[0][1])]))
        elif kind == 2:
            self._write(snapshot_name(seed.log[-1][0] + 1), blob)
        else:
            accepted, _, current = blob.partition(b"\n")
            self._write(ACCEPTED_EPOCH, accepted)
            self._write(CURRENT_EPOCH, current)
        state = self._load()
        if state is None:
            return
        for name in ("accepted_epoch", "current_epoch"):
            if not 0 <= getattr(state, name) <= MAX_EPOCH:
                raise ContractViolation(f"{name} {getattr(state, name)} cannot make a zxid")
        serve_from(state)


class DynamicConfigTarget(_FileTarget):
    """Bytes as a dynamic config file named by zoo.cfg: ConfigError, or a
    membership whose text ``zkpy.zab.membership`` reads back as the same."""

    def run(self, data: bytes) -> None:
        dynamic = self._write("zoo.cfg.dynamic.100000000", data)
        with open(os.path.join(self.snap_dir, "myid"), "w") as f:
            f.write("1\n")
        cfg_text = (f"tickTime=2000\ninitLimit=5\nsyncLimit=2\ndataDir={self.snap_dir}\n"
                    f"clientPort=2181\ndynamicConfigFile={dynamic}\n")
        cfg_path = self._write("zoo.cfg", cfg_text.encode())
        try:
            cfg = load_config(cfg_path)
        except ConfigError as e:
            _said(e)
            return
        from zkpy.zab.membership import QuorumConfig

        config = QuorumConfig(dict(cfg.servers), 0x100000000)
        again = parse_config_text(config.text())
        if again != config:
            raise ContractViolation(f"membership text does not read back: {config.text()!r}")


def _said(e: Exception) -> Any:
    if not str(e).strip():
        raise ContractViolation(f"{type(e).__name__} without a message") from e
