"""Quotas (zkpy.tree.quota) through Prep + DataTree and ServerCore, as ZooKeeper 3.8 keeps them."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from zkpy.auth.acl import AuthProviders
from zkpy.config import parse_config_text
from zkpy.jute import schema as S
from zkpy.jute.protocol import Err, Op, Perms
from zkpy.server.core import CoreSettings, ServerCore
from zkpy.server.prep import Prep, Request
from zkpy.server.quota_check import QuotaGuard
from zkpy.storage.snapshot import load_snapshot, write_tree
from zkpy.tree.datatree import DataTree
from zkpy.tree.quota import StatsTrack, limit_path, stat_path

OPEN = [S.ACL(Perms.ALL, S.Id("world", "anyone"))]


class Env:
    def __init__(self, enforce: bool = False) -> None:
        self.tree = DataTree()
        self.prep = Prep(self.tree, AuthProviders())
        self.prep.quota.enable(enforce)
        self.zxid = 0

    def prepare(self, op: int, body: Any) -> Request:
        self.zxid += 1
        req = Request(0x100, self.zxid, op, body, [])
        self.prep.prepare(req, self.zxid, 1_000_000 + self.zxid)
        return req

    def apply(self, req: Request) -> Any:
        rc = self.tree.apply(req.hdr, req.txn)
        self.prep.applied(req.hdr.zxid)
        return rc

    def run(self, op: int, body: Any) -> int:
        return int(self.apply(self.prepare(op, body)).err)

    def create(self, path: str, data: bytes | None = b"") -> int:
        return self.run(Op.create, S.CreateRequest(path, data, OPEN, 0))

    def set(self, path: str, data: bytes) -> int:
        return self.run(Op.setData, S.SetDataRequest(path, data, -1))

    def delete(self, path: str) -> int:
        return self.run(Op.delete, S.DeleteRequest(path, -1))

    def setquota(self, path: str, limits: str) -> None:
        """What zkCli's setquota does: the quota path's parents, limits, then stats."""
        prefix = "/zookeeper/quota"
        for part in path.strip("/").split("/"):
            prefix += "/" + part
            if self.tree.get(prefix) is None:
                assert self.create(prefix, None) == 0
        assert self.create(limit_path(path), limits.encode()) == 0
        assert self.create(stat_path(path), b"count=0,bytes=0") == 0

    def stats(self, path: str) -> str:
        node = self.tree.get(stat_path(path))
        assert node is not None and node.data is not None
        return node.data.decode()


# -- StatsTrack --------------------------------------------------------------

def test_statstrack_prints_like_zookeeper() -> None:
    assert str(StatsTrack()) == "count=-1,bytes=-1"
    st = StatsTrack({"count": 5, "bytes": -1, "countHardLimit": -1, "byteHardLimit": -1})
    # zkCli 3.8's setquota -n 5 writes exactly this.
    assert str(st) == "count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=-1"


@pytest.mark.parametrize("text, values", [
    ("count=5,bytes=-1", {"count": 5, "bytes": -1}),
    ("count=5,bytes=-1=;byteHardLimit=-1;countHardLimit=3",
     {"count": 5, "bytes": -1, "byteHardLimit": -1, "countHardLimit": 3}),
    ("", {}),
    ("count=1,,;bytes=2", {"count": 1, "bytes": 2}),
    ("count==7", {"count": -1}),  # an empty value reads as -1
])
def test_statstrack_parses_like_zookeeper(text: str, values: dict[str, int]) -> None:
    assert StatsTrack.parse(text.encode()).values == values


@pytest.mark.parametrize("text", ["count", "count=", ",count=1", "count=x", "count= 1",
                                  "count=99999999999999999999"])
def test_statstrack_rejects_what_java_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        StatsTrack.parse(text)


# -- the tree keeps the stats ------------------------------------------------

def test_stats_initialised_from_the_existing_subtree() -> None:
    env = Env()
    env.create("/q", b"hello")
    env.create("/q/a", b"xy")
    env.create("/q/a/b")
    env.create("/other", b"12345")
    env.setquota("/q", "count=5,bytes=-1")
    # The quota root counts itself; bytes are the data lengths.
    assert env.stats("/q") == "count=3,bytes=7"
    stat_node = env.tree.get(stat_path("/q"))
    assert stat_node is not None
    assert env.tree.quota.roots == {"/q"}


def test_counts_and_bytes_follow_creates_sets_and_deletes() -> None:
    env = Env()
    env.create("/q", b"hello")
    env.setquota("/q", "count=5,bytes=-1")
    assert env.stats("/q") == "count=1,bytes=5"
    stat_node = env.tree.get(stat_path("/q"))
    assert stat_node is not None
    before = stat_node.stat()
    env.create("/q/a", b"abc")
    assert env.stats("/q") == "count=2,bytes=8"
    env.set("/q/a", b"a")
    assert env.stats("/q") == "count=2,bytes=6"
    env.set("/q", b"")
    assert env.stats("/q") == "count=2,bytes=1"
    env.create("/q/a/b", None)
    assert env.stats("/q") == "count=3,bytes=1"
    env.delete("/q/a/b")
    env.delete("/q/a")
    assert env.stats("/q") == "count=1,bytes=0"
    # Outside the quota: nothing changes.
    env.create("/qq", b"zzz")
    env.create("/other", b"zzz")
    assert env.stats("/q") == "count=1,bytes=0"
    # Updated in place, as DataTree.updateQuotaStat: no version/mzxid/mtime bump.
    after = stat_node.stat()
    assert (after.version, after.mzxid, after.mtime) == (before.version, before.mzxid, before.mtime)
    assert after.dataLength == len(b"count=1,bytes=0")


def test_nested_quota_roots_count_at_the_longest_prefix() -> None:
    env = Env()
    env.create("/q")
    env.create("/q/sub", b"12")
    env.create("/q/sub/x", b"345")
    env.setquota("/q", "count=10,bytes=-1")
    assert env.stats("/q") == "count=3,bytes=5"
    env.setquota("/q/sub", "count=10,bytes=-1")
    # The inner quota counts its own subtree; the outer one is not recomputed.
    assert env.stats("/q/sub") == "count=2,bytes=5"
    assert env.stats("/q") == "count=3,bytes=5"
    env.create("/q/sub/y", b"6789")
    assert env.stats("/q/sub") == "count=3,bytes=9"
    assert env.stats("/q") == "count=3,bytes=5"
    env.create("/q/z", b"0")
    assert env.stats("/q") == "count=4,bytes=6"
    # Deleting the inner limits node hands the subtree back to the outer quota.
    env.delete(stat_path("/q/sub"))
    env.delete(limit_path("/q/sub"))
    assert env.tree.quota.roots == {"/q"}
    env.create("/q/sub/w", b"ab")
    assert env.stats("/q") == "count=5,bytes=8"


def test_ephemerals_removed_at_session_close_update_the_stats() -> None:
    env = Env()
    env.create("/q")
    env.setquota("/q", "count=10,bytes=-1")
    env.run(Op.create, S.CreateRequest("/q/e", b"1234", OPEN, 1))  # ephemeral of 0x100
    assert env.stats("/q") == "count=2,bytes=4"
    env.run(Op.closeSession, None)
    assert env.stats("/q") == "count=1,bytes=0"


def test_snapshot_load_recomputes_stats_and_registers_quotas(tmp_path: Any) -> None:
    env = Env()
    env.create("/q", b"hello")
    env.create("/q/a", b"xy")
    env.setquota("/q", "count=5,bytes=-1")
    stat_node = env.tree.get(stat_path("/q"))
    assert stat_node is not None
    stat_node.data = b"count=99,bytes=99"  # a stale value in the snapshot
    snap = str(tmp_path / "snapshot.a")
    write_tree(snap, env.tree, {}, fsync=False)
    tree, _, _ = load_snapshot(snap)
    node = tree.get(stat_path("/q"))
    assert node is not None and node.data == b"count=2,bytes=7"
    assert tree.quota.roots == {"/q"}
    # And the loaded tree keeps counting.
    env2 = Env()
    env2.tree = env2.prep.tree = tree
    env2.zxid = 100
    env2.create("/q/b", b"123")
    assert env2.stats("/q") == "count=3,bytes=10"


# -- prep: soft and hard limits ----------------------------------------------

def test_soft_limit_logs_zookeepers_warning_and_lets_the_write_through(
        caplog: pytest.LogCaptureFixture) -> None:
    env = Env(enforce=True)
    env.create("/q")
    env.setquota("/q", "count=2,bytes=4")
    env.create("/q/a")
    with caplog.at_level(logging.WARNING):
        assert env.create("/q/b") == 0
        assert env.set("/q/b", b"12345") == 0
    messages = [r.getMessage() for r in caplog.records]
    assert "Message:Quota exceeded: /q [current count=3, softCountLimit=2] Value:null" in messages
    assert "Message:Quota exceeded: /q [current bytes=5, softByteLimit=4] Value:null" in messages
    assert env.stats("/q") == "count=3,bytes=5"


def test_no_warning_without_enforce_quota(caplog: pytest.LogCaptureFixture) -> None:
    # ZooKeeper 3.8 only checks (and warns) in ZooKeeperServer.checkQuota, which
    # returns at once unless zookeeper.enforceQuota is true.
    env = Env(enforce=False)
    env.create("/q")
    env.setquota("/q", "count=1,bytes=-1=;byteHardLimit=1;countHardLimit=1")
    with caplog.at_level(logging.WARNING):
        assert env.create("/q/a", b"123") == 0
    assert not [r for r in caplog.records if "Quota exceeded" in r.getMessage()]
    assert env.stats("/q") == "count=2,bytes=3"


def test_hard_count_limit_fails_the_create() -> None:
    env = Env(enforce=True)
    env.create("/q")
    env.setquota("/q", "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=2")
    assert env.create("/q/a") == 0
    req = env.prepare(Op.create, S.CreateRequest("/q/b", b"", OPEN, 0))
    assert req.hdr.type == Op.error and req.txn.err == Err.QUOTAEXCEEDED == -125
    env.apply(req)
    assert env.tree.get("/q/b") is None
    assert env.stats("/q") == "count=2,bytes=0"
    # setData that adds no node is still allowed; deletes always are.
    assert env.set("/q/a", b"x") == 0
    assert env.delete("/q/a") == 0
    assert env.create("/q/b") == 0


def test_hard_byte_limit_fails_set_data_before_the_version_check() -> None:
    env = Env(enforce=True)
    env.create("/q", b"12")
    env.setquota("/q", "count=-1,bytes=-1=;byteHardLimit=5;countHardLimit=-1")
    assert env.create("/q/a", b"123") == 0  # exactly at the limit
    assert env.run(Op.setData, S.SetDataRequest("/q/a", b"1234", 7)) == Err.QUOTAEXCEEDED
    assert env.run(Op.setData, S.SetDataRequest("/q/a", b"12", 7)) == Err.BADVERSION
    assert env.create("/q/b", b"x") == Err.QUOTAEXCEEDED
    assert env.create("/q/c", b"") == 0  # no bytes added: not checked
    assert env.stats("/q") == "count=3,bytes=5"


def test_hard_limit_wins_over_soft_limit() -> None:
    env = Env(enforce=True)
    env.create("/q")
    env.setquota("/q", "count=1,bytes=-1=;byteHardLimit=-1;countHardLimit=3")
    assert env.create("/q/a") == 0  # over the soft limit, under the hard one
    assert env.create("/q/b") == 0
    assert env.create("/q/c") == Err.QUOTAEXCEEDED


def test_hard_limit_not_enforced_when_off() -> None:
    env = Env(enforce=False)
    env.create("/q")
    env.setquota("/q", "count=-1,bytes=-1=;byteHardLimit=2;countHardLimit=1")
    assert env.create("/q/a", b"1234") == 0
    assert env.set("/q/a", b"123456") == 0
    assert env.stats("/q") == "count=2,bytes=6"


def test_hard_limit_counts_writes_still_in_flight() -> None:
    env = Env(enforce=True)
    env.create("/q")
    env.setquota("/q", "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=3")
    first = env.prepare(Op.create, S.CreateRequest("/q/a", b"", OPEN, 0))
    second = env.prepare(Op.create, S.CreateRequest("/q/b", b"", OPEN, 0))
    third = env.prepare(Op.create, S.CreateRequest("/q/c", b"", OPEN, 0))
    assert (first.hdr.type, second.hdr.type, third.hdr.type) == (Op.create, Op.create, Op.error)
    assert third.txn.err == Err.QUOTAEXCEEDED
    for req in (first, second, third):
        env.apply(req)
    assert env.stats("/q") == "count=3,bytes=0"


def test_hard_limit_inside_a_multi() -> None:
    env = Env(enforce=True)
    env.create("/q")
    env.setquota("/q", "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=2")
    ops = [(Op.create, S.CreateRequest("/q/a", b"", OPEN, 0)),
           (Op.create, S.CreateRequest("/q/b", b"", OPEN, 0))]
    rc = env.apply(env.prepare(Op.multi, ops))
    assert rc.err == Err.QUOTAEXCEEDED
    assert [r.err for r in rc.multi] == [0, Err.QUOTAEXCEEDED]
    assert env.tree.get("/q/a") is None
    assert env.stats("/q") == "count=1,bytes=0"


def test_limits_set_in_flight_apply_to_later_writes() -> None:
    env = Env(enforce=True)
    env.create("/q")
    env.setquota("/q", "count=-1,bytes=-1")
    change = env.prepare(Op.setData, S.SetDataRequest(
        limit_path("/q"), b"count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=1", -1))
    blocked = env.prepare(Op.create, S.CreateRequest("/q/a", b"", OPEN, 0))
    assert blocked.txn.err == Err.QUOTAEXCEEDED
    env.apply(change)
    env.apply(blocked)


def test_malformed_limits_are_a_marshalling_error() -> None:
    env = Env(enforce=True)
    env.create("/q")
    env.setquota("/q", "count=oops")
    assert env.create("/q/a") == Err.MARSHALLINGERROR


def test_quota_nodes_themselves_are_not_counted() -> None:
    env = Env(enforce=True)
    env.create("/q")
    env.setquota("/q", "count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=1")
    # Rewriting the limits (delquota -N does a setData) is outside the quota.
    assert env.set(limit_path("/q"), b"count=-1,bytes=-1=;byteHardLimit=-1;countHardLimit=-1") == 0
    assert env.create("/q/a") == 0
    assert env.stats("/q") == "count=2,bytes=0"


# -- settings ------------------------------------------------------------------

def test_enforce_quota_from_properties_and_zoo_cfg(tmp_path: Any) -> None:
    from zkpy.__main__ import settings_from

    base = f"dataDir={tmp_path}\nclientPort=2181\n"
    assert not settings_from(parse_config_text(base)).enforce_quota
    assert settings_from(parse_config_text(base, {"zookeeper.enforceQuota": "true"})).enforce_quota
    assert settings_from(parse_config_text(base, {"zookeeper.enforceQuota": "TRUE"})).enforce_quota
    assert not settings_from(parse_config_text(base, {"zookeeper.enforceQuota": "yes"})).enforce_quota
    assert settings_from(parse_config_text(base + "enforceQuota=true\n")).enforce_quota


def test_server_core_enforces_when_configured() -> None:
    core = ServerCore(CoreSettings(enforce_quota=True), 0)
    assert core.prep.quota.enforce
    assert not ServerCore(CoreSettings(), 0).prep.quota.enforce
    assert not QuotaGuard().enforce
