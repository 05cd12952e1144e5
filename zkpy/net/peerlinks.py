"""Connections between ensemble members: the election port and the quorum port.

Only bytes and connections live here; what the messages mean is
``zkpy.zab``'s business.

Election port (QuorumCnxManager): one connection per pair of servers. The
side that connects first sends the initial message (``zkpy.zab.wire``); a
connection survives only if the larger server id made it, so when a smaller
id connects, the larger one closes that connection and connects back. Each
direction then carries length-framed notifications. Notifications for a
server we have no connection to are held (the newest one only, as
ZooKeeper's queue of capacity one) and sent when it connects.

Quorum port (Leader / Learner): every participant listens; a follower
connects to its leader and opens with FOLLOWERINFO, which names it. The
stream is a sequence of QuorumPackets with no framing of its own
(``zkpy.zab.messages.split_packet``), except after a SNAP: as ZooKeeper's
LearnerHandler does, the leader writes an empty SNAP packet and then the
serialized tree and sessions and the "BenWasHere" signature
(``zkpy.storage.snapstream``); the learner's side reads that stream and hands
the core one SNAP packet carrying the snapshot's bytes, which is what the
core sends too. A connection is identified by an object (``token``) so that
a message released after a disk sync goes out only on the connection it was
meant for.

Quorum TLS (``zkpy.net.quorumtls``, ``tls`` on both link sets): with
``sslQuorum=true`` both ports listen and connect over mutual TLS.

Quorum SASL (``zkpy.auth.quorum_sasl``, ``auth`` on both link sets): with
``quorum.auth.enableSasl`` a connection first runs the DIGEST-MD5 handshake
(the election port: right after the initial message), the connecting side as
the learner when ``learnerRequireSasl`` (on the election port only towards
voters, as QuorumCnxManager), the accepting side as the server; with
``serverRequireSasl`` a connection that does not authenticate is refused
and logged. Nothing else is read or sent on it before the handshake is done.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet import protocol
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from zkpy.auth import quorum_sasl as qsasl
from zkpy.jute.codec import JuteError
from zkpy.net import heap
from zkpy.net.peerauth import PeerSasl as _Sasl
from zkpy.net.peerauth import tls_peer_ok as _tls_peer_ok
from zkpy.net.sendnow import send_now
from zkpy.net.threadsend import ThreadSender
from zkpy.storage import snapbuild, snapstream
from zkpy.storage.snapshot import AclUnknown, SnapshotInvalid
from zkpy.zab import messages as m
from zkpy.zab import wire
from zkpy.zab.election import Notification

log = logging.getLogger("zkpy.quorum")

# Znodes serialized per reactor turn while a learner's SNAP is made: about 3 ms
# here (2000 took 11 ms, p99 28 ms, on a loaded machine), which a client's
# request on the leader may wait behind.
_SNAP_SLICE = 500

Address = tuple[str, int]


def resolve(host: str) -> str:
    """An IPv4/IPv6 literal for a zoo.cfg host name (resolved once, at start-up)."""
    try:
        return str(socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)[0][4][0])
    except OSError:
        return host


def _handshake_timer(reactor: Any, window: float, proto: Any, what: str) -> Any:
    """Close an accepted connection that has not said who it is within ``window``
    seconds (ZooKeeper's socket read timeout during the handshake): a stranger
    that connects and waits does not hold a connection for ever."""
    if reactor is None:
        return None

    def expired() -> None:
        if proto.sid is None and proto.transport is not None:
            log.warning("Closing a connection that sent no %s within %.1fs", what, window)
            proto.abort()

    return reactor.callLater(window, expired)


def _cancel(timer: Any) -> None:
    if timer is not None and timer.active():
        timer.cancel()


# -- the election port ---------------------------------------------------------------------


class _ElectionProtocol(protocol.Protocol):
    transport: Any

    def __init__(self, links: ElectionLinks, sid: int | None) -> None:
        self.links = links
        self.sid = sid  # known when we connected; learned from the initial message otherwise
        self.outbound = sid is not None
        self.buf = b""
        self.addresses: tuple[tuple[str, int], ...] = ()
        self.sasl = _Sasl(links.auth, self)
        self.timer: Any = None
        self.peer_checked = False

    def connectionMade(self) -> None:
        if not self.outbound:
            self.timer = _handshake_timer(self.links.reactor, self.links.handshake_window,
                                          self, "its initial message")
        if self.outbound:
            assert self.sid is not None
            assert self.links.initial_message is not None
            self.transport.write(self.links.initial_message)
            if not self.sasl.connect(self.links.wants_auth(self.sid)):
                self.links.made(self.sid, self)

    def authenticated(self) -> bool:
        """The handshake is over (or there was none): go on; False if dropped."""
        assert self.sid is not None
        if self.outbound:
            self.links.made(self.sid, self)
            return True
        return self.links.accepted(self.sid, self, self.addresses)

    def dataReceived(self, data: bytes) -> None:
        if not self.peer_checked:
            self.peer_checked = True
            if not self.outbound and not _tls_peer_ok(self.links.tls, self.transport):
                self.transport.abortConnection()
                return
        if self.sasl.active:
            rest = self.sasl.feed(data)
            if rest is None:
                return
            data = rest
        self.buf += data
        try:
            if self.sid is None:
                found = wire.split_initial_message(self.buf)
                if found is None:
                    return
                msg, rest = found
                self.buf = b""
                _cancel(self.timer)
                self.sid, self.addresses = msg.sid, msg.addresses
                if self.sasl.accept(f"the election connection of server {msg.sid}"):
                    after = self.sasl.feed(rest)
                    if after is None:
                        return
                    rest = after
                elif not self.links.accepted(msg.sid, self, msg.addresses):
                    return
                self.buf = rest
            while True:
                framed = wire.split_frame(self.buf)
                if framed is None:
                    return
                payload, self.buf = framed
                notification, config = wire.decode_notification(payload, self.sid)
                self.links.on_vote(self.sid, notification, config)
        except wire.WireError as e:
            log.warning("Closing an election connection%s: %s",
                        f" from server {self.sid}" if self.sid is not None else "", e)
            self.transport.abortConnection()

    def abort(self) -> None:
        self.transport.abortConnection()

    def connectionLost(self, reason: Any = None) -> None:
        _cancel(self.timer)
        if self.sid is not None:
            self.links.lost(self.sid, self)


class _ElectionConnector(protocol.ClientFactory):
    def __init__(self, links: ElectionLinks, sid: int) -> None:
        self.links = links
        self.sid = sid

    def buildProtocol(self, addr: Any) -> _ElectionProtocol:
        p = _ElectionProtocol(self.links, self.sid)
        p.factory = self
        return p

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        self.links.dial_ended(self.sid)

    def clientConnectionLost(self, connector: Any, reason: Any) -> None:
        self.links.dial_ended(self.sid)


class ElectionLinks(protocol.ServerFactory):
    def __init__(self, reactor: Any, my_id: int, peers: dict[int, Address],
                 on_vote: Callable[[int, Notification, bytes], None],
                 config_text: bytes = b"") -> None:
        self.reactor = reactor
        self.my_id = my_id
        self.peers = peers
        self.on_vote = on_vote
        self.config = config_text
        self.auth: qsasl.QuorumSasl | None = None
        self.tls: Any = None  # zkpy.net.quorumtls.QuorumTLS with sslQuorum=true
        # Whom we authenticate to when we connect (QuorumCnxManager: the voters).
        self.wants_auth: Callable[[int], bool] = lambda sid: True
        self.initial_message: bytes | None = None
        if my_id in peers:
            self.set_own_address()
        self.conns: dict[int, _ElectionProtocol] = {}
        self.held: dict[int, bytes] = {}
        self.connecting: set[int] = set()
        # How long a server that connected may take to say who it is
        # (QuorumCnxManager: socketTimeout, tickTime * initLimit).
        self.handshake_window = 10.0
        # Outsiders we connect back to (a smaller id not in our membership, at the
        # address its initial message gave): kept only until that dial ends, as
        # QuorumCnxManager.connectOne(sid, electionAddr) remembers nothing.
        self.returning: dict[int, Address] = {}
        self.port: Any = None

    def set_own_address(self) -> None:
        self.initial_message = wire.encode_initial_message(self.my_id, [self.peers[self.my_id]])

    def listen(self) -> Any:
        host, port = self.peers[self.my_id]
        factory = self.tls.server_factory(self, self.reactor) if self.tls is not None else self
        self.port = self.reactor.listenTCP(port, factory, interface=host)
        log.info("Election port listening on %s:%d%s", host, port,
                 " (TLS)" if self.tls is not None else "")
        return self.port

    def buildProtocol(self, addr: Any) -> _ElectionProtocol:
        return _ElectionProtocol(self, None)

    def send(self, sid: int, n: Notification) -> None:
        data = wire.frame(wire.encode_notification(n, self.config))
        conn = self.conns.get(sid)
        if conn is not None and conn.transport is not None:
            conn.transport.write(data)
            return
        if sid not in self.peers and sid not in self.returning:
            return  # a server outside our membership that is not connected to us
        self.held[sid] = data
        self._connect(sid)

    def _connect(self, sid: int) -> None:
        if sid in self.connecting or sid in self.conns:
            return
        self.connecting.add(sid)
        host, port = self.peers.get(sid) or self.returning[sid]
        connector: Any = _ElectionConnector(self, sid)
        if self.tls is not None:
            connector = self.tls.client_factory(connector, host, self.reactor)
        self.reactor.connectTCP(host, port, connector, timeout=5)

    def made(self, sid: int, proto: _ElectionProtocol) -> None:
        """Our connection to ``sid`` is up (and has sent the initial message)."""
        if sid > self.my_id:
            # QuorumCnxManager.startConnection: "Have smaller server identifier,
            # so dropping the connection": the larger id connects back.
            proto.transport.loseConnection()
            return
        self._adopt(sid, proto)

    def accepted(self, sid: int, proto: _ElectionProtocol,
                 addresses: tuple[tuple[str, int], ...] = ()) -> bool:
        """A server connected to us and said who it is; False if we dropped it."""
        if sid == self.my_id:
            log.warning("Election connection claiming our own server id %d; closing", sid)
            proto.transport.abortConnection()
            return False
        if sid not in self.peers:
            # Not in our membership (joining by reconfig, an observer, or removed):
            # it gets answers on this connection; connecting back needs its address.
            if sid < self.my_id and addresses:
                log.info("Election connection from server %d, not in our membership, at "
                         "%s:%d", sid, *addresses[0])
                self.returning[sid] = addresses[0]
            else:
                self._adopt(sid, proto)
                return True
        if sid < self.my_id:
            proto.sid = None  # not ours to keep
            proto.transport.loseConnection()
            self._connect(sid)
            return False
        self._adopt(sid, proto)
        return True

    def _adopt(self, sid: int, proto: _ElectionProtocol) -> None:
        old = self.conns.get(sid)
        if old is not None and old is not proto and old.transport is not None:
            old.sid = None
            old.transport.loseConnection()
        self.conns[sid] = proto
        self.returning.pop(sid, None)
        held = self.held.pop(sid, None)
        if held is not None:
            proto.transport.write(held)

    def dial_ended(self, sid: int) -> None:
        """Our connection attempt to ``sid`` failed, or its connection closed."""
        self.connecting.discard(sid)
        if sid not in self.conns:
            self.returning.pop(sid, None)
            if sid not in self.peers:
                self.held.pop(sid, None)

    def lost(self, sid: int, proto: _ElectionProtocol) -> None:
        if self.conns.get(sid) is proto:
            del self.conns[sid]
            if sid not in self.peers:
                self.held.pop(sid, None)

    def close(self) -> None:
        if self.port is not None:
            self.port.stopListening()
        for conn in list(self.conns.values()):
            if conn.transport is not None:
                conn.transport.loseConnection()


# -- the quorum port -----------------------------------------------------------------------


class _QuorumProtocol(protocol.Protocol):
    transport: Any

    def __init__(self, links: QuorumLinks, sid: int | None) -> None:
        self.links = links
        self.sid = sid
        self.outbound = sid is not None
        self.buf = bytearray()
        self.closed = False
        # Walking our state for a learner's SNAP: what else is sent to it waits here.
        self.held: list[m.QuorumPacket] | None = None
        # Reading the stream after a SNAP from the leader: the packet, the reader
        # finding its end, and the tree built from it as it comes.
        self.snap: tuple[m.QuorumPacket, snapstream.SnapStreamReader,
                         snapbuild.StreamBuilder] | None = None
        self.sasl = _Sasl(links.auth, self)
        self.timer: Any = None
        self.peer_checked = False
        self.heard_at = float("-inf")  # when Zab was last told the stream brings bytes
        # Encoded packets of this step, written as one at its end (``flush``).
        self.out: list[bytes] = []
        # On our connection to the leader: the log thread sends our ACKs on it
        # (``QuorumLinks.send_from_thread``), and every write here takes its lock.
        self.sender: ThreadSender | None = None

    def connectionMade(self) -> None:
        self.transport.setTcpNoDelay(True)
        if self.outbound:
            if not self.sasl.connect(True):
                self.links.leader_connected(self)
        else:
            # LearnerCnxAcceptor: the first packet within tickTime * initLimit.
            self.timer = _handshake_timer(self.links.reactor, self.links.connect_window, self,
                                          "FOLLOWERINFO")
            self.sasl.accept("quorum connection")

    def authenticated(self) -> bool:
        if self.outbound:
            self.links.leader_connected(self)
        return not self.closed

    def dataReceived(self, data: bytes) -> None:
        if not self.peer_checked:
            self.peer_checked = True
            if not self.outbound and not _tls_peer_ok(self.links.tls, self.transport):
                self.abort()
                return
        buf = self.buf
        work: bytes | bytearray
        if self.sasl.active:
            buf += data
            rest = self.sasl.feed(bytes(buf))
            buf.clear()
            if rest is None:
                return
            buf += rest
            work = buf
        elif self.snap is not None or buf:
            # A SNAP's stream, or a packet held over from the last read: read
            # in the bytearray (appending stays linear however many reads a big
            # packet takes); once the held-over packet is whole, the rest of
            # this read is cut from bytes.
            buf += data
            work = buf
        else:
            # The packets are cut from bytes, each packet's data one slice (from
            # a bytearray, two copies).
            work = data
        off = 0
        packets: list[m.QuorumPacket] = []
        try:
            while not self.closed:
                streamed = self.snap is not None  # the SNAP with its state, once all in
                if streamed:
                    if work is not buf:  # the SNAP came in this read: its stream is held
                        buf += memoryview(work)[off:]
                        work = buf
                    else:
                        del buf[:off]  # the stream starts at 0 while its reader walks it
                    off = 0
                    found = self._snapshot(buf)
                else:
                    found = m.split_packet(work, off, self.links.max_packet)
                if found is None:
                    break
                pkt, off = found
                if self.sid is None and not self._identify(pkt):
                    return
                if pkt.type == m.SNAP and self.outbound and not streamed:
                    # Learner.syncWithLeader reads the state from the stream after
                    # a SNAP whatever the packet carries (a leader sends none).
                    self.snap = (pkt, snapstream.SnapStreamReader(),
                                 snapbuild.StreamBuilder(pkt.zxid))
                    heap.hold()  # a whole tree is built: see zkpy.net.heap
                    continue
                packets.append(pkt)
                if work is buf and not streamed and off:
                    work = bytes(memoryview(buf)[off:])  # the held-over packet is whole
                    buf.clear()
                    off = 0
        except (m.PacketError, snapstream.SnapStreamError, SnapshotInvalid) as e:
            log.warning("Closing the quorum connection %s: %s",
                        f"of server {self.sid}" if self.sid is not None else "", e)
            self.abort()
        # What came before bad bytes was sent all the same: the core gets it.
        if packets and self.sid is not None:
            self.links.on_packets(self.sid, packets, self)
        elif self.snap is not None and not self.closed:
            self._heard()
        if not self.closed:
            if work is buf:
                del buf[:off]
            else:
                buf += memoryview(work)[off:]  # (a packet not yet all in)

    def _snap_done(self) -> None:
        if self.snap is not None:
            self.snap = None
            heap.release()

    def _heard(self) -> None:
        now = self.links.reactor.seconds()
        if now - self.heard_at >= 1.0 and self.sid is not None:
            self.heard_at = now
            if self.links.on_heard is not None:
                self.links.on_heard(self.sid)

    def _snapshot(self, buf: bytearray) -> tuple[m.QuorumPacket, int] | None:
        """The SNAP packet with the snapshot that followed it, once all of it is in."""
        assert self.snap is not None
        head, reader, builder = self.snap
        end = reader.feed(buf)
        builder.advance(buf, reader)
        if end is None:
            return None
        self._snap_done()
        snap = m.QuorumPacket(m.SNAP, head.zxid, builder.finish(buf[:end]), None)
        return snap, end

    def _identify(self, pkt: m.QuorumPacket) -> bool:
        try:
            sid = m.learner_id(pkt) if pkt.type in (m.FOLLOWERINFO, m.OBSERVERINFO) else None
        except JuteError:
            sid = None
        if sid is None or sid == self.links.my_id:
            log.warning("Quorum connection did not open with a valid FOLLOWERINFO (%s); "
                        "closing", m.describe(pkt))
            self.abort()
            return False
        self.sid = sid
        _cancel(self.timer)
        self.links.learner_connected(sid, self)
        return True

    def queue(self, pkt: m.QuorumPacket, data: bytes) -> bool:
        """Keep a plain packet (``data``: it encoded) for ``flush``; False when
        it needs ``write`` (a SNAP, a state being walked, a closed connection)."""
        if self.closed or self.transport is None or self.held is not None or pkt.type == m.SNAP:
            return False
        self.out.append(data)
        return True

    def flush(self) -> None:
        """Hand what ``queue`` kept to the transport, in one write, sent at once
        when nothing waits ahead of it (``zkpy.net.sendnow``); after what the
        log thread left to us (``sender``), if anything."""
        sender = self.sender
        if sender is None:
            self._flush(b"")
            return
        with sender.lock:
            self._flush(sender.take_stash())

    def _flush(self, first: bytes) -> None:
        out = self.out
        if first:
            out.insert(0, first)
        if out:
            self.out = []
            if not self.closed and self.transport is not None:
                send_now(self.transport, out[0] if len(out) == 1 else b"".join(out))

    def flush_stash(self) -> None:
        """What the log thread could not send goes out (a step's packets wait
        for the step's end, as before)."""
        sender = self.sender
        if sender is None:
            return
        with sender.lock:
            data = sender.take_stash()
            if data and not self.closed and self.transport is not None:
                send_now(self.transport, data)

    def use_thread_sends(self) -> None:
        """Let the log thread send on this connection (a plain TCP one)."""
        sender = ThreadSender.for_transport(self.transport)
        if sender is not None:
            call = self.links.reactor.callFromThread
            flush_stash = self.flush_stash
            sender.on_stash = lambda: call(flush_stash)
        self.sender = sender

    def write(self, pkt: m.QuorumPacket) -> None:
        sender = self.sender
        if sender is None:
            self._write(pkt)
            return
        with sender.lock:  # nothing from the log thread lands in the middle
            self._write(pkt)

    def _write(self, pkt: m.QuorumPacket) -> None:
        self.flush()  # what was queued goes first
        if self.closed or self.transport is None:
            return
        if self.held is not None:  # the state is being walked: after it
            self.held.append(pkt)
            return
        if pkt.type == m.SNAP and pkt.data is None:
            self._stream_state(pkt.zxid)
            return
        if pkt.type == m.SNAP and pkt.data:
            # LearnerHandler: SNAP(zxid) with no data, then the tree streamed after it.
            self.transport.write(m.packet(m.SNAP, pkt.zxid).encode())
            self.transport.write(snapstream.stream_of(pkt.data))
            return
        self.transport.write(m.encode_packet(pkt))

    def _stream_state(self, zxid: int) -> None:
        """LearnerHandler: SNAP(zxid) with no data, then the tree streamed after it.
        The tree is walked a slice per reactor turn (the leader keeps serving
        meanwhile), from the next turn on, when this step's commits are in it:
        a fuzzy snapshot at ``zxid`` or later, which the learner's replay of what
        follows makes exact. Each slice goes out as it is made (the ACL map was
        fixed first), as ZooKeeper's serializeSnapshot writes while it walks, so
        the learner hears from us and builds its tree meanwhile. What else is
        sent to this learner waits until the stream is written."""
        self.transport.write(m.packet(m.SNAP, zxid).encode())
        self.held = []
        reactor = self.links.reactor
        state: dict[str, Any] = {}

        def step() -> None:
            if self.closed or self.transport is None:
                self.held = None
                return
            maker = state.get("maker")
            if maker is None:
                assert self.links.snapshot_maker is not None, "a SNAP needs our state"
                maker = state["maker"] = self.links.snapshot_maker()
                maker.acls_first()
                self.transport.write(snapstream.stream_head(maker.head()))
            try:
                done = maker.step(_SNAP_SLICE)
            except AclUnknown as e:
                log.warning("Dropping server %s while sending it our state: %s", self.sid, e)
                self.held = None
                self.abort()
                return
            self.transport.writeSequence(maker.chunks)
            maker.chunks.clear()
            if not done:
                reactor.callLater(0, step)
                return
            drained = _WhenDrained(self.transport, self._state_out)
            self.transport.registerProducer(drained, True)
            self.transport.write(snapstream.stream_tail())
            drained.written()
            held, self.held = self.held, None
            log.info("Sent server %s our state: %d znodes (zxid 0x%x from 0x%x)", self.sid,
                     maker.count, maker.zxid, zxid)
            for pkt in held or ():
                self.write(pkt)

        reactor.callLater(0, step)

    def _state_out(self) -> None:
        heap.give_back()  # the stream's chunks, sent and freed (see zkpy.net.heap)
        if not self.closed and self.sid is not None and self.links.on_state_sent is not None:
            self.links.on_state_sent(self.sid)

    def abort(self) -> None:
        self._snap_done()
        self._stop_thread_sends()
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abortConnection()

    def close_after_sending(self, grace: float = 2.0) -> None:
        """Close once what we already wrote is sent (a COMMIT handed out just
        before a leader steps down must still reach its follower: the rest of
        the stream is lost, never a piece in the middle); abort if the peer has
        not taken it within ``grace`` seconds."""
        if self.closed:
            return
        self.flush()
        self._stop_thread_sends()
        self.closed = True
        if self.transport is not None:
            self.transport.loseConnection()
            self.links.reactor.callLater(grace, self._abort_if_open)

    def _abort_if_open(self) -> None:
        if self.transport is not None and self.transport.connected:
            self.transport.abortConnection()

    def _stop_thread_sends(self) -> None:
        if self.sender is not None:
            self.sender.close()

    def connectionLost(self, reason: Any = None) -> None:
        self.closed = True
        self._stop_thread_sends()
        _cancel(self.timer)
        self._snap_done()
        self.links.lost(self)


class _Outbound(protocol.ClientFactory):
    """One attempt to reach the leader: packets wait here until connected."""

    def __init__(self, links: QuorumLinks, sid: int, deadline: float) -> None:
        self.links = links
        self.sid = sid
        self.deadline = deadline
        self.queue: list[m.QuorumPacket] = []
        self.proto: _QuorumProtocol | None = None
        self.cancelled = False

    def buildProtocol(self, addr: Any) -> _QuorumProtocol:
        self.proto = _QuorumProtocol(self.links, self.sid)
        return self.proto

    def clientConnectionFailed(self, connector: Any, reason: Any) -> None:
        if self.cancelled:
            return
        if self.links.reactor.seconds() < self.deadline:
            # Learner.connectToLeader retries until initLimit runs out.
            self.links.reactor.callLater(0.1, self._retry, connector)
            return
        log.warning("Cannot connect to the leader, server %d: %s", self.sid,
                    reason.getErrorMessage())
        self.links.outbound_failed(self)

    def _retry(self, connector: Any) -> None:
        if not self.cancelled:
            connector.connect()


@implementer(IPushProducer)
class _WhenDrained:
    """Calls ``done`` once what is written after ``register`` has left the
    transport's buffer: a streaming producer the transport pauses when its
    buffer fills and resumes when it has written all of it. Written while not
    paused (it fit), it is done at once; the connection closing ends it."""

    def __init__(self, transport: Any, done: Callable[[], None]) -> None:
        self.transport = transport
        self.done: Callable[[], None] | None = done
        self.paused = False

    def written(self) -> None:
        """The caller wrote: a transport whose buffer it overfilled paused us
        while it wrote; otherwise it is all handed over already."""
        if not self.paused:
            self._finish()

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._finish()

    def stopProducing(self) -> None:
        self.done = None

    def _finish(self) -> None:
        done, self.done = self.done, None
        if done is not None:
            self.transport.unregisterProducer()
            done()


class QuorumLinks(protocol.ServerFactory):
    def __init__(self, reactor: Any, my_id: int, peers: dict[int, Address],
                 on_packets: Callable[[int, list[m.QuorumPacket]], None],
                 on_lost: Callable[[int], None], connect_window: float = 10.0,
                 snapshot_maker: Callable[[], Any] | None = None) -> None:
        self.reactor = reactor
        # A ``zkpy.storage.snapshot.SnapshotMaker`` of our state now, for a SNAP.
        self.snapshot_maker = snapshot_maker
        # Told when a learner's SNAP stream has left our buffers (Zab's StateSent),
        # and, at most once a second, when a leader's SNAP stream brings bytes (Heard).
        self.on_state_sent: Callable[[int], None] | None = None
        self.on_heard: Callable[[int], None] | None = None
        self.my_id = my_id
        self.peers = peers
        self._on_packets = on_packets
        self._on_lost = on_lost
        self.connect_window = connect_window
        # The longest field a packet may carry (jute.maxbuffer and its extra size).
        self.max_packet = m.MAX_PACKET_BYTES
        self.auth: qsasl.QuorumSasl | None = None
        self.tls: Any = None  # zkpy.net.quorumtls.QuorumTLS with sslQuorum=true
        self.conns: dict[int, _QuorumProtocol] = {}
        self.outbound: dict[int, _Outbound] = {}
        self.port: Any = None
        # Connections with packets queued by ``send`` this step, for ``flush``, and
        # the last packet encoded (a leader sends the same PROPOSAL and COMMIT
        # object to each learner in turn: encoded once).
        self._queued: list[_QuorumProtocol] = []
        self._last: tuple[m.QuorumPacket | None, bytes] = (None, b"")
        # While a client connection's read is handled (``hold``/``release``),
        # each of its requests is a step of its own, and a follower forwarding
        # them sent one packet per request: held, their packets go out in one
        # write per peer when the read is done.
        self._held = 0

    def listen(self) -> Any:
        host, port = self.peers[self.my_id]
        factory = self.tls.server_factory(self, self.reactor) if self.tls is not None else self
        self.port = self.reactor.listenTCP(port, factory, interface=host)
        log.info("Quorum port listening on %s:%d%s", host, port,
                 " (TLS)" if self.tls is not None else "")
        return self.port

    def buildProtocol(self, addr: Any) -> _QuorumProtocol:
        return _QuorumProtocol(self, None)

    def token(self, sid: int) -> Any:
        """What identifies the current connection to ``sid`` (None: there is none)."""
        return self.conns.get(sid) or self.outbound.get(sid)

    def send(self, sid: int, pkt: m.QuorumPacket, token: Any = None) -> None:
        if token is not None and self.token(sid) is not token:
            return  # the connection it was meant for is gone: TCP would have lost it
        conn = self.conns.get(sid)
        if conn is not None:
            last, data = self._last
            if last is not pkt:
                data = m.encode_packet(pkt)
                self._last = (pkt, data)
            if conn.queue(pkt, data):
                if len(conn.out) == 1:
                    self._queued.append(conn)
            else:
                conn.write(pkt)
            return
        out = self.outbound.get(sid)
        if out is None and pkt.type in (m.FOLLOWERINFO, m.OBSERVERINFO) and sid in self.peers:
            out = _Outbound(self, sid, self.reactor.seconds() + self.connect_window)
            self.outbound[sid] = out
            host, port = self.peers[sid]
            factory: Any = (out if self.tls is None
                            else self.tls.client_factory(out, host, self.reactor))
            self.reactor.connectTCP(host, port, factory, timeout=5)
        if out is not None:
            out.queue.append(pkt)

    def send_from_thread(self, after: list[Any]) -> list[Any]:
        """On the log thread, once a batch is synced: send its ACKs to the
        leader from here (``zkpy.net.threadsend``), and return the rest of its
        ``Durable`` messages for the reactor. A connection's share is sent here
        only if it is all ACKs: ACKEPOCH and the like stay in order with the
        ACKs around them on the reactor. An ACK for a connection closed
        meanwhile is dropped, as ``send`` drops it."""
        mixed = {id(token) for _, pkt, token in after if pkt.type != m.ACK}
        mine: dict[int, tuple[ThreadSender, list[bytes]]] = {}
        rest = []
        for item in after:
            token = item[2]
            sender = getattr(token, "sender", None)  # a _QuorumProtocol's, to the leader
            if sender is None or id(token) in mixed:
                rest.append(item)
                continue
            mine.setdefault(id(token), (sender, []))[1].append(m.encode_packet(item[1]))
        for sender, data in mine.values():
            sender.send(data[0] if len(data) == 1 else b"".join(data))
        return rest

    def hold(self) -> None:
        """Keep what steps queue until ``release`` (nested holds count)."""
        self._held += 1

    def release(self) -> None:
        self._held -= 1
        if not self._held:
            self.flush()

    def flush(self) -> None:
        """The end of a step's sends: each connection's packets go to its
        transport in one write (one write per packet cost a Python call chain
        per learner per packet), unless held: then at ``release``. (A
        connection closed meanwhile sends what it holds first.)"""
        if self._held:
            return
        queued, self._queued = self._queued, []
        for conn in queued:
            conn.flush()
        self._last = (None, b"")

    def leader_connected(self, proto: _QuorumProtocol) -> None:
        assert proto.sid is not None
        out = self.outbound.pop(proto.sid, None)
        if out is None or out.cancelled:
            proto.abort()
            return
        self.conns[proto.sid] = proto
        proto.use_thread_sends()
        for pkt in out.queue:
            proto.write(pkt)
        log.info("Connected to the leader, server %d", proto.sid)

    def learner_connected(self, sid: int, proto: _QuorumProtocol) -> None:
        old = self.conns.get(sid)
        if old is not None and old is not proto:
            old.sid = None  # its loss is not news any more
            old.abort()
        self.conns[sid] = proto
        log.info("Server %d connected to our quorum port", sid)

    def on_packets(self, sid: int, pkts: list[m.QuorumPacket], proto: _QuorumProtocol) -> None:
        """What one read of ``sid``'s current connection brought, in order."""
        if self.conns.get(sid) is proto:
            self._on_packets(sid, pkts)

    def outbound_failed(self, out: _Outbound) -> None:
        if self.outbound.get(out.sid) is out:
            del self.outbound[out.sid]
            self._on_lost(out.sid)

    def lost(self, proto: _QuorumProtocol) -> None:
        sid = proto.sid
        if sid is not None and self.conns.get(sid) is proto:
            del self.conns[sid]
            self._on_lost(sid)

    def disconnect(self, sid: int) -> None:
        conn = self.conns.pop(sid, None)
        if conn is not None:
            conn.sid = None
            conn.close_after_sending()
        out = self.outbound.pop(sid, None)
        if out is not None:
            out.cancelled = True
            if out.proto is not None:
                out.proto.sid = None
                out.proto.abort()

    def close(self) -> None:
        if self.port is not None:
            self.port.stopListening()
        for sid in list(self.conns) + list(self.outbound):
            self.disconnect(sid)
