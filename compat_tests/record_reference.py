"""Record golden wire frames and behaviour facts from Apache ZooKeeper.

Run ``python compat_tests/record_reference.py`` (from the project root) to
regenerate:

* ``tests/data/reference_frames.json`` -- every frame exchanged between a
  Kazoo client (plus a tiny raw client for opcodes Kazoo lacks) and a fresh
  Apache ZooKeeper, as ``{"label", "direction", "hex", ...}`` where ``hex``
  includes the 4-byte length prefix.  Extra keys (``conn``, ``index``,
  ``kind``, ``xid``, ``op``, ``zxid``, ``err``) are decoded conveniences.
* ``tests/data/reference_behaviour.json`` -- facts measured on a second
  fresh server that a server implementer needs (sequential numbering,
  zxids of failed writes, watch and ping zxids, the initial tree, and raw
  four-letter-word outputs), each with the steps that showed it.

A recording TCP proxy (plain sockets and threads, loopback only) sits
between the clients and the server and cuts the byte stream into frames by
their length prefix.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from kazoo.client import KazooClient  # noqa: E402
from kazoo.security import make_digest_acl  # noqa: E402

from zkpy.testing.launchers import LOCALHOST, server_from_name  # noqa: E402

DATA_DIR = ROOT / "tests" / "data"

OPCODES = {
    0: "notification", 1: "create", 2: "delete", 3: "exists", 4: "getData",
    5: "setData", 6: "getACL", 7: "setACL", 8: "getChildren", 9: "sync",
    11: "ping", 12: "getChildren2", 13: "check", 14: "multi", 15: "create2",
    16: "reconfig", 17: "checkWatches", 18: "removeWatches", 19: "createContainer",
    20: "deleteContainer", 21: "createTTL", 22: "multiRead", 100: "auth",
    101: "setWatches", 102: "sasl", 103: "getEphemerals", 104: "getAllChildrenNumber",
    105: "setWatches2", 106: "addWatch", 107: "whoAmI", -10: "createSession",
    -11: "closeSession", -1: "error",
}


# --------------------------------------------------------------------------
# recording proxy


class RecordingProxy:
    """Loopback TCP proxy that records length-prefixed frames with a label."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream = upstream
        self.label = "unlabelled"
        self.frames: list[dict] = []
        self.lock = threading.Lock()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((LOCALHOST, 0))
        self._listener.listen(16)
        self.port = self._listener.getsockname()[1]
        self._conn_count = 0
        self._sockets: list[socket.socket] = []
        self._closed = False
        self._accept_thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._accept_thread.start()

    @property
    def address(self) -> str:
        return "%s:%d" % (LOCALHOST, self.port)

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.close()
        except OSError:
            pass
        for s in list(self._sockets):
            try:
                s.close()
            except OSError:
                pass

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sockets += [client, server]
            with self.lock:
                conn = self._conn_count
                self._conn_count += 1
            for src, dst, direction in ((client, server, "c2s"), (server, client, "s2c")):
                threading.Thread(target=self._pump, args=(conn, src, dst, direction),
                                 daemon=True).start()

    def _pump(self, conn: int, src: socket.socket, dst: socket.socket, direction: str) -> None:
        buf = b""
        first = True
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            if not data:
                if buf:
                    self._record(conn, direction, buf, "partial")
                    try:
                        dst.sendall(buf)
                    except OSError:
                        pass
                try:
                    dst.shutdown(socket.SHUT_WR)
                except OSError:
                    pass
                return
            buf += data
            while len(buf) >= 4:
                (length,) = struct.unpack(">i", buf[:4])
                if length < 0 or len(buf) < 4 + length:
                    break
                frame, buf = buf[: 4 + length], buf[4 + length :]
                self._record(conn, direction, frame, "connect" if first else None)
                first = False
                try:
                    dst.sendall(frame)
                except OSError:
                    return

    def _record(self, conn: int, direction: str, frame: bytes, kind: str | None) -> None:
        entry: dict = {"label": None, "direction": direction, "hex": frame.hex(), "conn": conn}
        body = frame[4:]
        if kind == "connect":
            entry["kind"] = "connect_request" if direction == "c2s" else "connect_response"
        elif kind == "partial":
            entry["kind"] = "partial"
        elif direction == "c2s" and len(body) >= 8:
            xid, op = struct.unpack(">ii", body[:8])
            entry.update(kind="request", xid=xid, op=OPCODES.get(op, op))
        elif direction == "s2c" and len(body) >= 16:
            xid, zxid, err = struct.unpack(">iqi", body[:16])
            entry.update(kind="reply", xid=xid, zxid=zxid, err=err)
            if xid == -1:
                entry["kind"] = "notification"
        with self.lock:
            label = self.label
            xid = entry.get("xid")
            if xid == -2:
                label = "ping"
            entry["label"] = label
            entry["index"] = len(self.frames)
            self.frames.append(entry)

    def mark(self) -> int:
        with self.lock:
            return len(self.frames)

    def since(self, mark: int) -> list[dict]:
        with self.lock:
            return list(self.frames[mark:])


