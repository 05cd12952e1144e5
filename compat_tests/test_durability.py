"""Durability with real processes: SIGKILL under load, damaged data dirs, and the
round trip zkpy -> Apache ZooKeeper -> zkpy on one data directory.

    pytest compat_tests/test_durability.py
    ZKPY_KILL_CYCLES=100 pytest compat_tests/test_durability.py -k sigkill

The in-process half (codec, log reader, fuzzy snapshots, recovery) is
tests/test_storage.py.
"""

from __future__ import annotations

import os
import random
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.security import make_acl, make_digest_acl

from zkpy.jute import schema as S
from zkpy.jute.codec import decode, encode
from zkpy.jute.protocol import Op
from zkpy.storage.formats import files_by_zxid
from zkpy.storage.snapshot import load_snapshot
from zkpy.testing.launchers import (
    ApacheZooKeeperServer,
    ServerError,
    ZkpyServer,
    find_apache_zookeeper,
)

OPEN = [S.ACL(31, S.Id("world", "anyone"))]
KILL_CYCLES = int(os.environ.get("ZKPY_KILL_CYCLES", "10"))


def _needs_zookeeper() -> None:
    install, reason = find_apache_zookeeper()
    if install is None:
        pytest.skip(reason)


# --------------------------------------------------------------------------
# a raw pipelined client: every reply is accounted for, nothing is retried


_LEN = struct.Struct(">i")


class Raw:
    """One session on one socket. ``send`` returns the xid; ``reply`` reads the
    next reply as (xid, zxid, err, body bytes)."""

    def __init__(self, address: tuple[str, int], timeout_ms: int = 30000,
                 session_id: int = 0, passwd: bytes = bytes(16)) -> None:
        self.sock = socket.create_connection(address, timeout=20)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self._write(encode(S.ConnectRequest(0, 0, timeout_ms, session_id, passwd, False)))
        resp, _ = decode(S.ConnectResponse, self._frame())
        self.session_id, self.passwd, self.timeout = resp.sessionId, resp.passwd, resp.timeOut
        self.xid = 0

    def _write(self, payload: bytes) -> None:
        self.sock.sendall(_LEN.pack(len(payload)) + payload)

    def _frame(self) -> bytes:
        while True:
            if len(self.buf) >= 4:
                (n,) = _LEN.unpack_from(self.buf)
                if len(self.buf) >= 4 + n:
                    frame = bytes(self.buf[4:4 + n])
                    del self.buf[:4 + n]
                    return frame
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed")
            self.buf += chunk

    def send(self, op: int, body: bytes) -> int:
        self.xid += 1
        self._write(encode(S.RequestHeader(self.xid, op)) + body)
        return self.xid

    def reply(self) -> tuple[int, int, int, bytes]:
        while True:
            frame = self._frame()
            hdr, off = decode(S.ReplyHeader, frame)
            if hdr.xid == -1:  # a watch event
                continue
            return hdr.xid, hdr.zxid, hdr.err, frame[off:]

    def call(self, op: int, body: bytes) -> tuple[int, bytes]:
        xid = self.send(op, body)
        rxid, _, err, rest = self.reply()
        assert rxid == xid
        return err, rest

    def abandon(self) -> None:
        """Drop the TCP connection without closing the session."""
        self.sock.close()


def create_body(path: str, data: bytes, flags: int = 0, acl: Any = OPEN) -> bytes:
    return encode(S.CreateRequest(path, data, acl, flags))


def multi_body(ops: list[tuple[int, Any]]) -> bytes:
    parts = [encode(S.MultiHeader(op, False, -1)) + encode(rec) for op, rec in ops]
    parts.append(encode(S.MultiHeader(-1, True, -1)))
    return b"".join(parts)


def multi_errors(body: bytes) -> list[int]:
    """Per-op error codes of a MultiResponse (0 for a successful op)."""
    errs, off = [], 0
    while True:
        h, off = decode(S.MultiHeader, body, off)
        if h.done:
            return errs
        if h.type == -1:
            e, off = decode(S.ErrorResponse, body, off)
            errs.append(e.err)
            continue
        if h.type in (Op.create,):
            _, off = decode(S.CreateResponse, body, off)
        elif h.type == Op.setData:
            _, off = decode(S.SetDataResponse, body, off)
        errs.append(0)


