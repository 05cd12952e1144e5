"""Tree digests between zkpy and Apache ZooKeeper 3.8, with real processes.

Each server starts on a data directory the other wrote, with digest checking on
(``zookeeper.digest.enabled`` defaults to true on both): the snapshot's digest
trailer is read and checked, every logged txn's TxnDigest is compared with the
tree as it is replayed, and neither logs a digest warning or counts a mismatch.
Negative controls: one TxnDigest altered in the log is caught by the other
server (so the checks really run). And a three-member zkpy ensemble agrees on
its digests (the ``hash`` word) after a mixed load.

    pytest compat_tests/test_digest_compat.py
"""

from __future__ import annotations

import os
import random
import shutil
import struct
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest

from compat_tests import digest_workload
from compat_tests.ensembles import started, wait_until
from compat_tests.test_durability import Raw, assert_same_dump, create_body, dump
from zkpy.jute import schema as S
from zkpy.jute.codec import encode
from zkpy.jute.protocol import Op
from zkpy.storage.formats import files_by_zxid
from zkpy.storage.snapshot import load_snapshot
from zkpy.storage.txnlog import read_log
from zkpy.testing.ensemble import Ensemble
from zkpy.testing.launchers import ApacheZooKeeperServer, ZkpyServer, find_apache_zookeeper

#: What either server says when a digest is missing or wrong.
DIGEST_TROUBLE = (
    "Got EOF exception while reading the digest",
    "Digests are not matching",
    "First digest mismatch",
    "is not covering the snapshot digest",
    "of snapshot digest does not exist",
)


def _needs_zookeeper() -> None:
    install, reason = find_apache_zookeeper()
    if install is None:
        pytest.skip(reason)


def _mismatches(srv: Any) -> int:
    for line in srv.four_letter("mntr").splitlines():
        key, _, value = line.partition("\t")
        if key == "zk_digest_mismatches_count":
            return int(value)
    raise AssertionError("mntr has no zk_digest_mismatches_count")


def _assert_no_digest_trouble(srv: Any) -> None:
    text = srv.log_text()
    found = [t for t in DIGEST_TROUBLE if t in text]
    assert not found, f"{srv.kind} logged {found}; log tail:\n{srv.log_tail(30)}"
    assert _mismatches(srv) == 0


def _vdir(srv: Any) -> str:
    return str(srv.data_dir / "version-2")


def _trailer_zxid(path: str) -> int:
    blob = Path(path).read_bytes()
    return struct.unpack_from(">q", blob, len(blob) - 13 - 20)[0]


def _alter_digest(log_path: str, index: int) -> None:
    """Add one to the TxnDigest of entry ``index`` and fix the entry's Adler32."""
    blob = bytearray(Path(log_path).read_bytes())
    off, n = 16, 0
    while True:
        crc, length = struct.unpack_from(">qi", blob, off)
        assert length > 0, "no such entry"
        start = off + 12
        if n == index:
            end = start + length
            (value,) = struct.unpack_from(">q", blob, end - 8)
            struct.pack_into(">q", blob, end - 8, value + 1)
            struct.pack_into(">q", blob, off, zlib.adler32(bytes(blob[start:end])))
            Path(log_path).write_bytes(bytes(blob))
            return
        off, n = start + length + 1, n + 1


# -- zkpy's files on Apache ZooKeeper --------------------------------------------------


def test_zookeeper_replays_zkpys_log_checking_every_digest(tmp_path: Path) -> None:
    _needs_zookeeper()
    wd = tmp_path / "z2k"
    z = ZkpyServer(workdir=wd, extended_types=True)
    zk = ApacheZooKeeperServer(workdir=wd, extended_types=True, port=z.port, log_level="info")
    try:
        z.start()
        digest_workload.run(z.address)
        want, want_hash = dump(z), z.four_letter("hash")
        assert want_hash.count("\n") == 2, want_hash  # the digests at 0x80 and 0x100
        z.stop()
        # zkpy's only snapshot is the one of the empty tree it started with: ZooKeeper
        # replays the whole log, comparing each txn's digest with its own tree.
        zk.start(timeout=60)
        assert "The digest value is empty in snapshot" in zk.log_text()
        _assert_no_digest_trouble(zk)
        assert zk.four_letter("hash") == want_hash
        assert_same_dump(dump(zk), want)
    finally:
        z.kill()
        zk.kill()
        z.cleanup()


