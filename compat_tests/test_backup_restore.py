"""Online backup and restore (ZooKeeper 3.9's AdminServer ``snapshot`` and ``restore``,
and ``zkpy backup``/``zkpy restore``), held to Apache ZooKeeper 3.8's data directory:

* a snapshot streamed from a running zkpy, under a write load, is the state after
  exactly its ``last_zxid``, and restores into a fresh zkpy (online) and into a
  ZooKeeper 3.8 data directory (ZooKeeper started on it) with every znode, Stat and
  ACL equal;
* the other way round: a ZooKeeper 3.8 data directory, backed up offline, restores
  into a fresh zkpy with every znode, Stat and ACL equal;
* the commands' auth (ALL on ``/``), rate limit and feature flags, as in 3.9.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from kazoo.client import KazooClient
from kazoo.security import ACL, Id, make_digest_acl

from zkpy.auth.acl import digest
from zkpy.testing.launchers import ZkpyServer, find_apache_zookeeper, free_port, server_from_name

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
SUPER = "super:secret"
SUPER_PROPS = {"zookeeper.DigestAuthenticationProvider.superDigest": digest(SUPER)}
AUTH = f"digest {SUPER}"
HAVE_ZK = find_apache_zookeeper()[0] is not None
needs_zookeeper = pytest.mark.skipif(not HAVE_ZK, reason="Apache ZooKeeper is not installed")


def start(kind: str = "zkpy", workdir: Path | None = None, **settings: object) -> Any:
    """A server with the super user and (zkpy) its AdminServer on a free port."""
    admin = free_port()
    base: dict[str, object] = {"admin.enableServer": "true", "admin.serverAddress": "127.0.0.1",
                               "admin.serverPort": admin}
    if kind != "zkpy":  # ZooKeeper 3.8 has no snapshot/restore commands
        base = {}
    base.update(settings)
    srv = server_from_name(kind, settings=base, system_properties=SUPER_PROPS,
                           workdir=workdir)
    srv.admin_port = admin
    srv.start(timeout=60)
    return srv


def client(srv: Any) -> KazooClient:
    c = KazooClient(hosts=srv.connect_string, auth_data=[("digest", SUPER)])
    c.start(timeout=30)
    return c


def populate(c: KazooClient) -> None:
    """Every kind of Stat and ACL a tree holds: versions, cversions, deletions, ACLs."""
    c.create("/app/config", b"v1", makepath=True)
    for i in range(3):
        c.set("/app/config", f"v{i + 2}".encode())
    c.create("/app/binary", bytes(range(256)))
    c.create("/app/empty")
    for _ in range(4):
        c.create("/app/queue/item-", b"x", sequence=True, makepath=True)
    c.delete("/app/queue/" + sorted(c.get_children("/app/queue"))[0])
    c.create("/secure", b"only for alice",
             acl=[make_digest_acl("alice", "pw", all=True), ACL(1, Id("world", "anyone"))])
    c.create("/by-ip", b"local", acl=[ACL(31, Id("ip", "127.0.0.1"))])
    c.create("/readonly", b"r", acl=[ACL(1, Id("world", "anyone"))])
    c.set_acls("/app/empty", [ACL(31, Id("world", "anyone"))])  # aversion 1


def dump(c: KazooClient) -> dict[str, tuple[Any, ...]]:
    """path -> (data, Stat, ACL) for the whole tree (asked a level at a time, pipelined)."""
    out: dict[str, tuple[Any, ...]] = {}
    level = ["/"]
    while level:
        gets = [(p, c.get_async(p), c.get_acls_async(p), c.get_children_async(p))
                for p in level]
        level = []
        for path, got, acl, children in gets:
            data, stat = got.get(timeout=60)
            acls, _ = acl.get(timeout=60)
            out[path] = (data, tuple(stat),
                         sorted((a.perms, a.id.scheme, a.id.id) for a in acls))
            level += [path.rstrip("/") + "/" + ch for ch in children.get(timeout=60)]
    return out


def http(url: str, auth: str | None = None, body: bytes | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if auth:
        req.add_header("Authorization", auth)
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def zkpy_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zkpy", *args], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=300)


def at_zxid(tree: dict[str, tuple[Any, ...]], zxid: int) -> dict[str, tuple[Any, ...]]:
    """The /load subtree as it was at ``zxid``: children created after it dropped."""
    return {p: v for p, v in tree.items() if not p.startswith("/load/") or v[1][0] <= zxid}


def test_snapshot_under_load_restores_into_zkpy_and_zookeeper(tmp_path: Path) -> None:
    source = start()
    fresh = start()
    servers = [source, fresh]
    try:
        c = client(source)
        populate(c)
        # Enough znodes that the snapshot's walk takes several slices of 2000, with the
        # writer's creates landing between them: the log replay is what makes it whole.
        c.create("/bulk")
        for batch in range(0, 5000, 500):
            for r in [c.create_async(f"/bulk/b{i}", b"b") for i in range(batch, batch + 500)]:
                r.get(timeout=60)
        c.create("/load")
        stop = threading.Event()
        created: list[str] = []

        def writer() -> None:
            w = client(source)
            while not stop.is_set() and len(created) < 3000:
                created.append(w.create("/load/n-", b"w", sequence=True))
            w.stop()

        thread = threading.Thread(target=writer)
        thread.start()
        while len(created) < 50:  # the snapshot is taken while writes go on
            thread.join(0.05)
        backup = zkpy_cli("backup", f"127.0.0.1:{source.admin_port}", "--auth", AUTH,
                          "-o", "backup.snap", cwd=tmp_path)
        stop.set()
        thread.join()
        assert backup.returncode == 0, backup.stderr
        zxid = int(backup.stdout.split("last zxid ")[1], 16)
        everything = dump(c)
        c.stop()
        expected = at_zxid(everything, zxid)
        loaded = [p for p in expected if p.startswith("/load/")]
        assert 0 < len(loaded) < len(created)  # writes landed before and after the snapshot
        restored = zkpy_cli("restore", "backup.snap", f"127.0.0.1:{fresh.admin_port}",
                            "--auth", AUTH, cwd=tmp_path)
        assert restored.returncode == 0, restored.stderr
        r = client(fresh)
        got = dump(r)
        r.stop()
        load_stat = got.pop("/load")[1]  # Kazoo's ZnodeStat: numChildren, pzxid last
        assert load_stat[9] == len(loaded) and load_stat[10] <= zxid
        expected.pop("/load")
        assert got == expected
        if HAVE_ZK:
            _into_zookeeper(tmp_path, zxid, got, servers)
    finally:
        for srv in servers:
            srv.cleanup()


def _into_zookeeper(tmp_path: Path, zxid: int, want: dict[str, tuple[Any, ...]],
                    servers: list[Any]) -> None:
    workdir = tmp_path / "zookeeper"
    placed = zkpy_cli("restore", "backup.snap", "--data-dir", str(workdir / "data"),
                      "--zxid", hex(zxid), cwd=tmp_path)
    assert placed.returncode == 0, placed.stderr
    zk = start("zookeeper", workdir=workdir)
    servers.append(zk)
    z = client(zk)
    got = dump(z)
    z.stop()
    got.pop("/load")
    assert got == want


@needs_zookeeper
def test_zookeeper_data_dir_restores_into_zkpy(tmp_path: Path) -> None:
    zk = start("zookeeper")
    fresh = start()
    try:
        z = client(zk)
        populate(z)
        want = dump(z)
        z.stop()
        zk.stop()
        backup = zkpy_cli("backup", "--data-dir", str(zk.data_dir), "-o", "zk.snap",
                          cwd=tmp_path)
        assert backup.returncode == 0, backup.stderr
        restored = zkpy_cli("restore", "zk.snap", f"127.0.0.1:{fresh.admin_port}", "--auth",
                            AUTH, cwd=tmp_path)
        assert restored.returncode == 0, restored.stderr
        c = client(fresh)
        assert dump(c) == want
        c.stop()
    finally:
        zk.cleanup()
        fresh.cleanup()


def test_commands_need_all_on_root_and_are_rate_limited() -> None:
    srv = start(**{"admin.rateLimiterIntervalInMS": "600000"})
    try:
        c = client(srv)
        c.create("/x", b"1")
        c.set_acls("/", [make_digest_acl("admin", "pw", all=True), ACL(1, Id("world",
                                                                          "anyone"))])
        c.stop()
        url = f"http://127.0.0.1:{srv.admin_port}/commands"
        cases = [(None, 401, "Auth info is missing for the command"),
                 ("nosuchscheme x", 401, "Not authenticated"),
                 ("digest eve:pw", 403, "Not authorized"),
                 ("ip", 403, "Not authorized")]
        for header, status, error in cases:
            code, _, body = http(url + "/snapshot", header)
            assert (code, json.loads(body)) == (status, {"command": "snapshot", "error": error})
        code, headers, body = http(url + "/snapshot", "digest admin:pw")
        assert code == 200 and headers["content-type"] == "application/octet-stream"
        assert int(headers["snapshot_size"]) == len(body)
        assert headers["last_zxid"].startswith("0x") and len(headers["last_zxid"]) == 18
        code, _, _ = http(url + "/restore", "digest eve:pw", body)
        assert code == 403
        code, _, answer = http(url + "/restore", "digest admin:pw", body)
        assert code == 200 and json.loads(answer)["error"] is None
        code, _, _ = http(url + "/restore", "digest admin:pw", body)
        assert code == 429  # one restore per rateLimiterIntervalInMS
    finally:
        srv.cleanup()


def test_disabled_commands_and_restore_on_a_member(tmp_path: Path) -> None:
    srv = start(**{"admin.snapshot.enabled": "false"})
    member_dir = tmp_path / "member"
    (member_dir / "data").mkdir(parents=True)
    (member_dir / "data" / "myid").write_text("1\n")
    member = ZkpyServer(settings={"admin.enableServer": "true",
                                  "admin.serverAddress": "127.0.0.1",
                                  "admin.serverPort": free_port(), "standaloneEnabled": "false",
                                  "server.1": f"127.0.0.1:{free_port()}:{free_port()}"},
                        system_properties=SUPER_PROPS, workdir=member_dir)
    try:
        code, _, _ = http(f"http://127.0.0.1:{srv.admin_port}/commands/snapshot", AUTH)
        assert code == 503
        member.start(timeout=60)
        url = f"http://127.0.0.1:{member.settings['admin.serverPort']}/commands"
        code, _, body = http(url + "/snapshot", AUTH)
        assert code == 200  # any member can be backed up
        code, _, answer = http(url + "/restore", AUTH, body)
        assert code == 500 and "standalone server only" in json.loads(answer)["error"]
    finally:
        srv.cleanup()
        member.cleanup()
