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

import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from zkpy.admin import monitor

if TYPE_CHECKING:
    from zkpy.server.core import ServerCore

COMMANDS = frozenset({
    "ruok", "srvr", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "wchs",
    "wchc", "wchp", "isro", "srst", "dirs", "gtmk", "stmk", "hash",
})
_BYTES = frozenset(c.encode("ascii") for c in COMMANDS)


#: NIOServerCnxnFactory's connection expiry interval (zookeeper.nio.sessionlessCnxnTimeout).
_SESSIONLESS_CNXN_TIMEOUT = 10000


def is_command(first4: bytes) -> bool:
    return first4 in _BYTES


def run(core: ServerCore, cmd: str, conn: Any) -> str:
    """The text answering ``cmd`` on ``conn`` (the caller sends it and closes)."""
    if conn is not None:
        conn.packets_received += 1
    core.stats.packets_received += 1
    core.metrics.bytes_received_count += 4  # as NIOServerCnxn.checkFourLetterWord
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


# -- server summary (srvr, stat) -------------------------------------------------


def _server_stats(core: ServerCore) -> str:
    st = core.stats
    lo, avg, hi = monitor.latency(core)
    return (f"Latency min/avg/max: {lo}/{monitor.java_double(avg)}/{hi}\n"
            f"Received: {st.packets_received}\n"
            f"Sent: {st.packets_sent}\n"
            f"Connections: {len(core.connections)}\n"
            f"Outstanding: {core.outstanding()}\n"
            f"Zxid: 0x{monitor.hex64(core.last_zxid)}\n"
            f"Mode: {monitor.server_state(core)}\n"
            f"Node count: {monitor.node_count(core)}\n"
            + _proposal_sizes(core))


def _proposal_sizes(core: ServerCore) -> str:
    if monitor.server_state(core) != "leader":
        return ""
    last, lo, hi = core.replica.proposal_sizes()
    return f"Proposal sizes last/min/max: {last}/{lo}/{hi}\n"


def _version_lines(core: ServerCore) -> str:
    read_only = ("READ-ONLY mode; serving only read-only clients\n"
                 if core.read_only else "")
    return f"Zookeeper version: {monitor.build()}\n" + read_only


def _srvr(core: ServerCore, conn: Any) -> str:
    return _version_lines(core) + _server_stats(core)


def _stat(core: ServerCore, conn: Any) -> str:
    clients = "".join(_conn_info(c, conn, brief=True) + "\n" for c in list(core.connections.values()))
    return _version_lines(core) + "Clients:\n" + clients + "\n" + _server_stats(core)


# -- connections (stat, cons, crst) ------------------------------------------------


def _conn_info(c: Any, current: Any, brief: bool) -> str:
    """ServerCnxn.dumpConnectionInfo."""
    interest = 0 if c is current or c.state in ("closing", "closed") else 1
    out = (f" {monitor.socket_address(c.host, c.port)}[{interest}](queued={len(c.pending)},"
           f"recved={c.packets_received},sent={c.packets_sent}")
    if not brief and c.session_id:
        avg = c.total_latency // c.latency_count if c.latency_count else 0
        out += (f",sid=0x{monitor.hex64(c.session_id)},lop={monitor.LAST_OP.get(c.last_op, c.last_op)}"
                f",est={c.established},to={c.timeout}")
        if c.last_cxid >= 0:
            out += f",lcxid=0x{monitor.hex64(c.last_cxid)}"
        out += (f",lzxid=0x{monitor.hex64(c.last_zxid)},lresp={c.last_response}"
                f",llat={c.last_latency},minlat={max(c.min_latency, 0)}"
                f",avglat={avg},maxlat={c.max_latency}")
    return out + ")"


def _cons(core: ServerCore, conn: Any) -> str:
    return "".join(_conn_info(c, conn, brief=False) + "\n" for c in list(core.connections.values())) + "\n"


def _crst(core: ServerCore, conn: Any) -> str:
    monitor.reset_connection_stats(core)
    return "Connection stats reset.\n"


def _srst(core: ServerCore, conn: Any) -> str:
    monitor.reset_server_stats(core)
    return "Server stats reset.\n"


# -- sessions, ephemerals, watches (dump, wchs, wchc, wchp) ---------------------------


def _buckets(items: Iterable[tuple[int, str]]) -> list[tuple[int, list[str]]]:
    by_time: dict[int, list[str]] = {}
    for t, line in items:
        by_time.setdefault(t, []).append(line)
    return sorted(by_time.items())


def _expiry_sets(buckets: list[tuple[int, list[str]]]) -> str:
    return "".join(f"{len(lines)} expire at {monitor.java_date(t)}:\n" + "".join(f"\t{x}\n" for x in lines)
                   for t, lines in buckets)


