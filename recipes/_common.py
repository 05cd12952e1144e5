"""Shared plumbing for the recipes: session tracking, protected creates,
sequence-number parsing and waiting for a connection.

Everything here runs on the caller's thread.  Kazoo delivers watch events
and state changes on its own callback thread; the recipes only ever set
:class:`threading.Event` objects from there and never block in it.
"""

from __future__ import annotations

import re
import threading
import time
import uuid

from kazoo.client import KazooClient
from kazoo.exceptions import (
    ConnectionClosedError,
    ConnectionLoss,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
)
from kazoo.protocol.states import KazooState

__all__ = [
    "RecipeError",
    "SessionLostError",
    "CancelledError",
    "PROTECTED_PREFIX",
    "SessionTracker",
    "Deadline",
    "new_protected_prefix",
    "create_protected",
    "create_ephemeral_owned",
    "delete_quietly",
    "sequence_of",
    "wait_connected",
    "join",
]

#: Curator's "protected" prefix: ``_c_<uuid>-``.  A contender that loses
#: its connection between sending a create and reading the reply lists the
#: parent and finds its node again by this prefix.
PROTECTED_PREFIX = "_c_"

#: Errors that mean "the connection dropped; the session may still be alive".
RETRYABLE = (ConnectionLoss, OperationTimeoutError)

_SEQ_RE = re.compile(r"(-?\d{10})$")


class RecipeError(Exception):
    """Base class of the errors raised by the recipes."""


class SessionLostError(RecipeError):
    """The ZooKeeper session ended (expired or closed): every ephemeral node
    it owned -- locks held, queue positions, registrations -- is gone."""


class CancelledError(RecipeError):
    """A blocking call was cancelled with ``cancel()``."""


def join(parent: str, name: str) -> str:
    return parent.rstrip("/") + "/" + name if parent != "/" else "/" + name


def sequence_of(name: str) -> int | None:
    """The sequence number a sequential create appended to *name*
    (its last ten digits), or ``None``."""
    m = _SEQ_RE.search(name)
    return int(m.group(1)) if m else None


def new_protected_prefix() -> str:
    return "%s%s-" % (PROTECTED_PREFIX, uuid.uuid4())


class Deadline:
    """Remaining time of an optional timeout."""

    def __init__(self, timeout: float | None):
        self.end = None if timeout is None else time.monotonic() + max(0.0, timeout)

    def remaining(self) -> float | None:
        if self.end is None:
            return None
        return max(0.0, self.end - time.monotonic())

    @property
    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


class SessionTracker:
    """Follows one client's connection state on behalf of a recipe.

    * ``suspended`` -- the connection is down; the session may or may not
      still be alive (a leader or lock holder must assume the worst).
    * ``lost`` -- a ``LOST`` transition was seen: the session that existed
      when :meth:`mark` was last called is over.
    * ``wake`` -- an event set on every state change, so that a waiting
      recipe re-examines its situation.

    ``callbacks`` are called (on Kazoo's callback thread) with the new
    state; keep them short and non-blocking.
    """

    def __init__(self, client: KazooClient):
        self.client = client
        self.lost = threading.Event()
        self.connected = threading.Event()
        self.wake_events: set[threading.Event] = set()
        self.callbacks: list = []
        self._lock = threading.Lock()
        self._last_session_id: int | None = None
        self.session_id()
        if client.state == KazooState.CONNECTED:
            self.connected.set()
        client.add_listener(self._listener)

    def _listener(self, state):
        if state == KazooState.LOST:
            self.lost.set()
            self.connected.clear()
        elif state == KazooState.SUSPENDED:
            self.connected.clear()
        else:
            self.connected.set()
        with self._lock:
            events = list(self.wake_events)
            callbacks = list(self.callbacks)
        for ev in events:
            ev.set()
        for cb in callbacks:
            try:
                cb(state)
            except Exception:  # pragma: no cover - user code
                pass
        return False  # stay registered

    def session_id(self) -> int | None:
        """The current session's id; while disconnected (Kazoo reports no
        client id then) the last one seen."""
        cid = self.client.client_id
        if cid:
            self._last_session_id = cid[0]
        return self._last_session_id

    def mark(self) -> int | None:
        """Start a new 'life': forget any earlier loss, remember the session."""
        self.lost.clear()
        return self.session_id()

    @property
    def suspended(self) -> bool:
        return not self.connected.is_set()

    def add_wake(self, ev: threading.Event) -> None:
        with self._lock:
            self.wake_events.add(ev)

    def remove_wake(self, ev: threading.Event) -> None:
        with self._lock:
            self.wake_events.discard(ev)

    def close(self) -> None:
        self.client.remove_listener(self._listener)


def wait_connected(client: KazooClient, deadline: Deadline | None = None) -> bool:
    """Block until *client* is connected (True) or the deadline passes."""
    while True:
        if client.state == KazooState.CONNECTED:
            return True
        if deadline is not None and deadline.expired:
            return False
        stopped = getattr(client, "_stopped", None)  # set by client.stop()
        if stopped is not None and stopped.is_set():
            raise ConnectionClosedError("client stopped")
        time.sleep(0.02)


