"""Configuration guarded by a ``ready`` znode (the ZooKeeper paper, §2.4).

Layout: ``<path>/<key>`` persistent znodes hold the values; ``<path>/ready``
exists only while the configuration is complete and holds the generation
number (decimal).  No Kazoo or Curator recipe uses this layout.

Publisher (:class:`ConfigPublisher`): delete ``ready``; write, create and
delete the key znodes; create ``ready`` again.

Reader (:class:`ConfigReader`): read ``ready`` (setting a watch), read the
keys, then check ``ready`` is still the same znode (same ``czxid``) and
its watch has not fired.  If ``ready`` went away meanwhile, what was read
may be a mix of two configurations: discard it, wait for ``ready`` to
come back, read again.  Because a session's operations are applied in
order, everything read while one incarnation of ``ready`` existed
belongs to the configuration that incarnation announced.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError, NoNodeError, SessionExpiredError
from kazoo.protocol.states import EventType

from ._common import RETRYABLE, Deadline, SessionTracker, join, wait_connected

log = logging.getLogger(__name__)

__all__ = ["ConfigPublisher", "ConfigReader", "Config", "READY"]

READY = "ready"


@dataclass(frozen=True)
class Config:
    values: dict[str, bytes]
    generation: int
    #: czxid of the ``ready`` znode that announced this configuration
    zxid: int


def _as_bytes(v) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode("utf-8")


def _retrying(client, deadline, func, *args, **kw):
    while True:
        try:
            return func(*args, **kw)
        except RETRYABLE:
            if not wait_connected(client, deadline):
                raise TimeoutError("no connection") from None


class ConfigPublisher:
    """Writes configurations under *path*.  Only one publisher should
    write a path at a time (guard it with a lock or an election if several
    processes may publish)."""

    def __init__(self, client: KazooClient, path: str):
        self.client = client
        self.path = path.rstrip("/")
        self.ready_path = join(self.path, READY)
        self.generation = 0

    def publish(self, values: Mapping[str, bytes | str], timeout: float | None = 60) -> int:
        """Replace the configuration with *values*; returns its generation."""
        for key in values:
            if not key or "/" in key or key == READY:
                raise ValueError("bad configuration key %r" % (key,))
        c = self.client
        dl = Deadline(timeout)
        _retrying(c, dl, c.ensure_path, self.path)
        try:
            data, _ = _retrying(c, dl, c.get, self.ready_path)
            self.generation = max(self.generation, int(data or b"0"))
        except (NoNodeError, ValueError):
            pass
        # 1. take "ready" down: readers stop trusting what they read
        try:
            _retrying(c, dl, c.delete, self.ready_path)
        except NoNodeError:
            pass
        # 2. rewrite the keys
        existing = set(_retrying(c, dl, c.get_children, self.path)) - {READY}
        for key, value in values.items():
            p = join(self.path, key)
            value = _as_bytes(value)
            if key in existing:
                try:
                    _retrying(c, dl, c.set, p, value)
                    continue
                except NoNodeError:
                    pass
            try:
                _retrying(c, dl, c.create, p, value)
            except NodeExistsError:  # our earlier create whose reply was lost
                _retrying(c, dl, c.set, p, value)
        for key in existing - set(values):
            try:
                _retrying(c, dl, c.delete, join(self.path, key))
            except NoNodeError:
                pass
        # 3. put "ready" back, announcing the new generation
        self.generation += 1
        try:
            _retrying(c, dl, c.create, self.ready_path, str(self.generation).encode())
        except NodeExistsError:
            _retrying(c, dl, c.set, self.ready_path, str(self.generation).encode())
        return self.generation


class ConfigReader:
    """Reads consistent configurations from *path*.

    ``read()`` returns one.  ``start()`` follows the path on a private
    thread, keeping ``current`` up to date and calling
    ``on_change(config)`` for every new generation.  ``discarded`` counts
    reads thrown away because ``ready`` disappeared during them.
    """

    def __init__(self, client: KazooClient, path: str, on_change=None):
        self.client = client
        self.path = path.rstrip("/")
        self.ready_path = join(self.path, READY)
        self.on_change = on_change
        self.current: Config | None = None
        self.discarded = 0
        self._changed = threading.Event()
        self._stop = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    # -- one consistent read --------------------------------------------------------

    def read(self, timeout: float | None = None) -> Config | None:
        """A consistent configuration, waiting for ``ready`` if needed;
        None on timeout."""
        c = self.client
        dl = Deadline(timeout)
        while True:
            if self._stop.is_set():
                return None
            invalidated = threading.Event()
            wake = threading.Event()

            def watch(event, invalidated=invalidated, wake=wake):
                if event.type in (EventType.DELETED, EventType.CHANGED):
                    invalidated.set()
                self._changed.set()
                wake.set()

            try:
                try:
                    gen_data, stat = c.get(self.ready_path, watch=watch)
                except NoNodeError:
                    if c.exists(self.ready_path, watch=watch) is None:
                        if not wake.wait(dl.remaining()) and dl.expired:
                            return None
                    continue
                values = {}
                torn = False
                for key in c.get_children(self.path):
                    if key == READY:
                        continue
                    try:
                        values[key], _ = c.get(join(self.path, key))
                    except NoNodeError:
                        torn = True
                        break
                after = c.exists(self.ready_path)
            except RETRYABLE:
                if not wait_connected(c, dl):
                    return None
                continue
            except SessionExpiredError:
                wait_connected(c, dl)
                continue
            if torn or invalidated.is_set() or after is None or after.czxid != stat.czxid:
                self.discarded += 1
                if dl.expired:
                    return None
                continue
            try:
                gen = int(gen_data or b"0")
            except ValueError:
                gen = 0
            return Config(values, gen, stat.czxid)

    # -- following ----------------------------------------------------------------------

    def start(self) -> ConfigReader:
        # re-read after every state change (watches do not survive a new session)
        self._tracker = SessionTracker(self.client)
        self._tracker.add_wake(self._changed)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="ConfigReader %s" % self.path)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._changed.set()
        if self._thread is not None:
            self._tracker.close()
            self._thread.join(10)

    def wait_for(self, generation: int, timeout: float | None = None) -> Config | None:
        """Wait until a configuration of at least *generation* was read."""
        dl = Deadline(timeout)
        with self._cond:
            while self.current is None or self.current.generation < generation:
                if not self._cond.wait(dl.remaining()) and dl.expired:
                    return None
            return self.current

    def _run(self):
        while not self._stop.is_set():
            self._changed.clear()
            try:
                cfg = self.read()
            except Exception:
                log.exception("ConfigReader %s", self.path)
                self._stop.wait(0.2)
                continue
            if cfg is None:
                continue
            if self.current is None or cfg.zxid != self.current.zxid:
                with self._cond:
                    self.current = cfg
                    self._cond.notify_all()
                if self.on_change is not None:
                    try:
                        self.on_change(cfg)
                    except Exception:  # pragma: no cover - user code
                        log.exception("ConfigReader callback")
            self._changed.wait()
