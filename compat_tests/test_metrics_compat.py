"""Real metrics: after the same client workload, what Apache ZooKeeper 3.8 reports
non-zero in ``mntr``, zkpy reports non-zero too; and Prometheus summaries that
observed something have finite quantiles.

One standalone server and one 3-server ensemble of each kind get the same
workload (creates, reads, watches that fire, a multi, a sync, deletes, an
ephemeral, a second client that comes and goes), through the standalone
server and through a follower of the ensemble. Then ``mntr`` of the
standalone server, the ensemble's leader and that follower are compared key
by key, under these rules (each exception says why):

* A summary whose values the workload alone fixes (``WORKLOAD_SUMMARIES``:
  watchers reached, bytes per namespace, transactions loaded) is compared on
  every statistic.
* Any other summary (times in milliseconds, queue lengths, batch sizes) is
  compared by its ``cnt_`` only: both servers must have measured the same
  stage as often, but what a clock read, or how many requests happened to be
  queued together, is timing, which never decides a test.
* Per-learner keys are named by server id: they are compared in id order.
* ``JVM_ONLY`` and ``ZOOKEEPER_ONLY`` list the keys ZooKeeper makes non-zero
  with something zkpy does not have, and ``NO_SUCH_STAGE`` the summaries of
  stages zkpy's pipeline does not have (zkpy records nothing for them rather
  than a made-up 0), each with the reason; ``EITHER`` and ``RACES`` the keys
  that timing decides on both.
"""

from __future__ import annotations

import json
import math
import re
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from kazoo.client import KazooClient

from zkpy.server.metrics import SUMMARIES, SUMMARY_SETS
from zkpy.testing.ensemble import Ensemble
from zkpy.testing.launchers import find_apache_zookeeper, free_port, server_from_name

INSTALL, REASON = find_apache_zookeeper()
pytestmark = pytest.mark.skipif(INSTALL is None,
                                reason="Apache ZooKeeper unavailable: %s" % REASON)

PROMETHEUS = "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider"

#: Summaries whose values the workload fixes (compared on every statistic).
WORKLOAD_SUMMARIES = frozenset("""
    node_created_watch_count node_deleted_watch_count node_changed_watch_count
    node_children_watch_count startup_txns_loaded write_per_namespace read_per_namespace
""".split())

#: Non-zero on ZooKeeper because it runs on a JVM (or on Netty); zero after this
#: workload on ZooKeeper's defaults too (open/max file descriptors are the
#: process's own on both).
JVM_ONLY: dict[str, str] = {
    **{f"{stat}_jvm_pause_time_ms": "JvmPauseMonitor (jvm.pause.monitor): GC pauses"
       for stat in ("avg", "min", "max", "cnt", "sum", "p50", "p95", "p99", "p999")},
    **{f"{stat}_netty_queued_buffer_capacity": "NettyServerCnxn's outgoing buffer"
       for stat in ("avg", "min", "max", "cnt", "sum")},
}

#: Non-zero on ZooKeeper because of something ZooKeeper does that zkpy does not.
ZOOKEEPER_ONLY: dict[str, str] = {
    "leader:cnt_snapshottime": "ZooKeeperServer.loadData writes a snapshot when a leader "
                               "starts its epoch; zkpy's leader snapshots after snapCount "
                               "commits only",
}


#: Summaries of stages ZooKeeper has and zkpy does not: empty on zkpy.
NO_SUCH_STAGE: dict[str, str] = {
    "prep_processor_queue_size": "zkpy prepares a write in the call that read it: no "
                                 "queue in front of PrepRequestProcessor",
    "learner_request_processor_queue_size": "a follower forwards a write in the call that "
                                            "read it: no FollowerRequestProcessor queue",
    "time_waiting_empty_pool_in_commit_processor_read_ms": "zkpy answers a read in the call "
                                                           "that takes it: no worker pool "
                                                           "to wait for before commits",
    "concurrent_request_processing_in_commit_processor": "ZooKeeper's CommitProcessor "
                                                         "counts the reads its worker pool "
                                                         "still runs when a commit comes "
                                                         "(0 or more, as threads race); "
                                                         "zkpy has no pool",
    "learner_handler_qp_time_ms": "a learner's packets go to its connection in the turn "
                                  "that made them: no LearnerHandler queue to time "
                                  "marker packets through",
}