def test_zookeeper_checks_zkpys_snapshot_trailer(tmp_path: Path) -> None:
    _needs_zookeeper()
    wd = tmp_path / "z2k-snap"
    z = ZkpyServer(workdir=wd, extended_types=True)
    zk = ApacheZooKeeperServer(workdir=wd, extended_types=True, port=z.port, log_level="info")
    try:
        z.start()
        digest_workload.run(z.address)
        want = dump(z)
        z.stop()
        z.start()  # snapshots what it recovered, trailer and all
        z.stop()
        zxid, newest = files_by_zxid(_vdir(z), "snapshot")[-1]
        assert zxid > 0 and _trailer_zxid(newest) == zxid
        zk.start(timeout=60)
        assert (f"The digest in the snapshot has digest version of 2, with zxid as 0x{zxid:x}"
                in zk.log_text())
        _assert_no_digest_trouble(zk)
        assert_same_dump(dump(zk), want)
    finally:
        z.kill()
        zk.kill()
        z.cleanup()


def _load(address: tuple[str, int], seconds: float) -> None:
    """setData and creates on many nodes from three sessions: snapshots of a big
    tree (several 2000-node slices) taken meanwhile are fuzzy."""
    r = Raw(address)
    assert r.call(Op.create, create_body("/f", b""))[0] == 0
    for start in range(0, 6000, 500):
        xids = [r.send(Op.create, create_body(f"/f/n{i}", b"x")) for i in range(start, start + 500)]
        assert all(r.reply()[2] == 0 for _ in xids)
    r.sock.close()
    stop = threading.Event()

    def writer(seed: int) -> None:
        rnd, conn = random.Random(seed), Raw(address)
        while not stop.is_set():
            xids = [conn.send(Op.setData, encode(S.SetDataRequest(
                f"/f/n{rnd.randrange(6000)}", b"%d" % rnd.random(), -1))) for _ in range(32)]
            assert all(conn.reply()[2] == 0 for _ in xids)
        conn.sock.close()

    threads = [threading.Thread(target=writer, args=(s,)) for s in range(3)]
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join(30)


def test_zookeeper_meets_a_fuzzy_snapshots_digest_in_zkpys_log(tmp_path: Path) -> None:
    _needs_zookeeper()
    wd = tmp_path / "z2k-fuzzy"
    z = ZkpyServer(workdir=wd, extended_types=True, settings={"snapCount": 60})
    zk = ApacheZooKeeperServer(workdir=wd, extended_types=True, port=z.port, log_level="info")
    try:
        z.start()
        _load(z.address, 3)
        want = dump(z)
        z.kill()
        # Keep, as the newest, a snapshot whose trailer names a zxid past its own: the
        # tree changed while it was written, ZooKeeper must replay up to that zxid.
        fuzzy = None
        for zxid, path in reversed(files_by_zxid(_vdir(z), "snapshot")):
            if _trailer_zxid(path) > zxid:
                fuzzy = (zxid, path)
                break
            os.remove(path)
        assert fuzzy is not None, "no snapshot was taken while the tree changed"
        target = _trailer_zxid(fuzzy[1])
        zk.start(timeout=60)
        text = zk.log_text()
        assert f"with zxid as 0x{target:x}" in text
        _assert_no_digest_trouble(zk)
        assert_same_dump(dump(zk), want)
    finally:
        z.kill()
        zk.kill()
        z.cleanup()


def test_zookeeper_counts_a_wrong_digest_in_zkpys_log(tmp_path: Path) -> None:
    _needs_zookeeper()
    wd = tmp_path / "z2k-bad"
    z = ZkpyServer(workdir=wd, extended_types=True)
    zk = ApacheZooKeeperServer(workdir=wd, extended_types=True, port=z.port, log_level="info")
    try:
        z.start()
        digest_workload.one_more(z.address, "/a", b"1")
        digest_workload.one_more(z.address, "/b", b"2")
        z.stop()
        (_, log_path), = files_by_zxid(_vdir(z), "log")
        _alter_digest(log_path, 1)  # the create of /a
        zk.start(timeout=60)
        assert "First digest mismatch" in zk.log_text()
        assert _mismatches(zk) == 1
    finally:
        z.kill()
        zk.kill()
        z.cleanup()


