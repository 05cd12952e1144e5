"""The data tree: znodes, their Stats and ACLs, and applying transactions.

``DataTree.apply(hdr, txn)`` is the only way the tree changes. It takes a
transaction already checked by ``zkpy.server.prep`` and applies it exactly as Apache
ZooKeeper's ``DataTree.processTxn`` does, including the idempotence that
replaying a log over a fuzzy snapshot needs (a parent's cversion and pzxid only
move forward). It returns a ``TxnResult`` with the outcome and the watch
triggers, as (path, event type) pairs in the order ZooKeeper fires them; it
never talks to watchers, sessions, clocks or sockets itself.

Nodes are stored flat, by full path, and a parent keeps its children's full
paths (the very strings the index holds: a child costs its parent a set entry,
not a second string); lookups are one dict access and the Stat is read straight
off the node.

The tree keeps Apache ZooKeeper's digest (``zkpy.tree.digest``) up to date as
it changes: ``tree.digest`` is what ZooKeeper's ``DataTree.getTreeDigest``
would say of the same nodes, and ``apply(hdr, txn, digest)`` checks the
TxnDigest a transaction carries against it (``tree.digests``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

from zkpy.jute import schema as S
from zkpy.jute.codec import layout
from zkpy.jute.opcodes import (
    OP_check,
    OP_closeSession,
    OP_create,
    OP_create2,
    OP_createContainer,
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
    TTL_EPHEMERAL_OWNER_MASK,
    EventType,
    Perms,
)
from zkpy.tree import digest as tree_digest
from zkpy.tree.digest import (
    DIGEST_VERSION,
    LOG_INTERVAL,
    MASK64,
    CrcMemo,
    DigestChecks,
    digest_of,
    stat_digest,
)
from zkpy.tree.java_hash import hash_set_order
from zkpy.tree.quota import QuotaIndex, on_create, on_delete, on_set_data

# EventType members read per request, kept as module constants: on Python 3.11
# reading an enum member goes through EnumType.__getattr__'s hook.
_EventType_NodeChildrenChanged: Final = EventType.NodeChildrenChanged
_EventType_NodeCreated: Final = EventType.NodeCreated
_EventType_NodeDataChanged: Final = EventType.NodeDataChanged
_EventType_NodeDeleted: Final = EventType.NodeDeleted

_INT_MAX = 0x7FFFFFFF
_pack_stat = layout(S.Stat).pack  # a Stat as jute lays it out, in one call
_HISTORY_MASK = LOG_INTERVAL - 1

OPEN_ACL_UNSAFE: tuple[Any, ...] = (S.ACL(Perms.ALL, S.Id("world", "anyone")),)
READ_ACL_UNSAFE: tuple[Any, ...] = (S.ACL(Perms.READ, S.Id("world", "anyone")),)

ZOOKEEPER_NODE = "/zookeeper"
QUOTA_NODE = "/zookeeper/quota"
CONFIG_NODE = "/zookeeper/config"


def ephemeral_kind(owner: int) -> str:
    """Classify an ephemeralOwner value the way ZooKeeper's EphemeralType does."""
    if owner == 0:
        return "persistent"
    if owner == CONTAINER_EPHEMERAL_OWNER:
        return "container"
    if owner < 0 and (owner & TTL_EPHEMERAL_OWNER_MASK) == TTL_EPHEMERAL_OWNER_MASK:
        return "ttl"
    return "ephemeral"


def split_path(path: str) -> tuple[str, str]:
    """('/a/b' -> ('/a', 'b')); the root's children have parent '/'."""
    i = path.rfind("/")
    return (path[:i] or "/"), path[i + 1:]


def int32(value: int) -> int:
    """``value`` as Java's int arithmetic leaves it (wrapping past 2^31-1): stat
    fields are ints in ZooKeeper, and a tree loaded from a snapshot may hold any."""
    return (value + 0x80000000) % 0x100000000 - 0x80000000