#: Keys of which any one non-zero will do: which of DIFF or SNAP a joining learner
#: gets depends on what it had logged when it connected, which is timing.
EITHER = {
    "zk_snap_count": ("zk_snap_count", "zk_diff_count"),
    "zk_diff_count": ("zk_snap_count", "zk_diff_count"),
    "zk_cnt_inflight_snap_count": ("zk_cnt_inflight_snap_count", "zk_cnt_inflight_diff_count"),
    "zk_cnt_inflight_diff_count": ("zk_cnt_inflight_snap_count", "zk_cnt_inflight_diff_count"),
}


#: Keys a race decides, on either server: not compared.
RACES = {
    "zk_connection_drop_count": "a client that closes its socket right after its "
                                "closeSession reply may or may not beat the server's close",
}


#: The same, for one role only.
ROLE_RACES = {
    "follower:zk_cnt_snapshottime": "a follower stores a snapshot when it synced by SNAP "
                                    "(ZooKeeper's takeSnapshot, zkpy's stored SNAP), and "
                                    "whether it gets a SNAP or a DIFF is timing (EITHER)",
}


def _zero(value: str | None) -> bool:
    return value in (None, "0", "0.0", "-1")


def workload(hosts: str) -> KazooClient:
    """The same client work on either kind of server; returns the client, still open."""
    c = KazooClient(hosts=hosts)
    c.start(timeout=30)
    c2 = KazooClient(hosts=hosts)
    c2.start(timeout=30)
    c.ensure_path("/w")
    for i in range(30):
        c.create(f"/w/n{i}", b"x" * 100)
    events: list[Any] = []
    for i in range(10):
        c2.get(f"/w/n{i}", watch=events.append)
        c2.exists(f"/w/n{i}", watch=events.append)
    c2.get_children("/w", watch=events.append)
    c2.exists("/w/new", watch=events.append)
    for i in range(30):
        c.set(f"/w/n{i}", b"y" * 200)
        c.get(f"/w/n{i}")
        c.exists(f"/w/n{i}")
    c.create("/w/new", b"")
    c.create("/w/e", b"", ephemeral=True)
    t = c.transaction()
    t.create("/w/m1", b"1")
    t.set_data("/w/n1", b"z")
    t.commit()
    c.sync("/w")
    c.get_children("/w")
    for i in range(15):
        c.delete(f"/w/n{i}")
    c2.get_acls("/w")
    deadline = time.monotonic() + 10
    while len(events) < 22 and time.monotonic() < deadline:  # every watch fired
        time.sleep(0.05)
    c2.stop()
    c2.close()
    c.sync("/w")  # the close of c2's session is applied everywhere
    return c


def mntr(text: str) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in text.splitlines() if "\t" in line)


def _learner_ids_in_order(values: dict[str, str]) -> dict[str, str]:
    """Per-learner keys renamed by the learners' order (L0, L1), not their ids."""
    ids = sorted({int(m.group(1)) for k in values
                  if (m := re.match(r"zk_\w+?_(\d+)_learner_handler", k))})
    out = {}
    for key, value in values.items():
        for n, sid in enumerate(ids):
            key = key.replace(f"_{sid}_learner_handler", f"_L{n}_learner_handler")
        out[key] = value
    return out


def _summary_of(key: str) -> tuple[str, str] | None:
    """(statistic, summary name) of a summary's mntr key; None for other keys."""
    m = re.match(r"zk_(avg|min|max|cnt|sum|p50|p95|p99|p999)_(.+)$", key)
    if m is None:
        return None
    stat, name = m.groups()
    for set_name in SUMMARY_SETS:
        if name.endswith("_" + set_name):
            return stat, set_name
    return (stat, name) if name in SUMMARIES else None


def must_be_nonzero(role: str, key: str) -> bool:
    """Whether a key ZooKeeper reports non-zero must be non-zero on zkpy too."""
    bare = key[3:]
    if bare in JVM_ONLY or f"{role}:{bare}" in ZOOKEEPER_ONLY:
        return False
    summary = _summary_of(key)
    if summary is None:
        return True
    stat, name = summary
    if name in NO_SUCH_STAGE:
        return False
    if stat == "cnt":
        return True
    return name in WORKLOAD_SUMMARIES