# --------------------------------------------------------------------------
# tree dumps through Kazoo (batched async reads)


DUMP_AUTH = ("digest", "dump:secret")
DUMP_ACL = make_digest_acl("dump", "secret", all=True)


def _client(srv: Any) -> KazooClient:
    c = KazooClient(srv.connect_string, timeout=15, auth_data=[DUMP_AUTH])
    c.start(timeout=30)
    return c


def dump(srv: Any, top: str = "/") -> dict[str, tuple]:
    """path -> (data, every Stat field, ACL list) for the whole tree."""
    c = _client(srv)
    try:
        out: dict[str, tuple] = {}
        level = [top]
        while level:
            gets = [(p, c.get_async(p), c.get_acls_async(p), c.get_children_async(p))
                    for p in level]
            level = []
            for p, g, a, ch in gets:
                data, st = g.get(timeout=30)
                acls, _ = a.get(timeout=30)
                kids = ch.get(timeout=30)
                out[p] = (data, tuple(st), tuple((x.perms, x.id.scheme, x.id.id) for x in acls))
                base = "" if p == "/" else p
                level.extend(f"{base}/{k}" for k in sorted(kids))
        return out
    finally:
        c.stop()
        c.close()


def assert_same_dump(got: dict, want: dict) -> None:
    assert sorted(got) == sorted(want)
    diff = {p: (got[p], want[p]) for p in want if got[p] != want[p]}
    assert not diff, f"{len(diff)} nodes differ, e.g. {list(diff.items())[:3]}"


# --------------------------------------------------------------------------
# 1. SIGKILL in the middle of a sustained write load, many times


class Writer(threading.Thread):
    """Pipelines creates/sets/deletes/multis on its own subtree /w<n>, keeping
    the state after every op it sent. On restart the subtree must equal the
    state after some prefix of the ops that includes every acknowledged one
    (a session's requests are applied in order; a multi is one op, so half of
    one matches no prefix)."""

    KEYS = 12

    def __init__(self, n: int, seed: int) -> None:
        super().__init__(daemon=True, name=f"writer-{n}")
        self.n = n
        self.base = f"/w{n}"
        self.rnd = random.Random(seed)
        self.state: dict[str, tuple[bytes, int]] = {}  # key -> (data, version)
        self.seq = 0
        self.reset(self.state)
        self.error: BaseException | None = None

    def reset(self, state: dict[str, tuple[bytes, int]]) -> None:
        self.state = dict(state)
        self.history = [dict(state)]  # history[i]: after i ops of this cycle
        self.acked = 0

    def _op(self) -> tuple[int, bytes]:
        st = self.state
        self.seq += 1
        data = f"{self.n}:{self.seq}".encode() * self.rnd.randrange(1, 20)
        roll = self.rnd.random()
        if roll < 0.15:
            keys = self.rnd.sample(range(self.KEYS), self.rnd.randrange(2, 4))
            ops: list[tuple[int, Any]] = []
            for k in keys:
                path = f"{self.base}/k{k}"
                if path not in st:
                    ops.append((Op.create, S.CreateRequest(path, data, OPEN, 0)))
                    st[path] = (data, 0)
                elif self.rnd.random() < 0.3:
                    ops.append((Op.check, S.CheckVersionRequest(path, st[path][1])))
                    ops.append((Op.delete, S.DeleteRequest(path, st[path][1])))
                    del st[path]
                else:
                    ops.append((Op.setData, S.SetDataRequest(path, data, st[path][1])))
                    st[path] = (data, st[path][1] + 1)
            return Op.multi, multi_body(ops)
        path = f"{self.base}/k{self.rnd.randrange(self.KEYS)}"
        if path not in st:
            st[path] = (data, 0)
            return Op.create, create_body(path, data)
        if roll < 0.3:
            del st[path]
            return Op.delete, encode(S.DeleteRequest(path, -1))
        st[path] = (data, st[path][1] + 1)
        return Op.setData, encode(S.SetDataRequest(path, data, -1))

    def start_cycle(self, address: tuple[str, int], window: int) -> None:
        self.address = address
        self.window = window

    def run(self) -> None:
        try:
            conn = Raw(self.address, timeout_ms=4000)
        except OSError as e:
            self.error = e
            return
        pending: list[tuple[int, int]] = []  # (xid, op)
        try:
            while True:
                while len(pending) < self.window:
                    op, body = self._op()
                    self.history.append(dict(self.state))
                    pending.append((conn.send(op, body), op))
                xid, _, err, body = conn.reply()
                want, op = pending.pop(0)
                assert xid == want, (xid, want)
                assert err == 0, f"{self.base}: op {op} failed with {err}"
                if op == Op.multi:
                    assert multi_errors(body) == [0] * len(multi_errors(body))
                self.acked += 1
        except (OSError, ConnectionError, struct.error):
            return  # the server was killed: whatever was acknowledged is counted
        except BaseException as e:  # an assertion: report it from the main thread
            self.error = e

    @property
    def sent(self) -> int:
        return len(self.history) - 1