class Node:
    """One znode. Attribute names are the Stat field names, so the codec can
    encode a node wherever a Stat is expected.

    Two Stat fields are derived the way ZooKeeper's DataNode.copyStat derives
    them: the stored ``ccount`` counts child creations (it is what sequential
    suffixes are numbered from), and the client sees
    ``cversion = 2 * ccount - numChildren`` (creations plus deletions); the
    client sees ``ephemeralOwner`` 0 for containers and TTL nodes.

    ``dg`` caches the node's digest (ZooKeeper's DataNode does the same), so
    that replacing or removing it costs no second CRC.
    """

    __slots__ = ("data", "acl", "czxid", "mzxid", "ctime", "mtime", "version",
                 "ccount", "aversion", "owner", "pzxid", "children", "dg")

    def __init__(self, data: bytes | None, acl: tuple[Any, ...], zxid: int, time: int,
                 owner: int) -> None:
        self.data = data
        self.acl = acl
        self.czxid = self.mzxid = self.pzxid = zxid
        self.ctime = self.mtime = time
        self.version = self.ccount = self.aversion = 0
        self.owner = owner
        self.children: set[str] | None = None
        self.dg = 0

    @property
    def dataLength(self) -> int:
        return len(self.data) if self.data is not None else 0

    @property
    def numChildren(self) -> int:
        return len(self.children) if self.children else 0

    @property
    def cversion(self) -> int:
        return int32(self.ccount * 2 - (len(self.children) if self.children else 0))

    @property
    def ephemeralOwner(self) -> int:
        owner = self.owner
        return owner if owner >= 0 or ephemeral_kind(owner) == "ephemeral" else 0

    def wire_stat(self) -> bytes:
        """The Stat as jute encodes it: what ``encode`` makes of the node as a nested
        Stat, in one pack (replies carry one for every read and most writes). The
        derived fields come from the properties above, their one home."""
        return _pack_stat(self.czxid, self.mzxid, self.ctime, self.mtime, self.version,
                          self.cversion, self.aversion, self.ephemeralOwner, self.dataLength,
                          self.numChildren, self.pzxid)

    def stat(self) -> Any:
        """A detached copy of the Stat (for results that must not change later)."""
        return S.Stat(self.czxid, self.mzxid, self.ctime, self.mtime, self.version,
                      self.cversion, self.aversion, self.ephemeralOwner, self.dataLength,
                      self.numChildren, self.pzxid)


class TxnResult:
    """What applying one transaction did (ZooKeeper's ProcessTxnResult)."""

    # ``stat`` is the live Node for a single op (encode it before the next apply)
    # and a detached Stat inside a multi.
    __slots__ = ("type", "err", "path", "stat", "multi", "triggers", "zxid", "session_id", "cxid")

    def __init__(self, type: int, zxid: int, session_id: int, cxid: int) -> None:
        self.type = type
        self.err = 0
        self.path: str | None = None
        self.stat: Any = None
        self.multi: list[TxnResult] | None = None
        self.triggers: list[tuple[str, int, Any]] = []  # (path, event type, the node's ACL)
        self.zxid = zxid
        self.session_id = session_id
        self.cxid = cxid


