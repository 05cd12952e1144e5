"""The numbers and facts an operator reads, shared by every way of reading them.

The four-letter words (``zkpy.admin.fourletter``), the AdminServer
(``zkpy.net.adminserver``) and the Prometheus collector
(``zkpy.net.metrics``) all take their values from here, so the three never
disagree: ``monitor_values`` (mntr's keys, in Apache ZooKeeper 3.8's order),
latencies, node counts, the server's state, data directory sizes, the
environment, trace masks, and Java-compatible renderings of numbers, dates
and socket addresses.

What needs the host (directory sizes, open file descriptors, the process's
environment) comes from ``core.host`` (``zkpy.server.host``); nothing here
does I/O of its own.
"""

from __future__ import annotations

import ipaddress
import posixpath
import time
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from zkpy.server import metrics
from zkpy.server.metrics import SummarySet
from zkpy.tree.java_hash import concurrent_map_order
from zkpy.version import BUILD

if TYPE_CHECKING:
    from zkpy.server.core import ServerCore


#: FinalRequestProcessor's "last operation" names, by zkpy's opcode names.
LAST_OP = {
    "PING": "PING", "ping": "PING", "createSession": "SESS", "multi": "MULT",
    "multiRead": "MLTR", "create": "CREA", "create2": "CREA", "createTTL": "CREA",
    "createContainer": "CREA", "delete": "DELE", "deleteContainer": "DELE",
    "setData": "SETD", "reconfig": "RECO", "setACL": "SETA", "closeSession": "CLOS",
    "sync": "SYNC", "check": "CHEC", "exists": "EXIS", "getData": "GETD",
    "setWatches": "SETW", "setWatches2": "STW2", "addWatch": "ADDW", "getACL": "GETA",
    "getChildren": "GETC", "getChildren2": "GETC", "getAllChildrenNumber": "GETACN",
    "checkWatches": "CHKW", "removeWatches": "REMW", "getEphemerals": "GETE",
    "whoAmI": "HOMI",
}


# mntr keys in the order Apache ZooKeeper 3.8.0 prints them (its metrics map order).
_MNTR_SIMPLE = (
    "version server_state ephemerals_count num_alive_connections avg_latency outstanding_requests "
    "znode_count global_sessions non_mtls_remote_conn_count last_client_response_size packets_sent "
    "packets_received max_client_response_size connection_drop_probability watch_count "
    "auth_failed_count min_latency max_file_descriptor_count approximate_data_size "
    "open_file_descriptor_count local_sessions uptime max_latency outstanding_tls_handshake "
    "min_client_response_size non_mtls_local_conn_count proposal_count watch_bytes "
    "outstanding_changes_removed throttled_ops stale_requests_dropped large_requests_rejected "
    "insecure_admin_count connection_rejected cnxn_closed_without_zk_server_running "
    "sessionless_connections_expired looking_count dead_watchers_queued stale_requests "
    "connection_drop_count learner_proposal_received_count digest_mismatches_count "
    "dead_watchers_cleared response_packet_cache_hits bytes_received_count "
    "add_dead_watcher_stall_time request_throttle_wait_count "
    "requests_not_forwarded_to_commit_processor response_packet_cache_misses ensemble_auth_success "
    "prep_processor_request_queued learner_commit_received_count stale_replies "
    "connection_request_count response_bytes ensemble_auth_fail diff_count "
    "response_packet_get_children_cache_misses connection_revalidate_count "
    "quit_leading_due_to_disloyal_voter snap_count unrecoverable_error_count "
    "unsuccessful_handshake commit_count stale_sessions_expired "
    "response_packet_get_children_cache_hits sync_processor_request_queued "
    "outstanding_changes_queued request_commit_queued ensemble_auth_skip "
    "skip_learner_request_to_next_processor_count tls_handshake_exceeded revalidate_count"
).split()


# Summaries (avg/min/max/cnt/sum); a trailing "+" marks those with p50/p95/p99/p999 too.
_MNTR_SUMMARIES = (
    "socket_closing_time proposal_process_time leader_unavailable_time node_created_watch_count "
    "session_queues_drained write_commit_proc_req_queued connection_token_deficit "
    "read_commit_proc_req_queued node_deleted_watch_count startup_txns_load_time "
    "sync_processor_queue_size follower_sync_time prep_processor_queue_size fsynctime "
    "inflight_snap_count reads_issued_from_session_queue learner_request_processor_queue_size "
    "snapshottime unavailable_time startup_txns_loaded reads_after_write_in_session_queue "
    "requests_in_session_queue write_commit_proc_issued prep_process_time "
    "pending_session_queue_size time_waiting_empty_pool_in_commit_processor_read_ms "
    "commit_process_time dbinittime inflight_diff_count netty_queued_buffer_capacity election_time "
    "commit_commit_proc_req_queued sync_processor_batch_size node_children_watch_count "
    "write_batch_time_in_commit_processor read_commit_proc_issued "
    "concurrent_request_processing_in_commit_processor observer_sync_time node_changed_watch_count "
    "sync_process_time startup_snap_load_time prep_processor_queue_time_ms+ jvm_pause_time_ms+ "
    "close_session_prep_time+ read_commitproc_time_ms+ updatelatency+ "
    "local_write_committed_time_ms+ request_throttle_queue_time_ms+ readlatency+ "
    "quorum_ack_latency+ om_commit_process_time_ms+ read_final_proc_time_ms+ "
    "commit_propagation_latency+ dead_watchers_cleaner_latency+ write_final_proc_time_ms+ "
    "proposal_ack_creation_latency+ proposal_latency+ om_proposal_process_time_ms+ "
    "sync_processor_queue_and_flush_time_ms+ propagation_latency+ server_write_committed_time_ms+ "
    "sync_processor_queue_time_ms+ sync_processor_queue_flush_time_ms+ write_commitproc_time_ms+"
).split()