def _subtree(c: KazooClient, base: str) -> dict[str, tuple[bytes, int]]:
    out = {}
    for k in c.get_children(base):
        data, st = c.get(f"{base}/{k}")
        out[f"{base}/{k}"] = (data, st.version)
    return out


def test_sigkill_under_write_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    n_writers = 4
    srv = ZkpyServer(workdir=tmp_path / "kill", settings={"tickTime": 500})
    rnd = random.Random(int(os.environ.get("ZKPY_KILL_SEED", "20240611")))
    writers_state = [dict() for _ in range(n_writers)]
    torn = 0
    try:
        srv.start()
        c = _client(srv)
        for i in range(n_writers):
            c.create(f"/w{i}")
        c.stop()
        c.close()
        srv.stop()
        t0 = time.monotonic()
        for cycle in range(KILL_CYCLES):
            variant = cycle % 3
            srv.settings.pop("preAllocSize", None)
            srv.settings["forceSync"] = "yes"
            if variant == 0:
                srv.settings.pop("snapCount", None)
            else:
                # Kills land during fuzzy snapshots, log rolls and preallocation.
                srv.settings["snapCount"] = 50
                srv.settings["preAllocSize"] = 16
                if variant == 2:
                    srv.settings["forceSync"] = "no"
            srv.start()
            writers = []
            for i in range(n_writers):
                w = Writer(i, rnd.randrange(1 << 30))
                w.reset(writers_state[i])
                w.start_cycle(srv.address, window=rnd.choice([1, 8, 32]))
                writers.append(w)
            for w in writers:
                w.start()
            time.sleep(rnd.uniform(0.3, 1.5))
            srv.kill()
            for w in writers:
                w.join(30)
                assert not w.is_alive()
                if w.error is not None:
                    raise w.error
            srv.start()
            c = _client(srv)
            try:
                assert sorted(c.get_children("/")) == sorted(
                    ["zookeeper"] + [f"w{i}" for i in range(n_writers)])
                for i, w in enumerate(writers):
                    got = _subtree(c, w.base)
                    matches = [k for k in range(w.acked, w.sent + 1) if w.history[k] == got]
                    assert matches, (
                        f"cycle {cycle} {w.base}: recovered state is no prefix of the sent ops "
                        f"with all {w.acked} acknowledged (sent {w.sent})")
                    writers_state[i] = got
            finally:
                c.stop()
                c.close()
            srv.stop()
            print(f"cycle {cycle} (variant {variant}): acked/sent "
                  + " ".join(f"{w.acked}/{w.sent}" for w in writers)
                  + f" at {time.monotonic() - t0:.1f}s")
        torn = srv.log_text().count("torn entry")
        snaps = files_by_zxid(str(srv.data_dir / "version-2"), "snapshot")
        assert snaps, "no snapshot was ever written"
        if KILL_CYCLES >= 3:
            assert "Taking a fuzzy snapshot" in srv.log_text()
        # A clean restart changes nothing at all: every Stat field, ACL, datum.
        srv.start()
        before = dump(srv)
        srv.stop()
        srv.start()
        assert_same_dump(dump(srv), before)
    finally:
        print(f"{KILL_CYCLES} kill cycles; torn log tails recovered: {torn}")
        srv.cleanup()