def _check_session(tracker: SessionTracker | None, session_id: int | None) -> None:
    if tracker is None or session_id is None:
        return
    if tracker.lost.is_set() or tracker.session_id() != session_id:
        raise SessionLostError("session 0x%x ended" % session_id)


def create_protected(
    client: KazooClient,
    parent: str,
    suffix: str,
    data: bytes = b"",
    *,
    ephemeral: bool = True,
    sequence: bool = True,
    deadline: Deadline | None = None,
    tracker: SessionTracker | None = None,
    prefix: str | None = None,
) -> str:
    """Create ``<parent>/_c_<uuid>-<suffix>[<seq>]`` and return its path,
    surviving connection loss.

    If the connection drops after the request was sent, the reply is lost
    and we cannot know whether the server created the node.  After
    reconnecting we list *parent* and look for a child starting with our
    unique prefix: if one is there it is ours; otherwise the create did not
    happen and we send it again.  For an ephemeral node, a new session in
    between means the node (if it existed) died with the old session:
    :class:`SessionLostError`.
    """
    prefix = prefix or new_protected_prefix()
    session_id = tracker.session_id() if (tracker is not None and ephemeral) else None
    maybe_created = False
    while True:
        if deadline is not None and deadline.expired and not maybe_created:
            raise OperationTimeoutError("timed out creating a node in %s" % parent)
        try:
            if ephemeral:
                _check_session(tracker, session_id)
            if maybe_created:
                try:
                    children = client.get_children(parent)
                except NoNodeError:
                    children = []
                for child in children:
                    if child.startswith(prefix):
                        return join(parent, child)
                maybe_created = False
                if deadline is not None and deadline.expired:
                    raise OperationTimeoutError("timed out creating a node in %s" % parent)
            maybe_created = True
            return client.create(
                join(parent, prefix + suffix),
                data,
                ephemeral=ephemeral,
                sequence=sequence,
                makepath=True,
            )
        except RETRYABLE:
            # maybe_created stays True if the create was in flight.
            if not wait_connected(client, deadline):
                # Give up, but make sure we do not leave a node behind if
                # the connection comes back later: caller deletes by prefix.
                raise OperationTimeoutError("timed out waiting for a connection") from None
        except SessionExpiredError:
            if ephemeral:
                raise SessionLostError("session expired while creating in %s" % parent) from None
            wait_connected(client, deadline)


def create_ephemeral_owned(
    client: KazooClient,
    path: str,
    data: bytes,
    *,
    deadline: Deadline | None = None,
    makepath: bool = True,
) -> bool:
    """Create the ephemeral node *path* holding *data* (which must contain
    something unique to this attempt, e.g. a uuid).  True if the node is now
    ours, False if somebody else's node is there.

    A create whose reply was lost to a connection drop is settled by reading
    the node back: it is ours if it is owned by our session and holds our
    data (the session alone is not enough: other recipe objects may share
    this client).
    """
    in_doubt = False
    while True:
        try:
            if in_doubt:
                try:
                    got, stat = client.get(path)
                except NoNodeError:
                    in_doubt = False
                    continue
                cid = client.client_id
                if cid is None:  # disconnected again just now
                    raise ConnectionLoss()
                return got == data and stat.ephemeralOwner == cid[0]
            in_doubt = True
            client.create(path, data, ephemeral=True, makepath=makepath)
            return True
        except NodeExistsError:
            return False
        except RETRYABLE:
            if not wait_connected(client, deadline):
                raise OperationTimeoutError("timed out waiting for a connection") from None
        except SessionExpiredError:
            raise SessionLostError("session expired while creating %s" % path) from None


def delete_quietly(client: KazooClient, path: str, *, deadline: Deadline | None = None,
                   version: int = -1) -> bool:
    """Delete *path*, retrying over connection loss; a missing node or an
    ended session (its ephemerals are gone anyway) is not an error.
    Returns True when the node is known to be gone."""
    if deadline is None:
        deadline = Deadline(30)
    while True:
        try:
            client.delete(path, version=version)
            return True
        except NoNodeError:
            return True
        except SessionExpiredError:
            return True
        except RETRYABLE:
            if not wait_connected(client, deadline):
                return False
        except ConnectionClosedError:
            return False


def delete_by_prefix(client: KazooClient, parent: str, prefix: str,
                     *, deadline: Deadline | None = None) -> None:
    """Delete any child of *parent* starting with *prefix* (used after an
    abandoned protected create)."""
    if deadline is None:
        deadline = Deadline(30)
    while True:
        try:
            children = client.get_children(parent)
            break
        except (NoNodeError, SessionExpiredError):
            return
        except RETRYABLE:
            if not wait_connected(client, deadline):
                return
        except ConnectionClosedError:
            return
    for child in children:
        if child.startswith(prefix):
            delete_quietly(client, join(parent, child), deadline=deadline)


def retry_call(client: KazooClient, func, *args, deadline: Deadline | None = None, **kw):
    """Call ``func(*args, **kw)``, retrying idempotent reads over connection
    loss.  Session expiry is reported as :class:`SessionLostError`."""
    while True:
        try:
            return func(*args, **kw)
        except RETRYABLE:
            if not wait_connected(client, deadline):
                raise OperationTimeoutError("timed out waiting for a connection") from None
        except SessionExpiredError:
            raise SessionLostError("session expired") from None
