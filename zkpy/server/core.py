"""ServerCore: the request pipeline of one server, with no I/O.

Bytes come in through ``Connection.receive`` (see ``zkpy.server.connection``); what
goes out is appended to each connection's outbox and handed to the adapter by
``flush()``. Time comes in as ``now`` (wall-clock milliseconds) on every call.

The pipeline is ZooKeeper's, standalone being an ensemble of one:
  write:  prep (check against the future state, make an idempotent txn)
          -> ``committer.propose`` (the seam where the txn log and Zab plug in)
          -> ``commit`` (apply to the tree, queue watch events, then the reply)
  read:   answered from the tree, but never ahead of an earlier request of the
          same connection that is still waiting for its commit.
Watch events are queued before the reply to the write that fired them, so a
client never sees a reply that follows a change before the change's events.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from zkpy.auth.acl import AuthProviders
from zkpy.jute import schema as S
from zkpy.jute.protocol import Op, Perms, ZkError
from zkpy.server.prep import Prep, Request
from zkpy.server.sessions import SessionTable
from zkpy.server.stats import ServerStats
from zkpy.tree.datatree import CONFIG_NODE, DataTree
from zkpy.tree.watches import WatchManager

log = logging.getLogger("zkpy.server")

VERSION = "3.8.0-zkpy-0.1.0"
BUILD = f"{VERSION}, built on 2026-11-24 00:00 UTC"

_REPLY_HDR = struct.Struct(">iiqi")  # frame length + ReplyHeader(xid, zxid, err)


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


class Committer(Protocol):
    """The commit seam: standalone applies at once; durability and Zab queue."""

    def propose(self, req: Request) -> None: ...


class ImmediateCommitter:
    def __init__(self, core: ServerCore) -> None:
        self.core = core

    def propose(self, req: Request) -> None:
        self.core.commit(req)


class ServerCore:
    def __init__(self, settings: CoreSettings, now_ms: int) -> None:
        self.settings = settings
        self.tree = DataTree()
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
        self.sessions = SessionTable(settings.tick_time, settings.server_id, now_ms)
        self.stats = ServerStats(now_ms)
        self.committer: Committer = ImmediateCommitter(self)
        self.next_zxid = 1
        self.connections: dict[int, Any] = {}
        self.dirty: dict[Any, None] = {}
        self.now = now_ms
        self._last_container_check = now_ms
        self._conn_ids = 0
        self.outstanding_writes = 0  # proposed, not yet committed
        self.after_flush: Callable[[], None] | None = None
        # In an ensemble (zkpy.server.replica): clients are served only while the
        # member is synced with an established leader; a follower hands writes
        # and syncs to ``forward``/``sync`` instead of preparing them, and only
        # the leader (``expiring``) expires sessions and reaps containers.
        self.serving = True
        self.expiring = True
        self.forward: Callable[[Request], None] | None = None
        self.sync: Callable[[Request], None] | None = None
        # A learner asks its leader about a reconnecting global session
        # (REVALIDATE): ``revalidate(conn, session_id, timeout)``, answered by
        # ``conn.revalidated(valid, now)``.
        self.revalidate: Callable[[Any, int, int], None] | None = None
        self.quorum: Any = None  # the Replica, for the four-letter words
        # While a quorum member serves read-only (zkpy.server.readonly.ReadOnlyServer): it takes
        # only read-only clients, makes local sessions and refuses writes.
        self.read_only: Any = None

    def restore(self, tree: DataTree, sessions: dict[int, int], now: int) -> None:
        """Adopt a recovered tree and session list (before serving).

        Restored sessions get their full timeout from now, as in ZooKeeper:
        their clients have had no chance to ping while the server was down.
        """
        self.tree = tree
        self.prep.tree = tree
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

    # -- local sessions -------------------------------------------------------

    def open_local_session(self, timeout: int, now: int) -> int:
        sid = self.sessions.new_id()
        self.sessions.add(sid, timeout, now).local = True
        return sid

    def close_local_session(self, sid: int, why: str) -> None:
        """A local session ends here alone (it owns no ephemerals: creating one
        would have made it global)."""
        session = self.sessions.remove(sid)
        if session is None:
            return
        log.info("Local session 0x%x %s", sid & 0xFFFFFFFFFFFFFFFF, why)
        conn = session.conn
        if conn is not None and conn.session_id == sid:
            conn.close_after_flush()

    def drop_local_sessions(self) -> int:
        """Forget every local session (the server stopped serving: ZooKeeper's
        LocalSessionTracker does not outlive its ZooKeeperServer)."""
        ids = self.sessions.local_ids()
        for sid in ids:
            self.sessions.remove(sid)
        return len(ids)

    def upgrade_session(self, sid: int, now: int) -> bool:
        """Make a local session global before its first ephemeral (ZooKeeper's
        session upgrade): a createSession goes through the pipeline first."""
        session = self.sessions.get(sid)
        if session is None or not session.local:
            return False
        log.info("Upgrading local session 0x%x to a global session", sid & 0xFFFFFFFFFFFFFFFF)
        session.local = False  # from now on the leader tracks it (once its commit lands)
        req = Request(sid, 0, Op.createSession, session.timeout, [], None)
        req.created = now
        self.submit(req, now)
        return True

    # -- connections ----------------------------------------------------------

    def connect(self, remote_host: str, remote_port: int, sink: Callable[[bytes], None],
                closer: Callable[[], None], now: int) -> Any:
        from zkpy.server.connection import Connection

        self._conn_ids += 1
        conn = Connection(self, self._conn_ids, remote_host, remote_port, sink, closer, now)
        self.connections[conn.id] = conn
        return conn

    def connection_lost(self, conn: Any) -> None:
        if self.connections.pop(conn.id, None) is None:
            return
        if conn.state != "closed":  # not closed by us: the client went away
            log.info("Client %s:%d closed the connection%s", conn.host, conn.port,
                     f" with {len(conn.buf)} bytes of an incomplete frame unread"
                     if conn.buf else "")
        self.watches.remove_watcher(conn)
        self.dirty.pop(conn, None)
        session = self.sessions.get(conn.session_id) if conn.session_id else None
        if session is not None and session.conn is conn:
            session.conn = None

    def flush(self) -> None:
        """Hand every connection's queued output to its transport."""
        while self.dirty:
            conn = next(iter(self.dirty))
            del self.dirty[conn]
            conn.flush()
        if self.after_flush is not None:
            self.after_flush()

    # -- time ---------------------------------------------------------------

    def tick(self, now: int) -> None:
        """Expire sessions whose deadline passed; reap empty containers and TTLs."""
        self.now = now
        # Local sessions expire where they live; global ones only on the leader.
        if self.expiring or self.settings.local_sessions:
            for session in self.sessions.expire(now):
                if session.local:
                    self.close_local_session(session.id, "expired")
                elif not self.expiring:
                    session.closing = False  # the leader's to expire, not ours
                else:
                    log.info("Expiring session 0x%x, timeout of %dms exceeded",
                             session.id & (2**64 - 1), session.timeout)
                    self.submit(Request(session.id, 0, Op.closeSession, None, []), now)
        if not self.expiring:
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
            self.submit(Request(0, 0, Op.deleteContainer, S.DeleteRequest(path, -1), []), now)

    # -- the write pipeline ------------------------------------------------------

    def submit(self, req: Request, now: int) -> None:
        """Prep a write and propose it (a follower forwards it to the leader)."""
        self.outstanding_writes += 1
        if self.forward is not None:
            self.forward(req)
            return
        zxid = self.next_zxid
        self.next_zxid += 1
        self.prep.prepare(req, zxid, now)
        if req.type == Op.closeSession:
            session = self.sessions.get(req.session_id)
            if session is not None:
                session.closing = True
        self.committer.propose(req)

    def commit(self, req: Request, ours: bool = True) -> None:
        """Apply a committed transaction and answer it (called in zxid order).
        ``ours``: it went through ``submit`` here (not another member's write)."""
        hdr = req.hdr
        self.stats.commits += 1
        if ours:
            self.outstanding_writes -= 1
        if hdr.type == Op.createSession:
            # (An upgraded local session becomes global here, on every member.)
            self.sessions.add(req.session_id, req.txn.timeOut, self.now).local = False
            rc = None
        else:
            rc = self.tree.apply(hdr, req.txn)  # advances tree.last_zxid itself
        if hdr.zxid > self.tree.last_zxid:  # createSession does not touch the tree
            self.tree.last_zxid = hdr.zxid
        self.prep.applied(hdr.zxid)
        if rc is not None and rc.triggers:
            self._fire(rc.triggers)
        if hdr.type == Op.closeSession:
            self._session_closed(req.session_id)
        conn = req.conn
        if conn is not None:
            conn.committed(req, rc)

    def _fire(self, triggers: list[tuple[str, int, Any]]) -> None:
        # As ZooKeeper since CVE-2024-23944 (and Debian's 3.8.0): an event only
        # reaches a watcher that may READ the node it is about; the watch is
        # spent either way.
        check = None if self.settings.skip_acl else self.auth.check
        for path, etype, acl in triggers:
            for conn in self.watches.trigger(path, etype):
                if check is not None:
                    try:
                        check(acl, Perms.READ, conn.ids)
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

    def outstanding(self) -> int:
        return sum(len(c.pending) for c in self.connections.values())
