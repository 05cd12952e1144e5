"""Four-letter words on the client port (ruok, srvr, stat, ...), in ZooKeeper's formats.

A new connection whose first four bytes spell a known command gets the
command's text and is closed. Commands not in ``4lw.commands.whitelist`` get
ZooKeeper's refusal line. Output formats follow Apache ZooKeeper 3.8 (line
structure, key names, tabs, order) so that monitoring scripts that parse them
keep working; the values are zkpy's own state.

Bookkeeping as ZooKeeper does it: the command counts as one packet received
(for the server and for its own connection) before the command runs, and as
one packet sent by the server after it ran. The command's own connection
shows interest ops ``0`` in ``stat``/``cons`` (ZooKeeper cancels its selection
key), the others ``1`` (OP_READ).
"""

from __future__ import annotations

import getpass
import ipaddress
import os
import platform
import struct
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zkpy.server.core import ServerCore

COMMANDS = frozenset({
    "ruok", "srvr", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "wchs",
    "wchc", "wchp", "isro", "srst", "dirs", "gtmk", "stmk", "hash",
})
_BYTES = frozenset(c.encode("ascii") for c in COMMANDS)

#: ZooTrace's default text trace mask (CLIENT_REQUEST | SERVER_PACKET | CLIENT_PING ...).
DEFAULT_TRACE_MASK = 306
_trace_masks: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()

#: NIOServerCnxnFactory's connection expiry interval (zookeeper.nio.sessionlessCnxnTimeout).
_SESSIONLESS_CNXN_TIMEOUT = 10000

#: FinalRequestProcessor's "last operation" names, by zkpy's opcode names.
_LAST_OP = {
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


def is_command(first4: bytes) -> bool:
    return first4 in _BYTES


def run(core: ServerCore, cmd: str, conn: Any) -> str:
    """The text answering ``cmd`` on ``conn`` (the caller sends it and closes)."""
    if conn is not None:
        conn.packets_received += 1
    core.stats.packets_received += 1
    try:
        allowed = core.settings.four_letter_words
        if cmd not in allowed and "*" not in allowed:
            return f"{cmd} is not executed because it is not in the whitelist.\n"
        fn = _COMMANDS.get(cmd)
        if fn is None:
            return ""
        if not core.serving and cmd in _NEED_SERVING:
            return NOT_SERVING
        return fn(core, conn)
    finally:
        core.stats.packets_sent += 1


# -- Java-compatible number and date rendering ---------------------------------


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


def avg4(total: float, count: int) -> float:
    """An average rounded half-up to 4 decimals, as ZooKeeper's AvgMinMaxCounter."""
    if not count:
        return 0.0
    q = (Decimal(total) / Decimal(count)).quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP)
    return float(q)


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


# -- server summary (srvr, stat) -------------------------------------------------


def _lat(core: ServerCore) -> tuple[int, float, int]:
    lat = core.stats.latency
    return int(lat.min), avg4(lat.total, lat.count), int(lat.max)


def _node_count(core: ServerCore) -> int:
    # ZooKeeper's node map also holds the root under "" (an alias of "/").
    return len(core.tree) + 1


def _server_stats(core: ServerCore) -> str:
    st = core.stats
    lo, avg, hi = _lat(core)
    return (f"Latency min/avg/max: {lo}/{java_double(avg)}/{hi}\n"
            f"Received: {st.packets_received}\n"
            f"Sent: {st.packets_sent}\n"
            f"Connections: {len(core.connections)}\n"
            f"Outstanding: {core.outstanding()}\n"
            f"Zxid: 0x{hex64(core.last_zxid)}\n"
            f"Mode: {server_state(core)}\n"
            f"Node count: {_node_count(core)}\n"
            + _proposal_sizes(core))


def server_state(core: ServerCore) -> str:
    """standalone, or a quorum member's role: leader, follower, read-only (looking: not
    serving)."""
    return "standalone" if core.quorum is None else core.quorum.mode


