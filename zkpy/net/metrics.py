"""Prometheus metrics in ZooKeeper 3.8's names, read from the core on every scrape.

ZooKeeper's ``PrometheusMetricsProvider`` registers one Prometheus metric per
ZooKeeper metric: the gauges of ``ZooKeeperServer.registerMetrics`` (callbacks
sampled on scrape), the counters and summaries of ``ServerMetrics``, and some
labelled (``key``) gauge, counter and summary sets. This module describes the
same families and fills them from the numbers ``mntr`` reports
(``zkpy.admin.monitor.monitor_values``), so that the four-letter word, the
AdminServer's ``monitor`` command and ``/metrics`` never disagree.

Pure: no Twisted and no sockets; ``zkpy.net.adminserver`` serves the text.

Known differences from ZooKeeper's exposition (prometheus simpleclient 0.9.0):

* ZooKeeper's counters are exposed as ``untyped``: simpleclient 0.9.0 names a
  counter's sample exactly as the metric (``commit_count``), while the Python
  client insists on ``commit_count_total`` for anything typed ``counter``.
  Keeping the names dashboards query mattered more than the TYPE line.
* Summary quantiles are ``NaN`` (no observations): zkpy keeps no latency
  distributions. ``_count``/``_sum`` are mntr's ``cnt_``/``sum_`` values.
* ``exportJvmInfo`` exports the Python client's process/platform/gc
  collectors (``process_*`` as the JVM's, ``python_*`` instead of ``jvm_*``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CollectorRegistry, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from zkpy.admin import monitor

if TYPE_CHECKING:
    from zkpy.server.core import ServerCore

PROMETHEUS_PROVIDER = "org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider"
#: Providers that export nothing over HTTP (zkpy computes mntr itself either way).
PASSIVE_PROVIDERS = frozenset({
    "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider",
    "org.apache.zookeeper.metrics.impl.NullMetricsProvider",
})

#: ZooKeeperServer.registerMetrics: gauges sampled from the server on scrape, in its order.
GAUGES = (
    "avg_latency", "max_latency", "min_latency", "packets_received", "packets_sent",
    "num_alive_connections", "outstanding_requests", "uptime", "znode_count", "watch_count",
    "ephemerals_count", "approximate_data_size", "global_sessions", "local_sessions",
    "open_file_descriptor_count", "max_file_descriptor_count", "connection_drop_probability",
    "last_client_response_size", "max_client_response_size", "min_client_response_size",
    "outstanding_tls_handshake", "auth_failed_count", "non_mtls_remote_conn_count",
    "non_mtls_local_conn_count",
)
#: Labelled gauge sets (label ``key``: the quota'd namespace); zkpy reports no quotas.
GAUGE_SETS = (
    "quota_count_limit_per_namespace", "quota_bytes_limit_per_namespace",
    "quota_count_usage_per_namespace", "quota_bytes_usage_per_namespace",
)
#: ServerMetrics counters.
COUNTERS = tuple("""
    looking_count diff_count snap_count commit_count connection_request_count
    connection_rejected bytes_received_count unrecoverable_error_count
    add_dead_watcher_stall_time dead_watchers_queued dead_watchers_cleared
    response_packet_cache_hits response_packet_cache_misses
    response_packet_get_children_cache_hits response_packet_get_children_cache_misses
    ensemble_auth_success ensemble_auth_fail ensemble_auth_skip prep_processor_request_queued
    outstanding_changes_queued outstanding_changes_removed revalidate_count
    connection_drop_count connection_revalidate_count sessionless_connections_expired
    stale_sessions_expired request_commit_queued throttled_ops learner_proposal_received_count
    learner_commit_received_count sync_processor_request_queued proposal_count
    quit_leading_due_to_disloyal_voter stale_requests stale_requests_dropped stale_replies
    request_throttle_wait_count large_requests_rejected digest_mismatches_count
    unsuccessful_handshake insecure_admin_count tls_handshake_exceeded
    cnxn_closed_without_zk_server_running skip_learner_request_to_next_processor_count
    requests_not_forwarded_to_commit_processor response_bytes watch_bytes
""".split())
COUNTER_SETS = ("quota_exceeded_error_per_namespace",)
#: ServerMetrics summaries: BASIC ones carry the median, ADVANCED ones p50/p90/p99.
BASIC_SUMMARIES = tuple("""
    fsynctime snapshottime dbinittime follower_sync_time observer_sync_time election_time
    connection_token_deficit inflight_snap_count inflight_diff_count node_created_watch_count
    node_deleted_watch_count node_changed_watch_count node_children_watch_count
    prep_processor_queue_size prep_process_time proposal_process_time unavailable_time
    leader_unavailable_time requests_in_session_queue pending_session_queue_size
    reads_after_write_in_session_queue reads_issued_from_session_queue session_queues_drained
    time_waiting_empty_pool_in_commit_processor_read_ms write_batch_time_in_commit_processor
    concurrent_request_processing_in_commit_processor read_commit_proc_req_queued
    write_commit_proc_req_queued commit_commit_proc_req_queued read_commit_proc_issued
    write_commit_proc_issued commit_process_time startup_txns_loaded startup_txns_load_time
    startup_snap_load_time sync_processor_queue_size sync_process_time sync_processor_batch_size
    netty_queued_buffer_capacity learner_request_processor_queue_size socket_closing_time
