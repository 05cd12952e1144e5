"""Answers to read requests against the tree (ZooKeeper's FinalRequestProcessor).

Requests that do not change the tree (getData, exists, getChildren, getACL,
the watch operations, whoAmI, multiRead, ...): each returns the encoded
response body or raises ``ZkError``. Replies to writes are
``zkpy.server.replies``'.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from zkpy.auth.acl import mask_digests
from zkpy.jute import schema as S
from zkpy.jute.codec import encode
from zkpy.jute.protocol import AddWatchMode, Err, EventType, Op, Perms, WatcherType, ZkError
from zkpy.tree.datatree import Node

if TYPE_CHECKING:
    from zkpy.server.connection import Connection
    from zkpy.server.core import ServerCore

_pack_int = struct.Struct(">i").pack
_NULL_BUFFER = _pack_int(-1)  # jute's null buffer: length -1


def _lookup(core: ServerCore, path: str) -> Any:
    # ZooKeeper's DataTree keeps the root under "" as well as "/", and reads
    # do not validate paths: "" reads the root, a path with NUL is NONODE.
    return core.tree.get("/" if path == "" else path)


def _node(core: ServerCore, path: str | None) -> tuple[str, Node]:
    """The path (never null past here) and its node; NONODE if there is none."""
    node = _lookup(core, path) if path is not None else None
    if node is None or path is None:
        raise ZkError(Err.NONODE, path)
    return path, node


def _watched_path(path: str | None) -> str:
    """A watch operation's path; a null one is no path anybody watches."""
    if path is None:
        raise ZkError(Err.NOWATCHER, path)
    return path


def _stat(node: Node) -> Any:
    # A Node carries Stat's fields under Stat's names, and the codec reads a
    # nested record's fields by name: the node is encoded as its Stat, no copy.
    # (Any, not a cast to Stat: compiled, a cast checks the class.)
    return node


def _check(core: ServerCore, node: Node, perm: int, conn: Connection) -> None:
    if not core.settings.skip_acl:
        core.auth.check(node.acl, perm, conn.ids)


def _get_data(core: ServerCore, conn: Connection, body: S.GetDataRequest) -> bytes:
    path, node = _node(core, body.path)
    _check(core, node, Perms.READ, conn)
    if body.watch:
        core.watches.add_data(path, conn)
    # (also a response-cache miss: zkpy keeps no cache of serialized responses)
    core.metrics.read_per_namespace.note_cached((path, len(node.data) if node.data else 0))
    data = node.data  # GetDataResponse: the data as a jute buffer, then the Stat
    if data is None:
        return _NULL_BUFFER + node.wire_stat()
    return b"".join((_pack_int(len(data)), data, node.wire_stat()))


def _exists(core: ServerCore, conn: Connection, body: S.ExistsRequest) -> bytes:
    path = body.path
    if path is None or "\0" in path:
        raise ZkError(Err.BADARGUMENTS, path)
    if body.watch:
        core.watches.add_data(path, conn)
    node: Node | None = _lookup(core, path)
    if node is None:
        raise ZkError(Err.NONODE, path)
    core.metrics.read_per_namespace.note((path, 0))
    return node.wire_stat()  # ExistsResponse: the Stat alone


def _get_children(core: ServerCore, conn: Connection, body: S.GetChildrenRequest) -> bytes:
    path, node = _node(core, body.path)
    _check(core, node, Perms.READ, conn)
    if body.watch:
        core.watches.add_child(path, conn)
    children = core.tree.children(path, node)
    core.metrics.read_per_namespace.note((path, sum(map(len, children))))
    return encode(S.GetChildrenResponse(children))


def _get_children2(core: ServerCore, conn: Connection, body: S.GetChildren2Request) -> bytes:
    path, node = _node(core, body.path)
    _check(core, node, Perms.READ, conn)
    if body.watch:
        core.watches.add_child(path, conn)
    children = core.tree.children(path, node)
    core.metrics.read_per_namespace.note((path, sum(map(len, children))))
    core.metrics.response_packet_get_children_cache_misses += 1
    return encode(S.GetChildren2Response(children, _stat(node)))


