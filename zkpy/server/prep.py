"""Turning a write request into an idempotent transaction (ZooKeeper's PrepRequestProcessor).

``Prep.prepare`` checks a request against the tree *plus every transaction
still in flight* (the "future state" of the ZooKeeper paper, section 4.1) and
returns the transaction to propose: a TxnHeader and a body whose applying does
not depend on the state it is applied to (new versions, the sequence suffix
and the parent's new cversion are computed here, not at apply time). A request
that fails its checks becomes an ``ErrorTxn`` with the same zxid, as in
ZooKeeper, so failed writes are logged and ordered too.

In-flight state is a set of change records, one per touched path, dropped once
the transaction that made them has been applied (``Prep.applied``).

Each change record also carries its node's digest and the tree digest once
it applies, as ZooKeeper's PrecalculatedDigest does, so that a transaction
leaves here with the TxnDigest of the state it will make (``req.digest``,
written into the log entry and the PROPOSAL; None for a failed write, as in
ZooKeeper, and with digests disabled).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Final

from zkpy.auth.acl import AuthProviders
from zkpy.jute import schema as S
from zkpy.jute.opcodes import (
    OP_check,
    OP_closeSession,
    OP_create,
    OP_create2,
    OP_createContainer,
    OP_createSession,
    OP_createTTL,
    OP_delete,
    OP_deleteContainer,
    OP_error,
    OP_multi,
    OP_reconfig,
    OP_setACL,
    OP_setData,
)
from zkpy.jute.protocol import (
    CONTAINER_EPHEMERAL_OWNER,
    MAX_TTL,
    MULTI_READ_OPS,
    TTL_EPHEMERAL_OWNER_MASK,
    CreateMode,
    Err,
    Perms,
    ZkError,
)
from zkpy.server.quota_check import QuotaGuard
from zkpy.tree.datatree import (
    CONFIG_NODE,
    DataTree,
    MultiTxnBody,
    ephemeral_kind,
    int32,
    split_path,
)
from zkpy.tree.digest import DIGEST_VERSION, as_long
from zkpy.tree.paths import path_error
from zkpy.zab import membership

log = logging.getLogger("zkpy.server")

_INT_MAX = 0x7FFFFFFF
# DataTree.isSpecialPath: never deleted, whatever the ACLs say.
_SPECIAL_PATHS = frozenset({"/", "/zookeeper", "/zookeeper/quota", "/zookeeper/config"})


#: The body of a write request that could not be decoded: ZooKeeper's
#: PrepRequestProcessor gives it a zxid before deserializing, so it becomes
#: an ErrorTxn(MARSHALLINGERROR) like any failed write.
MALFORMED: Final[Any] = object()


class Request:
    """A client (or server-internal) request on its way through the pipeline."""

    __slots__ = ("session_id", "cxid", "type", "body", "ids", "conn", "hdr", "txn", "created",
                 "raw", "digest", "origin")

    def __init__(self, session_id: int, cxid: int, type: int, body: Any, ids: list[Any],
                 conn: Any = None) -> None:
        self.session_id = session_id
        self.cxid = cxid
        self.type = type
        self.body = body
        self.ids = ids
        self.conn = conn
        self.hdr: Any = None
        self.txn: Any = None
        self.created = 0
        self.raw = b""  # the client's request frame (xid, op, body): what a follower forwards
        self.digest: Any = None  # the TxnDigest the txn carries (see zkpy.tree.digest)
        self.origin: int | None = None  # on a leader: the learner that forwarded it


class Change:
    """The future state of one path: what it will be once in-flight txns apply.

    ``cversion`` here is the stored count of child creations (see tree.Node).
    ``dg`` is the node's digest in that state, ``tree_dg`` the tree's digest
    (a running sum, see ``zkpy.tree.digest``) once this change has applied.
    """

    __slots__ = ("zxid", "path", "exists", "data", "acl", "version", "cversion",
                 "aversion", "owner", "child_count", "czxid", "mzxid", "pzxid", "ctime",
                 "mtime", "dg", "tree_dg")

    def __init__(self, zxid: int, path: str, exists: bool, data: bytes | None = None,
                 acl: Any = (), version: int = 0, cversion: int = 0, aversion: int = 0,
                 owner: int = 0, child_count: int = 0) -> None:
        self.zxid = zxid
        self.path = path
        self.exists = exists
        self.data = data
        self.acl = acl
        self.version = version
        self.cversion = cversion
        self.aversion = aversion
        self.owner = owner
        self.child_count = child_count
        # A new node's stat: DataTree.createStat (the creator sets the times).
        self.czxid = self.mzxid = self.pzxid = zxid
        self.ctime = self.mtime = 0
        self.dg = self.tree_dg = 0

    def copy(self, zxid: int) -> Change:
        if self.zxid == -1:
            # Made fresh from the tree by Prep.record: nobody else holds it.
            self.zxid = zxid
            return self
        c = Change(zxid, self.path, self.exists, self.data, self.acl, self.version,
                   self.cversion, self.aversion, self.owner, self.child_count)
        c.czxid, c.mzxid, c.pzxid = self.czxid, self.mzxid, self.pzxid
        c.ctime, c.mtime, c.dg = self.ctime, self.mtime, self.dg
        return c


def _next_version(current: int, expected: int, path: str) -> int:
    if expected != -1 and expected != current:
        raise ZkError(Err.BADVERSION, path)
    # Java int arithmetic: the version wraps rather than overflowing.
    return -0x80000000 if current == _INT_MAX else current + 1


def _validate(path: str | None) -> str:
    if path_error(path) is not None:
        raise ZkError(Err.BADARGUMENTS, path)
    assert path is not None
    return path


class _NoMetrics:
    """Counters nobody reads (a Prep outside a server)."""

    outstanding_changes_queued = 0
    outstanding_changes_removed = 0


class Prep:
    """Checks write requests and builds their transactions."""

    def __init__(self, tree: DataTree, auth: AuthProviders, extended_types: bool = False,
                 skip_acl: bool = False) -> None:
        self.tree = tree
        self.auth = auth
        self.extended_types = extended_types
        self.skip_acl = skip_acl
        self.reconfig_enabled = False
        self.standalone_enabled = True
        # On an ensemble's leader: () -> (active membership, a reconfig in flight,
        # the voters synced with us, ourselves included); None elsewhere.
        self.membership: Callable[[], tuple[membership.QuorumConfig, bool, set[int]]] | None = None
        # On an ensemble's leader: SessionTracker.checkSession for every write
        # (raises ZkError SESSIONEXPIRED / SESSIONMOVED); None elsewhere.
        self.check_session: Callable[[Request], None] | None = None
        self._changes: deque[Change] = deque()
        self._by_path: dict[str, Change] = {}
        self._now = 0  # the time of the request being prepared
        self.quota = QuotaGuard()  # zookeeper.enforceQuota (off by default)
        # Counts outstanding_changes_queued/removed (the core's ServerMetrics).
        self.metrics: Any = _NoMetrics()
        self.digest_on = tree.digest_on

    # -- future state -------------------------------------------------------

    def record(self, path: str) -> Change:
        change = self._by_path.get(path)
        if change is not None:
            if not change.exists:
                raise ZkError(Err.NONODE, path)
            return change
        node = self.tree.get(path)
        if node is None:
            raise ZkError(Err.NONODE, path)
        c = Change(-1, path, True, node.data, node.acl, node.version, node.ccount,
                   node.aversion, node.owner, node.numChildren)
        c.czxid, c.mzxid, c.pzxid = node.czxid, node.mzxid, node.pzxid
        c.ctime, c.mtime, c.dg = node.ctime, node.mtime, node.dg
        return c

    def _add(self, change: Change, before: int) -> None:
        """Record ``change``; ``before`` is its node's digest before it (0: new node)."""
        if self.digest_on:
            c = change  # (its stored cversion is what the digest counts)
            # (Its path and data part noted for the tree to carry on from: CrcMemo.)
            after = self.tree.crc_memo.digest(
                c.path, c.data, c.czxid, c.mzxid, c.pzxid, c.ctime, c.mtime, c.version,
                c.cversion, c.aversion, c.owner) if c.exists else 0
            changes = self._changes
            future = changes[-1].tree_dg if changes else self.tree.digest_sum
            change.tree_dg = future - before + after
            change.dg = after
        self._changes.append(change)
        self._by_path[change.path] = change
        self.metrics.outstanding_changes_queued += 1

    def _future_digest(self) -> int:
        """PrepRequestProcessor.getCurrentTreeDigest: the last change's, or the tree's."""
        return self._changes[-1].tree_dg if self._changes else self.tree.digest_sum

    def applied(self, zxid: int) -> None:
        """Forget the change records of every transaction up to ``zxid``."""
        changes = self._changes
        while changes and changes[0].zxid <= zxid:
            c = changes.popleft()
            self.metrics.outstanding_changes_removed += 1
            if self._by_path.get(c.path) is c:
                del self._by_path[c.path]
        if not changes and self.tree.crc_memo.by_path:
            self.tree.crc_memo.clear()  # what is left was never applied

    def outstanding(self) -> int:
        return len(self._changes)

    def future(self, path: str) -> Change | None:
        """The in-flight change of ``path`` (None: the tree says what it will be)."""
        return self._by_path.get(path)

    def in_flight(self) -> Iterable[tuple[str, Change]]:
        """Every path an in-flight transaction changes, with its future state."""
        return self._by_path.items()

    def forget_in_flight(self) -> None:
        """Drop the future state: the transactions in flight will never be
        applied (a leader lost its quorum)."""
        self._changes.clear()
        self._by_path.clear()
        self.tree.crc_memo.clear()

    def _valid(self, path: str | None) -> str:
        # A path that names a node is valid: skip the character scan for it.
        if path is not None and path in self.tree.nodes:
            return path
        return _validate(path)

    def _check(self, acl: Any, perm: int, req: Request) -> None:
        if not self.skip_acl:
            self.auth.check(acl, perm, req.ids)

    # -- entry point ----------------------------------------------------------

    def prepare(self, req: Request, zxid: int, time: int) -> None:
        """Set ``req.hdr``, ``req.txn`` and ``req.digest``; a failed check yields an
        ErrorTxn (without a digest)."""
        self._now = time
        req.hdr = S.TxnHeader(req.session_id, req.cxid, zxid, time, req.type)
        req.digest = None
        try:
            if req.body is MALFORMED:
                raise ZkError(Err.MARSHALLINGERROR)
            if self.check_session is not None:
                self.check_session(req)
            if req.type == OP_multi:
                req.txn = self._multi(req, zxid, time)
            else:
                req.txn = self._one(req.type, req.body, req, zxid, time)
        except ZkError as e:
            req.hdr.type = OP_error
            req.txn = S.ErrorTxn(int(e.code))
            return
        if self.digest_on:
            req.digest = S.TxnDigest(DIGEST_VERSION, as_long(self._future_digest()))

    def _one(self, type: int, body: Any, req: Request, zxid: int, time: int) -> Any:
        if type in (OP_create, OP_create2, OP_createTTL, OP_createContainer):
            return self._create(type, body, req, zxid, time)
        if type == OP_delete or type == OP_deleteContainer:
            return self._delete(type, body, req, zxid)
        if type == OP_setData:
            return self._set_data(body, req, zxid, time)
        if type == OP_setACL:
            return self._set_acl(body, req, zxid)
        if type == OP_check:
            path = self._valid(body.path)
            rec = self.record(path)
            self._check(rec.acl, Perms.READ, req)
            return S.CheckVersionTxn(path, _next_version(rec.version, body.version, path))
        if type == OP_createSession:
            return S.CreateSessionTxn(body)
        if type == OP_closeSession:
            return self._close_session(req, zxid)
        if type == OP_reconfig:
            return self._reconfig(body, req, zxid)
        raise ZkError(Err.UNIMPLEMENTED)

    def _reconfig(self, body: Any, req: Request, zxid: int) -> Any:
        """PrepRequestProcessor's reconfig, in its order of checks (the ACL last)."""
        if not self.reconfig_enabled:
            raise ZkError(Err.RECONFIGDISABLED)
        if self.membership is None:
            raise ZkError(Err.UNIMPLEMENTED)  # standalone: reconfig is not supported
        current, in_progress, synced = self.membership()
        if in_progress:
            raise ZkError(Err.RECONFIGINPROGRESS)
        if body.curConfigId != -1 and body.curConfigId != current.version:
            raise ZkError(Err.BADVERSION)
        try:
            wanted = membership.reconfigured(current, body.joiningServers, body.leavingServers,
                                             body.newMembers)
        except membership.ReconfigError as e:
            log.info("Reconfig refused: %s", e)
            raise ZkError(Err.BADARGUMENTS) from None
        if self.standalone_enabled and len(wanted.voters) < 2:
            log.info("Reconfig refused: the new configuration must include at least 2 "
                     "participants (standaloneEnabled=true)")
            raise ZkError(Err.BADARGUMENTS)
        if not wanted.quorum(synced):
            log.info("Reconfig refused: no connected and synced quorum of %s in the new "
                     "configuration (synced: %s)", sorted(wanted.voters), sorted(synced))
            raise ZkError(Err.NEWCONFIGNOQUORUM)
        node = self.record(CONFIG_NODE)
        self._check(node.acl, Perms.WRITE, req)
        data = wanted.with_version(zxid).text().encode()
        before = node.dg
        node = node.copy(zxid)
        node.version = -1
        node.data = data
        node.mzxid = zxid
        node.mtime = req.hdr.time
        self._add(node, before)
        return S.SetDataTxn(CONFIG_NODE, data, -1)

    def _create(self, type: int, body: Any, req: Request, zxid: int, time: int) -> Any:
        flags = body.flags
        if flags not in CreateMode.ALL:
            raise ZkError(Err.BADARGUMENTS, body.path)
        ttl = body.ttl if type == OP_createTTL else -1
        is_ttl = flags in CreateMode.TTL_FLAGS
        if is_ttl and not self.extended_types:
            raise ZkError(Err.UNIMPLEMENTED, body.path)
        if is_ttl and not (0 < ttl <= MAX_TTL):
            raise ZkError(Err.BADARGUMENTS, body.path)
        if not is_ttl and ttl >= 0:
            raise ZkError(Err.BADARGUMENTS, body.path)
        if type == OP_createTTL and not is_ttl:
            # ZooKeeper 3.8 accepts this (ttl < 0) and then dies applying the txn.
            raise ZkError(Err.BADARGUMENTS, body.path)
        path = body.path
        if path is None or "/" not in path or "\0" in path:
            raise ZkError(Err.BADARGUMENTS, path)
        parent_path = path[:path.rfind("/")] or "/"
        acl = self.auth.fixup(path, req.ids, body.acl)
        parent = self.record(parent_path)
        self._check(parent.acl, Perms.CREATE, req)
        if flags in CreateMode.SEQUENTIAL_FLAGS:
            # Java's %010d: zero-padded to ten characters, sign included.
            path = f"{path}{parent.cversion:010d}"
        _validate(path)
        try:
            self.record(path)
            raise ZkError(Err.NODEEXISTS, path)
        except ZkError as e:
            if e.code != Err.NONODE:
                raise
        if ephemeral_kind(parent.owner) == "ephemeral":
            raise ZkError(Err.NOCHILDRENFOREPHEMERALS, path)
        self.quota.check(self, path, None, body.data, True, self._now)
        new_cversion = int32(parent.cversion + 1)  # Java's int: -2^31 after 2^31-1
        data = body.data
        # As PrepRequestProcessor: the opcode, not the flags, picks the node type
        # (create with the container flag makes a persistent node).
        if type == OP_createContainer:
            txn: Any = S.CreateContainerTxn(path, data, acl, new_cversion)
            owner = CONTAINER_EPHEMERAL_OWNER
        elif type == OP_createTTL:
            txn = S.CreateTTLTxn(path, data, acl, new_cversion, ttl)
            owner = TTL_EPHEMERAL_OWNER_MASK | ttl
        else:
            ephemeral = flags in CreateMode.EPHEMERAL_FLAGS
            txn = S.CreateTxn(path, data, acl, ephemeral, new_cversion)
            owner = req.session_id if ephemeral else 0
        before = parent.dg
        parent = parent.copy(zxid)
        parent.child_count += 1
        if new_cversion > parent.cversion:  # as DataTree.createNode takes it
            parent.cversion = new_cversion
            parent.pzxid = zxid
        self._add(parent, before)
        node = Change(zxid, path, True, data, acl, owner=owner)
        node.ctime = node.mtime = time
        self._add(node, 0)
        return txn

    def _delete(self, type: int, body: Any, req: Request, zxid: int) -> Any:
        path = body.path
        if path is None or "/" not in path or "\0" in path or path in _SPECIAL_PATHS:
            raise ZkError(Err.BADARGUMENTS, path)
        parent_path = path[:path.rfind("/")] or "/"
        parent = self.record(parent_path)
        if type == OP_delete:
            self._check(parent.acl, Perms.DELETE, req)
        node = self.record(path)
        if type == OP_delete:
            _next_version(node.version, body.version, path)
        if node.child_count > 0:
            raise ZkError(Err.NOTEMPTY, path)
        self._remove(parent, node, zxid)
        return S.DeleteTxn(path)

    def _remove(self, parent: Change, node: Change, zxid: int) -> None:
        before = parent.dg
        parent = parent.copy(zxid)
        parent.child_count -= 1
        parent.pzxid = zxid
        self._add(parent, before)
        self._add(Change(zxid, node.path, False), node.dg)

    def _set_data(self, body: S.SetDataRequest, req: Request, zxid: int, time: int) -> Any:
        path = self._valid(body.path)
        data = body.data
        node = self.record(path)
        self._check(node.acl, Perms.WRITE, req)
        self.quota.check(self, path, node.data, data, False, self._now)
        version = _next_version(node.version, body.version, path)
        before = node.dg
        node = node.copy(zxid)
        node.version = version
        node.data = data
        node.mzxid = zxid
        node.mtime = time
        self._add(node, before)
        return S.SetDataTxn(path, data, version)

    def _set_acl(self, body: Any, req: Request, zxid: int) -> Any:
        path = self._valid(body.path)
        acl = self.auth.fixup(path, req.ids, body.acl)
        node = self.record(path)
        self._check(node.acl, Perms.ADMIN, req)
        version = _next_version(node.aversion, body.version, path)
        before = node.dg
        node = node.copy(zxid)
        node.aversion = version
        node.acl = tuple(acl)
        self._add(node, before)
        return S.SetACLTxn(path, acl, version)

    def _close_session(self, req: Request, zxid: int) -> Any:
        paths = set(self.tree.ephemerals_of(req.session_id))
        for c in self._changes:
            if not c.exists:
                paths.discard(c.path)
            elif c.owner == req.session_id:
                paths.add(c.path)
        # PrepRequestProcessor iterates the session's HashSet: that order goes
        # into the txn, and the nodes are deleted (their watches fire) in it.
        doomed = self.tree.ephemerals_in_java_order(req.session_id, paths)
        for path in doomed:
            try:
                node = self.record(path)
            except ZkError:
                node = Change(zxid, path, False)
            try:
                self._remove(self.record(split_path(path)[0]), node, zxid)
            except ZkError:
                self._add(Change(zxid, path, False), node.dg)
        return S.CloseSessionTxn(doomed)

    def _multi(self, req: Request, zxid: int, time: int) -> Any:
        ops: list[tuple[int, Any]] = []
        failure: ZkError | None = None
        # Roll back this multi's change records if one op fails, so the
        # future state does not show half a multi.
        mark = len(self._changes)
        saved = dict(self._by_path)
        if any(op_type in MULTI_READ_OPS for op_type, _ in req.body):
            # ZooKeeper: read ops in a multi (alone or mixed with writes, even
            # after a failing op) make the whole request MARSHALLINGERROR.
            raise ZkError(Err.MARSHALLINGERROR)
        for op_type, body in req.body:
            if failure is not None:
                ops.append((OP_error, S.ErrorTxn(int(Err.RUNTIMEINCONSISTENCY))))
                continue
            try:
                if op_type not in (OP_create, OP_create2, OP_createTTL, OP_createContainer,
                                   OP_delete, OP_setData, OP_check):
                    raise ZkError(Err.BADARGUMENTS)
                ops.append((op_type, self._one(op_type, body, req, zxid, time)))
            except ZkError as e:
                failure = e
                ops.append((OP_error, S.ErrorTxn(int(e.code))))
                while len(self._changes) > mark:
                    self._changes.pop()
                self._by_path = saved
        return MultiTxnBody(ops)