""".split())
ADVANCED_SUMMARIES = tuple("""
    readlatency updatelatency propagation_latency dead_watchers_cleaner_latency
    prep_processor_queue_time_ms close_session_prep_time read_commitproc_time_ms
    write_commitproc_time_ms local_write_committed_time_ms server_write_committed_time_ms
    om_proposal_process_time_ms om_commit_process_time_ms read_final_proc_time_ms
    write_final_proc_time_ms proposal_latency proposal_ack_creation_latency
    commit_propagation_latency sync_processor_queue_and_flush_time_ms
    sync_processor_queue_time_ms sync_processor_queue_flush_time_ms quorum_ack_latency
    jvm_pause_time_ms
""".split())
#: Labelled summary sets and their detail level.
SUMMARY_SETS = (
    ("write_per_namespace", False), ("read_per_namespace", False),
    ("learner_handler_qp_size", False), ("learner_handler_qp_time_ms", True),
    ("ack_latency", True),
)
BASIC_QUANTILES = ("0.5",)
ADVANCED_QUANTILES = ("0.5", "0.9", "0.99")


class ZooKeeperCollector(Collector):
    """A prometheus_client collector answering from ``core`` at scrape time.

    ``clock`` (wall milliseconds), when given, advances ``core.now`` first so
    that ``uptime`` is current even when no client has spoken for a while, as
    a four-letter word's arrival would.
    """

    def __init__(self, core: ServerCore, clock: Callable[[], int] | None = None) -> None:
        self.core = core
        self.clock = clock

    def describe(self) -> Iterable[Metric]:
        """The families without samples (registration and ``name[]`` filtering need names)."""
        for names, mtype in ((GAUGES + GAUGE_SETS, "gauge"), (COUNTERS + COUNTER_SETS, "unknown"),
                             (BASIC_SUMMARIES + ADVANCED_SUMMARIES
                              + tuple(n for n, _ in SUMMARY_SETS), "summary")):
            for name in names:
                yield Metric(name, name, mtype)

    def collect(self) -> Iterator[Metric]:
        if self.clock is not None:
            self.core.at(self.clock())
        values = dict(monitor.monitor_values(self.core))
        for name in GAUGES:
            if name not in values:  # e.g. no file descriptor counts on this platform
                continue
            metric = Metric(name, name, "gauge")
            metric.add_sample(name, {}, float(values[name]))
            yield metric
        for name in GAUGE_SETS:
            yield Metric(name, name, "gauge")
        for name in COUNTERS:
            metric = Metric(name, name, "unknown")
            metric.add_sample(name, {}, float(values.get(name, 0)))
            yield metric
        for name in COUNTER_SETS:
            yield Metric(name, name, "unknown")
        for name in BASIC_SUMMARIES:
            yield _summary(name, BASIC_QUANTILES, values)
        for name in ADVANCED_SUMMARIES:
            yield _summary(name, ADVANCED_QUANTILES, values)
        for name, _advanced in SUMMARY_SETS:
            yield Metric(name, name, "summary")


def _summary(name: str, quantiles: tuple[str, ...], values: dict[str, Any]) -> Metric:
    metric = Metric(name, name, "summary")
    count = values.get(f"cnt_{name}", 0)
    for q in quantiles:
        # ZooKeeper's CKMS quantiles are NaN until something is observed; zkpy observes nothing.
        metric.add_sample(name, {"quantile": q}, math.nan)
    metric.add_sample(f"{name}_count", {}, float(count))
    metric.add_sample(f"{name}_sum", {}, float(values.get(f"sum_{name}", 0)))
    return metric


def make_registry(core: ServerCore, export_process_info: bool = True,
                  clock: Callable[[], int] | None = None) -> CollectorRegistry:
    """A registry of ZooKeeper's metrics for ``core`` (plus process/platform info)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ZooKeeperCollector(core, clock))
    if export_process_info:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def provider_settings(config: dict[str, str]) -> tuple[str, int, bool]:
    """(httpHost, httpPort, exportJvmInfo) from ``metricsProvider.*`` settings."""
    host = config.get("httpHost", "0.0.0.0")
    port = int(config.get("httpPort", "7000"))
    export = config.get("exportJvmInfo", "true").strip().lower() == "true"
    return host, port, export
