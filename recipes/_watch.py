"""Background helpers: watch a znode's children (with their data), and keep
ephemeral registrations alive across session loss."""

from __future__ import annotations

import logging
import threading

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError, SessionExpiredError
from kazoo.protocol.states import KazooState

from ._common import RETRYABLE, SessionTracker, join, wait_connected

log = logging.getLogger(__name__)

__all__ = ["ChildrenWatcher", "EphemeralKeeper"]


class ChildrenWatcher:
    """Call ``callback({child: data})`` with the children of *path* and their
    data, now and after every change (membership or a child's data).

    The reads run on a private thread, never on Kazoo's callback thread.
    While *path* does not exist the callback gets ``{}`` and we wait for it
    to appear.  After a reconnect everything is read again.  ``name_filter``
    restricts which children count.
    """

    def __init__(self, client: KazooClient, path: str, callback, *, name_filter=None,
                 with_data: bool = True):
        self.client = client
        self.path = path
        self.callback = callback
        self.name_filter = name_filter
        self.with_data = with_data
        self.current: dict[str, bytes] | None = None
        self.updates = 0
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._first = threading.Event()
        self._tracker = SessionTracker(client)
        self._tracker.callbacks.append(self._on_state)
        self._dirty.set()
        self._thread = threading.Thread(target=self._run, name="ChildrenWatcher %s" % path,
                                        daemon=True)
        self._thread.start()

    def _on_state(self, state):
        if state == KazooState.CONNECTED:
            self._dirty.set()

    def _watch(self, event):
        self._dirty.set()

    def wait_first(self, timeout: float | None = None) -> bool:
        """Wait until the first snapshot was delivered."""
        return self._first.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        self._tracker.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(10)

    def _snapshot(self) -> dict[str, bytes]:
        try:
            children = self.client.get_children(self.path, watch=self._watch)
        except NoNodeError:
            if self.client.exists(self.path, watch=self._watch) is not None:
                self._dirty.set()
            return {}
        out = {}
        for child in sorted(children):
            if self.name_filter is not None and not self.name_filter(child):
                continue
            if not self.with_data:
                out[child] = b""
                continue
            try:
                data, _ = self.client.get(join(self.path, child), watch=self._watch)
            except NoNodeError:
                continue
            out[child] = data
        return out

    def _run(self):
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            self._dirty.clear()
            try:
                snap = self._snapshot()
            except RETRYABLE:
                wait_connected(self.client)
                self._dirty.set()
                continue
            except SessionExpiredError:
                self._dirty.set()
                self._stop.wait(0.05)
                continue
            except Exception:
                if self._stop.is_set():
                    return
                log.exception("ChildrenWatcher %s", self.path)
                self._stop.wait(0.2)
                self._dirty.set()
                continue
            if snap != self.current:
                self.current = snap
                self.updates += 1
                try:
                    self.callback(snap)
                except Exception:  # pragma: no cover - user code
                    log.exception("ChildrenWatcher callback")
            self._first.set()


class EphemeralKeeper:
    """Remembers ephemeral znodes we registered (path -> data) and creates
    them again after the session was lost and a new one established.

    Re-creation happens on a private thread.  ``rejoined`` counts how many
    times that happened.
    """

    def __init__(self, client: KazooClient):
        self.client = client
        self.nodes: dict[str, bytes] = {}
        self.rejoined = 0
        self.rejoin_done = threading.Event()
        self._lock = threading.Lock()
        self._tracker = SessionTracker(client)
        self._tracker.callbacks.append(self._on_state)
        self._pending = False

    def add(self, path: str, data: bytes) -> None:
        with self._lock:
            self.nodes[path] = data

    def discard(self, path: str) -> None:
        with self._lock:
            self.nodes.pop(path, None)

    def close(self) -> None:
        self._tracker.close()

    def _on_state(self, state):
        if state == KazooState.LOST:
            with self._lock:
                if not self.nodes or self._pending:
                    return
                self._pending = True
                self.rejoin_done.clear()
            threading.Thread(target=self._recreate, daemon=True,
                             name="EphemeralKeeper").start()

    def _recreate(self):
        try:
            while True:
                try:
                    wait_connected(self.client)
                except Exception:
                    return  # client stopped
                with self._lock:
                    items = list(self.nodes.items())
                try:
                    for path, data in items:
                        try:
                            self.client.create(path, data, ephemeral=True, makepath=True)
                        except NodeExistsError:
                            pass
                    break
                except (RETRYABLE + (SessionExpiredError,)):
                    continue
            self.rejoined += 1
        finally:
            with self._lock:
                self._pending = False
            self.rejoin_done.set()
