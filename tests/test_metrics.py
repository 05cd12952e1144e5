"""ServerMetrics: ZooKeeper's summaries, sets and counters, recorded by the pipeline."""

from __future__ import annotations

import math
from collections import deque
from types import SimpleNamespace
from typing import Any

import pytest
from zk_harness import OPEN, T0, connected, frame, make_core

from zkpy.admin import fourletter, monitor
from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.net.disk import DiskTimes, record_batch
from zkpy.server.core import CoreSettings
from zkpy.server.host import PlainHost
from zkpy.server.metrics import WINDOW, NamespaceSet, ServerMetrics, Summary, SummarySet
from zkpy.server.quorum_metrics import QuorumFigures
from zkpy.testing.standalone import standalone
from zkpy.tree.java_hash import concurrent_map_order, java_string_hash
from zkpy.zab import messages as m
from zkpy.zab.events import FOLLOWING, LEADING, LOOKING, RoleChange


def mntr(core: Any, now: int = T0) -> dict[str, str]:
    conn = core.connect("127.0.0.1", 1, lambda b: None, lambda: None, now)
    text = fourletter.run(core, "mntr", conn)
    core.connection_lost(conn)
    return dict(line.split("\t", 1) for line in text.splitlines())


# -- summaries ------------------------------------------------------------------------


def test_summary_is_avg_min_max_count_sum_like_avgminmaxcounter() -> None:
    s = Summary("x")
    assert s.values() == [("avg_x", 0.0), ("min_x", 0), ("max_x", 0), ("cnt_x", 0),
                          ("sum_x", 0)]
    for v in (3, 1, 2):
        s.add(v)
    s.extend([10])
    assert dict(s.values()) == {"avg_x": 4.0, "min_x": 1, "max_x": 10, "cnt_x": 4, "sum_x": 16}
    s.add(0)
    assert dict(s.values())["avg_x"] == 3.2 and s.min == 0
    one_third = Summary("t")
    one_third.extend([1, 0, 0])
    assert dict(one_third.values())["avg_t"] == 0.3333  # rounded half up to 4 decimals


def test_percentiles_as_uniform_snapshot_rounded() -> None:
    s = Summary("lat", percentiles=True)
    s.extend(range(1, 101))  # 1..100
    v = dict(s.values())
    # pos = q * (n + 1): p50 -> 50.5 -> 50.5 -> 51 (Math.round); p95 -> 95.95 -> 96
    assert (v["p50_lat"], v["p95_lat"], v["p99_lat"], v["p999_lat"]) == (51, 96, 100, 100)
    assert list(v)[-4:] == ["p50_lat", "p95_lat", "p99_lat", "p999_lat"]
    assert s.quantiles([0.5, 0.9]) == [50.5, 90.9]
    assert all(math.isnan(q) for q in Summary("none").quantiles([0.5, 0.99]))


def test_window_keeps_the_latest_observations() -> None:
    s = Summary("w", percentiles=True)
    s.extend([1000] * WINDOW)
    s.fold()
    s.extend([1] * WINDOW)
    v = dict(s.values())
    assert v["cnt_w"] == 2 * WINDOW and v["max_w"] == 1000
    assert v["p999_w"] == 1  # only the latest WINDOW values decide the percentiles


def test_runs_count_as_repeated_observations() -> None:
    s = Summary("r", percentiles=True)
    s.add(5)
    s.add_repeated(0, 1_000_000)
    s.add_repeated(7, 0)  # nothing
    v = dict(s.values())
    assert (v["cnt_r"], v["sum_r"], v["min_r"], v["max_r"]) == (1_000_001, 5, 0, 5)
    assert v["p50_r"] == 0 and len(s.window) == WINDOW


def test_summary_set_names_and_reset_keeps_keys() -> None:
    qp = SummarySet("learner_handler_qp_size")
    qp.add("2", 3)
    qp.add("3", 1)
    assert dict(qp.get("2").values())["cnt_2_learner_handler_qp_size"] == 1
    qp.reset()
    assert set(qp.by_key) == {"2", "3"} and qp.get("3").count == 0


