"""Send bytes on a TCP transport at once, when nothing is queued ahead of them.

Twisted's ``transport.write`` never sends: it appends to the transport's
buffer and registers for writability (``epoll_ctl``); the bytes leave at the
next turn of the reactor, once ``epoll_wait`` has said the socket is writable,
and the transport unregisters again (another ``epoll_ctl``). A replicated
write crosses four such hops in series (a follower forwards the request, the
leader sends the PROPOSAL, the follower its ACK, the leader the COMMIT), so it
paid four extra reactor turns, and on the leader the disk thread, woken by the
same step, ran first and held the GIL while the PROPOSAL waited (seen with
``strace -f -ttt`` on a leader and a follower under sequential writes).

``send_now`` sends directly on the socket when the transport's own buffer is
empty (so nothing can overtake what Twisted already holds), and hands
whatever the socket did not take to ``transport.write``, which keeps
Twisted's back-pressure (a registered producer is paused as before) and its
error handling (a failed send is left for Twisted to find on its turn, which
closes the connection as it would have). Any other transport (TLS, a test's
``StringTransport``) just gets ``write``.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import tcp

# Plain TCP connections, whose socket is theirs alone to write (a TLS
# connection's transport is a protocol wrapper, not one of these).
_PLAIN = (tcp.Server, tcp.Client)


def is_plain(transport: Any) -> bool:
    """A plain TCP transport, whose socket is ours to write to."""
    return isinstance(transport, _PLAIN)


def send_now(transport: Any, data: bytes) -> None:
    """Write ``data`` to ``transport``: straight to its socket if nothing waits."""
    if (is_plain(transport) and transport.connected
            and not transport.disconnecting and not transport._writeDisconnected
            and not transport.dataBuffer and not transport._tempDataLen):
        try:
            sent = transport.socket.send(data)
        except OSError:
            # EAGAIN (the kernel's buffer is full) or an error: Twisted's own
            # write sends it later, or finds the error and closes.
            sent = 0
        if sent == len(data):
            return
        if sent:
            data = data[sent:]
    transport.write(data)
