"""The Twisted adapters, with Twisted's own fakes: no sockets, no threads, no sleeping.

``task.Clock`` is the reactor's time, ``StringTransport`` each connection, and the
disk thread is a pool whose jobs run only when a test says so (``StepPool``), so
each test decides exactly when the disk finishes a write. What is held here:

- the disk writer (``zkpy.net.disk``): what waits for durability (ACKs) is released
  only after the batch holding it is synced; writes that arrive meanwhile share the
  next batch and its one fsync; a failed write stops the server;
- a server (``zkpy.net.member.MemberServer``, standalone) answers a write only after
  its disk synced it; a client that goes away while its write is being synced costs
  nothing (the write still commits, nothing is written to the dead connection);
- back-pressure on the client port: with more writes waiting for the disk than
  ``globalOutstandingLimit`` a connection with writes of its own in flight is not
  read, and reading resumes once the disk catches up; a transport whose buffer is
  full stops the protocol reading;
- quorum links: a packet released after a sync goes out only on the connection it
  was meant for.
"""

from __future__ import annotations

import os
import struct
import threading
from typing import Any

import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from zkpy.admin.monitor import monitor_values
from zkpy.config import default_config
from zkpy.jute import schema as S
from zkpy.jute.codec import decode_all
from zkpy.jute.protocol import Op
from zkpy.net.clientport import ClientFactory
from zkpy.net.disk import DiskWriter, LogThread
from zkpy.net.member import MemberServer
from zkpy.net.peerlinks import QuorumLinks
from zkpy.server.core import CoreSettings
from zkpy.storage.formats import encode_txn, files_by_zxid
from zkpy.storage.recovery import data_dirs, load
from zkpy.storage.txnlog import read_log
from zkpy.zab import messages as m
from zkpy.zab.events import Append

OPEN = [S.ACL(31, S.Id("world", "anyone"))]


class StepPool:
    """A thread pool whose jobs wait until ``run`` (Twisted's deferToThreadPool API)."""

    def __init__(self) -> None:
        self.jobs: list[tuple[Any, Any, tuple[Any, ...], dict[str, Any]]] = []

    def callInThreadWithCallback(self, on_result: Any, f: Any, *a: Any, **kw: Any) -> None:
        self.jobs.append((on_result, f, a, kw))

    def run(self) -> None:
        """The disk thread finishes the oldest job."""
        on_result, f, a, kw = self.jobs.pop(0)
        try:
            result = f(*a, **kw)
        except Exception:
            on_result(False, Failure())
        else:
            on_result(True, result)

    def stop(self) -> None:
        pass


class FakeReactor(task.Clock):
    """Time is ``task.Clock``'s; work from the pool's thread runs at once."""

    def __init__(self) -> None:
        super().__init__()
        self.stopped = False
        self.triggers: list[Any] = []

    def callFromThread(self, f: Any, *a: Any, **kw: Any) -> None:
        f(*a, **kw)

    def stop(self) -> None:
        self.stopped = True

    def addSystemEventTrigger(self, *args: Any) -> None:
        self.triggers.append(args)


class TCPTransport(StringTransport):
    """A StringTransport that also takes the TCP options the adapters set."""

    def setTcpNoDelay(self, enabled: bool) -> None:
        self.no_delay = enabled


def _txn(zxid: int, path: str) -> bytes:
    return encode_txn(S.TxnHeader(1, 1, zxid, 0, Op.create), S.CreateTxn(path, b"", OPEN, False, 1))


def _disk(tmp_path: Any, force_sync: bool = True) -> tuple[DiskWriter, StepPool, FakeReactor,
                                                           list[Any]]:
    reactor, pool = FakeReactor(), StepPool()
    disk = DiskWriter(reactor, str(tmp_path), str(tmp_path), 0, prealloc_bytes=4096,
                      force_sync=force_sync, pool=pool, snap_pool=StepPool())
    synced: list[Any] = []
    disk.on_synced = lambda after, last: synced.append((after, last))
    return disk, pool, reactor, synced


def _logged(directory: Any) -> list[int]:
    return [e.zxid for _, path in files_by_zxid(str(directory), "log")
            for e in read_log(path, True)]


# -- the disk writer -------------------------------------------------------------------