def test_namespace_sets_as_datatree_read_and_write_stats() -> None:
    reads = NamespaceSet("read_per_namespace", overhead=68)
    reads.note(("/app/x", 5))
    reads.note_cached(("/app", 0))
    reads.note(("/", 0))  # no namespace: not counted
    reads.note(("/zookeeper/quota", 0))
    reads.fold()
    assert sorted(reads.by_key) == ["app", "zookeeper"]
    app = reads.by_key["app"]
    assert (app.count, app.total) == (2, len("/app/x") + 5 + 68 + len("/app") + 68)
    assert reads.cache_lookups == 1


def test_a_namespace_set_folds_as_if_each_value_were_taken_in_turn() -> None:
    """Folding counts the (path, bytes) noted; what comes out is what taking
    every value in turn gives: count, sum, min, max, the last value, and each
    namespace's latest WINDOW values in order (the quantiles' window), also
    for a namespace seen only at the start of a long batch."""
    import random

    rng = random.Random(7)
    writes = NamespaceSet("write_per_namespace", overhead=0)
    noted = [("/rare/a", 3)]  # one write, long before the window's share
    for _ in range(3 * WINDOW):
        ns = rng.choice(["app", "app", "app", "cfg"])
        noted.append((f"/{ns}/k{rng.randrange(50)}", rng.choice([0, 10, 1024])))
    noted += [("/", 0), ("/cfg", 7)]
    for item in noted[:WINDOW]:  # two folds: what the first leaves counts on
        writes.note(item)
    writes.fold()
    for item in noted[WINDOW:]:
        writes.note(item)
    writes.fold()
    for ns in ("app", "cfg", "rare"):
        values = [len(p) + n for p, n in noted if p.split("/")[1] == ns]
        got = writes.by_key[ns]
        assert (got.count, got.total, got.min, got.max, got.last) == (
            len(values), sum(values), min(values), max(values), values[-1]), ns
        assert list(got.window) == values[-WINDOW:], ns
    assert sorted(writes.by_key) == ["app", "cfg", "rare"]


def test_a_namespace_set_folds_past_its_cache_starting_afresh(monkeypatch: Any) -> None:
    import zkpy.server.metrics as metrics_module

    monkeypatch.setattr(metrics_module, "NAMESPACE_CACHE", 4)
    writes = NamespaceSet("write_per_namespace", overhead=0)
    for i in range(10):
        writes.note((f"/n{i % 3}/k{i}", i))
    writes.fold()
    assert sorted(writes.by_key) == ["n0", "n1", "n2"]
    assert [writes.by_key[f"n{j}"].count for j in range(3)] == [4, 3, 3]
    assert list(writes.by_key["n0"].window) == [len(f"/n0/k{i}") + i for i in (0, 3, 6, 9)]


def test_java_hash_order_matches_what_zookeeper_printed() -> None:
    assert java_string_hash("hello") == 99162322
    assert concurrent_map_order(["w", "zookeeper"]) == ["zookeeper", "w"]
    assert concurrent_map_order(["3", "1"]) == ["1", "3"]
    # ServerMetrics' summary sets, in the order ZooKeeper 3.8's mntr printed them.
    order = monitor._SET_ORDER
    assert order.index("learner_handler_qp_size") < order.index("write_per_namespace")
    assert order.index("read_per_namespace") < order.index("write_per_namespace")
    assert order.index("write_per_namespace") < order.index("learner_handler_qp_time_ms")


# -- the pipeline records ---------------------------------------------------------------


