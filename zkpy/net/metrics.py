"""Prometheus metrics in ZooKeeper 3.8's names, read from the core on every scrape.

ZooKeeper's ``PrometheusMetricsProvider`` registers one Prometheus metric per
ZooKeeper metric: the gauges of ``ZooKeeperServer.registerMetrics`` (callbacks
sampled on scrape), the counters and summaries of ``ServerMetrics``, and some
labelled (``key``) gauge, counter and summary sets. This module describes the
same families and fills them from the numbers ``mntr`` reports
(``zkpy.admin.monitor.monitor_values`` for gauges and counters, the core's
``zkpy.server.metrics.ServerMetrics`` for summaries and summary sets, whose
keys become the ``key`` label: a namespace, a learner's id), so that the
four-letter word, the AdminServer's ``monitor`` command and ``/metrics``
never disagree.

Pure: no Twisted and no sockets; ``zkpy.net.adminserver`` serves the text.

Known differences from ZooKeeper's exposition (prometheus simpleclient 0.9.0):

* ZooKeeper's counters are exposed as ``untyped``: simpleclient 0.9.0 names a
  counter's sample exactly as the metric (``commit_count``), while the Python
  client insists on ``commit_count_total`` for anything typed ``counter``.
  Keeping the names dashboards query mattered more than the TYPE line.
* Summary quantiles come from the summary's window of its latest observations
  (``zkpy.server.metrics``), ``NaN`` while it has none, as simpleclient's CKMS
  quantiles over a ten-minute window; ``_count``/``_sum`` are mntr's
  ``cnt_``/``sum_`` values, so ``srst`` resets them too (ZooKeeper's
  Prometheus summaries ignore ``srst``).
* ``exportJvmInfo`` exports the Python client's process/platform/gc
  collectors (``process_*`` as the JVM's, ``python_*`` instead of ``jvm_*``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CollectorRegistry, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from zkpy.admin import monitor
from zkpy.server import metrics as server_metrics
from zkpy.server.metrics import Summary

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
#: Gauges a quorum member registers as it takes a role (LeaderZooKeeperServer's,
#: QuorumZooKeeperServer's quorum_size): exported while mntr has them.
ROLE_GAUGES = (
    "learners", "synced_followers", "synced_non_voting_followers", "synced_observers",
    "pending_syncs", "leader_uptime", "last_proposal_size", "max_proposal_size",
    "min_proposal_size", "quorum_size",
)
#: Labelled gauge sets (label ``key``: the quota'd namespace); zkpy reports no quotas.
GAUGE_SETS = (
    "quota_count_limit_per_namespace", "quota_bytes_limit_per_namespace",
    "quota_count_usage_per_namespace", "quota_bytes_usage_per_namespace",
)
#: ServerMetrics counters.
COUNTERS = server_metrics.COUNTERS
COUNTER_SETS = ("quota_exceeded_error_per_namespace",)
#: ServerMetrics summaries: BASIC ones carry the median, ADVANCED ones p50/p90/p99.
BASIC_SUMMARIES = tuple(n for n, advanced in server_metrics.SUMMARIES.items() if not advanced)
ADVANCED_SUMMARIES = tuple(n for n, advanced in server_metrics.SUMMARIES.items() if advanced)
#: Labelled summary sets and their detail level.
SUMMARY_SETS = tuple(server_metrics.SUMMARY_SETS.items())
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
        for names, mtype in ((GAUGES + ROLE_GAUGES + GAUGE_SETS, "gauge"), (COUNTERS + COUNTER_SETS, "unknown"),
                             (BASIC_SUMMARIES + ADVANCED_SUMMARIES
                              + tuple(n for n, _ in SUMMARY_SETS), "summary")):
            for name in names:
                yield Metric(name, name, mtype)

    def collect(self) -> Iterator[Metric]:
        if self.clock is not None:
            self.core.at(self.clock())
        values = dict(monitor.monitor_values(self.core))
        for name in GAUGES + ROLE_GAUGES:
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
        self.core.read_metrics()
        summaries = self.core.metrics.summary
        for name in BASIC_SUMMARIES:
            yield _summary(name, BASIC_QUANTILES, [({}, summaries[name])])
        for name in ADVANCED_SUMMARIES:
            yield _summary(name, ADVANCED_QUANTILES, [({}, summaries[name])])
        for name, advanced in SUMMARY_SETS:
            summary_set = self.core.metrics.sets[name]
            summary_set.fold()
            by_key = summary_set.by_key
            yield _summary(name, ADVANCED_QUANTILES if advanced else BASIC_QUANTILES,
                           [({"key": key}, by_key[key]) for key in sorted(by_key)])


def _summary(name: str, quantiles: tuple[str, ...],
             members: list[tuple[dict[str, str], Summary]]) -> Metric:
    """One summary family: per labelled member, its quantiles (NaN before any
    observation, as simpleclient's), ``_count`` and ``_sum``."""
    metric = Metric(name, name, "summary")
    for labels, summary in members:
        for q, value in zip(quantiles, summary.quantiles([float(q) for q in quantiles]),
                            strict=True):
            metric.add_sample(name, {**labels, "quantile": q}, value)
        metric.add_sample(f"{name}_count", labels, float(summary.count))
        metric.add_sample(f"{name}_sum", labels, float(summary.total))
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