def _proposal_sizes(core: ServerCore) -> str:
    if server_state(core) != "leader":
        return ""
    last, lo, hi = core.quorum.proposal_sizes()
    return f"Proposal sizes last/min/max: {last}/{lo}/{hi}\n"


def _build() -> str:
    from zkpy.server.core import BUILD

    return BUILD


def _version_lines(core: ServerCore) -> str:
    read_only = ("READ-ONLY mode; serving only read-only clients\n"
                 if core.read_only is not None else "")
    return f"Zookeeper version: {_build()}\n" + read_only


def _srvr(core: ServerCore, conn: Any) -> str:
    return _version_lines(core) + _server_stats(core)


def _stat(core: ServerCore, conn: Any) -> str:
    clients = "".join(_conn_info(c, conn, brief=True) + "\n" for c in list(core.connections.values()))
    return _version_lines(core) + "Clients:\n" + clients + "\n" + _server_stats(core)


# -- connections (stat, cons, crst) ------------------------------------------------


def _conn_info(c: Any, current: Any, brief: bool) -> str:
    """ServerCnxn.dumpConnectionInfo."""
    interest = 0 if c is current or c.state in ("closing", "closed") else 1
    out = (f" {socket_address(c.host, c.port)}[{interest}](queued={len(c.pending)},"
           f"recved={c.packets_received},sent={c.packets_sent}")
    if not brief and c.session_id:
        avg = c.total_latency // c.latency_count if c.latency_count else 0
        out += (f",sid=0x{hex64(c.session_id)},lop={_LAST_OP.get(c.last_op, c.last_op)}"
                f",est={c.established},to={c.timeout}")
        if c.last_cxid >= 0:
            out += f",lcxid=0x{hex64(c.last_cxid)}"
        out += (f",lzxid=0x{hex64(c.last_zxid)},lresp={c.last_response}"
                f",llat={c.last_latency},minlat={max(c.min_latency, 0)}"
                f",avglat={avg},maxlat={c.max_latency}")
    return out + ")"


def _cons(core: ServerCore, conn: Any) -> str:
    return "".join(_conn_info(c, conn, brief=False) + "\n" for c in list(core.connections.values())) + "\n"


def _crst(core: ServerCore, conn: Any) -> str:
    """ServerCnxn.resetStats on every connection."""
    for c in list(core.connections.values()):
        c.packets_received = c.packets_sent = 0
        c.min_latency = -1
        c.max_latency = c.total_latency = c.latency_count = 0
        c.last_op = "NA"
        c.last_cxid = c.last_zxid = -1
        c.last_response = c.last_latency = 0
    return "Connection stats reset.\n"


def _srst(core: ServerCore, conn: Any) -> str:
    core.stats.reset()
    return "Server stats reset.\n"


# -- sessions, ephemerals, watches (dump, wchs, wchc, wchp) ---------------------------