def test_a_workload_shows_in_mntr() -> None:
    core = make_core(four_letter_words=frozenset({"*"}))
    fresh = mntr(core)
    assert fresh["zk_last_client_response_size"] == "-1"  # BufferStats before a response
    a = connected(core, port=40001)
    b = connected(core, port=40002)
    assert a.create("/app", b"abc") == 0
    b.get("/app", watch=True)
    b.exists("/app/new", watch=True)
    assert a.set("/app", b"defg") == 0
    assert a.create("/app/new") == 0
    a.get("/app")
    v = mntr(core)
    assert v["zk_cnt_updatelatency"] == "5"  # 2 createSession, create, setData, create
    assert v["zk_cnt_readlatency"] == "3"
    assert v["zk_cnt_node_changed_watch_count"] == "1"
    assert v["zk_cnt_node_created_watch_count"] == "1"
    assert v["zk_cnt_propagation_latency"] == "5"
    assert v["zk_connection_request_count"] == "2"
    assert v["zk_prep_processor_request_queued"] == "5"
    assert v["zk_outstanding_changes_queued"] == v["zk_outstanding_changes_removed"] != "0"
    assert v["zk_response_packet_cache_misses"] == "2"  # the getData replies
    assert int(v["zk_bytes_received_count"]) > 0 and int(v["zk_watch_bytes"]) > 0
    assert v["zk_cnt_app_write_per_namespace"] == "3"
    assert v["zk_sum_app_write_per_namespace"] == str(4 + 3 + 4 + 4 + 8)
    assert v["zk_cnt_app_read_per_namespace"] == "2"  # getData twice (exists found nothing)
    assert int(v["zk_max_client_response_size"]) >= int(v["zk_min_client_response_size"]) > 0
    assert int(v["zk_response_bytes"]) > 0
    # srst: ServerStats.reset and ServerMetrics.resetAll
    fourletter.run(core, "srst", None)
    after = mntr(core)
    assert after["zk_cnt_updatelatency"] == "0" and after["zk_connection_request_count"] == "0"
    assert after["zk_cnt_app_write_per_namespace"] == "0"  # the key stays, zeroed
    assert after["zk_znode_count"] == v["zk_znode_count"]  # gauges are no counters


def test_folding_visits_only_the_connections_that_answered() -> None:
    """A tick folds the latencies of connections that answered since the last
    fold, not of every connection (10,000 idle sessions must not hold it up),
    and loses none of them."""
    core = make_core(four_letter_words=frozenset({"*"}))
    busy, idle = connected(core, port=40001), connected(core, port=40002)
    core.fold_metrics()
    assert not core.unfolded
    busy.get("/")
    busy.get("/zookeeper")
    assert list(core.unfolded) == [busy.conn]
    core.fold_metrics()
    assert not core.unfolded and core.metrics.readlatency.count == 2
    assert busy.conn.latency_count == 3 and idle.conn.latency_count == 1  # + createSession


def test_request_latency_is_read_and_update_latency_together() -> None:
    core = make_core(four_letter_words=frozenset({"*"}))
    a = connected(core)
    disk = core.replica.driver.disk
    disk.hold()
    a.submit(Op.create, S.CreateRequest("/x", b"", OPEN, 0))
    a.submit(Op.getData, S.GetDataRequest("/x", False))  # waits behind the create
    core.replica.now = T0 + 7
    disk.release()  # the create is synced and committed 7 ms after both arrived
    v = mntr(core, T0 + 7)
    assert (v["zk_max_updatelatency"], v["zk_max_readlatency"]) == ("7", "7")
    assert v["zk_cnt_readlatency"] == "1" and v["zk_cnt_updatelatency"] == "2"
    assert v["zk_max_latency"] == "7" and v["zk_min_latency"] == "0"  # (createSession)
    assert v["zk_avg_latency"] == str(monitor.avg4(14, 3))