def _dump(core: ServerCore, conn: Any) -> str:
    sessions = list(core.sessions.sessions.values())
    buckets = _buckets((s.deadline, f"0x{monitor.hex64(s.id)}") for s in sessions)
    out = ["SessionTracker dump:\n",
           f"Session Sets ({len(buckets)})/({len(sessions)}):\n", _expiry_sets(buckets),
           "ephemeral nodes dump:\n"]
    ephemerals = {sid: paths for sid, paths in core.tree.ephemerals.items() if paths}
    out.append(f"Sessions with Ephemerals ({len(ephemerals)}):\n")
    for sid, paths in ephemerals.items():
        out.append(f"0x{monitor.hex64(sid)}:\n" + "".join(f"\t{p}\n" for p in sorted(paths)))
    # NIOServerCnxnFactory.dumpConnections: an expiry queue touched on activity.
    out.append("Connections dump:\n")
    conns = list(core.connections.values())
    ival = _SESSIONLESS_CNXN_TIMEOUT
    cbuckets = _buckets(
        (((max(c.established, c.last_response) + (c.timeout or ival)) // ival + 1) * ival,
         f"ip: {monitor.socket_address(c.host, c.port)} sessionId: 0x{monitor.hex64(c.session_id)}")
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
        out.append(f"0x{monitor.hex64(watcher.session_id)}\n" + "".join(f"\t{p}\n" for p in sorted(paths)))
    return "".join(out) + "\n"


def _wchp(core: ServerCore, conn: Any) -> str:
    out = []
    for path, watchers in core.watches.data.by_path.items():
        out.append(f"{path}\n" + "".join(f"\t0x{monitor.hex64(w.session_id)}\n" for w in watchers))
    return "".join(out) + "\n"


# -- configuration and files (conf, dirs, envi) ---------------------------------------


def _conf(core: ServerCore, conn: Any) -> str:
    s = core.settings
    data_dir, log_dir = monitor.data_dirs(core)
    lines = [
        ("clientPort", s.client_port),
        ("secureClientPort", monitor.setting(core, "secureClientPort", "-1")),
        ("dataDir", monitor.snap_dir(data_dir)),
        ("dataDirSize", core.host.dir_size(data_dir)),
        ("dataLogDir", monitor.snap_dir(log_dir)),
        ("dataLogSize", core.host.dir_size(log_dir)),
        ("tickTime", s.tick_time),
        ("maxClientCnxns", s.max_client_cnxns),
        ("minSessionTimeout", s.min_session_timeout),
        ("maxSessionTimeout", s.max_session_timeout),
        ("clientPortListenBacklog", monitor.setting(core, "clientPortListenBacklog", "-1")),
        # A standalone ZooKeeperServer reports server id 0; a quorum member its myid.
        ("serverId", s.server_id if core.rules.in_ensemble else 0),
    ]
    if core.rules.in_ensemble:
        conf = list(core.replica.conf)
        if core.read_only:  # ReadOnlyZooKeeperServer.dumpConf: up to peerType
            keys = [k for k, _ in conf]
            conf = conf[:keys.index("membership: ")] if "membership: " in keys else conf
        lines += conf
    # "membership: " heads the server list on a line of its own, as QuorumPeer prints it;
    # the list ends with QuorumVerifier.toString's "version=..." and no newline after it
    # (a read-only server's ends with peerType and a newline).
    text = "".join(f"{k}\n" if k.endswith(": ") else f"{k}={v}\n" for k, v in lines)
    return text[:-1] if core.rules.in_ensemble and not core.read_only else text


def _dirs(core: ServerCore, conn: Any) -> str:
    data_size, log_size = monitor.dir_sizes(core)
    return f"datadir_size: {data_size}\nlogdir_size: {log_size}\n"


def _envi(core: ServerCore, conn: Any) -> str:
    return "Environment:\n" + "".join(f"{k}={v}\n" for k, v in monitor.environment(core))


# -- mntr -----------------------------------------------------------------------------


def _mntr(core: ServerCore, conn: Any) -> str:
    return "".join(f"zk_{k}\t{monitor.java_double(v) if isinstance(v, float) else v}\n"
                   for k, v in monitor.monitor_values(core))


# -- the small ones -------------------------------------------------------------------


def _gtmk(core: ServerCore, conn: Any) -> str:
    return str(monitor.trace_mask(core))


def _stmk(core: ServerCore, conn: Any) -> str:
    """The 8 bytes after ``stmk`` are the new mask (a big-endian long), echoed back."""
    buf = bytes(getattr(conn, "buf", b""))
    if len(buf) < 12:
        return ""  # ZooKeeper fails the short read and closes without an answer
    (mask,) = struct.unpack_from(">q", buf, 4)
    monitor.set_trace_mask(core, mask)
    return str(mask)


def _isro(core: ServerCore) -> str:
    """IsroCommand: "null" while no ZooKeeperServer runs (a member without quorum)."""
    if core.read_only:
        return "ro"
    return "rw" if core.serving else "null"


NOT_SERVING = "This ZooKeeper instance is not currently serving requests\n"
# The commands ZooKeeper answers with NOT_SERVING while a quorum member is not serving.
_NEED_SERVING = frozenset({"srvr", "stat", "cons", "crst", "dump", "mntr", "wchs", "wchc",
                           "wchp", "srst", "conf", "dirs", "hash"})


def _hash(core: ServerCore, conn: Any) -> str:
    """DigestCommand: the tree digest at every 128th zxid (the last 1024 of them)."""
    history: Iterable[tuple[int, int]] = core.tree.digests.history
    return "".join(f"{zxid:x}: {digest}\n" for zxid, digest in history)


_COMMANDS: dict[str, Callable[[ServerCore, Any], str]] = {
    "ruok": lambda core, conn: "imok",
    "isro": lambda core, conn: _isro(core),
    "hash": _hash,
    "srvr": _srvr, "stat": _stat, "conf": _conf, "cons": _cons,
    "crst": _crst, "dump": _dump, "envi": _envi, "mntr": _mntr, "wchs": _wchs,
    "wchc": _wchc, "wchp": _wchp, "srst": _srst, "dirs": _dirs, "gtmk": _gtmk, "stmk": _stmk,
}
