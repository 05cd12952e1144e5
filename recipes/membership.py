"""Group membership.

A member is an ephemeral znode ``<path>/<uuidhex>__party__`` holding the
member's identifier: it lives as long as the member's session.  That is
the layout of Kazoo's ``Party``, so Kazoo parties and these groups see the
same members.

:class:`GroupMember` joins and leaves (and, by default, joins again after
its session was lost and a new one established); :class:`Group` lists the
members and calls you back when the set changes.
"""

from __future__ import annotations

import uuid

from kazoo.client import KazooClient

from ._common import Deadline, create_ephemeral_owned, delete_quietly, join, retry_call
from ._watch import ChildrenWatcher, EphemeralKeeper

__all__ = ["GroupMember", "Group", "MARKER"]

MARKER = "__party__"


def _is_member(name: str) -> bool:
    return MARKER in name


class GroupMember:
    """One process's membership in the group at *path*."""

    def __init__(self, client: KazooClient, path: str, identifier: str | bytes = "",
                 rejoin: bool = True):
        self.client = client
        self.path = path.rstrip("/")
        ident = identifier.decode() if isinstance(identifier, bytes) else str(identifier)
        self.identifier = ident
        self.data = ident.encode("utf-8")
        self.node = join(self.path, uuid.uuid4().hex + MARKER)
        self.joined = False
        self._keeper = EphemeralKeeper(client) if rejoin else None

    def join(self, timeout: float | None = None) -> None:
        if not create_ephemeral_owned(self.client, self.node, self.data,
                                      deadline=Deadline(timeout)):
            raise RuntimeError("member node %s belongs to someone else" % self.node)
        self.joined = True
        if self._keeper is not None:
            self._keeper.add(self.node, self.data)

    def leave(self) -> None:
        if self._keeper is not None:
            self._keeper.discard(self.node)
        delete_quietly(self.client, self.node)
        self.joined = False

    def close(self) -> None:
        if self._keeper is not None:
            self._keeper.close()

    def __enter__(self):
        self.join()
        return self

    def __exit__(self, *exc):
        self.leave()
        self.close()


class Group:
    """The members of the group at *path*."""

    def __init__(self, client: KazooClient, path: str):
        self.client = client
        self.path = path.rstrip("/")

    def members(self) -> list[str]:
        """Identifiers of the current members (sorted)."""
        try:
            children = retry_call(self.client, self.client.get_children, self.path)
        except Exception as exc:
            from kazoo.exceptions import NoNodeError
            if isinstance(exc, NoNodeError):
                return []
            raise
        out = []
        for child in children:
            if not _is_member(child):
                continue
            try:
                data, _ = retry_call(self.client, self.client.get, join(self.path, child))
            except Exception:
                continue
            out.append(data.decode("utf-8", "replace"))
        return sorted(out)

    def __len__(self) -> int:
        return len(self.members())

    def watch(self, callback) -> ChildrenWatcher:
        """Call ``callback(sorted identifiers)`` now and after every change;
        ``.stop()`` the returned watcher when done."""

        def on_change(snapshot):
            callback(sorted(d.decode("utf-8", "replace") for d in snapshot.values()))

        return ChildrenWatcher(self.client, self.path, on_change, name_filter=_is_member)
