"""ServerCore: the request pipeline of one server, with no I/O.

Bytes come in through ``Connection.receive`` (see ``zkpy.server.connection``); what
goes out is appended to each connection's outbox and handed to the adapter by
``flush()``. Time comes in as ``now`` (wall-clock milliseconds) on every call.

The pipeline is ZooKeeper's, standalone being an ensemble of one:
  write:  routed as the mode says (``zkpy.server.modes``, set only through
          ``become``): leading or standalone, prep (check against the future
          state, make an idempotent txn) -> ``replica.propose`` (Zab: logged,
          synced, acknowledged by a quorum) -> ``commit`` (apply to the tree,
          queue watch events, then the reply); following, ``replica.forward``
          to the leader, and ``commit`` when it comes back.
  read:   answered from the tree, but never ahead of an earlier request of the
          same connection that is still waiting for its commit.
Watch events are queued before the reply to the write that fired them, so a
client never sees a reply that follows a change before the change's events.
The core owns its state: other objects change it only through its methods
(``attach``, ``become``, ``restore``, ``replace_state``, ``commit``...).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from zkpy.auth.acl import AuthProviders
from zkpy.jute import schema as S
from zkpy.jute.opcodes import (
    OP_closeSession,
    OP_createSession,
    OP_deleteContainer,
    OP_sync,
)
from zkpy.jute.protocol import Err, EventType, Perms, ZkError
from zkpy.server.connection import Connection
from zkpy.server.host import Host, PlainHost
from zkpy.server.linear_reads import ReadGate
from zkpy.server.local_sessions import LocalSessions
from zkpy.server.metrics import NS_PER_MS, ServerMetrics
from zkpy.server.modes import RULES, Mode, Route
from zkpy.server.prep import Prep, Request
from zkpy.server.sessions import SessionTable
from zkpy.server.stats import ServerStats
from zkpy.tree.datatree import CONFIG_NODE, DataTree
from zkpy.tree.watches import WatchManager

# Route members read per request, kept as module constants: on Python 3.11
# reading an enum member goes through EnumType.__getattr__'s hook.
_Route_FORWARD: Final = Route.FORWARD
_Route_LOCAL: Final = Route.LOCAL
_Route_PROPOSE: Final = Route.PROPOSE
_Route_READ_ONLY: Final = Route.READ_ONLY

log = logging.getLogger("zkpy.server")

#: WatchManager.triggerWatch's summaries of how many watchers an event reached.
_WATCH_COUNTS: Final[dict[int, str]] = {
    EventType.NodeCreated: "node_created_watch_count",
    EventType.NodeDeleted: "node_deleted_watch_count",
    EventType.NodeDataChanged: "node_changed_watch_count",
    EventType.NodeChildrenChanged: "node_children_watch_count",
}


@dataclass
class CoreSettings:
    """What the core needs from zoo.cfg (the adapter builds it from ServerConfig)."""

    tick_time: int = 2000
    min_session_timeout: int = 4000
    max_session_timeout: int = 40000
    max_buffer: int = 0xFFFFF
    four_letter_words: frozenset[str] = frozenset({"srvr"})
    extended_types: bool = False
    skip_acl: bool = False
    super_digest: str | None = None
    server_id: int = 1
    container_check_ms: int = 60000
    max_client_cnxns: int = 60
    data_dir: str = ""
    data_log_dir: str = ""
    client_port: int = 2181
    client_address: str = "0.0.0.0"
    config_lines: list[tuple[str, str]] = field(default_factory=list)
    # user -> password from the JAAS Server section; None when SASL is not configured.
    sasl_users: dict[str, str] | None = None
    global_outstanding_limit: int = 1000
    reconfig_enabled: bool = False
    standalone_enabled: bool = True  # reconfig keeps >= 2 voters unless this is false
    # localSessionsEnabled / localSessionsUpgradingEnabled (quorum members only).
    local_sessions: bool = False
    local_sessions_upgrading: bool = False
    enforce_quota: bool = False  # zookeeper.enforceQuota: hard quota limits fail writes
    # zookeeper.enforce.auth.schemes when zookeeper.enforce.auth.enabled (or ("sasl",) under
    # zookeeper.sessionRequireClientSASLAuth): a connection holding no id of one of these
    # schemes gets SESSIONCLOSEDREQUIRESASLAUTH for any request but auth/sasl and is closed.
    enforce_auth_schemes: tuple[str, ...] = ()
    allow_sasl_failed_clients: bool = False  # zookeeper.allowSaslFailedClients
    x509_enabled: bool = False  # secureClientPort: x509 ids and ACLs exist
    # readonlymode.enabled (quorum members): serve read-only clients without a quorum
    # (zkpy.server.readonly); new sessions there need local_sessions, as in ZooKeeper 3.8.
    readonly_mode: bool = False
    # linearizableReads (zkpy only): reads on a leader, follower or observer wait for a
    # read point the leader confirmed with a quorum (zkpy.server.linear_reads).
    linear_reads: bool = False
    # zookeeper.serverCnxnFactory names NettyServerCnxnFactory: the client ports count
    # plain connections as non-mTLS ones, as Netty's does (NIO's counts nothing).
    netty: bool = False
    # zookeeper.netty.server.outstandingHandshake.limit: above it, a TLS connection
    # is closed before its handshake (tls_handshake_exceeded); off unless > 0.
    outstanding_handshake_limit: int = -1


class Upstream(Protocol):
    """Where writes go once prepared, or to be prepared: the replica that joins
    this core to Zab (``zkpy.server.replica``)."""

    def propose(self, req: Request) -> None:
        """Leading or standalone: replicate a prepared write; ``commit`` follows."""

    def forward(self, req: Request) -> None:
        """Following: hand a write or sync to the leader; its commit (or SYNC) follows."""

    def revalidate(self, conn: Any, session_id: int, timeout: int) -> bool:
        """A global session reconnects here: True to reopen it now, False when the
        answer comes later through ``conn.revalidated``."""

    def flush(self) -> None:
        """The end of a turn: hand what was proposed in it to Zab."""

    def read_point(self) -> bool:
        """linearizableReads: ask for a read point; ``read_gate.reached()`` follows
        once it is applied here. False when there is no leader to ask."""


class ServerCore:
    def __init__(self, settings: CoreSettings, now_ms: int, host: Host | None = None,
                 after_flush: Callable[[], None] | None = None) -> None:
        self.settings = settings
        # The machine, for the few facts the core reports or needs (zkpy.server.host).
        self.host: Host = host if host is not None else PlainHost()
        self.tree = DataTree()
        # ZooKeeper's ServerMetrics: recorded by the pipeline, the replica and the adapter.
        self.metrics = ServerMetrics()
        self.tree.written = self.metrics.write_per_namespace.note
        self.watches = WatchManager()
        self.auth = AuthProviders(settings.super_digest)
        if settings.sasl_users is not None:
            self.auth.schemes.add("sasl")
        if settings.x509_enabled:
            self.auth.schemes.add("x509")
        if settings.enforce_auth_schemes:
            log.info("zookeeper.enforce.auth.enabled = true, zookeeper.enforce.auth.schemes = %s",
                     list(settings.enforce_auth_schemes))
        self.prep = Prep(self.tree, self.auth, settings.extended_types, settings.skip_acl)
        self.prep.reconfig_enabled = settings.reconfig_enabled
        self.prep.standalone_enabled = settings.standalone_enabled
        self.prep.quota.enable(settings.enforce_quota)
        self.prep.metrics = self.metrics
        self._propagation = self.metrics.propagation_latency.add
        # The core's own stages are timed on the host's clock (``now`` is the turn's).
        self._clock = self.host.monotonic_ns
        self._prep_time = self.metrics.summary["prep_process_time"].add
        # A write's prep is timed from its connection's ``routed_at`` when it has
        # one, as ZooKeeper's pRequest includes deserializing the request; each
        # clock read costs (a system call where there is no vDSO).
        self.sessions = SessionTable(settings.tick_time, settings.server_id, now_ms)
        self.local_sessions = LocalSessions(self)
        self.stats = ServerStats(now_ms, self.metrics)
        self.next_zxid = 1
        self.connections: dict[int, Any] = {}
        self.dirty: dict[Any, None] = {}
        # Connections with latencies noted since the last fold (an ordered set):
        # folding visits these, not every connection (10,000 idle ones would
        # hold up the tick that folds).
        self.unfolded: dict[Any, None] = {}
        # Figures noted outside the core that a reader takes in first
        # (``read_metrics``): a member's disk batches that its log thread
        # finished without waking the reactor (zkpy.net.disk's quiet batches).
        self.pending_figures: Callable[[], None] | None = None
        self.now = now_ms
        self._last_container_check = now_ms
        self._conn_ids = 0
        self.outstanding_writes = 0  # proposed or forwarded, not yet committed
        # The adapter's hook once the output is handed over (it lifts the throttle).
        self.after_flush = after_flush
        # The replica this core is joined to (``attach``): it replicates our writes
        # (standalone too, as an ensemble of one) and says which mode we are in.
        self.replica: Any = None
        self.mode = Mode.NOT_SERVING
        self.rules = RULES[self.mode]
        self.read_gate = ReadGate(self) if settings.linear_reads else None

    def attach(self, replica: Upstream) -> None:
        """Join the replica that replicates our writes (and that the four-letter
        words ask about the ensemble). It serves nobody until the replica says how."""
        self.replica = replica

    # -- the mode ---------------------------------------------------------------

    def become(self, mode: Mode, why: str = "", *, next_zxid: int = 0,
               membership: Callable[[], Any] | None = None,
               check_session: Callable[[Request], None] | None = None) -> None:
        """Switch to ``mode`` (``zkpy.server.modes``). Leading and standalone take
        the zxid their next proposal carries; a leader with a membership, the
        function that tells reconfig checks about it, and the session check its
        writes pass in prep (SessionTracker.checkSession)."""
        old, self.mode, self.rules = self.mode, mode, RULES[mode]
        if self.read_gate is not None:
            self.read_gate.become(mode)
        self.prep.membership = membership
        self.prep.check_session = check_session
        if mode is Mode.NOT_SERVING:
            self._stop_serving(old, why)
            return
        if self.rules.writes is _Route_PROPOSE:
            self.next_zxid = next_zxid
            self.sessions.touched = None
            # A new leader gives every session a full timeout (as ZooKeeper's
            # LeaderSessionTracker starts afresh): their clients could not ping it.
            for sid in list(self.sessions.sessions):
                self.sessions.touch(sid, self.now)
        else:
            self.sessions.touched = {} if self.rules.reports_touches else None

    def _stop_serving(self, old: Mode, why: str) -> None:
        """Not serving any more: what is in flight will never be answered here.
        Clients reconnect (to any member) with their sessions."""
        if old is not Mode.NOT_SERVING or self.connections:
            log.info("Not serving clients any more (%s): closing %d client connections",
                     why, len(self.connections))
        for conn in list(self.connections.values()):
            conn.abort("the server is not serving (no quorum)", quiet=True)
        self.prep.forget_in_flight()
        dropped = self.local_sessions.drop_all()
        if dropped:
            log.info("Dropped %d local sessions", dropped)
        self.outstanding_writes = 0

    @property
    def serving(self) -> bool:
        return self.rules.serving

    @property
    def read_only(self) -> bool:
        return self.mode is Mode.READ_ONLY

    def restore(self, tree: DataTree, sessions: dict[int, int], now: int) -> None:
        """Adopt a recovered tree and session list (before serving).

        Restored sessions get their full timeout from now, as in ZooKeeper:
        their clients have had no chance to ping while the server was down.
        """
        tree.digests.carry_from(self.tree.digests)  # a server-wide count, as ServerMetrics
        self.tree = tree
        self.prep.tree = tree
        tree.written = self.metrics.write_per_namespace.note
        for sid, timeout in sessions.items():
            self.sessions.add(sid, timeout, now)
        self.next_zxid = tree.last_zxid + 1

    def replace_state(self, tree: DataTree, sessions: dict[int, int], now: int) -> None:
        """Adopt a whole new state (a leader's SNAP): tree and sessions."""
        self.sessions = SessionTable(self.settings.tick_time, self.settings.server_id, now)
        self.prep.forget_in_flight()
        self.restore(tree, sessions, now)

    def set_config(self, text: str, version: int) -> None:
        """Show a newly active membership in /zookeeper/config (no txn: every member
        does this itself when the membership changes)."""
        data = text.encode()
        node = self.tree.get(CONFIG_NODE)
        if node is not None and node.data == data:
            return
        rc = self.tree.set_config(data, version, self.now)
        if rc.triggers:
            self._fire(rc.triggers)

    def session_timeouts(self) -> dict[int, int]:
        """The global sessions (what a snapshot and a SNAP hold)."""
        return {sid: s.timeout for sid, s in self.sessions.sessions.items() if not s.local}

    # -- connections ----------------------------------------------------------

    def connect(self, remote_host: str, remote_port: int, sink: Callable[[bytes], None],
                closer: Callable[[], None], now: int) -> Connection:
        self._conn_ids += 1
        conn = Connection(self, self._conn_ids, remote_host, remote_port, sink, closer, now)
        self.connections[conn.id] = conn
        return conn

    def connection_lost(self, conn: Connection) -> None:
        """Forget a connection that is gone (``Connection.lost``)."""
        if self.connections.pop(conn.id, None) is None:
            return
        conn.fold_latencies()  # its latencies stay in the server's figures
        self.unfolded.pop(conn, None)
        self.watches.remove_watcher(conn)
        self.dirty.pop(conn, None)
        session = self.sessions.get(conn.session_id) if conn.session_id else None
        if session is not None and session.conn is conn:
            session.conn = None

    def at(self, now: int) -> None:
        """Time has reached ``now`` (ms): what the next commit or reply is stamped with."""
        if now > self.now:
            self.now = now

    def fold_metrics(self) -> None:
        """Take every pending observation into the figures (what reading them, or a
        tick, does): the server's, and the latencies of the connections that
        answered something since the last fold."""
        unfolded, self.unfolded = self.unfolded, {}
        for conn in unfolded:
            conn.fold_latencies()
        self.metrics.fold_all()

    def read_metrics(self) -> None:
        """``fold_metrics`` for a reader (mntr, srvr, srst, Prometheus): what is
        still pending outside the core comes in first, so that an idle
        follower shows its last fsync now, not at its next event."""
        if self.pending_figures is not None:
            self.pending_figures()
        self.fold_metrics()

    def mark_dirty(self, conn: Connection) -> None:
        """``conn`` has output for the next ``flush``."""
        self.dirty[conn] = None

    def flush(self) -> None:
        """The end of a turn: the writes prepared in it go to the replica, then every
        connection's queued output to its transport."""
        if self.replica is not None:
            self.replica.flush()
        if self.read_gate is not None and self.read_gate.next:
            self.read_gate.flush()
        while self.dirty:
            dirty, self.dirty = self.dirty, {}
            for conn in dirty:
                conn.flush()
        if self.after_flush is not None:
            self.after_flush()

    # -- time ---------------------------------------------------------------

    def tick(self, now: int) -> None:
        """Expire sessions whose deadline passed; reap empty containers and TTLs."""
        self.now = now
        self.fold_metrics()  # bounded memory whoever reads the numbers
        # Local sessions expire where they live; global ones only on the leader.
        expiring = self.rules.expires
        if expiring or self.settings.local_sessions:
            for session in self.sessions.expire(now):
                if session.local or expiring:  # SessionTrackerImpl's expirer
                    self.metrics.stale_sessions_expired += 1
                if session.local:
                    self.local_sessions.close(session.id, "expired")
                elif not expiring:
                    session.closing = False  # the leader's to expire, not ours
                else:
                    log.info("Expiring session 0x%x, timeout of %dms exceeded",
                             session.id & (2**64 - 1), session.timeout)
                    self.submit(Request(session.id, 0, OP_closeSession, None, []), now)
        if not expiring:
            self.flush()
            return
        if now - self._last_container_check >= self.settings.container_check_ms:
            self._last_container_check = now
            self._reap_containers(now)
        self.flush()

    def _reap_containers(self, now: int) -> None:
        tree = self.tree
        doomed: list[str] = []
        for path in list(tree.containers):
            node = tree.get(path)
            if node is not None and not node.children and node.ccount > 0:
                doomed.append(path)
        for path in list(tree.ttls):
            node = tree.get(path)
            if node is None or node.children:
                continue
            ttl = node.owner & 0x000000FFFFFFFFFF
            if now - node.mtime > ttl:
                doomed.append(path)
        for path in doomed:
            self.submit(Request(0, 0, OP_deleteContainer, S.DeleteRequest(path, -1), []), now)

    # -- the write pipeline ------------------------------------------------------

    def submit(self, req: Request, now: int) -> None:
        """A write (or a sync that goes to the leader): route it as the mode says."""
        rules = self.rules
        route = rules.syncs if req.type == OP_sync else rules.writes
        if route is _Route_PROPOSE:
            self.outstanding_writes += 1
            zxid = self.next_zxid
            self.next_zxid += 1
            conn = req.conn
            started = conn.routed_at if conn is not None else None
            if started is None:  # (not a request being routed: a tick's, a learner's)
                started = self._clock()
            self.prep.prepare(req, zxid, now)
            took = (self._clock() - started) // NS_PER_MS
            self._prep_time(took)
            if req.type == OP_closeSession:
                session = self.sessions.get(req.session_id)
                if session is not None:
                    session.closing = True
                self.metrics.summary["close_session_prep_time"].add(took)
            self.replica.propose(req)
        elif route is _Route_FORWARD:
            self.outstanding_writes += 1
            self.replica.forward(req)
        elif route is _Route_READ_ONLY:
            # ReadOnlyRequestProcessor: nothing is prepared or proposed, ahead of any
            # session upgrade or ephemeral check. (A local session's closeSession never
            # comes here: the connection answers it.)
            if req.type == OP_closeSession:
                log.warning("Refusing the closeSession of global session 0x%x in read-only "
                            "mode", req.session_id & 0xFFFFFFFFFFFFFFFF)
            if req.conn is not None:
                req.conn.answer_now(req, int(Err.NOTREADONLY))
        else:
            if req.conn is not None:
                req.conn.abort("the server is not serving (no quorum)")

    def commit(self, req: Request, ours: bool = True) -> None:
        """Apply a committed transaction and answer it (called in zxid order).
        ``ours``: it went through ``submit`` here (not another member's write)."""
        hdr: S.TxnHeader = req.hdr  # (typed: compiled, its fields are read directly)
        self.stats.commits += 1
        if ours:
            self.outstanding_writes -= 1
        if hdr.type == OP_createSession:
            # (An upgraded local session becomes global here, on every member.)
            self.sessions.add(req.session_id, req.txn.timeOut, self.now).local = False
            self.tree.apply(hdr, req.txn, req.digest)  # no znode changes: checks the digest
            rc = None
        else:
            rc = self.tree.apply(hdr, req.txn, req.digest)  # advances tree.last_zxid itself
        if hdr.zxid > self.tree.last_zxid:  # createSession does not touch the tree
            self.tree.last_zxid = hdr.zxid
        self.prep.applied(hdr.zxid)
        # FinalRequestProcessor: from the leader stamping the txn to applying it here.
        latency = self.now - hdr.time
        if latency >= 0:
            self._propagation(latency)
        if rc is not None and rc.triggers:
            self._fire(rc.triggers)
        if hdr.type == OP_closeSession:
            self._session_closed(req.session_id)
        conn: Connection | None = req.conn
        if conn is not None:
            conn.committed(req, rc)

    def _fire(self, triggers: list[tuple[str, int, Any]]) -> None:
        # As ZooKeeper since CVE-2024-23944 (and Debian's 3.8.0): an event only
        # reaches a watcher that may READ the node it is about; the watch is
        # spent either way.
        auth = None if self.settings.skip_acl else self.auth
        conn: Connection
        for path, etype, acl in triggers:
            watchers = self.watches.trigger(path, etype)
            if not watchers:
                continue
            watch_count = _WATCH_COUNTS.get(etype)
            if watch_count is not None:
                self.metrics.summary[watch_count].add(len(watchers))
            for conn in watchers:
                if auth is not None:
                    try:
                        auth.check(acl, Perms.READ, conn.ids)
                    except ZkError:
                        continue
                conn.send_event(etype, path)

    def _session_closed(self, sid: int) -> None:
        session = self.sessions.remove(sid)
        if session is None:
            return
        log.info("Closed session 0x%x", sid & 0xFFFFFFFFFFFFFFFF)
        conn = session.conn
        if conn is not None and conn.session_id == sid:
            # The connection is closed once its queued replies are written.
            conn.close_after_flush()

    # -- introspection used by the four-letter words ---------------------------

    @property
    def last_zxid(self) -> int:
        return self.tree.last_zxid

    def sync_is_local(self) -> bool:
        """A sync is answered here, in session order (nobody is ahead of us; or,
        with linearizableReads, once a read point is applied, like a read)."""
        gate = self.read_gate
        return self.rules.syncs is _Route_LOCAL or (gate is not None and gate.active)

    def outstanding(self) -> int:
        return sum(len(c.pending) for c in self.connections.values())