def _get_acl(core: ServerCore, conn: Connection, body: S.GetACLRequest) -> bytes:
    _, node = _node(core, body.path)
    _check(core, node, Perms.READ | Perms.ADMIN, conn)
    acl: Any = node.acl
    try:
        _check(core, node, Perms.ADMIN, conn)
    except ZkError:
        acl = mask_digests(acl)
    return encode(S.GetACLResponse(list(acl), _stat(node)))


def _all_children_number(core: ServerCore, conn: Connection, body: S.GetAllChildrenNumberRequest) -> bytes:
    path, node = _node(core, body.path)
    _check(core, node, Perms.READ, conn)
    return encode(S.GetAllChildrenNumberResponse(core.tree.all_children_number(path)))


_JAVA_TRIM = "".join(map(chr, range(0x21)))  # String.trim() strips chars <= U+0020


def _get_ephemerals(core: ServerCore, conn: Connection, body: S.GetEphemeralsRequest) -> bytes:
    prefix = body.prefixPath or "/"
    paths = core.tree.ephemerals_of(conn.session_id)
    # ZooKeeper: a blank prefix or "/" after Java's trim() means all of them.
    if prefix.strip(_JAVA_TRIM) not in ("", "/"):
        paths = {p for p in paths if p.startswith(prefix)}
    return encode(S.GetEphemeralsResponse(sorted(paths)))


def _sync(core: ServerCore, conn: Connection, body: S.SyncRequest) -> bytes:
    return encode(S.SyncResponse(body.path))


def _watcher_type(body: Any) -> None:
    # ZooKeeper 3.8's WatcherType.fromInt knows Children, Data and Any only;
    # anything else throws and FinalRequestProcessor answers MARSHALLINGERROR.
    if body.type not in (WatcherType.Children, WatcherType.Data, WatcherType.Any):
        raise ZkError(Err.MARSHALLINGERROR, body.path)


def _check_watches(core: ServerCore, conn: Connection, body: S.CheckWatchesRequest) -> bytes:
    _watcher_type(body)
    if not core.watches.watched(_watched_path(body.path), body.type):
        raise ZkError(Err.NOWATCHER, body.path)
    return b""


def _remove_watches(core: ServerCore, conn: Connection, body: S.RemoveWatchesRequest) -> bytes:
    _watcher_type(body)
    if not core.watches.remove(_watched_path(body.path), conn, body.type):
        raise ZkError(Err.NOWATCHER, body.path)
    return b""


def _add_watch(core: ServerCore, conn: Connection, body: S.AddWatchRequest) -> bytes:
    if body.mode not in (AddWatchMode.PERSISTENT, AddWatchMode.PERSISTENT_RECURSIVE):
        # WatcherMode.fromZooDef throws; FinalRequestProcessor answers MARSHALLINGERROR.
        raise ZkError(Err.MARSHALLINGERROR, body.path)
    if body.path is None:
        raise ZkError(Err.BADARGUMENTS, body.path)
    core.watches.add_persistent(body.path, conn, body.mode == AddWatchMode.PERSISTENT_RECURSIVE)
    return encode(S.ErrorResponse(0))


def _paths(paths: Sequence[str | None] | None) -> list[str]:
    """A vector of paths, known to hold no null (``_set_watches`` checked)."""
    return [path for path in paths or () if path is not None]


