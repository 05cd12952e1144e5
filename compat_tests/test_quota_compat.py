"""Quotas on zkpy and on Apache ZooKeeper 3.8, side by side.

The same Kazoo sequence (zkCli's way of setting quotas, then creates, sets,
deletes, hard-limit failures, a restart) runs against both servers started
with ``-Dzookeeper.enforceQuota=true``; the zookeeper_stats/zookeeper_limits
data, the stats node's Stat, the errors and the "Quota exceeded" warnings in
the server logs must agree. Then zkCli's setquota/listquota/delquota run
against both and their outputs are compared.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from zkpy.testing.launchers import (
    ApacheZooKeeperServer,
    BaseServer,
    ZkpyServer,
    find_apache_zookeeper,
)

INSTALL, REASON = find_apache_zookeeper()
ZKCLI = "/usr/share/zookeeper/bin/zkCli.sh"
PROPS = {"zookeeper.enforceQuota": "true"}

pytestmark = [
    pytest.mark.reference,
    pytest.mark.skipif(INSTALL is None, reason="Apache ZooKeeper unavailable: %s" % REASON),
]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, BaseServer]]:
    pair: dict[str, BaseServer] = {
        "zkpy": ZkpyServer(system_properties=PROPS),
        "zookeeper": ApacheZooKeeperServer(system_properties=PROPS),
    }
    try:
        for srv in pair.values():
            srv.start(timeout=60)
        yield pair
    finally:
        for srv in pair.values():
            srv.cleanup()


def _client(srv: BaseServer) -> Any:
    from kazoo.client import KazooClient

    client = KazooClient(srv.connect_string, timeout=10)
    client.start(timeout=20)
    return client


def _setquota(client: Any, path: str, limits: bytes) -> None:
    """What zkCli's SetQuotaCommand.createQuota sends for a new quota."""
    quota = "/zookeeper/quota"
    for part in path.strip("/").split("/"):
        quota += "/" + part
        if client.exists(quota) is None:
            client.create(quota, None)
    client.create(quota + "/zookeeper_limits", limits)
    client.create(quota + "/zookeeper_stats", b"count=0,bytes=0")


def _quota_state(client: Any, path: str) -> tuple[Any, ...]:
    limits, _ = client.get(f"/zookeeper/quota{path}/zookeeper_limits")
    stats, st = client.get(f"/zookeeper/quota{path}/zookeeper_stats")
    # In place: no version bump, mzxid stays at the create, length follows the text.
    return limits, stats, st.version, st.dataLength, st.mzxid == st.czxid, st.mtime == st.ctime


def _outcome(fn: Callable[[], Any]) -> str:
    try:
        fn()
        return "ok"
    except Exception as e:  # the Kazoo exception class is the comparable part
        return type(e).__name__


def _multi(client: Any, *ops: tuple[str, str, bytes]) -> None:
    """A transaction; the failing op's error (not the rolled-back ones) is raised."""
    txn = client.transaction()
    for method, path, data in ops:
        getattr(txn, method)(path, data)
    errors = [r for r in txn.commit() if isinstance(r, Exception)]
    errors.sort(key=lambda e: type(e).__name__ == "RolledBackError")
    if errors:
        raise errors[0]