def test_digests_off_on_both_write_and_expect_none(tmp_path: Path) -> None:
    """digest.enabled=false in zoo.cfg: zkpy writes no TxnDigest and no trailer, and
    ZooKeeper with the same zoo.cfg loads that without a word about digests."""
    _needs_zookeeper()
    wd = tmp_path / "off"
    off = {"digest.enabled": "false"}
    z = ZkpyServer(workdir=wd, extended_types=True, settings=off)
    zk = ApacheZooKeeperServer(workdir=wd, extended_types=True, port=z.port, settings=off,
                               log_level="info")
    try:
        z.start()
        digest_workload.one_more(z.address, "/a", b"1")
        want = dump(z)
        z.stop()
        z.start()  # a snapshot of the recovered tree
        z.stop()
        assert "zookeeper.digest.enabled = false" in z.log_text()
        (_, log_path), = files_by_zxid(_vdir(z), "log")
        sizes = [len(e.data) for e in read_log(log_path)]
        assert sizes[:2] == [36, 75]  # createSession, create /a: ZooKeeper's sizes, no digest
        _, newest = files_by_zxid(_vdir(z), "snapshot")[-1]
        blob = Path(newest).read_bytes()
        assert zlib.adler32(blob[:-13]) == struct.unpack_from(">q", blob, len(blob) - 13)[0]
        zk.start(timeout=60)
        assert "zookeeper.digest.enabled = false" in zk.log_text()
        _assert_no_digest_trouble(zk)
        assert_same_dump(dump(zk), want)
    finally:
        z.kill()
        zk.kill()
        z.cleanup()


# -- Apache ZooKeeper's files on zkpy --------------------------------------------------


def _zookeeper_data(wd: Path) -> tuple[ZkpyServer, dict, str]:
    """A data dir written by Apache ZooKeeper: the workload, then a restart (its
    start-up snapshot ends with its digest trailer)."""
    zk = ApacheZooKeeperServer(workdir=wd, extended_types=True)
    try:
        zk.start(timeout=60)
        digest_workload.run(zk.address)
        want, want_hash = dump(zk), zk.four_letter("hash")
        zk.stop()
        zk.start(timeout=60)
        zk.stop()
    finally:
        zk.kill()
    return ZkpyServer(workdir=wd, extended_types=True, port=zk.port), want, want_hash


def test_zkpy_checks_zookeepers_snapshot_trailer(tmp_path: Path) -> None:
    _needs_zookeeper()
    z, want, _ = _zookeeper_data(tmp_path / "k2z")
    try:
        zxid, newest = files_by_zxid(_vdir(z), "snapshot")[-1]
        tree, _, _ = load_snapshot(newest)
        assert zxid > 0 and tree.digests.target is None  # checked at once, and passed
        z.start()
        assert (f"The digest in the snapshot has digest version of 2, with zxid as 0x{zxid:x}"
                in z.log_text())
        _assert_no_digest_trouble(z)
        assert_same_dump(dump(z), want)
    finally:
        z.kill()
        z.cleanup()


def test_zkpy_replays_zookeepers_log_checking_every_digest(tmp_path: Path) -> None:
    _needs_zookeeper()
    z, want, want_hash = _zookeeper_data(tmp_path / "k2z-log")
    try:
        for zxid, path in files_by_zxid(_vdir(z), "snapshot"):
            if zxid > 0:
                os.remove(path)  # replay from the empty tree: every TxnDigest is compared
        shutil.copytree(_vdir(z), tmp_path / "as-zookeeper-left-it")
        z.start()
        _assert_no_digest_trouble(z)
        assert z.four_letter("hash") == want_hash
        assert_same_dump(dump(z), want)
        z.stop()
        shutil.rmtree(_vdir(z))
        shutil.copytree(tmp_path / "as-zookeeper-left-it", _vdir(z))
        (_, log_path), = files_by_zxid(_vdir(z), "log")
        _alter_digest(log_path, 2)
        z.start()
        assert "First digest mismatch" in z.log_text()
        assert _mismatches(z) == 1
    finally:
        z.kill()
        z.cleanup()


# -- a zkpy ensemble -----------------------------------------------------------------


@pytest.fixture
def zkpy_ensemble(request: pytest.FixtureRequest) -> Any:
    ens = Ensemble("zkpy", 3, server_options={"extended_types": True})
    yield from started(request, ens)


def test_a_zkpy_ensemble_agrees_on_its_digests(zkpy_ensemble: Ensemble) -> None:
    ens = zkpy_ensemble
    follower = ens.followers()[0]
    digest_workload.run(follower.server.address)
    leader = ens.leader()
    assert leader is not None
    wait_until(lambda: len({m.four_letter("hash") for m in ens.members}) == 1, 30,
               "the members' hash outputs to agree")
    assert leader.four_letter("hash").count("\n") == 2
    for m in ens.members:
        assert _mismatches(m.server) == 0
        assert "Digests are not matching" not in m.server.log_text()