def _buckets(items: Iterable[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    by_time: dict[int, list[str]] = {}
    for t, line in items:
        by_time.setdefault(t, []).append(line)
    return sorted(by_time.items())


def _expiry_sets(buckets: list[tuple[int, list[str]]]) -> str:
    return "".join(f"{len(lines)} expire at {java_date(t)}:\n" + "".join(f"\t{x}\n" for x in lines)
                   for t, lines in buckets)


def _dump(core: ServerCore, conn: Any) -> str:
    sessions = list(core.sessions.sessions.values())
    buckets = _buckets((s.deadline, f"0x{hex64(s.id)}") for s in sessions)
    out = ["SessionTracker dump:\n",
           f"Session Sets ({len(buckets)})/({len(sessions)}):\n", _expiry_sets(buckets),
           "ephemeral nodes dump:\n"]
    ephemerals = {sid: paths for sid, paths in core.tree.ephemerals.items() if paths}
    out.append(f"Sessions with Ephemerals ({len(ephemerals)}):\n")
    for sid, paths in ephemerals.items():
        out.append(f"0x{hex64(sid)}:\n" + "".join(f"\t{p}\n" for p in sorted(paths)))
    # NIOServerCnxnFactory.dumpConnections: an expiry queue touched on activity.
    out.append("Connections dump:\n")
    conns = list(core.connections.values())
    ival = _SESSIONLESS_CNXN_TIMEOUT
    cbuckets = _buckets(
        (((max(c.established, c.last_response) + (c.timeout or ival)) // ival + 1) * ival,
         f"ip: {socket_address(c.host, c.port)} sessionId: 0x{hex64(c.session_id)}")
        for c in conns)
    out.append(f"Connections Sets ({len(cbuckets)})/({len(conns)}):\n")
    out.append(_expiry_sets(cbuckets))
    return "".join(out)


def _wchs(core: ServerCore, conn: Any) -> str:
    # ZooKeeper 3.8.0's DataTree.dumpWatchesSummary reports the data-watch table only.
    table = core.watches.data
    total = sum(len(paths) for paths in table.by_watcher.values())
    return (f"{len(table.by_watcher)} connections watching {len(table.by_path)} paths\n"
            f"Total watches:{total}\n")


def _wchc(core: ServerCore, conn: Any) -> str:
    out = []
    for watcher, paths in core.watches.data.by_watcher.items():
        out.append(f"0x{hex64(watcher.session_id)}\n" + "".join(f"\t{p}\n" for p in sorted(paths)))
    return "".join(out) + "\n"


def _wchp(core: ServerCore, conn: Any) -> str:
    out = []
    for path, watchers in core.watches.data.by_path.items():
        out.append(f"{path}\n" + "".join(f"\t0x{hex64(w.session_id)}\n" for w in watchers))
    return "".join(out) + "\n"


# -- configuration and files (conf, dirs, envi) ---------------------------------------


def _setting(core: ServerCore, key: str, default: str) -> str:
    for k, v in core.settings.config_lines:
        if k == key:
            return v
    return default


def _snap_dir(path: str) -> str:
    """ZooKeeper keeps its files in ``<dir>/version-2`` and prints that path."""
    return os.path.join(os.path.abspath(path), "version-2") if path else ""


def dir_size(path: str) -> int:
    """Bytes in the files under ``<path>/version-2`` (or ``path`` if that is absent)."""
    if not path:
        return 0
    top = _snap_dir(path) if os.path.isdir(_snap_dir(path)) else path
    total = 0
    for root, _dirs, files in os.walk(top):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def _dirs_of(core: ServerCore) -> tuple[str, str]:
    s = core.settings
    return s.data_dir, s.data_log_dir or s.data_dir


def _conf(core: ServerCore, conn: Any) -> str:
    s = core.settings
    data_dir, log_dir = _dirs_of(core)
    lines = [
        ("clientPort", s.client_port),
        ("secureClientPort", _setting(core, "secureClientPort", "-1")),
        ("dataDir", _snap_dir(data_dir)),
        ("dataDirSize", dir_size(data_dir)),
        ("dataLogDir", _snap_dir(log_dir)),
        ("dataLogSize", dir_size(log_dir)),
        ("tickTime", s.tick_time),
        ("maxClientCnxns", s.max_client_cnxns),
        ("minSessionTimeout", s.min_session_timeout),
        ("maxSessionTimeout", s.max_session_timeout),
        ("clientPortListenBacklog", _setting(core, "clientPortListenBacklog", "-1")),
        # A standalone ZooKeeperServer reports server id 0; a quorum member its myid.
        ("serverId", 0 if core.quorum is None else s.server_id),
    ]
    if core.quorum is not None:
        conf = list(core.quorum.conf)
        if core.read_only is not None:  # ReadOnlyZooKeeperServer.dumpConf: up to peerType
            keys = [k for k, _ in conf]
            conf = conf[:keys.index("membership: ")] if "membership: " in keys else conf
        lines += conf
    # "membership: " heads the server list on a line of its own, as QuorumPeer prints it;
    # the list ends with QuorumVerifier.toString's "version=..." and no newline after it
    # (a read-only server's ends with peerType and a newline).
    text = "".join(f"{k}\n" if k.endswith(": ") else f"{k}={v}\n" for k, v in lines)
    return text[:-1] if core.quorum is not None and core.read_only is None else text


def _dirs(core: ServerCore, conn: Any) -> str:
    data_dir, log_dir = _dirs_of(core)
    return f"datadir_size: {dir_size(data_dir)}\nlogdir_size: {dir_size(log_dir)}\n"


def environment() -> list[tuple[str, str]]:
    """ZooKeeper's Environment.list with Python's equivalents of the java.* entries."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    arch = platform.machine()
    arch = {"x86_64": "amd64", "AMD64": "amd64", "i686": "x86", "i386": "x86"}.get(arch, arch)
    env = [
        ("zookeeper.version", _build()),
        ("host.name", platform.node()),
        ("python.version", platform.python_version()),
        ("python.implementation", platform.python_implementation()),
        ("python.home", sys.prefix),
        ("python.path", os.pathsep.join(sys.path)),
        ("java.io.tmpdir", tempfile.gettempdir()),
        ("os.name", platform.system()),
        ("os.arch", arch),
        ("os.version", platform.release()),
        ("user.name", user),
        ("user.home", os.path.expanduser("~")),
        ("user.dir", os.getcwd()),
    ]
    return env


def _envi(core: ServerCore, conn: Any) -> str:
    return "Environment:\n" + "".join(f"{k}={v}\n" for k, v in environment())


# -- mntr -----------------------------------------------------------------------------


def _fd_counts() -> tuple[int, int] | None:
    """(open, max) file descriptors, as UnixOperatingSystemMXBean reports them."""
    for d in ("/proc/self/fd", "/dev/fd"):
        try:
            opened = len(os.listdir(d))
            break
        except OSError:
            continue
    else:
        return None
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (ImportError, OSError, ValueError):
        return None
    return opened, (soft if soft != getattr(resource, "RLIM_INFINITY", -1) else 2**63 - 1)


def approximate_data_size(core: ServerCore) -> int:
    """DataTree.approximateDataSize: path lengths plus data lengths over all nodes."""
    return sum(len(path) + node.dataLength for path, node in core.tree.nodes.items())


# A read-only server's metrics map iterates these two the other way round (measured).
_MNTR_READ_ONLY = tuple(
    {"num_alive_connections": "avg_latency", "avg_latency": "num_alive_connections"}.get(k, k)
    for k in _MNTR_SIMPLE)


def monitor_values(core: ServerCore) -> list[tuple[str, Any]]:
    """mntr's (key, value) pairs without the ``zk_`` prefix, in ZooKeeper's order."""
    st = core.stats
    lo, avg, hi = _lat(core)
    local = len(core.sessions.local_ids())
    real: dict[str, Any] = {
        "version": _build(),
        "server_state": server_state(core),
        "ephemerals_count": sum(len(p) for p in core.tree.ephemerals.values()),
        "num_alive_connections": len(core.connections),
        "avg_latency": avg,
        "outstanding_requests": core.outstanding(),
        "znode_count": _node_count(core),
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
        "digest_mismatches_count": core.tree.digests.mismatches,
    }
    fds = _fd_counts()
    if fds is not None:
        real["open_file_descriptor_count"], real["max_file_descriptor_count"] = fds
    out: list[tuple[str, Any]] = []
    order = _MNTR_SIMPLE if core.read_only is None else _MNTR_READ_ONLY
    for key in order:
        if key.endswith("file_descriptor_count") and fds is None:
            continue
        out.append((key, real.get(key, 0)))
    for name in _MNTR_SUMMARIES:
        pct = name.endswith("+")
        name = name.rstrip("+")
        out += [(f"avg_{name}", 0.0), (f"min_{name}", 0), (f"max_{name}", 0),
                (f"cnt_{name}", 0), (f"sum_{name}", 0)]
        if pct:
            out += [(f"{p}_{name}", 0) for p in ("p50", "p95", "p99", "p999")]
    if core.quorum is not None and core.read_only is None:
        # (ReadOnlyZooKeeperServer is a plain ZooKeeperServer: no peer_state, quorum_size.)
        out = _with_quorum_values(core, out)
    return out


def _with_quorum_values(core: ServerCore, out: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """A quorum member's extra mntr keys, each placed after the key ZooKeeper 3.8
    prints it after (its metrics map order, measured on a 3-server ensemble)."""
    quorum = core.quorum
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
        # Per-learner queue summaries (LearnerHandler's qp_size and qp_time_ms).
        sids = quorum.learner_ids()
        after["p999_write_commitproc_time_ms"] = [
            (f"{stat}_{sid}_learner_handler_qp_size", 0.0 if stat == "avg" else 0)
            for sid in sids for stat in ("avg", "min", "max", "cnt", "sum")] + [
            (f"{stat}_{sid}_learner_handler_qp_time_ms", 0.0 if stat == "avg" else 0)
            for sid in sids
            for stat in ("avg", "min", "max", "cnt", "sum", "p50", "p95", "p99", "p999")]
    merged: list[tuple[str, Any]] = []
    for key, value in out:
        merged.append((key, value))
        merged.extend(after.get(key, ()))
    return merged


def _mntr(core: ServerCore, conn: Any) -> str:
    return "".join(f"zk_{k}\t{java_double(v) if isinstance(v, float) else v}\n"
                   for k, v in monitor_values(core))


# -- the small ones -------------------------------------------------------------------


def _gtmk(core: ServerCore, conn: Any) -> str:
    return str(_trace_masks.get(core, DEFAULT_TRACE_MASK))


def _stmk(core: ServerCore, conn: Any) -> str:
    """The 8 bytes after ``stmk`` are the new mask (a big-endian long), echoed back."""
    buf = bytes(getattr(conn, "buf", b""))
    if len(buf) < 12:
        return ""  # ZooKeeper fails the short read and closes without an answer
    (mask,) = struct.unpack_from(">q", buf, 4)
    _trace_masks[core] = mask
    return str(mask)


def _isro(core: ServerCore) -> str:
    """IsroCommand: "null" while no ZooKeeperServer runs (a member without quorum)."""
    if core.read_only is not None:
        return "ro"
    return "rw" if core.serving else "null"


NOT_SERVING = "This ZooKeeper instance is not currently serving requests\n"
# The commands ZooKeeper answers with NOT_SERVING while a quorum member is not serving.
_NEED_SERVING = frozenset({"srvr", "stat", "cons", "crst", "dump", "mntr", "wchs", "wchc",
                           "wchp", "srst", "conf", "dirs", "hash"})

_COMMANDS: dict[str, Callable[[ServerCore, Any], str]] = {
    "ruok": lambda core, conn: "imok",
    "isro": lambda core, conn: _isro(core),
    # DigestCommand: the tree digest at every 128th zxid (the last 1024 of them).
    "hash": lambda core, conn: "".join(f"{zxid:x}: {digest}\n"
                                       for zxid, digest in core.tree.digests.history),
    "srvr": _srvr, "stat": _stat, "conf": _conf, "cons": _cons,
    "crst": _crst, "dump": _dump, "envi": _envi, "mntr": _mntr, "wchs": _wchs,
    "wchc": _wchc, "wchp": _wchp, "srst": _srst, "dirs": _dirs, "gtmk": _gtmk, "stmk": _stmk,
}