def _sequence(srv: BaseServer) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    c = _client(srv)
    other = _client(srv)
    try:
        def step(label: str, fn: Callable[[], Any], *roots: str) -> None:
            out.append((label, _outcome(fn), *[_quota_state(c, r) for r in roots]))

        # Hard limits on /qh.
        c.create("/qh", b"hello")
        c.create("/qh/x", b"12")
        step("setquota -N 4 -B 20", lambda: _setquota(
            c, "/qh", b"count=-1,bytes=-1=;byteHardLimit=20;countHardLimit=4"), "/qh")
        step("create y", lambda: c.create("/qh/y", b"abc"), "/qh")
        step("create z", lambda: c.create("/qh/z"), "/qh")
        step("create w over count", lambda: c.create("/qh/w"), "/qh")
        step("create seq over count", lambda: c.create("/qh/s-", sequence=True), "/qh")
        step("set x over bytes", lambda: c.set("/qh/x", b"x" * 20), "/qh")
        step("set x bad version over bytes", lambda: c.set("/qh/x", b"x" * 20, version=9), "/qh")
        step("set x bad version", lambda: c.set("/qh/x", b"1", version=9), "/qh")
        step("set x shrink", lambda: c.set("/qh/x", b"1"), "/qh")
        step("delete y", lambda: c.delete("/qh/y"), "/qh")
        step("create w", lambda: c.create("/qh/w", b"0123456789"), "/qh")
        step("create w/deep over count", lambda: c.create("/qh/w/deep"), "/qh")
        step("raise limits", lambda: c.set(
            "/zookeeper/quota/qh/zookeeper_limits",
            b"count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=10"), "/qh")
        step("ephemeral", lambda: other.create("/qh/e", b"eph", ephemeral=True), "/qh")
        step("close session", lambda: (other.stop(), other.close()), "/qh")
        step("multi", lambda: _multi(c, ("create", "/qh/m1", b"1"), ("create", "/qh/m2", b"22"),
                                     ("set_data", "/qh/x", b"333")), "/qh")

        # Soft limits on /qs: writes go through, the server logs a warning.
        c.create("/qs")
        step("setquota -n 2 -b 5", lambda: _setquota(c, "/qs", b"count=2,bytes=5"), "/qs")
        step("soft create a", lambda: c.create("/qs/a", b"1234"), "/qs")
        step("soft create b", lambda: c.create("/qs/b"), "/qs")
        step("soft set b", lambda: c.set("/qs/b", b"12"), "/qs")

        # Nested roots: the longest prefix takes the update.
        c.create("/qn")
        c.create("/qn/in", b"ab")
        c.create("/qn/in/leaf", b"cde")
        step("outer", lambda: _setquota(c, "/qn", b"count=10,bytes=-1"), "/qn")
        step("inner", lambda: _setquota(c, "/qn/in", b"count=-1,bytes=-1=;byteHardLimit=6;"
                                        b"countHardLimit=-1"), "/qn", "/qn/in")
        step("create under inner", lambda: c.create("/qn/in/x", b"f"), "/qn", "/qn/in")
        step("inner over bytes", lambda: c.create("/qn/in/y", b"gh"), "/qn", "/qn/in")
        # The first op adds no bytes (not checked), the second is over the inner limit.
        step("multi over inner bytes", lambda: _multi(c, ("create", "/qn/in/m", b""),
                                                      ("create", "/qn/in/y", b"gh")),
             "/qn", "/qn/in")
        step("create under outer", lambda: c.create("/qn/o", b"zz"), "/qn", "/qn/in")
        step("drop inner", lambda: (c.delete("/zookeeper/quota/qn/in/zookeeper_stats"),
                                    c.delete("/zookeeper/quota/qn/in/zookeeper_limits")), "/qn")
        step("now counted by outer", lambda: c.create("/qn/in/y", b"gh"), "/qn")
    finally:
        c.stop()
        c.close()
        if other.connected:
            other.stop()
            other.close()
    return out


def _warnings(srv: BaseServer) -> list[str]:
    return re.findall(r"Message:(Quota exceeded: [^\]]*\]) Value:null", srv.log_text())


def test_kazoo_sequence_matches_the_reference(servers: dict[str, BaseServer]) -> None:
    got = {name: _sequence(srv) for name, srv in servers.items()}
    assert len(got["zkpy"]) == len(got["zookeeper"])
    for mine, ref in zip(got["zkpy"], got["zookeeper"], strict=True):
        assert mine == ref
    # The soft-limit (and hard-limit) warnings, in order, as ZooKeeper logs them.
    warned = {name: _warnings(srv) for name, srv in servers.items()}
    assert warned["zkpy"] == warned["zookeeper"]
    assert "Quota exceeded: /qs [current count=3, softCountLimit=2]" in warned["zkpy"]