def test_prometheus_quantiles_are_finite_once_observed() -> None:
    prometheus = pytest.importorskip("zkpy.net.metrics")
    parser = pytest.importorskip("prometheus_client.parser")
    from prometheus_client.exposition import generate_latest

    core = make_core()
    a = connected(core)
    a.create("/p", b"1")
    a.get("/p")
    text = generate_latest(prometheus.make_registry(core, export_process_info=False)).decode()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in parser.text_string_to_metric_families(text) for s in f.samples}
    assert samples[("readlatency", (("quantile", "0.99"),))] == 0.0
    assert samples[("readlatency_count", ())] == 1.0
    assert math.isnan(samples[("fsynctime", (("quantile", "0.5"),))])  # the memory disk
    assert samples[("write_per_namespace_count", (("key", "p"),))] == 1.0
    assert ("write_per_namespace", (("key", "p"), ("quantile", "0.5"))) in samples


class TickingHost:
    """A host whose clock moves 1.5 ms every time it is read (otherwise a
    PlainHost; not a subclass: PlainHost may be compiled by mypyc)."""

    def __init__(self) -> None:
        self.plain = PlainHost()
        self.clock_ns = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.plain, name)  # everything but the clock

    def monotonic_ns(self) -> int:
        self.clock_ns += 1_500_000
        return self.clock_ns


def test_the_core_times_its_own_stages_on_the_hosts_clock() -> None:
    core = standalone(CoreSettings(), T0, host=TickingHost()).core
    a = connected(core)
    assert a.create("/t", b"1") == 0
    # Two requests in one read: the second waits behind the first (the clock
    # moves 1.5 ms between the read and the second's routing: 1 ms).
    a.send(frame(S.RequestHeader(10, Op.getData), S.GetDataRequest("/t", False))
           + frame(S.RequestHeader(11, Op.getData), S.GetDataRequest("/t", False)))
    core.fold_metrics()
    s = core.metrics.summary
    throttle = s["request_throttle_queue_time_ms"]
    throttle.fold()
    assert sorted(throttle.window) == [0, 0, 1]  # the create, then the two reads
    # Prep of createSession and of the create, each timed from its routing.
    prep = s["prep_process_time"]
    assert (prep.count, prep.min, prep.max) == (2, 1, 1)
    # Handing each turn's writes on to Zab (and the disk), timed per batch.
    handed = s["proposal_process_time"]
    assert handed.count == 2 and handed.min >= 1
    # Standalone: no commit processor; no queue before prep on any server.
    for name in ("prep_processor_queue_size", "read_final_proc_time_ms",
                 "commit_process_time"):
        assert s[name].count == 0, name
    assert core.metrics.proposal_count == 0  # (a leader's proposals only)


def test_a_members_reads_are_timed_in_the_final_stage() -> None:
    core = standalone(CoreSettings(), T0, host=TickingHost()).core
    core.metrics.mirror_reads = True  # (what QuorumFigures sets on a member)
    a = connected(core)
    a.create("/r", b"")
    a.get("/r")
    a.get("/r")
    core.fold_metrics()
    final = core.metrics.summary["read_final_proc_time_ms"]
    assert (final.count, final.total) == (2, 2)
    assert core.metrics.summary["read_commitproc_time_ms"].count == 2


def test_without_a_clock_the_stages_read_zero() -> None:
    core = make_core()  # PlainHost: a clock that never moves
    a = connected(core)
    a.create("/z", b"")
    core.fold_metrics()
    prep = core.metrics.summary["prep_process_time"]
    assert prep.count == 2 and prep.max == 0


# -- what the adapter measures ----------------------------------------------------------


def test_disk_batch_figures() -> None:
    metrics = ServerMetrics()
    times = DiskTimes(started=10.0, written=10.002, synced=10.0125,
                      queued=[(9.995, 2), (9.998, 1)])
    record_batch(metrics, times, fsynced=True)
    metrics.fold_all()
    s = metrics.summary
    assert (s["fsynctime"].count, s["fsynctime"].total) == (1, 10)
    assert s["sync_processor_batch_size"].values()[:4] == [
        ("avg_sync_processor_batch_size", 3.0), ("min_sync_processor_batch_size", 3),
        ("max_sync_processor_batch_size", 3), ("cnt_sync_processor_batch_size", 1)]
    queue = s["sync_processor_queue_time_ms"]
    queue.fold()
    assert sorted(queue.window) == [2, 5, 5]
    flush = s["sync_processor_queue_and_flush_time_ms"]
    flush.fold()
    assert sorted(flush.window) == [14, 17, 17]
    assert metrics.sync_processor_request_queued == 3
    # Writing the batch (before its fsync) took 2 ms: one observation per batch.
    assert (s["sync_process_time"].count, s["sync_process_time"].total) == (1, 2)
    record_batch(metrics, times, fsynced=False)  # forceSync=no: no fsync to time
    metrics.fold_all()
    assert s["fsynctime"].count == 1 and s["sync_processor_batch_size"].count == 2


