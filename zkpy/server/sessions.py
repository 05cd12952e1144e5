"""The session table: ids, passwords, timeouts and expiry by time buckets.

Session ids and passwords are made as Apache ZooKeeper makes them, so a client
cannot tell the servers apart: the id packs the server id into the top byte
above a millisecond timestamp and then counts up; the password is 16 bytes of
``java.util.Random`` seeded with ``id ^ 0xB3415C00``, so any server can check
it without storing it.

Expiry follows ZooKeeper's ExpiryQueue: a session's deadline is rounded up to
the next multiple of tickTime, and sessions are kept in one bucket per
deadline, so one sweep per tick expires every session due, with no timer per
session. All methods take ``now`` in milliseconds; nothing here reads a clock.
"""

from __future__ import annotations

from typing import Any

_MASK48 = (1 << 48) - 1
_MASK64 = (1 << 64) - 1
_SUPER_SECRET = 0xB3415C00
_CONTAINER_OWNER = -0x8000000000000000


def _to_signed64(v: int) -> int:
    v &= _MASK64
    return v - (1 << 64) if v >= 1 << 63 else v


def hex_sid(sid: int) -> str:
    """A session id as ZooKeeper logs it: 0x and the unsigned 64-bit hex."""
    return f"0x{sid & _MASK64:x}"


def java_random_bytes(seed: int, n: int) -> bytes:
    """``new java.util.Random(seed).nextBytes(new byte[n])``."""
    state = (seed ^ 0x5DEECE66D) & _MASK48
    out = bytearray()
    while len(out) < n:
        state = (state * 0x5DEECE66D + 0xB) & _MASK48
        rnd = state >> 16  # next(32), as an unsigned 32-bit pattern
        for _ in range(min(n - len(out), 4)):
            out.append(rnd & 0xFF)
            rnd >>= 8
    return bytes(out)


def session_password(session_id: int) -> bytes:
    return java_random_bytes(_to_signed64(session_id ^ _SUPER_SECRET), 16)


def first_session_id(server_id: int, now_ms: int) -> int:
    """ZooKeeper's SessionTrackerImpl.initializeNextSessionId."""
    sid = ((now_ms << 24) & _MASK64) >> 8
    sid = _to_signed64(sid | (server_id << 56))
    if sid == _CONTAINER_OWNER:
        sid += 1
    return sid


class Session:
    __slots__ = ("id", "timeout", "deadline", "closing", "conn", "local")

    def __init__(self, sid: int, timeout: int) -> None:
        self.id = sid
        self.timeout = timeout
        self.deadline = 0
        self.closing = False
        self.conn: Any = None
        # A local session (localSessionsEnabled) lives on this server alone: never
        # proposed, reported to the leader or snapshotted, until it is upgraded.
        self.local = False


class SessionTable:
    def __init__(self, tick_ms: int, server_id: int, now_ms: int) -> None:
        self.tick = tick_ms
        self.sessions: dict[int, Session] = {}
        self._buckets: dict[int, set[int]] = {}
        self._next_id = first_session_id(server_id, now_ms)
        self._next_sweep = self._round_up(now_ms)
        # A follower collects the sessions its clients kept alive here and
        # reports them to the leader, which alone expires sessions.
        self.touched: dict[int, int] | None = None

    def _round_up(self, t: int) -> int:
        return (t // self.tick + 1) * self.tick

    def new_id(self) -> int:
        sid = self._next_id
        self._next_id = _to_signed64(sid + 1)
        return sid

    def get(self, sid: int) -> Session | None:
        return self.sessions.get(sid)

    def add(self, sid: int, timeout: int, now: int) -> Session:
        session = self.sessions.get(sid)
        if session is None:
            session = Session(sid, timeout)
            self.sessions[sid] = session
        session.timeout = timeout
        self.touch(sid, now)
        return session

    def touch(self, sid: int, now: int) -> bool:
        """Push the session's deadline out; False if it is unknown or closing."""
        session = self.sessions.get(sid)
        if session is None or session.closing:
            return False
        if self.touched is not None and not session.local:
            self.touched[sid] = session.timeout
        deadline = self._round_up(now + session.timeout)
        if deadline != session.deadline:
            if session.deadline:
                bucket = self._buckets.get(session.deadline)
                if bucket is not None:
                    bucket.discard(sid)
                    if not bucket:
                        del self._buckets[session.deadline]
            self._buckets.setdefault(deadline, set()).add(sid)
            session.deadline = deadline
        return True

    def remove(self, sid: int) -> Session | None:
        session = self.sessions.pop(sid, None)
        if session is not None:
            bucket = self._buckets.get(session.deadline)
            if bucket is not None:
                bucket.discard(sid)
                if not bucket:
                    del self._buckets[session.deadline]
        return session

    def expire(self, now: int) -> list[Session]:
        """Sessions whose deadline has passed; they are marked closing, not removed."""
        due: list[Session] = []
        while self._next_sweep <= now:
            for sid in self._buckets.pop(self._next_sweep, ()):
                session = self.sessions.get(sid)
                if session is not None and not session.closing:
                    session.closing = True
                    due.append(session)
            self._next_sweep += self.tick
        return due

    def is_global(self, sid: int) -> bool:
        """A session the whole ensemble knows (not a local one of this server's)."""
        session = self.sessions.get(sid)
        return session is not None and not session.local

    def local_ids(self) -> list[int]:
        return [sid for sid, s in self.sessions.items() if s.local]

    def next_sweep(self) -> int:
        return self._next_sweep