def test_acks_wait_until_their_batch_is_synced(tmp_path: Any) -> None:
    disk, pool, _, synced = _disk(tmp_path)
    ack = (2, m.packet(m.ACK, 1), "token")
    disk.submit([Append(1, _txn(1, "/a"))], [ack])
    assert synced == [] and len(pool.jobs) == 1  # on its way to the disk, not synced
    pool.run()
    assert synced == [([ack], 1)] and _logged(tmp_path) == [1]


def test_a_write_goes_to_the_log_thread_at_once_and_the_turns_next_ones_after_it(
        tmp_path: Any) -> None:
    """A leader's own write starts before its PROPOSALs leave, not after the
    turn; what the turn adds meanwhile is the next batch, handed over as soon
    as the first is synced."""
    disk, pool, reactor, synced = _disk(tmp_path)
    disk.submit([Append(1, _txn(1, "/a"))], [(2, m.packet(m.ACK, 1), None)])
    assert len(pool.jobs) == 1  # handed over, not waiting for the turn's end
    disk.submit([Append(2, _txn(2, "/b"))], [(2, m.packet(m.ACK, 2), None)])
    disk.submit([Append(3, _txn(3, "/c"))], [(2, m.packet(m.ACK, 3), None)])
    assert len(pool.jobs) == 1
    pool.run()
    assert [last for _, last in synced] == [1] and len(pool.jobs) == 1
    pool.run()
    assert [last for _, last in synced] == [1, 3] and _logged(tmp_path) == [1, 2, 3]
    assert [p.zxid for _, p, _ in synced[1][0]] == [2, 3]


def test_writes_that_arrive_during_a_sync_share_the_next_one(tmp_path: Any) -> None:
    disk, pool, _, synced = _disk(tmp_path)
    syncs = []
    real_sync = disk.writer.sync
    disk.writer.sync = lambda: (syncs.append(1), real_sync())[1]  # type: ignore[method-assign]
    disk.submit([Append(1, _txn(1, "/a"))], [(2, m.packet(m.ACK, 1), None)])
    for z in (2, 3, 4):
        disk.submit([Append(z, _txn(z, f"/n{z}"))], [(2, m.packet(m.ACK, z), None)])
    assert len(pool.jobs) == 1  # the first batch is still being written
    pool.run()
    assert len(pool.jobs) == 1 and [last for _, last in synced] == [1]
    pool.run()
    assert [last for _, last in synced] == [1, 4]
    assert [p.zxid for _, p, _ in synced[1][0]] == [2, 3, 4]
    assert len(syncs) == 2 and disk.batches == 2 and _logged(tmp_path) == [1, 2, 3, 4]


def test_one_batch_at_a_time_even_when_releasing_one_submits_more(tmp_path: Any) -> None:
    """A step run while a synced batch is released (a commit that makes the
    next write propose) hands its write over at once; what follows in the same
    release waits for that batch, not a second one beside it."""
    disk, pool, reactor, synced = _disk(tmp_path)

    def on_synced(after: Any, last: int) -> None:
        synced.append((after, last))
        if last == 1:
            disk.submit([Append(2, _txn(2, "/b"))], [])
            disk.submit([Append(3, _txn(3, "/c"))], [])

    disk.on_synced = on_synced
    disk.submit([Append(1, _txn(1, "/a"))], [])
    pool.run()
    assert len(pool.jobs) == 1  # 2 went at once; 3 waits for it
    pool.run()
    assert [last for _, last in synced] == [1, 2] and len(pool.jobs) == 1
    pool.run()
    assert [last for _, last in synced] == [1, 2, 3] and pool.jobs == []
    assert disk.batches == 3 and _logged(tmp_path) == [1, 2, 3]


def _acks_from_thread(disk: DiskWriter, keep: Any = None) -> list[Any]:
    """The log thread sends every ACK handed to it (a follower's, to its leader),
    except those ``keep`` returns True for, which are left for the reactor."""
    sent: list[Any] = []

    def send(after: list[Any]) -> list[Any]:
        rest = [d for d in after if keep is not None and keep(d)]
        sent.extend(d for d in after if d not in rest)
        return rest

    disk.send_from_thread = send
    return sent


def _count_wakes(reactor: FakeReactor) -> list[Any]:
    woken: list[Any] = []
    run = reactor.callFromThread

    def call(f: Any, *a: Any) -> None:
        woken.append(f)
        run(f, *a)

    reactor.callFromThread = call  # type: ignore[method-assign]
    return woken