# --------------------------------------------------------------------------
# 2. damaged data directories, through the real process


def _populate(srv: ZkpyServer, prefix: str, n: int) -> None:
    c = _client(srv)
    try:
        c.ensure_path(prefix)
        for i in range(n):
            c.create(f"{prefix}/n{i}", b"v%d" % i)
    finally:
        c.stop()
        c.close()


def _entry_offsets(path: str) -> list[int]:
    blob = Path(path).read_bytes()
    offs, off = [], 16
    while off + 12 <= len(blob):
        n = int.from_bytes(blob[off + 8:off + 12], "big", signed=True)
        if n <= 0:
            break
        offs.append(off)
        off += 12 + n + 1
    return offs


def _flip(path: str, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))


@pytest.fixture
def used_zkpy(tmp_path: Path):
    """A zkpy data dir with two snapshots and logs after each: started, 30 nodes,
    restarted (start-up snapshot), 30 more, stopped."""
    srv = ZkpyServer(workdir=tmp_path / "dmg")
    srv.start()
    _populate(srv, "/d", 30)
    srv.restart()
    _populate(srv, "/e", 30)
    srv.stop()
    yield srv
    srv.cleanup()


def _vdir(srv: ZkpyServer) -> str:
    return str(srv.data_dir / "version-2")


def _names(srv: ZkpyServer) -> set[str]:
    c = _client(srv)
    try:
        return {f"/d/{k}" for k in c.get_children("/d")} | (
            {f"/e/{k}" for k in c.get_children("/e")} if c.exists("/e") else set())
    finally:
        c.stop()
        c.close()


ALL_NODES = {f"/d/n{i}" for i in range(30)} | {f"/e/n{i}" for i in range(30)}


def test_process_recovers_from_torn_log_tail(used_zkpy: ZkpyServer) -> None:
    srv = used_zkpy
    newest = files_by_zxid(_vdir(srv), "log")[-1][1]
    offs = _entry_offsets(newest)
    # The last entries are the Kazoo sessions' close: cut into the last create.
    creates = offs[:-1]
    with open(newest, "r+b") as f:
        f.truncate(creates[-1] + 30)
    srv.start()
    assert _names(srv) == ALL_NODES - {"/e/n29"}
    log = srv.log_text()
    assert "torn entry" in log and os.path.basename(newest) in log and "dropped" in log


def test_process_recovers_from_corrupted_log_tail(used_zkpy: ZkpyServer) -> None:
    srv = used_zkpy
    newest = files_by_zxid(_vdir(srv), "log")[-1][1]
    offs = _entry_offsets(newest)
    _flip(newest, offs[-1] + 20)  # the last entry (a session close)
    srv.start()
    assert _names(srv) == ALL_NODES
    assert "checksum mismatch" in srv.log_text() and os.path.basename(newest) in srv.log_text()