def java_double(x: float) -> str:
    """``Double.toString``: plain between 1e-3 and 1e7, else ``d.dddE±n``."""
    if x == 0:
        return "0.0"
    if 1e-3 <= abs(x) < 1e7:
        s = repr(float(x))
        return s if ("." in s or "e" in s) else s + ".0"
    sign, digits, exp = Decimal(repr(float(x))).normalize().as_tuple()
    ds = "".join(map(str, digits))
    e10 = len(ds) - 1 + int(exp)
    return f"{'-' if sign else ''}{ds[0]}.{ds[1:] or '0'}E{e10}"


avg4 = metrics.avg4


def java_date(ms: int) -> str:
    """``java.util.Date.toString`` in the local time zone."""
    return time.strftime("%a %b %d %H:%M:%S %Z %Y", time.localtime(ms / 1000))


def hex64(v: int) -> str:
    """``Long.toHexString``: two's complement for negatives."""
    return f"{v & 0xFFFFFFFFFFFFFFFF:x}"


def socket_address(host: str, port: int) -> str:
    """``InetSocketAddress.toString`` of an unresolved peer: ``/ip:port``."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return f"/{host}:{port}"
    if addr.version == 6:
        host = ":".join(f"{int(g, 16):x}" for g in addr.exploded.split(":"))
    return f"/{host}:{port}"


def latency(core: ServerCore) -> tuple[int, float, int]:
    """min/avg/max of every request's latency (ZooKeeper's readlatency and updatelatency)."""
    core.read_metrics()
    lat = core.stats.latency
    return int(lat.min), avg4(lat.total, lat.count), int(lat.max)


def node_count(core: ServerCore) -> int:
    # ZooKeeper's node map also holds the root under "" (an alias of "/").
    return len(core.tree) + 1


def server_state(core: ServerCore) -> str:
    """standalone, or a quorum member's role: leader, follower, read-only (looking: not
    serving)."""
    return core.mode.value


def build() -> str:
    return BUILD


def setting(core: ServerCore, key: str, default: str) -> str:
    for k, v in core.settings.config_lines:
        if k == key:
            return v
    return default


def snap_dir(path: str) -> str:
    """ZooKeeper keeps its files in ``<dir>/version-2`` and prints that path."""
    return posixpath.join(path, "version-2") if path else ""  # (config made it absolute)


def data_dirs(core: ServerCore) -> tuple[str, str]:
    s = core.settings
    return s.data_dir, s.data_log_dir or s.data_dir


def approximate_data_size(core: ServerCore) -> int:
    """DataTree.approximateDataSize: path lengths plus data lengths over all nodes."""
    return sum(len(path) + node.dataLength for path, node in core.tree.nodes.items())


# A read-only server's metrics map iterates these two the other way round (measured).
_MNTR_READ_ONLY = tuple(
    {"num_alive_connections": "avg_latency", "avg_latency": "num_alive_connections"}.get(k, k)
    for k in _MNTR_SIMPLE)


# ServerMetrics registers its summary sets in this order (basic ones, then advanced).
_BASIC_SETS = [n for n, pct in metrics.SUMMARY_SETS.items() if not pct]
_ADVANCED_SETS = [n for n, pct in metrics.SUMMARY_SETS.items() if pct]
_SET_ORDER = concurrent_map_order(_BASIC_SETS) + concurrent_map_order(_ADVANCED_SETS)


def _summary_set_values(summary_set: SummarySet) -> list[tuple[str, Any]]:
    summary_set.fold()
    out: list[tuple[str, Any]] = []
    for key in concurrent_map_order(list(summary_set.by_key)):
        out += summary_set.by_key[key].values()
    return out


def client_response_sizes(core: ServerCore) -> tuple[int, int, int]:
    """(last, min, max) packet length sent to clients; -1 before the first (BufferStats)."""
    return core.stats.client_response_sizes()


_COUNTERS = frozenset(metrics.COUNTERS)


def monitor_values(core: ServerCore) -> list[tuple[str, Any]]:
    """mntr's (key, value) pairs without the ``zk_`` prefix, in ZooKeeper's order."""
    st = core.stats
    m = core.metrics
    core.read_metrics()
    lo, avg, hi = latency(core)
    local = len(core.sessions.local_ids())
    last_size, min_size, max_size = client_response_sizes(core)
    real: dict[str, Any] = {
        "version": build(),
        "server_state": server_state(core),
        "ephemerals_count": sum(len(p) for p in core.tree.ephemerals.values()),
        "num_alive_connections": len(core.connections),
        "avg_latency": avg,
        "outstanding_requests": core.outstanding(),
        "znode_count": node_count(core),
        "global_sessions": len(core.sessions.sessions) - local,
        "local_sessions": local,
        "packets_sent": st.packets_sent,
        "packets_received": st.packets_received,
        "connection_drop_probability": 0.0,
        "watch_count": core.watches.count(),
        "min_latency": lo,
        "approximate_data_size": approximate_data_size(core),
        "uptime": max(core.now - st.started_ms, 0),
        "max_latency": hi,
        "last_client_response_size": last_size,
        "min_client_response_size": min_size,
        "max_client_response_size": max_size,
        "response_bytes": st.response_bytes(),
        "digest_mismatches_count": core.tree.digests.mismatches,
        "non_mtls_remote_conn_count": st.non_mtls_remote,
        "non_mtls_local_conn_count": st.non_mtls_local,
        "outstanding_tls_handshake": st.tls_handshakes,
        "auth_failed_count": st.auth_failed,
    }
    fds = core.host.fd_counts()
    if fds is not None:
        real["open_file_descriptor_count"], real["max_file_descriptor_count"] = fds
    out: list[tuple[str, Any]] = []
    order = _MNTR_READ_ONLY if core.read_only else _MNTR_SIMPLE
    for key in order:
        if key.endswith("file_descriptor_count") and fds is None:
            continue
        value = real.get(key)
        if value is None:
            value = m.counter(key) if key in _COUNTERS else 0
        out.append((key, value))
    for name in _MNTR_SUMMARIES:
        out += m.summary[name.rstrip("+")].values()
    for name in _SET_ORDER:
        out += _summary_set_values(m.sets[name])
    if core.rules.in_ensemble and not core.read_only:
        # (ReadOnlyZooKeeperServer is a plain ZooKeeperServer: no peer_state, quorum_size.)
        out = _with_quorum_values(core, out)
    gate = core.read_gate
    if gate is not None:
        # zkpy's linearizableReads (zkpy.server.linear_reads): reads that waited for a
        # read point, read points asked for, and on the leader the confirmation rounds.
        out += [("linear_reads", gate.reads), ("linear_read_requests", gate.requests),
                ("linear_read_rounds", core.replica.read_rounds())]
    return out


def _with_quorum_values(core: ServerCore, out: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A quorum member's extra mntr keys, each placed after the key ZooKeeper 3.8
    prints it after (its metrics map order, measured on a 3-server ensemble)."""
    quorum = core.replica
    after: dict[str, list[tuple[str, Any]]] = {
        "server_state": [("peer_state", quorum.peer_state())],
        "non_mtls_local_conn_count": [("quorum_size", len(quorum.peer.voters))],
    }
    if server_state(core) == "observer":
        after["server_state"].append(("observer_master_id", quorum.leader))
    if server_state(core) == "leader":
        learners, synced, non_voting, observers, pending = quorum.learners()
        last, lo, hi = quorum.proposal_sizes()
        after["avg_latency"] = [("min_proposal_size", lo)]
        after["packets_received"] = [("max_proposal_size", hi)]
        after["max_client_response_size"] = [("synced_followers", synced)]
        after["watch_count"] = [("synced_non_voting_followers", non_voting),
                                ("synced_observers", observers)]
        after["open_file_descriptor_count"] = [("last_proposal_size", last),
                                               ("pending_syncs", pending),
                                               ("leader_uptime", quorum.leader_uptime())]
        after["outstanding_tls_handshake"] = [("learners", learners)]
    merged: list[tuple[str, Any]] = []
    for key, value in out:
        merged.append((key, value))
        merged.extend(after.get(key, ()))
    return merged