def test_a_batch_whose_acks_all_left_from_the_thread_does_not_wake_the_reactor(
        tmp_path: Any) -> None:
    disk, pool, reactor, synced = _disk(tmp_path)
    sent, woken = _acks_from_thread(disk), _count_wakes(reactor)
    ack = (2, m.packet(m.ACK, 1), "token")
    disk.submit([Append(1, _txn(1, "/a"))], [ack])
    pool.run()
    assert sent == [ack] and woken == [] and synced == []  # synced, ACKed, and quiet
    disk.drain()  # the reactor's next event
    assert synced == [([], 1)] and disk.batches == 1 and _logged(tmp_path) == [1]
    disk.drain()
    assert synced == [([], 1)]  # once


def test_a_submit_finishes_a_quiet_batch_before_handing_over_the_next(tmp_path: Any) -> None:
    disk, pool, reactor, synced = _disk(tmp_path)
    sent, woken = _acks_from_thread(disk), _count_wakes(reactor)
    disk.submit([Append(1, _txn(1, "/a"))], [(2, m.packet(m.ACK, 1), "token")])
    pool.run()
    disk.submit([Append(2, _txn(2, "/b"))], [(2, m.packet(m.ACK, 2), "token")])
    assert synced == [([], 1)] and len(pool.jobs) == 1  # the next one went at once
    pool.run()
    disk.drain()
    assert [last for _, last in synced] == [1, 2] and woken == []
    assert [p.zxid for _, p, _ in sent] == [1, 2] and _logged(tmp_path) == [1, 2]


def test_mntr_shows_a_quiet_batch_at_once(tmp_path: Any) -> None:
    """An idle follower's last batch finished quietly: reading the figures
    (mntr, srvr, Prometheus) takes it in first, not at the next event."""
    os.makedirs(tmp_path / "disk")
    disk, pool, _, synced = _disk(tmp_path / "disk")
    core = Rig(tmp_path).server.core  # a whole core, with a follower's disk writer
    disk.metrics = core.metrics
    core.pending_figures = disk.drain  # as MemberServer wires it
    _acks_from_thread(disk)
    disk.submit([Append(1, _txn(1, "/a"))], [(2, m.packet(m.ACK, 1), "token")])
    pool.run()
    assert synced == []  # quiet
    values = dict(monitor_values(core))
    assert values["cnt_fsynctime"] == 1 and values["cnt_sync_processor_batch_size"] == 1
    assert synced == [([], 1)]


def test_a_batch_with_writes_waiting_behind_it_wakes_the_reactor(tmp_path: Any) -> None:
    """Submitted while a batch is on the log thread, the next writes must not
    wait for the reactor's next event: that batch's end wakes it to hand
    them over."""
    disk, pool, reactor, synced = _disk(tmp_path)
    _acks_from_thread(disk)
    woken = _count_wakes(reactor)
    disk.submit([Append(1, _txn(1, "/a"))], [(2, m.packet(m.ACK, 1), "token")])
    disk.submit([Append(2, _txn(2, "/b"))], [(2, m.packet(m.ACK, 2), "token")])
    pool.run()
    assert len(woken) == 1 and synced == [([], 1)] and len(pool.jobs) == 1


def test_a_batch_with_messages_left_for_the_reactor_wakes_it(tmp_path: Any) -> None:
    disk, pool, reactor, synced = _disk(tmp_path)
    epoch = (2, m.packet(m.ACKEPOCH, 1), "token")
    sent = _acks_from_thread(disk, keep=lambda d: d[1].type != m.ACK)
    woken = _count_wakes(reactor)
    ack = (2, m.packet(m.ACK, 1), "token")
    disk.submit([Append(1, _txn(1, "/a"))], [ack, epoch])
    pool.run()
    assert sent == [ack] and len(woken) == 1 and synced == [([epoch], 1)]


def test_a_failed_write_stops_the_server_and_releases_nothing(tmp_path: Any) -> None:
    disk, pool, reactor, synced = _disk(tmp_path)

    def broken(entries: Any) -> None:
        raise OSError(28, "No space left on device")

    disk.writer.append_many = broken  # type: ignore[method-assign]
    disk.submit([Append(1, _txn(1, "/a"))], [(2, m.packet(m.ACK, 1), None)])
    pool.run()
    assert reactor.stopped and synced == []