@pytest.fixture(scope="module")
def reports() -> Iterator[dict[str, dict[str, dict[str, str]]]]:
    """{kind: {role: mntr}} after the workload, and each zkpy server's /metrics text."""
    out: dict[str, dict[str, Any]] = {}
    started: list[Any] = []
    try:
        for kind in ("zookeeper", "zkpy"):
            out[kind] = roles = {}
            settings = {"4lw.commands.whitelist": "*"}
            if kind == "zkpy":
                settings.update(_prometheus_settings(free_port()))
            srv = server_from_name(kind, settings=settings)
            started.append(srv)
            srv.start(timeout=60)
            client = workload(srv.connect_string)
            roles["standalone"] = mntr(srv.four_letter("mntr"))
            roles["standalone/metrics"] = _scrape(srv.settings)
            client.stop()
            client.close()

            ens = Ensemble(kind, 3)
            started.append(ens)
            if kind == "zkpy":
                for member in ens.members:
                    member.server.settings.update(_prometheus_settings(free_port()))
            leader = ens.start(timeout=60)
            follower = ens.followers()[0]
            client = workload(follower.connect_string)
            roles["leader"] = _learner_ids_in_order(mntr(leader.four_letter("mntr")))
            roles["follower"] = mntr(follower.four_letter("mntr"))
            roles["leader/metrics"] = _scrape(leader.server.settings)
            roles["follower/metrics"] = _scrape(follower.server.settings)
            client.stop()
            client.close()
        yield out
    finally:
        for thing in started:
            thing.cleanup()


def _prometheus_settings(port: int) -> dict[str, object]:
    return {"metricsProvider.className": PROMETHEUS, "metricsProvider.httpHost": "127.0.0.1",
            "metricsProvider.httpPort": port, "metricsProvider.exportJvmInfo": "false"}


def _scrape(settings: dict[str, object]) -> str | None:
    if settings.get("metricsProvider.className") != PROMETHEUS:
        return None
    url = f"http://127.0.0.1:{settings['metricsProvider.httpPort']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as r:
        text: str = r.read().decode()
        return text


@pytest.mark.parametrize("role", ["standalone", "leader", "follower"])
def test_what_zookeeper_computes_zkpy_computes(reports, role) -> None:
    ref, ours = reports["zookeeper"][role], reports["zkpy"][role]
    missing = []
    for key, value in ref.items():
        if (_zero(value) or key in RACES or f"{role}:{key}" in ROLE_RACES
                or not must_be_nonzero(role, key)):
            continue
        if all(_zero(ours.get(k)) for k in EITHER.get(key, (key,))):
            missing.append(f"{key} (ZooKeeper: {value}, zkpy: {ours.get(key)})")
    assert not missing, f"{len(missing)} keys non-zero on ZooKeeper only:\n" + "\n".join(
        missing)


@pytest.mark.parametrize("role", ["standalone", "leader", "follower"])
def test_workload_figures_agree_where_both_count_the_same_thing(reports, role) -> None:
    """Figures fixed by the workload, not by timing, are equal where both servers
    count the same thing the same way."""
    ref, ours = reports["zookeeper"][role], reports["zkpy"][role]
    same = ["zk_cnt_node_changed_watch_count", "zk_sum_node_changed_watch_count",
            "zk_cnt_node_created_watch_count", "zk_cnt_node_children_watch_count",
            "zk_sum_w_write_per_namespace", "zk_cnt_w_write_per_namespace",
            "zk_ephemerals_count", "zk_znode_count", "zk_watch_bytes"]
    if role != "leader":
        same += ["zk_cnt_updatelatency", "zk_sum_w_read_per_namespace",
                 "zk_cnt_w_read_per_namespace", "zk_response_packet_cache_misses"]
    if role == "follower":
        same += ["zk_learner_proposal_received_count", "zk_learner_commit_received_count"]
    if role == "leader":
        same += ["zk_proposal_count", "zk_commit_count", "zk_cnt_quorum_ack_latency"]
    assert {k: ours.get(k) for k in same} == {k: ref.get(k) for k in same}


@pytest.mark.parametrize("role", ["standalone", "leader", "follower"])
def test_prometheus_summaries_with_observations_have_finite_quantiles(reports, role) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = reports["zkpy"][f"{role}/metrics"]
    observed = 0
    for family in text_string_to_metric_families(text):
        if family.type != "summary":
            continue
        by_labels: dict[str, dict[str, float]] = {}
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "quantile"}
            entry = by_labels.setdefault(json.dumps(labels, sort_keys=True), {})
            if "quantile" in sample.labels:
                entry[sample.labels["quantile"]] = sample.value
            elif sample.name.endswith("_count"):
                entry["count"] = sample.value
        for labels, entry in by_labels.items():
            quantiles = [v for k, v in entry.items() if k != "count"]
            assert quantiles, (family.name, labels)
            if entry.get("count", 0) > 0:
                observed += 1
                assert all(math.isfinite(q) for q in quantiles), (family.name, labels, entry)
            else:  # nothing observed: NaN, as simpleclient's CKMS quantiles
                assert all(math.isnan(q) for q in quantiles), (family.name, labels, entry)
    assert observed >= 15, observed