# -- an ensemble member's figures --------------------------------------------------------


def test_election_sync_and_availability_times() -> None:
    metrics = ServerMetrics()
    fig = QuorumFigures(metrics, now=1000)
    assert metrics.looking_count == 1
    fig.role(RoleChange(FOLLOWING, 2, 1, False), 1300)  # elected: syncing with 2
    fig.role(RoleChange(FOLLOWING, 2, 1, True), 1350)  # synced
    metrics.fold_all()
    s = metrics.summary
    assert (s["election_time"].total, s["follower_sync_time"].total) == (300, 50)
    assert s["unavailable_time"].total == 350 and s["leader_unavailable_time"].count == 0
    fig.role(RoleChange(LOOKING, None, 1, False), 2000)
    fig.role(RoleChange(LEADING, 3, 2, False), 2100)
    fig.role(RoleChange(LEADING, 3, 2, True), 2400)
    metrics.fold_all()
    assert metrics.looking_count == 2
    assert s["leader_unavailable_time"].total == 400 and s["election_time"].count == 2


def test_learner_sees_proposals_and_commits() -> None:
    metrics = ServerMetrics()
    fig = QuorumFigures(metrics, now=0)
    hdr = S.TxnHeader(1, 1, 5, 1000, 1).encode()
    fig.received([S.QuorumPacket(m.PROPOSAL, 5, hdr + b"body", None)], 1004)
    fig.persisted(5, 1006)
    fig.received([S.QuorumPacket(m.COMMIT, 5, None, None)], 1009)
    metrics.fold_all()
    s = metrics.summary
    assert metrics.learner_proposal_received_count == metrics.learner_commit_received_count == 1
    assert s["proposal_latency"].total == 4
    assert s["proposal_ack_creation_latency"].total == 6
    assert s["commit_propagation_latency"].total == 9
    assert not fig.stamps  # its COMMIT came: the stamp is spent


def test_a_commit_for_a_run_counts_each_txn_it_commits() -> None:
    """A zkpy leader's COMMIT stands for every txn up to its zxid: each counts as
    a commit received, with its own propagation time; the next proposal's stamp
    waits for its own."""
    metrics = ServerMetrics()
    fig = QuorumFigures(metrics, now=0)
    for zxid, sent in ((5, 1000), (6, 1001), (7, 1003), (8, 1004)):
        hdr = S.TxnHeader(1, 1, zxid, sent, 1).encode()
        fig.received([S.QuorumPacket(m.PROPOSAL, zxid, hdr + b"body", None)], 1005)
    fig.received([S.QuorumPacket(m.COMMIT, 7, None, None)], 1010)
    metrics.fold_all()
    s = metrics.summary
    assert metrics.learner_commit_received_count == 3
    assert s["commit_propagation_latency"].count == 3
    assert s["commit_propagation_latency"].total == 10 + 9 + 7
    assert [z for z, _ in fig.stamps] == [8]
    fig.received([S.QuorumPacket(m.COMMIT, 8, None, None)], 1012)
    assert metrics.learner_commit_received_count == 4 and not fig.stamps