def test_without_force_sync_the_write_happens_at_the_end_of_the_turn(tmp_path: Any) -> None:
    disk, pool, reactor, synced = _disk(tmp_path, force_sync=False)
    disk.submit([Append(1, _txn(1, "/a"))], [(2, m.packet(m.ACK, 1), None)])
    disk.submit([Append(2, _txn(2, "/b"))], [(2, m.packet(m.ACK, 2), None)])
    assert synced == [] and pool.jobs == []
    reactor.advance(0)
    assert [last for _, last in synced] == [2] and _logged(tmp_path) == [1, 2]


def test_the_log_thread_runs_jobs_in_order_off_the_callers_thread() -> None:
    """LogThread: each job on its own thread, in the order handed over; results and
    failures come back through on_result; stop finishes what was handed over."""
    worker = LogThread("zkpy-txnlog-test")
    gate = threading.Event()
    seen: list[Any] = []
    here = threading.get_ident()

    def job(n: int) -> int:
        gate.wait(10)
        assert threading.get_ident() != here
        return n * 10

    def fails() -> None:
        raise OSError(28, "No space left on device")

    for n in (1, 2, 3):
        worker.callInThreadWithCallback(lambda ok, r: seen.append((ok, r)), job, n)
    worker.callInThreadWithCallback(lambda ok, r: seen.append((ok, r)), fails)
    assert seen == []  # held at the gate: nothing ran on this thread
    gate.set()
    worker.stop()  # returns once every job handed over has run
    assert seen[:3] == [(True, 10), (True, 20), (True, 30)]
    ok, failure = seen[3]
    assert not ok and isinstance(failure, Failure) and failure.check(OSError)
    assert "No space left" in failure.getErrorMessage()


# -- a standalone server on fakes ------------------------------------------------------


class Rig:
    """A standalone MemberServer on a fake reactor, disk pool and client transports."""

    def __init__(self, tmp_path: Any, **settings: Any) -> None:
        self.reactor = FakeReactor()
        self.pool = StepPool()
        cfg = default_config(str(tmp_path / "data"))
        snap_dir, log_dir = data_dirs(cfg.data_dir, cfg.data_log_dir)
        os.makedirs(snap_dir)
        self.dir = log_dir
        clock = lambda: 1_700_000_000_000 + int(self.reactor.seconds() * 1000)  # noqa: E731
        self.server = MemberServer(self.reactor, CoreSettings(**settings), cfg,
                                   load(snap_dir, log_dir), snap_dir, log_dir, clock=clock,
                                   disk_pools=(self.pool, StepPool()))
        self.server.start()
        self.factory = ClientFactory(self.server)
        self.ports = iter(range(40000, 50000))

    def sync(self) -> None:
        """End the reactor's turn, and sync batch after batch until nothing is
        left."""
        self.reactor.advance(0)
        while self.pool.jobs:
            self.pool.run()
            self.reactor.advance(0)

    def client(self, host: str = "127.0.0.1", tls: bool = False) -> Any:
        proto = (ClientFactory(self.server, tls=True) if tls else self.factory).buildProtocol(None)
        transport = TCPTransport(peerAddress=IPv4Address("TCP", host, next(self.ports)))
        proto.makeConnection(transport)
        return proto, transport


def _frame(*records: Any) -> bytes:
    body = b"".join(r.encode() for r in records)
    return struct.pack(">i", len(body)) + body


def _replies(data: bytes) -> list[tuple[int, int, int]]:
    """(xid, zxid, err) of every reply frame after the ConnectResponse."""
    out, off = [], 0
    while off < len(data):
        (n,) = struct.unpack_from(">i", data, off)
        body = data[off + 4:off + 4 + n]
        off += 4 + n
        if n >= 16 and len(body) != 36:  # 36 bytes: the ConnectResponse
            out.append(struct.unpack_from(">iqi", body, 0))
    return out


def _session(rig: Rig) -> tuple[Any, TCPTransport]:
    proto, transport = rig.client()
    proto.dataReceived(_frame(S.ConnectRequest(0, 0, 10000, 0, bytes(16), False)))
    assert transport.value() == b""  # the createSession waits for the disk too
    rig.sync()
    decode_all(S.ConnectResponse, transport.value()[4:])
    transport.clear()
    return proto, transport


def _create(proto: Any, xid: int, path: str) -> None:
    proto.dataReceived(_frame(S.RequestHeader(xid, Op.create),
                              S.CreateRequest(path, b"v", OPEN, 0)))