class DataTree:
    """The znodes, the ephemeral index and the extended-type indexes."""

    def __init__(self, populated: bool = True) -> None:
        self.nodes: dict[str, Node] = {}
        self.ephemerals: dict[int, set[str]] = {}
        self.containers: set[str] = set()
        self.ttls: set[str] = set()
        self.last_zxid = 0
        self._acls: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        self.quota = QuotaIndex()  # the paths with a quota (see zkpy.tree.quota)
        # Where (path, bytes) of each node created, deleted or changed is noted
        # (DataTree.updateWriteStat; the server's write_per_namespace), or None.
        self.written: Callable[[tuple[str, int]], None] | None = None
        self.digest_on = tree_digest.enabled()
        self.digests = DigestChecks()
        # What prep already summed of the nodes its writes change (see CrcMemo).
        self.crc_memo = CrcMemo()
        self.digest_sum = 0  # the node digests' sum, unbounded: ``digest`` wraps it
        if not populated:
            return
        root = Node(b"", self.intern_acl(OPEN_ACL_UNSAFE), 0, 0, 0)
        self.nodes["/"] = root
        self._add_system_node(ZOOKEEPER_NODE, OPEN_ACL_UNSAFE)
        self._add_system_node(QUOTA_NODE, OPEN_ACL_UNSAFE)
        self._add_system_node(CONFIG_NODE, READ_ACL_UNSAFE)
        # As on Apache ZooKeeper: the config node starts at aversion -1.
        self.nodes[CONFIG_NODE].aversion = -1
        self.rehash()

    @classmethod
    def empty(cls) -> DataTree:
        """A tree with no nodes at all, to be filled from a snapshot."""
        # (not through cls.__new__, which mypyc cannot compile)
        return cls(populated=False)

    def set_config(self, data: bytes, version: int, time: int) -> TxnResult:
        """ZKDatabase.initConfigInZKDatabase: /zookeeper/config holds the active
        membership, its mzxid the membership's version (watches fire as for setData)."""
        return self._apply_one(OP_reconfig, S.SetDataTxn(CONFIG_NODE, data, -1), version, time,
                               0, 0)

    def _add_system_node(self, path: str, acl: tuple[Any, ...]) -> None:
        parent, name = split_path(path)
        self.nodes[path] = Node(b"", self.intern_acl(acl), 0, 0, 0)
        p = self.nodes[parent]
        if p.children is None:
            p.children = set()
        p.children.add(path)

    # -- the digest ------------------------------------------------------------

    @property
    def digest(self) -> int:
        """ZooKeeper's tree digest (a Java long; 0 with digests disabled)."""
        return tree_digest.as_long(self.digest_sum)

    def rehash(self) -> int:
        """Compute every node's digest afresh (a tree built without ``apply``)."""
        total = 0
        if self.digest_on:
            for path, node in self.nodes.items():
                node.dg = dg = digest_of(path, node)
                total += dg
        self.digest_sum = total
        return self.digest

    def zxid_digest(self) -> tuple[int, int, int] | None:
        """(zxid, digest version, digest) for a snapshot's trailer; None with digests
        off. A tree still short of its snapshot's digest zxid (fuzzy) reports that
        target: replaying up to it from any later snapshot of this tree reaches it."""
        if not self.digest_on:
            return None
        if self.digests.target is not None:
            return self.digests.target
        if self.last_zxid <= 0:
            return (0, tree_digest.DIGEST_VERSION, 0)  # ZooKeeper's "empty" digest
        return (self.last_zxid, tree_digest.DIGEST_VERSION, self.digest)

    def _digest(self, path: str, node: Node) -> int:
        """The node's digest: carried on from prep's CRC of its path and data
        when prep noted this very data, else computed whole."""
        crc = self.crc_memo.take(path, node.data)
        if crc < 0:
            return digest_of(path, node)
        return stat_digest(crc, node.czxid, node.mzxid, node.pzxid, node.ctime, node.mtime,
                           node.version, node.ccount, node.aversion, node.owner)

    def _rehash(self, path: str, node: Node) -> None:
        dg = self._digest(path, node)
        self.digest_sum += dg - node.dg
        node.dg = dg

    # -- reads ---------------------------------------------------------------

    def get(self, path: str) -> Node | None:
        return self.nodes.get(path)

    def __len__(self) -> int:
        return len(self.nodes)

    def children(self, path: str, node: Node) -> list[str]:
        """The names of the children of ``node``, the node at ``path``."""
        if not node.children:
            return []
        cut = 1 if path == "/" else len(path) + 1
        return [child[cut:] for child in node.children]

    def all_children_number(self, path: str) -> int:
        """Number of nodes strictly below ``path``."""
        if path == "/":
            return len(self.nodes) - 1
        prefix = path + "/"
        return sum(1 for p in self.nodes if p.startswith(prefix))

    def ephemerals_of(self, session_id: int) -> set[str]:
        return self.ephemerals.get(session_id, set())

    def intern_acl(self, acl: Iterable[Any] | None) -> tuple[Any, ...]:
        """Share one tuple per distinct ACL list, as ZooKeeper's ACL cache does
        (which also reads a null list, from a txn, as OPEN_ACL_UNSAFE)."""
        entries = OPEN_ACL_UNSAFE if acl is None else acl
        key = tuple((a.perms, a.id.scheme, a.id.id) for a in entries)
        cached = self._acls.get(key)
        if cached is None:
            cached = tuple(S.ACL(p, S.Id(s, i)) for p, s, i in key)
            self._acls[key] = cached
        return cached

    def index_kind(self, path: str, owner: int) -> None:
        """Index the node at ``path`` by what its ephemeralOwner makes it: an
        ephemeral (by session), a container or a TTL node."""
        kind = ephemeral_kind(owner)
        if kind == "ephemeral":
            self.ephemerals.setdefault(owner, set()).add(path)
        elif kind == "container":
            self.containers.add(path)
        elif kind == "ttl":
            self.ttls.add(path)

    def acl_lists(self) -> list[tuple[Any, ...]]:
        """Every distinct ACL the tree has interned (none is ever dropped)."""
        return list(self._acls.values())

    def walk(self) -> Iterator[tuple[str, Node]]:
        """Parents before children: the order a snapshot needs."""
        stack = ["/"]
        while stack:
            path = stack.pop()
            node = self.nodes[path]
            yield path, node
            if node.children:
                stack.extend(node.children)

    # -- transactions --------------------------------------------------------

    def apply(self, hdr: S.TxnHeader, txn: Any, digest: S.TxnDigest | None = None) -> TxnResult:
        """Apply one transaction (TxnHeader + body); see ZooKeeper's processTxn.
        ``digest``: the TxnDigest it carries, checked against the tree's after."""
        rc = self._apply_one(hdr.type, txn, hdr.zxid, hdr.time, hdr.clientId, hdr.cxid)
        zxid = hdr.zxid
        if zxid > self.last_zxid:
            self.last_zxid = zxid
        if self.digest_on:
            checks = self.digests
            # The common case, checked inline (this runs on every write): a matching
            # digest, no snapshot digest awaited, no history entry to keep.
            if (checks.target is not None or not zxid & _HISTORY_MASK or digest is None
                    or digest.version != DIGEST_VERSION
                    or (digest.treeDigest - self.digest_sum) & MASK64):
                checks.applied(zxid, tree_digest.as_long(self.digest_sum), digest, hdr, txn)
        return rc

    def _apply_one(self, type: int, txn: Any, zxid: int, time: int, client: int,
                   cxid: int) -> TxnResult:
        rc = TxnResult(type, zxid, client, cxid)
        try:
            if type in (OP_create, OP_create2, OP_createTTL, OP_createContainer):
                rc.path = txn.path
                rc.stat = self._create(rc, txn, type, zxid, time, client)
            elif type in (OP_delete, OP_deleteContainer):
                rc.path = txn.path
                self._delete(rc, txn.path, zxid)
            elif type == OP_setData or type == OP_reconfig:  # reconfig: /zookeeper/config
                rc.path = txn.path
                rc.stat = self._set_data(rc, txn, zxid, time)
            elif type == OP_setACL:
                rc.path = txn.path
                rc.stat = self._set_acl(txn)
            elif type == OP_closeSession:
                self._kill_session(rc, client, zxid, txn)
            elif type == OP_error:
                rc.err = txn.err
            elif type == OP_check:
                rc.path = txn.path
            elif type == OP_multi:
                self._multi(rc, txn, zxid, time, client, cxid)
        except _TreeError as e:
            rc.err = e.code
            if type == OP_create and e.code == -110:
                self._recreated(rc, txn.path, txn.parentCVersion, zxid)
        return rc

    def _recreated(self, rc: TxnResult, path: str, pcv: int, zxid: int) -> None:
        """DataTree.processTxn on a replayed create that finds its node there (a
        fuzzy snapshot saw it re-created by another session): the parent's
        cversion and pzxid still move forward (setCversionPzxid)."""
        parent_path = split_path(path)[0]
        parent = self.nodes.get(parent_path)
        if parent is None:
            rc.err = -101
            return
        if pcv == -1:
            pcv = int32(parent.ccount + 1)
        if pcv > parent.ccount:
            parent.ccount = pcv
            parent.pzxid = zxid
            if self.digest_on:
                self._rehash(parent_path, parent)

    def _create(self, rc: TxnResult, txn: Any, type: int, zxid: int, time: int,
                client: int) -> Any:
        path = txn.path
        parent_path, name = split_path(path)
        parent = self.nodes.get(parent_path)
        if parent is None:
            raise _TreeError(-101)
        if parent.children is not None and path in parent.children:
            raise _TreeError(-110)
        if type == OP_createContainer:
            owner = CONTAINER_EPHEMERAL_OWNER
        elif type == OP_createTTL:
            owner = TTL_EPHEMERAL_OWNER_MASK | txn.ttl
        else:
            owner = client if txn.ephemeral else 0
        node = Node(txn.data, self.intern_acl(txn.acl), zxid, time, owner)
        # Replaying a create whose node a fuzzy snapshot already saw deleted
        # must not move the parent's cversion or pzxid backwards.
        pcv = txn.parentCVersion
        if pcv == -1:  # CreateTxnV0 from an old log: "the next one"
            pcv = int32(parent.ccount + 1)
        if pcv > parent.ccount:
            parent.ccount = pcv
            parent.pzxid = zxid
            if self.digest_on:
                self._rehash(parent_path, parent)
        if parent.children is None:
            parent.children = set()
        parent.children.add(path)
        self.nodes[path] = node
        if self.digest_on:
            node.dg = dg = self._digest(path, node)
            self.digest_sum += dg
        if owner:
            self.index_kind(path, owner)
        on_create(self, path, parent_path, name, txn.data)
        if self.written is not None:
            self.written((path, len(txn.data) if txn.data else 0))
        rc.triggers.append((path, _EventType_NodeCreated, node.acl))
        rc.triggers.append((parent_path, _EventType_NodeChildrenChanged, parent.acl))
        return node

    def _delete(self, rc: TxnResult, path: str, zxid: int) -> None:
        parent_path, name = split_path(path)
        parent = self.nodes.get(parent_path)
        if parent is None:
            raise _TreeError(-101)
        if parent.children:
            parent.children.discard(path)
            if not parent.children:
                parent.children = None
        if zxid > parent.pzxid:
            parent.pzxid = zxid
            if self.digest_on:
                self._rehash(parent_path, parent)
        node = self.nodes.pop(path, None)
        if node is None:
            raise _TreeError(-101)
        self.digest_sum -= node.dg
        owner = node.owner
        if owner:
            kind = ephemeral_kind(owner)
            if kind == "ephemeral":
                paths = self.ephemerals.get(owner)
                if paths is not None:
                    paths.discard(path)
                    if not paths:
                        del self.ephemerals[owner]
            elif kind == "container":
                self.containers.discard(path)
            else:
                self.ttls.discard(path)
        on_delete(self, path, parent_path, name, node.data)
        if self.written is not None:
            self.written((path, 0))
        rc.triggers.append((path, _EventType_NodeDeleted, node.acl))
        rc.triggers.append((parent_path, _EventType_NodeChildrenChanged, parent.acl))

    def _set_data(self, rc: TxnResult, txn: S.SetDataTxn, zxid: int, time: int) -> Any:
        path = txn.path
        data = txn.data
        node = self.nodes.get(path) if path is not None else None
        if node is None or path is None:
            raise _TreeError(-101)
        old, node.data = node.data, data
        node.mtime = time
        node.mzxid = zxid
        node.version = txn.version
        if self.digest_on:
            self._rehash(path, node)
        on_set_data(self, path, old, data)
        if self.written is not None:
            self.written((path, len(data) if data else 0))
        rc.triggers.append((path, _EventType_NodeDataChanged, node.acl))
        return node

    def _set_acl(self, txn: Any) -> Any:
        node = self.nodes.get(txn.path)
        if node is None:
            raise _TreeError(-101)
        node.acl = self.intern_acl(txn.acl)
        node.aversion = txn.version
        if self.digest_on:
            self._rehash(txn.path, node)
        return node

    def ephemerals_in_java_order(self, session_id: int,
                                 paths: Iterable[str] | None = None) -> list[str]:
        """A session's ephemerals (or ``paths``) in the order ZooKeeper's HashSet
        of them iterates (``zkpy.tree.java_hash``), oldest first per bucket."""
        nodes = self.nodes

        def added(path: str) -> int:
            node = nodes.get(path)
            return node.czxid if node is not None else 1 << 62

        chosen = self.ephemerals.get(session_id, ()) if paths is None else paths
        return hash_set_order(chosen, added)

    def _kill_session(self, rc: TxnResult, session_id: int, zxid: int, txn: Any) -> None:
        # The txn names the paths when it was made; a replay of an old-format
        # close (no body) falls back to the index.
        if txn is not None and txn.paths2Delete is not None:
            paths = list(txn.paths2Delete)  # DataTree.deleteNodes: in the txn's order
        else:
            paths = self.ephemerals_in_java_order(session_id)
        for path in paths:
            # As ZooKeeper's deleteNodes: every listed path, whoever owns it now.
            # Replayed over a fuzzy snapshot that missed the node, the delete
            # still moves the parent's pzxid, as it did live.
            try:
                self._delete(rc, path, zxid)
            except _TreeError:
                pass
        self.ephemerals.pop(session_id, None)

    def _multi(self, rc: TxnResult, txn: Any, zxid: int, time: int, client: int,
               cxid: int) -> None:
        ops: list[tuple[int, Any]] = txn.ops
        failed = any(t == OP_error for t, _ in ops)
        rc.multi = []
        for sub_type, sub in ops:
            if failed and sub_type != OP_error:
                # The ops before the failing one are reported as OK but not applied.
                sub_type, sub = OP_error, S.ErrorTxn(0)
            sub_rc = self._apply_one(sub_type, sub, zxid, time, client, cxid)
            if sub_rc.stat is not None:
                # A later op of this multi may change the same node: freeze the Stat now.
                sub_rc.stat = sub_rc.stat.stat()
            rc.multi.append(sub_rc)
            rc.triggers.extend(sub_rc.triggers)
            if sub_rc.err != 0 and rc.err == 0:
                rc.err = sub_rc.err


class MultiTxnBody:
    """The in-memory body of a multi transaction: (type, txn record) per op.

    On disk and on the wire it is jute's MultiTxn (each op serialized into a
    Txn); keeping the records unserialized in memory saves a round trip.
    """

    __slots__ = ("ops",)

    def __init__(self, ops: list[tuple[int, Any]]) -> None:
        self.ops = ops

    def __repr__(self) -> str:
        return f"MultiTxnBody({self.ops!r})"


class _TreeError(Exception):
    def __init__(self, code: int) -> None:
        self.code = code