# --------------------------------------------------------------------------
# a minimal raw client for opcodes Kazoo 2.11 does not speak


def _jstr(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">i", len(b)) + b


class RawClient:
    def __init__(self, address: tuple[str, int], timeout_ms: int = 10000):
        self.sock = socket.create_connection(address, timeout=10)
        self.xid = 0
        self.events: list[bytes] = []
        req = struct.pack(">iqiq", 0, 0, timeout_ms, 0) + struct.pack(">i", 16) + b"\0" * 16 + b"\0"
        self._send(req)
        self.connect_response = self._read_frame()

    def _send(self, body: bytes) -> None:
        self.sock.sendall(struct.pack(">i", len(body)) + body)

    def _read_exact(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("server closed the connection")
            out += chunk
        return out

    def _read_frame(self) -> bytes:
        (n,) = struct.unpack(">i", self._read_exact(4))
        return self._read_exact(n)

    def call(self, op: int, payload: bytes = b"") -> tuple[int, int, bytes]:
        self.xid += 1
        xid = self.xid
        self._send(struct.pack(">ii", xid, op) + payload)
        while True:
            frame = self._read_frame()
            rxid, zxid, err = struct.unpack(">iqi", frame[:16])
            if rxid == -1:
                self.events.append(frame)
                continue
            if rxid == xid:
                return zxid, err, frame[16:]

    def wait_event(self, timeout: float = 5.0) -> bytes | None:
        if self.events:
            return self.events.pop(0)
        self.sock.settimeout(timeout)
        try:
            frame = self._read_frame()
        except TimeoutError:
            return None
        finally:
            self.sock.settimeout(10)
        return frame

    def close(self) -> None:
        try:
            self.call(-11)
        except (OSError, ConnectionError):
            pass
        self.sock.close()


# --------------------------------------------------------------------------
# the golden-frame scenario


def record_frames(srv) -> list[dict]:
    proxy = RecordingProxy(srv.address)
    client = KazooClient(proxy.address, timeout=10.0)
    watch_fired = threading.Event()
    try:
        proxy.label = "connect"
        client.start(timeout=15)

        proxy.label = "create_persistent"
        client.create("/a", b"hello")

        proxy.label = "create2_ephemeral_sequential"
        client.create("/a/s-", b"eph", ephemeral=True, sequence=True, include_data=True)

        proxy.label = "create_node_exists"
        try:
            client.create("/a", b"again")
        except Exception as exc:
            assert type(exc).__name__ == "NodeExistsError", exc

        proxy.label = "get_data"
        client.get("/a")

        proxy.label = "get_data_no_node"
        try:
            client.get("/missing")
        except Exception as exc:
            assert type(exc).__name__ == "NoNodeError", exc

        proxy.label = "exists_no_node"
        assert client.exists("/missing") is None

        proxy.label = "exists_watch"
        client.exists("/a", watch=lambda event: watch_fired.set())

        proxy.label = "set_data_fires_watch"
        client.set("/a", b"x")
        assert watch_fired.wait(5), "watch did not fire"
        time.sleep(0.2)

        proxy.label = "set_data_bad_version"
        try:
            client.set("/a", b"bad", version=42)
        except Exception as exc:
            assert type(exc).__name__ == "BadVersionError", exc

        proxy.label = "get_children2"
        client.get_children("/a", include_data=True)

        proxy.label = "get_children"
        client.get_children("/a")

        proxy.label = "get_acl"
        client.get_acls("/a")

        proxy.label = "set_acl_digest"
        client.set_acls("/a", [make_digest_acl("user", "pw", all=True)])

        proxy.label = "get_data_no_auth"
        try:
            client.get("/a")
        except Exception as exc:
            assert type(exc).__name__ == "NoAuthError", exc

        proxy.label = "add_auth_digest"
        client.add_auth("digest", "user:pw")

        proxy.label = "sync"
        client.sync("/a")

        proxy.label = "multi_failing"
        t = client.transaction()
        t.create("/t", b"tx")
        t.check("/a", 99)
        t.set_data("/a", b"y")
        t.commit()

        proxy.label = "get_data_for_version"
        version = client.get("/a")[1].version
        proxy.label = "multi_succeeding"
        t = client.transaction()
        t.create("/t", b"tx")
        t.check("/a", version)
        t.set_data("/a", b"y")
        t.commit()

        proxy.label = "ping_wait"
        mark = proxy.mark()
        deadline = time.monotonic() + 12
        while time.monotonic() < deadline:
            time.sleep(0.5)
            if sum(1 for f in proxy.since(mark) if f.get("xid") == -2 and f["direction"] == "s2c"):
                break
        else:
            raise RuntimeError("no ping seen")

        proxy.label = "delete"
        client.delete("/t")

        proxy.label = "delete_bad_version"
        try:
            client.delete("/a", version=77)
        except Exception as exc:
            assert type(exc).__name__ == "BadVersionError", exc

        # Kazoo 2.11 has no addWatch / removeWatches: a raw client does them.
        proxy.label = "raw_connect"
        raw = RawClient(("127.0.0.1", proxy.port))

        proxy.label = "raw_add_auth"
        raw.call(100, struct.pack(">i", 0) + _jstr("digest") + _jstr("user:pw"))

        proxy.label = "add_watch_persistent_recursive"
        raw.call(106, _jstr("/a") + struct.pack(">i", 1))

        proxy.label = "add_watch_persistent_recursive_event"
        client.create("/a/child", b"c")
        raw.wait_event(5)
        time.sleep(0.2)

        proxy.label = "add_watch_persistent"
        raw.call(106, _jstr("/a/child") + struct.pack(">i", 0))

        proxy.label = "raw_get_data_watch"
        raw.call(4, _jstr("/a/child") + b"\x01")

        proxy.label = "remove_watches_data"
        raw.call(18, _jstr("/a/child") + struct.pack(">i", 2))

        proxy.label = "remove_watches_any"
        raw.call(18, _jstr("/a") + struct.pack(">i", 3))

        proxy.label = "remove_watches_no_watcher"
        raw.call(18, _jstr("/missing") + struct.pack(">i", 3))

        proxy.label = "raw_close"
        raw.close()

        proxy.label = "close_session"
        client.stop()
        time.sleep(0.3)
    finally:
        client.stop()
        client.close()
        proxy.close()
    return proxy.frames


# --------------------------------------------------------------------------
# behaviour facts


def _stat_dict(stat) -> dict:
    return {
        "czxid": stat.czxid, "mzxid": stat.mzxid, "ctime": stat.ctime, "mtime": stat.mtime,
        "version": stat.version, "cversion": stat.cversion, "aversion": stat.aversion,
        "ephemeralOwner": stat.ephemeralOwner, "dataLength": stat.dataLength,
        "numChildren": stat.numChildren, "pzxid": stat.pzxid,
    }


def _acl_list(acls) -> list[dict]:
    return [{"perms": a.perms, "scheme": a.id.scheme, "id": a.id.id} for a in acls]


def _replies(frames: list[dict]) -> list[dict]:
    return [
        {"xid": f["xid"], "zxid": f["zxid"], "zxid_hex": hex(f["zxid"]), "err": f["err"]}
        for f in frames
        if f["direction"] == "s2c" and f.get("kind") in ("reply", "notification")
    ]


def record_behaviour(srv) -> dict:
    facts: dict = {}
    facts["server_version"] = srv.four_letter("srvr").splitlines()[0]

    # (e) the initial tree, read before anything is written
    srvr_before = srv.four_letter("srvr")
    proxy = RecordingProxy(srv.address)
    client = KazooClient(proxy.address, timeout=10.0)
    client.start(timeout=15)
    try:
        nodes = {}
        for path in ("/", "/zookeeper", "/zookeeper/config", "/zookeeper/quota"):
            data, stat = client.get(path)
            nodes[path] = {
                "data_hex": data.hex(),
                "data_text": data.decode("utf-8", "replace"),
                "stat": _stat_dict(stat),
                "children": sorted(client.get_children(path)),
                "acl": _acl_list(client.get_acls(path)[0]),
            }
        connect_frames = [f for f in proxy.frames if f.get("kind") == "connect_response"]
        facts["e_initial_tree"] = {
            "summary": "Nodes on a fresh standalone server (one session created first).",
            "srvr_before_any_session": srvr_before,
            "nodes": nodes,
            "connect_response_hex": connect_frames[0]["hex"] if connect_frames else None,
        }

        # (a) sequential numbering
        steps = []

        def parent_state(note, name=None):
            stat = client.exists("/seq")
            steps.append({
                "step": note, "name": name, "children": sorted(client.get_children("/seq")),
                "parent_cversion": stat.cversion, "parent_pzxid": stat.pzxid,
                "parent_pzxid_hex": hex(stat.pzxid), "parent_numChildren": stat.numChildren,
            })

        client.create("/seq", b"")
        parent_state("create parent /seq")
        names = []
        for i in range(3):
            p = client.create("/seq/n-", b"%d" % i, sequence=True)
            names.append(p)
            parent_state("create sequential /seq/n- #%d" % (i + 1), p)
        client.delete(names[1])
        parent_state("delete middle %s" % names[1])
        p = client.create("/seq/n-", b"after-delete", sequence=True)
        parent_state("create sequential after delete", p)
        t = client.transaction()
        t.create("/seq/n-", b"in-failed-multi", sequence=True)
        t.check("/seq", 12345)
        results = t.commit()
        parent_state("failed multi [create sequential /seq/n-, check /seq version 12345]: %s"
                     % [type(r).__name__ if isinstance(r, Exception) else r for r in results])
        p = client.create("/seq/n-", b"after-failed-multi", sequence=True)
        parent_state("create sequential after failed multi", p)
        t = client.transaction()
        t.create("/seq/n-", b"in-ok-multi", sequence=True)
        t.create("/seq/n-", b"in-ok-multi-2", sequence=True)
        results = t.commit()
        parent_state("successful multi with two sequential creates: %s" % results)
        client.create("/seq/plain", b"")
        parent_state("create non-sequential child /seq/plain")
        p = client.create("/seq/n-", b"after-plain", sequence=True)
        parent_state("create sequential after plain child", p)
        client.set("/seq", b"data")
        parent_state("setData on the parent (not a child change)")
        client.delete("/seq/n-0000000003")
        client.delete("/seq/n-0000000004")
        parent_state("delete two children n-0000000003, n-0000000004")
        p = client.create("/seq/n-", b"after-two-deletes", sequence=True)
        parent_state("create sequential after two deletes", p)
        client.create("/seq/tmp", b"")
        client.delete("/seq/tmp")
        parent_state("create then delete plain child /seq/tmp")
        p = client.create("/seq/n-", b"after-tmp", sequence=True)
        parent_state("create sequential after create+delete of a plain child", p)
        p = client.create("/seq/e-", b"", sequence=True, ephemeral=True)
        parent_state("create ephemeral sequential with another prefix", p)
        facts["a_sequential_numbering"] = {"steps": steps}

        # (b) do failed writes advance the zxid?
        zsteps = []

        def op(label, fn):
            mark = proxy.mark()
            proxy.label = label
            outcome = "ok"
            try:
                fn()
            except Exception as exc:  # the errors are the point
                outcome = type(exc).__name__
            time.sleep(0.05)
            reps = [r for r in _replies(proxy.since(mark)) if r["xid"] >= 0]
            zsteps.append({"step": label, "outcome": outcome, "replies": reps})

        op("get /seq (baseline)", lambda: client.get("/seq"))
        op("create /b (ok)", lambda: client.create("/b", b"b"))
        op("get /b", lambda: client.get("/b"))
        op("create /b again (NodeExists)", lambda: client.create("/b", b"b"))
        op("get /b after NodeExists", lambda: client.get("/b"))
        op("set /b version 9 (BadVersion)", lambda: client.set("/b", b"z", version=9))
        op("get /b after BadVersion", lambda: client.get("/b"))
        op("delete /missing (NoNode)", lambda: client.delete("/missing"))
        op("get /b after NoNode delete", lambda: client.get("/b"))
        op("create /missing/child (NoNode parent)", lambda: client.create("/missing/child", b""))
        op("get /b after NoNode create", lambda: client.get("/b"))

        def failing_multi():
            t = client.transaction()
            t.create("/c", b"")
            t.check("/b", 99)
            t.commit()

        op("failed multi [create /c, check /b v99]", failing_multi)
        op("get /b after failed multi", lambda: client.get("/b"))
        op("exists /missing (read, NoNode)", lambda: client.exists("/missing"))
        op("set /b (ok)", lambda: client.set("/b", b"ok"))
        op("get /b after ok set", lambda: client.get("/b"))
        op("sync /", lambda: client.sync("/"))
        facts["b_failed_write_zxid"] = {"steps": zsteps, "srvr_after": srv.four_letter("srvr")}

        # (c) the zxid field of a watch notification
        fired = threading.Event()
        mark = proxy.mark()
        proxy.label = "watch"
        client.get("/b", watch=lambda e: fired.set())
        client.set("/b", b"watched")
        fired.wait(5)
        cfired = threading.Event()
        client.get_children("/b", watch=lambda e: cfired.set())
        client.create("/b/kid", b"")
        cfired.wait(5)
        time.sleep(0.2)
        frames = proxy.since(mark)
        facts["c_watch_notification_zxid"] = {
            "steps": "getData /b with watch; setData /b; getChildren /b with watch; create /b/kid",
            "frames": [
                {k: f.get(k) for k in ("direction", "kind", "xid", "op", "zxid", "err", "hex")}
                for f in frames
            ],
            "notification_zxids": [f["zxid"] for f in frames if f.get("kind") == "notification"],
        }

        # (d) the zxid of a ping reply
        mark = proxy.mark()
        proxy.label = "ping"
        last = client.get("/b")[1].mzxid
        deadline = time.monotonic() + 12
        pings = []
        while time.monotonic() < deadline and not pings:
            time.sleep(0.5)
            pings = [f for f in proxy.since(mark) if f.get("xid") == -2 and f["direction"] == "s2c"]
        srvr_now = srv.four_letter("srvr")
        facts["d_ping_reply_zxid"] = {
            "steps": "idle until Kazoo pings; compare with the last zxid (srvr)",
            "last_mzxid_of_b": last,
            "srvr": srvr_now,
            "ping_frames": [
                {k: f.get(k) for k in ("direction", "xid", "op", "zxid", "err", "hex")}
                for f in proxy.since(mark) if f.get("xid") == -2
            ],
        }

        # (f) four-letter words with one connected client holding watches
        client.exists("/b", watch=lambda e: None)
        client.get_children("/seq", watch=lambda e: None)
        time.sleep(0.2)
        words = ["ruok", "srvr", "stat", "conf", "envi", "mntr", "cons", "wchs",
                 "wchc", "wchp", "dump", "isro", "dirs", "crst", "srst", "gtmk"]
        outputs = {}
        for word in words:
            try:
                outputs[word] = srv.four_letter(word)
            except OSError as exc:
                outputs[word] = "<error %s>" % exc
        outputs["xyzw (unknown word)"] = srv.four_letter("xyzw")
        facts["f_four_letter_words"] = {
            "steps": "one Kazoo session (via proxy) with a data watch on /b and a child "
                     "watch on /seq; words sent on fresh connections in this order. Note: "
                     "on 3.8.0 wchs/wchc/wchp list only data watches (/b), not the "
                     "child watch on /seq",
            "outputs": outputs,
        }
    finally:
        client.stop()
        client.close()
        proxy.close()
    return facts


def summarise(frames: list[dict], facts: dict) -> dict:
    """Plain-language conclusions computed from the measurements."""
    out = {}
    a = facts["a_sequential_numbering"]["steps"]
    out["a"] = [("%s -> %s cversion=%d pzxid=%s" % (s["step"], s["name"], s["parent_cversion"],
                                                     s["parent_pzxid_hex"])) for s in a]
    b = facts["b_failed_write_zxid"]["steps"]
    out["b"] = ["%s: %s zxids=%s" % (s["step"], s["outcome"],
                                     [r["zxid_hex"] + "/err" + str(r["err"]) for r in s["replies"]])
                for s in b]
    out["c"] = facts["c_watch_notification_zxid"]["notification_zxids"]
    out["d"] = [p["zxid"] for p in facts["d_ping_reply_zxid"]["ping_frames"] if p["direction"] == "s2c"]

    # machine-checkable statements
    def zx(step):
        return next(st for st in b if st["step"] == step)["replies"][0]["zxid"]

    srvr = facts["d_ping_reply_zxid"]["srvr"]
    last_zxid = int(next(ln for ln in srvr.splitlines() if ln.startswith("Zxid:")).split()[1], 16)
    out["statements"] = {
        "failed_create_advances_zxid": zx("create /b again (NodeExists)") == zx("get /b") + 1,
        "failed_setdata_advances_zxid": zx("set /b version 9 (BadVersion)") == zx("get /b after NodeExists") + 1,
        "failed_multi_advances_zxid": zx("failed multi [create /c, check /b v99]") == zx("get /b after NoNode create") + 1,
        "failed_read_advances_zxid": zx("exists /missing (read, NoNode)") != zx("get /b after failed multi"),
        "read_reply_zxid_is_last_committed": zx("get /b after ok set") == zx("set /b (ok)"),
        "notification_zxids": sorted(set(out["c"])),
        "ping_reply_zxid_equals_last_zxid": bool(out["d"]) and all(z == last_zxid for z in out["d"]),
        "sequence_numbers": [st["name"] for st in a if st["name"]],
    }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out-dir", default=str(DATA_DIR))
    ap.add_argument("--server", default="zookeeper", help="server kind (default: zookeeper)")
    args = ap.parse_args(argv)
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    with server_from_name(args.server) as srv:
        frames = record_frames(srv)
    with server_from_name(args.server) as srv:
        facts = record_behaviour(srv)
    facts["settings"] = "standalone, zoo.cfg from zkpy.testing.launchers.DEFAULT_SETTINGS; Kazoo timeout 10s"
    facts["conclusions"] = summarise(frames, facts)

    (out_dir / "reference_frames.json").write_text(json.dumps(frames, indent=1) + "\n")
    (out_dir / "reference_behaviour.json").write_text(json.dumps(facts, indent=1) + "\n")
    labels = []
    for f in frames:
        if f["label"] not in labels:
            labels.append(f["label"])
    print("wrote %d frames (%d labels) and %d facts to %s"
          % (len(frames), len(labels), len(facts), out_dir))
    print(json.dumps(facts["conclusions"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
