"""The AdminServer's ``snapshot`` (GET) and ``restore`` (POST) commands, as in
Apache ZooKeeper 3.9 (ZOOKEEPER-4570/4571); the rules are in zkpy.storage.backup.

``GET <commandURL>/snapshot[?streaming=false]`` (alias ``snap``): a consistent
snapshot, taken without stopping the server: the fuzzy snapshot machinery walks
the live tree a slice at a time between requests, then a thread replays the
transactions logged meanwhile over it, so the stream is the state after exactly
one transaction.  Headers ``last_zxid: 0x<16 hex digits>`` (that transaction)
and ``snapshot_size``, ``Content-Type: application/octet-stream``, the body the
bytes of a ZooKeeper 3.8 ``snapshot.<last_zxid>`` file (3.9 appends a digest
and a lastProcessedZxid, which 3.8 cannot read; zkpy leaves them out and gives
the zxid in the header).  ``streaming=false``: the headers and a JSON body.

``POST <commandURL>/restore`` (alias ``rest``) with a snapshot as the body
(zkpy's stream, a ZooKeeper 3.8 snapshot file, or 3.9's stream): the server
replaces its tree and sessions with the snapshot's, keeps every znode's Stat
and ACL as the snapshot has them, writes the restored state as its newest
snapshot (so a restart comes back with it), closes every client connection
(their sessions are now the snapshot's), and answers ``{"last_zxid": n}``.
Standalone servers only: on an ensemble member a restore would make it
diverge from the others (zkpy answers 500 and says so).

Both need ALL on ``/`` for the ids of an ``Authorization: <scheme> <auth>``
header (``digest user:password``, ``ip``), and are rate limited (429).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from twisted.internet import defer, task, threads
from twisted.web import server

from zkpy.storage import backup as B
from zkpy.storage.formats import snapshot_name
from zkpy.storage.snapshot import SnapshotMaker, made_bytes, snapshot_bytes

log = logging.getLogger("zkpy.admin")

SNAPSHOT_NAMES = ("snapshot", "snap")
RESTORE_NAMES = ("restore", "rest")


def _flag(props: dict[str, str], key: str) -> bool:
    return props.get(key, "true").strip().lower() == "true"  # Boolean.parseBoolean


class Backups:
    """What the AdminServer needs for the two commands: the server, limiters, flags."""

    def __init__(self, reactor: Any, core: Any, props: dict[str, str], clock: Any,
                 member: Any = None, to_json: Any = json.dumps) -> None:
        self.reactor = reactor
        self.to_json = to_json  # the AdminServer's Jackson-style printer
        self.core = core
        self.member = member  # the MemberServer (restore needs its disk and snapshots)
        self.props = props
        try:
            interval = int(props.get("zookeeper.admin.rateLimiterIntervalInMS",
                                     B.DEFAULT_RATE_INTERVAL_MS))
        except ValueError:
            interval = B.DEFAULT_RATE_INTERVAL_MS
        now = reactor.seconds() * 1000
        # ZooKeeper 3.9's SnapshotCommand passes TimeUnit.MICROSECONDS (a window of
        # interval/1000 ms); RestoreCommand milliseconds.
        self.snapshot_limit = B.RateLimiter(1, interval / 1000.0, now)
        self.restore_limit = B.RateLimiter(1, interval, now)

    # -- shared ---------------------------------------------------------------------
    def _refusal(self, request: Any, enabled_key: str, limiter: B.RateLimiter
                 ) -> tuple[int, str | None] | None:
        # As Commands.runCommand, then the command: auth, the feature flag, the limit.
        header = request.getHeader(b"authorization")
        header = header.decode("utf-8", "replace") if isinstance(header, bytes) else header
        refused = B.authorize(header, request.getClientAddress().host, self.core.auth,
                              B.acl_of_root(self.core.tree), self.core.settings.skip_acl)
        if refused is not None:
            return refused
        if not _flag(self.props, enabled_key):
            return 503, None
        if not limiter.allow(self.reactor.seconds() * 1000):
            return 429, None
        return None

    def _paths(self) -> tuple[str, str]:
        from zkpy.storage.formats import VERSION_DIR

        s = self.core.settings
        return (os.path.join(s.data_dir, VERSION_DIR),
                os.path.join(s.data_log_dir or s.data_dir, VERSION_DIR))

    # -- snapshot -------------------------------------------------------------------
    def take(self) -> defer.Deferred[tuple[bytes, int]]:
        """(consistent snapshot bytes, last zxid), without stopping the server."""
        maker = SnapshotMaker(self.core.tree, self.core.session_timeouts())

        def steps() -> Any:
            while not maker.step(2000):
                yield None

        d: defer.Deferred[Any] = task.cooperate(steps()).whenDone()

        def walked(_: Any) -> defer.Deferred[tuple[bytes, int]]:
            end = self.core.last_zxid  # applied, so already in the log
            return threads.deferToThread(self._consistent, maker, end)

        d.addCallback(walked)
        return d

    def _consistent(self, maker: SnapshotMaker, end: int) -> tuple[bytes, int]:
        fuzzy = made_bytes(maker)
        if end == maker.zxid:
            return fuzzy, end
        _, log_dir = self._paths()
        entries = B.logged_between(log_dir, maker.zxid, end)
        log.info("Snapshot walk from zxid 0x%x to 0x%x: replaying %d logged transactions",
                 maker.zxid, end, len(entries))
        return B.consistent_snapshot(fuzzy, maker.zxid, entries, end), end

    def render_snapshot(self, request: Any, kwargs: dict[str, str], name: str) -> Any:
        """``name`` as asked (auth refusals name it, as ZooKeeper's do); the
        command's own answers name the primary."""
        refused = self._refusal(request, "zookeeper.admin.snapshot.enabled",
                                self.snapshot_limit)
        if refused is not None and refused[0] in (401, 403):
            return self._json(request, name, *refused)
        command = SNAPSHOT_NAMES[0]
        if refused is not None:
            return self._json(request, command, *refused)
        streaming = kwargs.get("streaming", "true").strip().lower() == "true"

        def done(result: tuple[bytes, int]) -> None:
            blob, zxid = result
            if getattr(request, "_disconnected", False):
                return  # the caller went away while the snapshot was made
            request.setResponseCode(200)
            request.setHeader(b"last_zxid", f"0x{zxid & 0xFFFFFFFFFFFFFFFF:016x}".encode())
            request.setHeader(b"snapshot_size", str(len(blob)).encode())
            log.info("Snapshot at zxid 0x%x (%d bytes) for %s", zxid, len(blob),
                     request.getClientAddress().host)
            if streaming:
                request.setHeader(b"Content-Type", b"application/octet-stream")
                request.setHeader(b"Content-Length", str(len(blob)).encode())
                request.write(blob)
                request.finish()
            else:
                self._finish_json(request, command, 200, None)

        def failed(failure: Any) -> None:
            log.warning("Snapshot command failed: %s", failure.getErrorMessage())
            self._finish_json(request, command, 500, None)

        self.take().addCallbacks(done, failed)
        return server.NOT_DONE_YET

    # -- restore --------------------------------------------------------------------
    def render_restore(self, request: Any, name: str) -> Any:
        refused = self._refusal(request, "zookeeper.admin.restore.enabled", self.restore_limit)
        if refused is not None and refused[0] in (401, 403):
            return self._json(request, name, *refused)
        command = RESTORE_NAMES[0]
        if refused is not None:
            return self._json(request, command, *refused)
        body = request.content.read() if request.content is not None else b""
        if not body:
            return self._json(request, command, 400, None)
        d = threads.deferToThread(self._prepare, body)
        d.addCallback(self._adopt)

        def done(zxid: int) -> None:
            log.info("Restored a snapshot for %s: the server is at zxid 0x%x",
                     request.getClientAddress().host, zxid)
            self._finish_json(request, command, 200, None, last_zxid=zxid)

        def failed(failure: Any) -> None:
            log.warning("Restore command failed: %s", failure.getErrorMessage())
            self._finish_json(request, command, 500, failure.getErrorMessage()
                         if failure.check(B.BackupError) else None)

        d.addCallbacks(done, failed)
        return server.NOT_DONE_YET

    def _prepare(self, body: bytes) -> tuple[Any, dict[int, int], bytes]:
        tree, sessions = B.read_backup(body)
        return tree, sessions, snapshot_bytes(tree, sessions)

    def _adopt(self, prepared: tuple[Any, dict[int, int], bytes]) -> defer.Deferred[int]:
        member = self.member
        if member is None or not getattr(member, "standalone", False):
            raise B.BackupError("restore is supported on a standalone server only (on an "
                                "ensemble member it would diverge from the others)")
        if member.snapshots.running:
            raise B.BackupError("a snapshot is being written; try again")
        if self.core.outstanding_writes or member.replica.proposed:
            # Their txns were prepared against the tree being replaced: applying
            # them over the restored one could not give what was acknowledged.
            raise B.BackupError("writes are in flight; try again")
        tree, sessions, blob = prepared
        core = self.core
        zxid = core.last_zxid
        tree.last_zxid = zxid  # the counter goes on from here; znodes keep their Stats
        core.replace_state(tree, sessions, member.clock())
        for conn in list(core.connections.values()):
            conn.abort("the server's state was restored from a snapshot")
        snap_dir, _ = self._paths()
        path = os.path.join(snap_dir, snapshot_name(zxid))
        written = threads.deferToThreadPool(self.reactor, member.disk.snap_pool, B.write_file,
                                            path, blob)
        return written.addCallback(lambda _: zxid)

    # -- JSON answers, in the AdminServer's layout ------------------------------------
    def _json(self, request: Any, command: str, status: int, error: str | None,
              **fields: Any) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"Content-Type", b"application/json")
        out = dict(fields)
        out["command"] = command
        out["error"] = error
        return str(self.to_json(out)).encode("utf-8")

    def _finish_json(self, request: Any, command: str, status: int, error: str | None,
                     **fields: Any) -> None:
        if request.finished or getattr(request, "_disconnected", False):
            return
        request.write(self._json(request, command, status, error, **fields))
        request.finish()