def test_process_falls_back_to_older_snapshot(used_zkpy: ZkpyServer) -> None:
    srv = used_zkpy
    snaps = files_by_zxid(_vdir(srv), "snapshot")
    assert len(snaps) >= 2
    newest = snaps[-1][1]
    _flip(newest, os.path.getsize(newest) // 2)
    srv.start()
    assert _names(srv) == ALL_NODES
    log = srv.log_text()
    assert os.path.basename(newest) in log and "invalid" in log


@pytest.mark.parametrize("which", ["newest", "older"])
def test_process_refuses_mid_log_damage(used_zkpy: ZkpyServer, which: str) -> None:
    srv = used_zkpy
    logs = files_by_zxid(_vdir(srv), "log")
    if which == "older":
        # Make the older log needed: without the newest snapshot recovery starts
        # from the first one, and the first log is then not the last.
        os.remove(files_by_zxid(_vdir(srv), "snapshot")[-1][1])
        victim = logs[-2][1]
        offs = _entry_offsets(victim)
        _flip(victim, offs[-1] + 20)  # even its last entry is not a tolerable tail
    else:
        victim = logs[-1][1]
        offs = _entry_offsets(victim)
        _flip(victim, offs[len(offs) // 2] + 20)
    with pytest.raises(ServerError):
        srv.start(timeout=30)
    assert srv.returncode not in (None, 0)
    tail = srv.log_tail(5)
    assert os.path.basename(victim) in tail, tail
    assert "refusing to start" in tail and "Cannot recover the data directory" in tail


# --------------------------------------------------------------------------
# 3. zkpy -> Apache ZooKeeper -> zkpy on one data directory


def _raw_session(srv: Any, ephemeral: str) -> Raw:
    r = Raw(srv.address, timeout_ms=60000)
    err, _ = r.call(Op.create, create_body(ephemeral, b"eph", flags=1))
    assert err == 0
    return r


def _reconnect(srv: Any, old: Raw) -> Raw:
    r = Raw(srv.address, timeout_ms=60000, session_id=old.session_id, passwd=old.passwd)
    assert r.session_id == old.session_id and r.timeout > 0, (
        f"session 0x{old.session_id:x} not valid on {srv.kind}")
    # And the session works: its ephemerals are its own.
    err, _ = r.call(Op.exists, encode(S.ExistsRequest("/", False)))
    assert err == 0
    return r


def _build_tree(srv: Any, root: str) -> None:
    c = _client(srv)
    try:
        c.create(root, b"root")
        c.create(f"{root}/digest", b"secret", acl=[DUMP_ACL])
        c.create(f"{root}/readonly", b"ro", acl=[make_acl("world", "anyone", read=True)])
        c.create(f"{root}/ip", b"ip", acl=[make_acl("ip", "127.0.0.1", all=True),
                                           make_acl("ip", "10.0.0.0/8", read=True)])
        c.create(f"{root}/big", os.urandom(200_000))
        c.create(f"{root}/empty", b"")
        seqs = [c.create(f"{root}/seq-", b"%d" % i, sequence=True) for i in range(5)]
        c.delete(seqs[2])
        c.create(f"{root}/v", b"0")
        for i in range(7):
            c.set(f"{root}/v", b"%d" % i)
        c.set_acls(f"{root}/v", [DUMP_ACL])
        c.set_acls(f"{root}/v", [make_digest_acl("dump", "secret", read=True, write=True),
                                 DUMP_ACL])
        c.create(f"{root}/container/child", b"", makepath=True)
        r = Raw(srv.address)  # Kazoo 2.11 cannot create containers or TTL nodes
        assert r.call(Op.createContainer, create_body(f"{root}/container2", b"c", flags=4))[0] == 0
        assert r.call(Op.createTTL, encode(S.CreateTTLRequest(
            f"{root}/ttl", b"t", OPEN, 5, 3_600_000)))[0] == 0
        r.call(Op.closeSession, b"")
        r.sock.close()
        c.create(f"{root}/container2/kid", b"")
        t = c.transaction()
        t.create(f"{root}/multi", b"m")
        t.set_data(f"{root}/v", b"multi")
        t.delete(seqs[0])
        assert not [r for r in t.commit() if isinstance(r, Exception)]
    finally:
        c.stop()
        c.close()


def _edit_tree(srv: Any, root: str) -> None:
    c = _client(srv)
    try:
        c.set(f"{root}/v", b"edited")
        c.delete(sorted(k for k in c.get_children(root) if k.startswith("seq-"))[-1]
                 .join([f"{root}/", ""]))
        c.create(f"{root}/seq-", b"again", sequence=True)
        c.set_acls(f"{root}/digest", [DUMP_ACL, make_digest_acl("x", "y", read=True)])
        c.create(f"{root}/deep/a/b/c", b"deep", makepath=True)
        c.delete(f"{root}/container/child")
    finally:
        c.stop()
        c.close()


def test_round_trip_zkpy_zookeeper_zkpy(tmp_path: Path) -> None:
    _needs_zookeeper()
    wd = tmp_path / "rt"
    settings = {"maxSessionTimeout": 120000}
    z1 = ZkpyServer(workdir=wd, settings=settings, extended_types=True)
    zk = ApacheZooKeeperServer(workdir=wd, settings=settings, extended_types=True,
                               port=z1.port)
    z2 = ZkpyServer(workdir=wd, settings=settings, extended_types=True, port=z1.port)
    try:
        z1.start()
        _build_tree(z1, "/rt")
        s1 = _raw_session(z1, "/rt/eph-zkpy")
        s1.abandon()
        on_zkpy = dump(z1)
        assert on_zkpy["/rt/eph-zkpy"][1][7] == s1.session_id  # ephemeralOwner
        z1.stop()

        zk.start(timeout=60)
        assert_same_dump(dump(zk), on_zkpy)
        s1b = _reconnect(zk, s1)
        s1b.abandon()
        s2 = _raw_session(zk, "/rt/eph-zk")
        s2.abandon()
        _edit_tree(zk, "/rt")
        on_zk = dump(zk)
        zk.stop()

        z2.start()
        assert_same_dump(dump(z2), on_zk)
        _reconnect(z2, s2).abandon()
        _reconnect(z2, s1).abandon()
        assert on_zk["/rt/eph-zk"][1][7] == s2.session_id
        assert on_zk["/rt/eph-zkpy"][1][7] == s1.session_id
    finally:
        for s in (z1, zk, z2):
            s.kill()
        z1.cleanup()


def test_fuzzy_snapshot_taken_under_load_loads_on_zookeeper(tmp_path: Path) -> None:
    _needs_zookeeper()
    wd = tmp_path / "fz"
    z1 = ZkpyServer(workdir=wd, settings={"snapCount": 60})
    zk = ApacheZooKeeperServer(workdir=wd, port=z1.port, log_level="info")
    try:
        z1.start()
        r = Raw(z1.address)
        assert r.call(Op.create, create_body("/f", b""))[0] == 0
        # Enough znodes that a snapshot takes several slices (2000 nodes each).
        for start in range(0, 7000, 500):
            xids = [r.send(Op.create, create_body(f"/f/n{i}", b"x" * 20))
                    for i in range(start, start + 500)]
            for _ in xids:
                assert r.reply()[2] == 0
        stop = threading.Event()

        def load(seed: int) -> None:
            rnd = random.Random(seed)
            conn = Raw(z1.address)
            while not stop.is_set():
                xids = []
                for _ in range(32):
                    i = rnd.randrange(7000)
                    if rnd.random() < 0.8:
                        xids.append(conn.send(Op.setData, encode(
                            S.SetDataRequest(f"/f/n{i}", b"%d" % rnd.random(), -1))))
                    else:
                        xids.append(conn.send(Op.create, create_body(
                            f"/f/m{seed}-{rnd.random()}", b"new")))
                for _ in xids:
                    assert conn.reply()[2] == 0
            conn.sock.close()

        threads = [threading.Thread(target=load, args=(s,)) for s in range(3)]
        for t in threads:
            t.start()
        time.sleep(3)
        stop.set()
        for t in threads:
            t.join(30)
        r.sock.close()
        want = dump(z1)
        z1.kill()
        # Keep the newest fuzzy snapshot (one holding changes newer than its
        # zxid, i.e. made while it was being written) as the newest of all.
        vdir = str(z1.data_dir / "version-2")
        fuzzy = None
        for zxid, path in reversed(files_by_zxid(vdir, "snapshot")):
            tree, _, _ = load_snapshot(path)
            if any(max(n.mzxid, n.czxid, n.pzxid) > zxid for n in tree.nodes.values()):
                fuzzy = path
                break
            os.remove(path)
        assert fuzzy is not None, "no snapshot was taken while the tree changed"
        zk.start(timeout=90)
        assert os.path.basename(fuzzy) in zk.log_text()
        assert_same_dump(dump(zk), want)
    finally:
        z1.kill()
        zk.kill()
        z1.cleanup()
