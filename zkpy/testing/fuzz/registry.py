"""Every in-memory fuzz target by name, with its seeds and its structure-aware input.

    client      zkpy.testing.fuzz.client: requests of every opcode, handshakes, framing
    quorum      zkpy.testing.fuzz.quorum: the quorum port, both directions, and SNAP
    election    zkpy.testing.fuzz.quorum: the election port
    wire        zkpy.testing.fuzz.parsers: the ports' pure decoders
    snapshot    zkpy.testing.fuzz.files: snapshot files
    snapstream  zkpy.testing.fuzz.files: the stream after a SNAP
    datadir     zkpy.testing.fuzz.files: txn logs, snapshots and epoch files at start-up
    dynconfig   zkpy.testing.fuzz.files: the dynamic config file
    admin       zkpy.testing.fuzz.admin: AdminServer commands and the snapshot/restore bodies
"""

from __future__ import annotations

import random

from zkpy.testing.fuzz import admin, client, files, parsers, quorum, quorumwire
from zkpy.testing.fuzz.mutate import Mutator
from zkpy.testing.fuzz.run import Stats, Target, fuzz
from zkpy.testing.fuzz.seeds import log_file, mutated_snapshot, sample


def _client_seeds() -> list[bytes]:
    mut = Mutator(random.Random(0))
    return [client.generate(mut) for _ in range(32)]


def _stream_seeds() -> list[bytes]:
    from zkpy.storage import snapstream

    return [b"\x00" + snapstream.stream_of(sample().snapshot)]


def _stream_input(mut: Mutator) -> bytes:
    from zkpy.storage import snapstream

    stream = snapstream.stream_of(sample().snapshot)
    return bytes([mut.rng.randrange(256)]) + mut.mutate(stream)


def _log_input(mut: Mutator) -> bytes:
    """A log whose entries' bodies are mutated but whose checksums hold."""
    entries = list(sample().log)
    for _ in range(mut.rng.randint(1, 3)):
        i = mut.rng.randrange(len(entries))
        zxid, data = entries[i]
        entries[i] = (zxid, mut.mutate(data) or b"\0")
    kind = mut.rng.choice((0, 0, 1, 2))
    if kind == 2:
        return bytes([2]) + mutated_snapshot(mut)
    return bytes([kind]) + log_file(entries)


def _datadir_seeds() -> list[bytes]:
    s = sample()
    return [b"\x00" + log_file(s.log), b"\x01" + log_file(s.log[:3]), b"\x02" + s.snapshot,
            b"\x03" + b"5\n3", b"\x03" + b"0\n0\n", b"\x00" + log_file(s.log)[:200]]


def _dynconfig_seeds() -> list[bytes]:
    return [b"server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:3889:participant;2182\n"
            b"server.3=[::1]:2890:3890:observer;127.0.0.1:2183\n",
            b"server.1=localhost:2888:3888;2181\nversion=100000000\n"]


TARGETS: dict[str, Target] = {
    "client": Target(client.ClientTarget, _client_seeds, client.generate),
    "quorum": Target(quorum.QuorumTarget, quorumwire.quorum_seeds, quorumwire.generate_quorum),
    "election": Target(quorum.ElectionTarget, quorumwire.election_seeds,
                       quorumwire.generate_election),
    "wire": Target(parsers.WireTarget, parsers.seeds, parsers.generate),
    "snapshot": Target(files.SnapshotTarget, lambda: [sample().snapshot], mutated_snapshot),
    "snapstream": Target(files.SnapStreamTarget, _stream_seeds, _stream_input),
    "datadir": Target(files.DataDirTarget, _datadir_seeds, _log_input),
    "dynconfig": Target(files.DynamicConfigTarget, _dynconfig_seeds),
    "admin": Target(admin.AdminTarget, admin.seeds, admin.generate),
}


def fuzz_target(name: str, seed: int, count: int, *, seconds: float | None = None) -> Stats:
    """``zkpy.testing.fuzz.run.fuzz`` on the target called ``name``."""
    return fuzz(name, TARGETS[name], seed, count, seconds=seconds)