def test_a_write_is_answered_only_after_its_sync(tmp_path: Any) -> None:
    rig = Rig(tmp_path)
    proto, transport = _session(rig)
    _create(proto, 1, "/a")
    assert transport.value() == b"" and rig.server.core.tree.get("/a") is None
    rig.sync()
    (xid, zxid, err), = _replies(transport.value())
    assert (xid, err) == (1, 0) and rig.server.core.tree.get("/a") is not None
    assert zxid in _logged(rig.dir)  # on disk before it was answered


def test_a_client_gone_during_the_sync_costs_nothing(tmp_path: Any) -> None:
    rig = Rig(tmp_path)
    proto, transport = _session(rig)
    _create(proto, 1, "/a")
    proto.connectionLost(None)
    transport.clear()
    rig.sync()
    assert rig.server.core.tree.get("/a") is not None  # committed all the same
    assert transport.value() == b"" and rig.server.core.connections == {}


def test_back_pressure_while_the_disk_is_behind(tmp_path: Any) -> None:
    rig = Rig(tmp_path, global_outstanding_limit=2)
    proto, transport = _session(rig)
    other, other_transport = _session(rig)
    for xid in (1, 2, 3):
        _create(proto, xid, f"/n{xid}")
    assert transport.producerState == "paused"  # 3 writes wait for the disk, limit 2
    assert other_transport.producerState == "producing"  # nothing of its own in flight
    rig.sync()
    assert transport.producerState == "producing"
    assert [x for x, _, _ in _replies(transport.value())] == [1, 2, 3]


def test_a_full_transport_stops_the_protocol_reading(tmp_path: Any) -> None:
    rig = Rig(tmp_path)
    proto, transport = _session(rig)
    proto.pauseProducing()  # what the transport says when its write buffer is full
    assert transport.producerState == "paused"
    proto.resumeProducing()
    assert transport.producerState == "producing"


# -- quorum links ----------------------------------------------------------------------


def test_a_durable_send_rides_only_the_connection_it_was_made_for() -> None:
    links = QuorumLinks(FakeReactor(), 1, {}, lambda sid, pkt: None, lambda sid: None)
    first = links.buildProtocol(None)
    first.makeConnection(TCPTransport())
    first.dataReceived(m.follower_info(2, 1).encode())
    token = links.token(2)
    links.send(2, m.packet(m.UPTODATE, 5), token)
    links.flush()
    assert first.transport.value() == m.packet(m.UPTODATE, 5).encode()
    second = links.buildProtocol(None)  # server 2 reconnects: a new connection
    second.makeConnection(TCPTransport())
    second.dataReceived(m.follower_info(2, 1).encode())
    links.send(2, m.packet(m.ACK, 6), token)  # released by a sync made for the old one
    links.flush()
    assert second.transport.value() == b""
    links.send(2, m.packet(m.ACK, 6), links.token(2))
    links.flush()
    assert second.transport.value() == m.packet(m.ACK, 6).encode()