def test_a_learner_keeps_no_stamp_of_a_commit_that_came_without_commit() -> None:
    """A sync commits proposals without a COMMIT each (ZooKeeper's UPTODATE): the
    commit batch drops their stamps, and only theirs."""
    metrics = ServerMetrics()
    fig = QuorumFigures(metrics, now=0)
    for zxid in (5, 6, 7):
        hdr = S.TxnHeader(1, 1, zxid, 1000, 1).encode()
        fig.received([S.QuorumPacket(m.PROPOSAL, zxid, hdr + b"body", None)], 1004)
    reqs = [SimpleNamespace(created=0, session_id=1, conn=None,
                            hdr=SimpleNamespace(time=1000, zxid=z)) for z in (5, 6)]
    fig.committed([(r, False) for r in reqs], waited=[0, 0], took=[0, 0], batch_ms=0,
                  leading=False, now=1010, outstanding=0)
    assert [z for z, _ in fig.stamps] == [7]
    metrics.fold_all()
    s = metrics.summary
    assert s["server_write_committed_time_ms"].count == 2
    assert s["local_write_committed_time_ms"].count == s["write_commitproc_time_ms"].count == 0


def test_ack_creation_counts_each_proposal_once_when_its_sync_lands() -> None:
    """proposal_ack_creation_latency: a sync to zxid Z makes the proposals up to Z
    durable, each counted once, in order; refused proposals and those still in
    flight when the member goes LOOKING are never counted."""
    metrics = ServerMetrics()
    fig = QuorumFigures(metrics, now=0)
    fig.proposing([(1, 100), (2, 110), (3, 120)])
    fig.proposing([(4, 130), (5, 140)])
    fig.refused(1)  # 5 was not proposed after all
    fig.persisted(2, 150)  # 1 and 2: 50 and 40 ms
    fig.persisted(2, 160)  # nothing new
    fig.persisted(9, 170)  # 3 and 4: 50 and 40 ms (5 was refused)
    s = metrics.summary["proposal_ack_creation_latency"]
    metrics.fold_all()
    assert (s.count, s.total, s.min, s.max) == (4, 180, 40, 50)
    fig.proposing([(10, 200)])
    fig.role(RoleChange(LOOKING, None, 1, False), 210)
    fig.persisted(10, 220)
    metrics.fold_all()
    assert s.count == 4


def test_leader_counts_commits_syncs_and_learner_queues() -> None:
    metrics = ServerMetrics()
    fig = QuorumFigures(metrics, now=0)
    learners = {2: SimpleNamespace(phase="synced"), 3: SimpleNamespace(phase="info")}
    sends = [(2, S.QuorumPacket(m.PROPOSAL, 7, b"", None)),
             (2, S.QuorumPacket(m.COMMIT, 6, b"", None)),
             (3, S.QuorumPacket(m.DIFF, 6, None, None))]
    fig.sent(sends, learners)
    qp = metrics.sets["learner_handler_qp_size"]
    qp.fold()
    assert sorted(qp.get("2").window) == [0, 1] and list(qp.get("3").window) == [0]
    metrics.fold_all()
    assert metrics.diff_count == 1 and metrics.summary["inflight_diff_count"].total == 1
    req = SimpleNamespace(created=90, session_id=1, conn=None,
                          hdr=SimpleNamespace(time=95, zxid=7))
    fig.committed([(req, True)], waited=[2], took=[1], batch_ms=3, leading=True, now=100,
                  outstanding=1)
    metrics.fold_all()
    s = metrics.summary
    assert metrics.commit_count == 1 and metrics.request_commit_queued == 1
    assert s["quorum_ack_latency"].total == 5 and s["write_commitproc_time_ms"].total == 10
    assert s["requests_in_session_queue"].total == 1
    # The commit stage's times are the replica's measurements, as handed in.
    assert (s["local_write_committed_time_ms"].total, s["write_final_proc_time_ms"].total,
            s["commit_process_time"].total) == (2, 1, 3)
    assert s["server_write_committed_time_ms"].count == 0  # (it was our write)
    # No worker pool, no marker packets: nothing is recorded for them.
    assert s["time_waiting_empty_pool_in_commit_processor_read_ms"].count == 0
    qp_time = metrics.sets["learner_handler_qp_time_ms"].by_key  # keyed, never observed
    assert sorted(qp_time) == ["2", "3"] and all(v.count == 0 for v in qp_time.values())


