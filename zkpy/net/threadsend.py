"""Sending on a plain TCP connection from the log thread, the reactor's sends kept in order.

A follower ACKs a proposal once it is synced. Handed back to the reactor, the
ACK waited for the reactor to wake and take its turn (40-80 us a write here,
measured in the disk writer), and the ACK is on every replicated write's
critical path: the leader commits when a follower's ACK arrives. ZooKeeper's
follower sends it from the thread that synced (SendAckRequestProcessor after
SyncRequestProcessor). ``ThreadSender`` lets ours do the same on the
connection to the leader, without ever mixing its bytes with the reactor's:

- one lock covers every write to the connection: the log thread's ``send``,
  and the reactor's writes and flushes (``_QuorumProtocol`` takes it around
  them);
- the thread sends only when nothing waits ahead: nothing kept back for the
  reactor (``stash``) and nothing in Twisted's buffer. Otherwise its bytes are
  stashed, in order, and the reactor sends them before anything of its own;
- what the socket did not take of a send is stashed too, so no other bytes
  can land in the middle of a packet;
- the thread writes on a descriptor of its own (``dup``): Twisted may close
  its socket at any time on the reactor, and the number of a closed
  descriptor can be reused at once for another file. Ours is closed under the
  lock (``close``), never during a send.

Only a plain TCP connection (``zkpy.net.sendnow``'s kind) has one: a TLS
transport is a protocol wrapper whose state the thread must not touch.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

from zkpy.net.sendnow import is_plain

__all__ = ["ThreadSender", "SENT", "STASHED", "CLOSED"]

SENT = "sent"  # on the socket now
STASHED = "stashed"  # kept for the reactor, which sends it before anything else
CLOSED = "closed"  # the connection is closed: dropped, as TCP would have lost it


class ThreadSender:
    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.lock = threading.RLock()  # the reactor's write may flush under it
        self._sock: socket.socket | None = transport.socket.dup()
        self._stash = bytearray()
        # The reactor is told once per stash, with the callable it runs to send it.
        self.on_stash: Any = None

    @classmethod
    def for_transport(cls, transport: Any) -> ThreadSender | None:
        """A sender for ``transport``, or None when it is not a plain open TCP one."""
        if not is_plain(transport) or not transport.connected or transport.disconnecting:
            return None
        return cls(transport)

    @property
    def closed(self) -> bool:
        return self._sock is None

    def send(self, data: bytes) -> str:
        """From the log thread: send ``data`` now if nothing waits ahead of it,
        else keep it for the reactor (``STASHED``: ``on_stash`` was called)."""
        with self.lock:
            sock = self._sock
            if sock is None:
                return CLOSED
            t = self.transport
            sent = 0
            if not self._stash and not t.dataBuffer and not t._tempDataLen:
                try:
                    sent = sock.send(data, socket.MSG_DONTWAIT)
                except OSError:
                    # EAGAIN (the kernel's buffer is full) or an error: the reactor
                    # sends it, or Twisted finds the error and closes.
                    sent = 0
                if sent == len(data):
                    return SENT
            was_empty = not self._stash
            self._stash += data[sent:] if sent else data
        if was_empty and self.on_stash is not None:
            self.on_stash()
        return STASHED

    def take_stash(self) -> bytes:
        """On the reactor, holding ``lock``: what must go out before anything else."""
        if not self._stash:
            return b""
        out = bytes(self._stash)
        self._stash.clear()
        return out

    def close(self) -> None:
        """On the reactor: no more sends from the thread; what is stashed is dropped."""
        with self.lock:
            sock, self._sock = self._sock, None
            self._stash.clear()
        if sock is not None:
            sock.close()