class CountingTransport(TCPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1
        super().write(data)


def _learner(links: QuorumLinks, sid: int) -> Any:
    proto = links.buildProtocol(None)
    proto.makeConnection(CountingTransport())
    proto.dataReceived(m.follower_info(sid, 1).encode())
    proto.transport.clear()
    proto.transport.writes = 0
    return proto


def test_the_quorum_port_cuts_packets_from_reads_split_anywhere() -> None:
    """However the stream is cut into reads (a packet split across two, many
    in one, a read of one byte), the packets come out whole and in order, their
    data bytes (not views of the connection's buffer), and a packet split in
    two is held over to the next read."""
    packets = [m.packet(m.PROPOSAL, 7, b"txn" * 400), m.packet(m.COMMIT, 7),
               m.QuorumPacket(m.REQUEST, 0, b"req", [S.Id("digest", "u:p")]),
               m.packet(m.PING, 8, b""), m.packet(m.PROPOSAL, 9, bytes(range(256)))]
    stream = b"".join(p.encode() for p in packets)
    for cuts in ([], [1], [5, 6, 7], [len(stream) - 1], list(range(1, len(stream), 97)),
                 list(range(1, len(stream)))):
        got: list[m.QuorumPacket] = []
        links = QuorumLinks(FakeReactor(), 1, {}, lambda sid, pkts, got=got: got.extend(pkts),
                            lambda sid: None)
        proto = _learner(links, 2)
        got.clear()  # (its FOLLOWERINFO)
        for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            proto.dataReceived(stream[a:b])
        assert got == packets, cuts
        assert all(p.data is None or type(p.data) is bytes for p in got)
        assert not proto.buf  # nothing held once the last packet is whole


def test_a_steps_packets_reach_each_learner_in_one_write_in_order() -> None:
    """What a step sends a learner is written at its end (``flush``) as one
    write, in the order sent; a packet that must be written at once (a SNAP)
    and closing after sending take what was queued first."""
    links = QuorumLinks(FakeReactor(), 1, {}, lambda sid, pkt: None, lambda sid: None)
    two, three = _learner(links, 2), _learner(links, 3)
    proposal = m.packet(m.PROPOSAL, 7, b"txn")
    for pkt in (proposal, m.packet(m.COMMIT, 6)):
        links.send(2, pkt)
        links.send(3, pkt)
    assert two.transport.value() == b"" and three.transport.writes == 0
    links.flush()
    both = proposal.encode() + m.packet(m.COMMIT, 6).encode()
    assert two.transport.value() == three.transport.value() == both
    assert two.transport.writes == three.transport.writes == 1
    links.flush()  # nothing more
    assert two.transport.writes == 1
    # A SNAP (its state streamed after it) is written after what was queued ahead.
    two.transport.clear()
    links.send(2, m.packet(m.COMMIT, 7))
    links.send(2, m.packet(m.SNAP, 7))
    assert two.transport.value() == m.packet(m.COMMIT, 7).encode() + m.packet(m.SNAP, 7).encode()
    # Closing sends what was queued first (a COMMIT before a leader steps down).
    links.send(3, m.packet(m.COMMIT, 7))
    links.disconnect(3)
    assert three.transport.value().endswith(m.packet(m.COMMIT, 7).encode())
    assert three.transport.disconnecting


def test_held_links_send_a_client_reads_packets_in_one_write_at_release() -> None:
    """While a client read is handled (``hold``, nested) each step's ``flush``
    keeps its packets; the last ``release`` writes them, one write per peer, in
    order; a connection closed meanwhile still sends what it held first."""
    links = QuorumLinks(FakeReactor(), 1, {}, lambda sid, pkt: None, lambda sid: None)
    two, three = _learner(links, 2), _learner(links, 3)
    links.hold()
    links.hold()
    for zxid in (7, 8):  # two steps, each flushing its sends
        links.send(2, m.packet(m.PROPOSAL, zxid, b"txn"))
        links.send(3, m.packet(m.PROPOSAL, zxid, b"txn"))
        links.flush()
    assert two.transport.writes == three.transport.writes == 0
    links.send(3, m.packet(m.COMMIT, 7))
    links.disconnect(3)  # closing: what it held goes first
    assert three.transport.value() == b"".join(
        m.packet(*p).encode() for p in ((m.PROPOSAL, 7, b"txn"), (m.PROPOSAL, 8, b"txn"),
                                        (m.COMMIT, 7)))
    links.release()
    assert two.transport.writes == 0  # still held once
    links.release()
    assert two.transport.writes == 1
    assert two.transport.value() == (m.packet(m.PROPOSAL, 7, b"txn").encode()
                                     + m.packet(m.PROPOSAL, 8, b"txn").encode())


def test_the_client_port_holds_peer_links_for_a_read_even_one_that_fails() -> None:
    """The client port brackets each read with ``hold_peers``/``release_peers``
    (a member holds its quorum links: a follower's forwards of one read go to
    the leader together), and releases even when handling the read raised."""
    held: list[str] = []

    class Server:
        clock = staticmethod(lambda: 0)
        core: Any = None
        throttled: set[Any] = set()

        def hold_peers(self) -> None:
            held.append("hold")

        def release_peers(self) -> None:
            held.append("release")

    from zkpy.net.clientport import ClientProtocol

    proto = ClientProtocol.__new__(ClientProtocol)
    proto.server = Server()  # type: ignore[assignment]
    proto.tls_pending = False
    proto.throttled = False

    class Conn:
        pending = 0

        def receive(self, data: bytes, now: int) -> None:
            held.append("receive")
            raise RuntimeError("a bug in the core")

    proto.conn = Conn()  # type: ignore[assignment]
    try:
        proto.dataReceived(b"x")
    except RuntimeError:
        pass
    # Released even when handling the read failed: the links cannot stay held.
    assert held == ["hold", "receive", "release"]


def _mntr(rig: Rig) -> dict[str, Any]:
    return dict(monitor_values(rig.server.core))


def test_a_members_figures_take_in_its_quiet_disk_batches(tmp_path: Any) -> None:
    rig = Rig(tmp_path)
    assert rig.server.core.pending_figures == rig.server.disk.drain


def test_netty_factory_counts_plain_connections_by_where_they_come_from(tmp_path: Any) -> None:
    """NettyServerCnxnFactory.channelActive: a connection without TLS counts as
    non-mTLS, local when it comes from a loopback address (NIO counts none)."""
    rig = Rig(tmp_path, netty=True)
    rig.client("127.0.0.1")
    rig.client("::ffff:127.0.0.1")
    rig.client("10.1.2.3")
    rig.client("127.0.0.1", tls=True)  # a TLS connection is not counted here
    values = _mntr(rig)
    assert (values["non_mtls_local_conn_count"], values["non_mtls_remote_conn_count"]) == (2, 1)
    plain = Rig(tmp_path / "nio")
    plain.client("10.1.2.3")
    assert _mntr(plain)["non_mtls_remote_conn_count"] == 0


def test_tls_handshakes_over_the_limit_are_refused(tmp_path: Any) -> None:
    """outstandingHandshake.limit: handshakes in progress are a gauge; one more
    than the limit is closed before its handshake and counted."""
    rig = Rig(tmp_path, outstanding_handshake_limit=2)
    first, _ = rig.client(tls=True)
    second, _ = rig.client(tls=True)
    assert _mntr(rig)["outstanding_tls_handshake"] == 2
    over, refused = rig.client(tls=True)
    assert refused.disconnecting and rig.server.core.metrics.tls_handshake_exceeded == 1
    over.connectionLost(None)  # (what the transport does once it closed)
    first.handshakeCompleted()
    second.connectionLost(None)  # gone before its handshake ended
    assert _mntr(rig)["outstanding_tls_handshake"] == 0
    third, third_transport = rig.client(tls=True)
    assert not third_transport.disconnecting and _mntr(rig)["outstanding_tls_handshake"] == 1
    third.handshakeCompleted()
    third.connectionLost(None)  # (once, not twice)
    first.connectionLost(None)
    values = _mntr(rig)
    assert values["outstanding_tls_handshake"] == 0
    assert rig.server.core.metrics.tls_handshake_exceeded == 1
    # Netty's CertificateVerifier: a TLS connection gone without a finished handshake
    # (the refused one too) is an unsuccessful handshake and an authentication failure.
    assert (values["unsuccessful_handshake"], values["auth_failed_count"]) == (2, 2)


def test_without_a_limit_tls_handshakes_are_not_counted(tmp_path: Any) -> None:
    rig = Rig(tmp_path)
    proto, _ = rig.client(tls=True)
    assert _mntr(rig)["outstanding_tls_handshake"] == 0
    proto.handshakeCompleted()
    proto.connectionLost(None)
    assert (_mntr(rig)["unsuccessful_handshake"], _mntr(rig)["auth_failed_count"]) == (0, 0)


@pytest.mark.parametrize("line, features", [("", m.FEATURES),
                                             ("quorumWatermarks=false\n", 0)])
def test_an_ensemble_member_offers_watermarks_unless_told_not_to(
        tmp_path: Any, line: str, features: int) -> None:
    """quorumWatermarks=false: the member's hellos are ZooKeeper's bytes."""
    from zkpy.config import parse_config_text

    data = tmp_path / "data"
    data.mkdir()
    (data / "myid").write_text("2")
    cfg = parse_config_text(
        f"tickTime=2000\ninitLimit=10\nsyncLimit=5\ndataDir={data}\nclientPort=2181\n"
        "server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:3889\n"
        "server.3=127.0.0.1:2890:3890\n" + line)
    snap_dir, log_dir = data_dirs(cfg.data_dir, cfg.data_log_dir)
    os.makedirs(snap_dir)
    server = MemberServer(FakeReactor(), CoreSettings(), cfg, load(snap_dir, log_dir),
                          snap_dir, log_dir, disk_pools=(StepPool(), StepPool()))
    assert server.peer.features == features
    hello = m.follower_info(2, 0, features=server.peer.features)
    assert len(hello.data) == (28 if features else 20)