def dir_sizes(core: ServerCore) -> tuple[int, int]:
    """Bytes in the data directory and in the log directory."""
    data_dir, log_dir = data_dirs(core)
    return core.host.dir_size(data_dir), core.host.dir_size(log_dir)


def environment(core: ServerCore) -> list[tuple[str, str]]:
    """ZooKeeper's Environment.list: our version first, then the host's entries."""
    return [("zookeeper.version", build()), *core.host.environment()]


def trace_mask(core: ServerCore) -> int:
    return core.stats.trace_mask


def set_trace_mask(core: ServerCore, mask: int) -> None:
    core.stats.trace_mask = mask


def reset_server_stats(core: ServerCore) -> None:
    """srst: ServerStats.reset (latency, packets, response sizes) and
    ServerMetrics.resetAll (every counter and summary; not the gauges)."""
    core.read_metrics()  # what was noted before the reset goes with it
    core.stats.reset()
    core.metrics.reset()


def reset_connection_stats(core: ServerCore) -> None:
    """ServerCnxn.resetStats on every connection (crst)."""
    for c in list(core.connections.values()):
        c.packets_received = c.packets_sent = 0
        c.fold_latencies()
        c.latency.reset()
        c.last_op = "NA"
        c.last_cxid = c.last_zxid = -1
        c.last_response = c.last_latency = 0