def _set_watches(core: ServerCore, conn: Connection, body: S.SetWatches | S.SetWatches2) -> bytes:
    """Re-register a reconnecting client's watches, firing what it missed."""
    lists = (body.dataWatches, body.existWatches, body.childWatches,
             getattr(body, "persistentWatches", None),
             getattr(body, "persistentRecursiveWatches", None))
    if any(None in paths for paths in lists if paths):
        # A null path: DataTree.setWatches throws on it (NullPointerException),
        # which FinalRequestProcessor answers MARSHALLINGERROR. (ZooKeeper keeps
        # the watches set before it; none are set here.)
        raise ZkError(Err.MARSHALLINGERROR)
    tree = core.tree
    rel = body.relativeZxid
    watches = core.watches
    for path in _paths(body.dataWatches):
        node = tree.get(path)
        if node is None:
            conn.send_event(EventType.NodeDeleted, path)
        elif node.mzxid > rel:
            conn.send_event(EventType.NodeDataChanged, path)
        else:
            watches.add_data(path, conn)
    for path in _paths(body.existWatches):
        if tree.get(path) is not None:
            conn.send_event(EventType.NodeCreated, path)
        else:
            watches.add_data(path, conn)
    for path in _paths(body.childWatches):
        node = tree.get(path)
        if node is None:
            conn.send_event(EventType.NodeDeleted, path)
        elif node.pzxid > rel:
            conn.send_event(EventType.NodeChildrenChanged, path)
        else:
            watches.add_child(path, conn)
    for path in getattr(body, "persistentWatches", None) or ():
        watches.add_persistent(path, conn, False)
    for path in getattr(body, "persistentRecursiveWatches", None) or ():
        watches.add_persistent(path, conn, True)
    return b""


def _who_am_i(core: ServerCore, conn: Connection, body: None) -> bytes:
    infos = [S.ClientInfo(i.scheme, i.id.split(":", 1)[0] if i.scheme == "digest" else i.id)
             for i in conn.ids]
    return encode(S.WhoAmIResponse(infos))


def _multi_read(core: ServerCore, conn: Connection, body: Any) -> bytes:
    parts: list[bytes] = []
    for op, rec in body:
        # ZooKeeper's Op.getData/Op.getChildren carry no watch flag: a
        # multiRead never sets watches.  Any other op type throws in
        # FinalRequestProcessor: the whole request is MARSHALLINGERROR.
        # Its MultiOperationRecord refuses to mix reads and writes (no body);
        # writes only decode, and the reply carries the empty MultiResponse
        # made before the first op threw.
        if op not in (Op.getChildren, Op.getData):
            e = ZkError(Err.MARSHALLINGERROR)
            if not any(o in (Op.getChildren, Op.getData) for o, _ in body):
                e.payload = encode(S.MultiHeader(-1, True, -1))
            raise e
        rec = type(rec)(rec.path, False)
        try:
            if op == Op.getChildren:
                payload = _get_children(core, conn, rec)
            else:
                payload = _get_data(core, conn, rec)
            parts.append(encode(S.MultiHeader(op, False, 0)))
            parts.append(payload)
        except ZkError as e:
            parts.append(encode(S.MultiHeader(-1, False, int(e.code))))
            parts.append(encode(S.ErrorResponse(int(e.code))))
    parts.append(encode(S.MultiHeader(-1, True, -1)))
    return b"".join(parts)


_READS: dict[int, Any] = {
    Op.getData: _get_data,
    Op.exists: _exists,
    Op.getChildren: _get_children,
    Op.getChildren2: _get_children2,
    Op.getACL: _get_acl,
    Op.getAllChildrenNumber: _all_children_number,
    Op.getEphemerals: _get_ephemerals,
    Op.sync: _sync,
    Op.checkWatches: _check_watches,
    Op.removeWatches: _remove_watches,
    Op.addWatch: _add_watch,
    Op.setWatches: _set_watches,
    Op.setWatches2: _set_watches,
    Op.whoAmI: _who_am_i,
    Op.multiRead: _multi_read,
}


def answer(core: ServerCore, conn: Connection, op: int, body: Any) -> bytes:
    fn = _READS.get(op)
    if fn is None:
        raise ZkError(Err.UNIMPLEMENTED)
    payload: bytes = fn(core, conn, body)
    return payload