def test_restart_keeps_quotas(servers: dict[str, BaseServer]) -> None:
    got: dict[str, list[Any]] = {}
    for name, srv in servers.items():
        c = _client(srv)
        try:
            c.create("/qr", b"abc")
            c.create("/qr/a", b"de")
            _setquota(c, "/qr", b"count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=3")
            before = _quota_state(c, "/qr")
        finally:
            c.stop()
            c.close()
        srv.restart(timeout=60)
        c = _client(srv)
        try:
            after = _quota_state(c, "/qr")
            outcomes = [_outcome(lambda c=c, p=p, d=d: c.create(p, d))
                        for p, d in (("/qr/b", b"f"), ("/qr/c", b""))]
            got[name] = [before, after, outcomes, _quota_state(c, "/qr")]
        finally:
            c.stop()
            c.close()
    assert got["zkpy"] == got["zookeeper"]
    assert got["zkpy"][2] == ["ok", "QuotaExceededError"]


# -- zkCli ---------------------------------------------------------------------

_CLI_NOISE = ("Connecting to ", "WATCHER::", "WatchedEvent state:")


def _zkcli(srv: BaseServer, *args: str) -> tuple[int, str, str]:
    env = dict(os.environ)
    env.setdefault("CLIENT_JVMFLAGS", "-Xmx256m")
    proc = subprocess.run([ZKCLI, "-server", srv.connect_string, *args], capture_output=True,
                          text=True, timeout=90, env=env)
    # The connection banner and the watcher thread's lines (printed whenever the
    # session event arrives, sometimes after the command's own output) are noise.
    out = "\n".join(line for line in proc.stdout.splitlines()
                    if line.strip() and not line.startswith(_CLI_NOISE))
    err = "\n".join(line for line in proc.stderr.splitlines()
                    if line.strip() and not line.startswith("SLF4J:"))
    return proc.returncode, out, err


@pytest.mark.skipif(not os.access(ZKCLI, os.X_OK), reason=f"{ZKCLI} not installed")
def test_zkcli_setquota_listquota_delquota(servers: dict[str, BaseServer]) -> None:
    commands: list[tuple[str, ...]] = [
        ("setquota", "-n", "5", "/c"),
        ("listquota", "/c"),
        ("setquota", "-N", "3", "/c"),
        ("setquota", "-B", "4", "/c"),
        ("listquota", "/c"),
        ("create", "/c/x", "12345"),
        ("listquota", "/c"),
        ("create", "/c/y"),
        ("create", "/c/z"),
        ("listquota", "/c"),
        ("setquota", "-n", "2", "/c/x"),
        ("setquota", "-n", "2", "/nosuch"),
        ("setquota", "-n", "0", "/c"),
        ("delquota", "-N", "/c"),
        ("listquota", "/c"),
        ("create", "/c/z"),
        ("listquota", "/c"),
        ("delquota", "/c"),
        ("listquota", "/c"),
        ("delquota", "/c"),
        ("ls", "/zookeeper/quota"),
    ]
    transcripts: dict[str, list[tuple[Any, ...]]] = {}
    for name, srv in servers.items():
        c = _client(srv)
        try:
            c.create("/c", b"hello")
        finally:
            c.stop()
            c.close()
        transcripts[name] = [(cmd, *_zkcli(srv, *cmd)) for cmd in commands]
    for mine, ref in zip(transcripts["zkpy"], transcripts["zookeeper"], strict=True):
        assert mine == ref
    listed = [t for t in transcripts["zkpy"] if t[0] == ("listquota", "/c")]
    assert "Output quota for /c count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=-1" in listed[0][2]
    assert "Output stat for /c count=1,bytes=5" in listed[0][2]
    assert "quota for /c does not exist." in listed[-1][3]