def test_commit_stage_queues_as_the_sessions_held_them() -> None:
    metrics = ServerMetrics()
    fig = QuorumFigures(metrics, now=0)
    # Before this batch: 5 reads answered, 2 of them released behind this session's
    # write, 1 still waiting behind its next write.
    metrics.reads_answered, metrics.released_reads, metrics.reads_waiting = 5, 2, 1
    conn = SimpleNamespace(pending=deque([SimpleNamespace()]), released=2)
    req = SimpleNamespace(created=0, session_id=9, conn=conn, hdr=SimpleNamespace(time=0, zxid=1))
    fig.committed([(req, True)], waited=[0], took=[0], batch_ms=0, leading=False, now=10,
                  outstanding=2)
    metrics.fold_all()
    s = metrics.summary
    assert (s["read_commit_proc_issued"].total, s["read_commit_proc_req_queued"].total) == (5, 1)
    assert s["requests_in_session_queue"].total == 4  # the write, 2 released, 1 waiting
    assert s["reads_after_write_in_session_queue"].total == 2 and conn.released == 0
    assert s["reads_issued_from_session_queue"].total == 2
    assert s["session_queues_drained"].total == 0  # a write still waits there
    assert s["write_commit_proc_req_queued"].total == 2  # ours, before this commit


def test_commit_batches_fold_in_order_and_go_with_a_reset() -> None:
    """A batch's queue figures are noted as one tuple and folded later: every
    batch's values reach their summaries in the order the batches came, and a
    reset drops what was noted before it."""
    metrics = ServerMetrics()
    fig = QuorumFigures(metrics, now=0)

    def batch(n: int, batch_ms: int, outstanding: int) -> None:
        reqs = [(SimpleNamespace(created=0, session_id=i, conn=None,
                                 hdr=SimpleNamespace(time=0, zxid=i)), False)
                for i in range(n)]
        fig.committed(reqs, waited=[0] * n, took=[1] * n, batch_ms=batch_ms, leading=True,
                      now=5, outstanding=outstanding)

    batch(1, 4, 3)
    batch(3, 9, 2)
    metrics.fold_all()
    s = metrics.summary
    assert list(s["commit_process_time"].window) == [4, 9]
    assert list(s["write_batch_time_in_commit_processor"].window) == [4, 9]
    assert list(s["commit_commit_proc_req_queued"].window) == [1, 3]
    assert list(s["write_commit_proc_issued"].window) == [1, 3]
    assert list(s["write_commit_proc_req_queued"].window) == [3, 2]
    assert s["write_final_proc_time_ms"].count == 4 and metrics.commit_count == 4
    assert s["pending_session_queue_size"].count == 0  # none of them ours
    batch(2, 7, 1)
    metrics.reset()
    metrics.fold_all()
    assert s["commit_process_time"].count == 0 and s["commit_commit_proc_req_queued"].count == 0


def test_reads_waiting_behind_a_write_are_counted_until_answered_or_lost() -> None:
    core = make_core()
    a = connected(core)
    disk = core.replica.driver.disk
    disk.hold()
    a.submit(Op.create, S.CreateRequest("/q", b"", OPEN, 0))
    a.submit(Op.getData, S.GetDataRequest("/q", False))
    a.submit(Op.exists, S.ExistsRequest("/q", False))
    assert core.metrics.reads_waiting == 2
    disk.release()
    assert core.metrics.reads_waiting == 0 and core.metrics.released_reads == 2
    disk.hold()
    a.submit(Op.create, S.CreateRequest("/q2", b"", OPEN, 0))
    a.submit(Op.getData, S.GetDataRequest("/q2", False))
    assert core.metrics.reads_waiting == 1
    a.conn.lost()  # the client went away: that read is never answered
    assert core.metrics.reads_waiting == 0
