"""The load generator's framing and reply checks, without sockets: requests
issued from a plan are answered by the null server's framing code and the
answers are checked the way the generator checks a real server's."""

from __future__ import annotations

from collections import Counter

import pytest

from bench import nullserver, wire


class FakeSock:
    def __init__(self) -> None:
        self.sent = bytearray()

    def sendall(self, data: bytes) -> None:
        self.sent += data


def _conn(plan: list[wire.Request], cyclic: bool) -> wire.Conn:
    c = wire.Conn(FakeSock(), ("127.0.0.1", 1))  # type: ignore[arg-type]
    c.plan, c.cyclic = plan, cyclic
    return c


def _answer(c: wire.Conn, value_len: int) -> bytes:
    buf, out = bytearray(c.sock.sent), []
    nullserver._answer(buf, out, nullserver._bodies(value_len))
    c.sock.sent.clear()
    assert not buf  # every request frame was whole
    return b"".join(out)


def _reply(xid: int, err: int = 0, body: bytes = b"") -> bytes:
    return wire.LEN.pack(16 + len(body)) + wire.REPLY.pack(xid, 1, err) + body


def test_a_cyclic_plan_wraps_and_every_reply_is_checked() -> None:
    data = wire.value(10)
    plan = [wire.get("/a", 10), wire.set_("/a", data), wire.create("/b/c", data)]
    c = _conn(plan, cyclic=True)
    assert wire.issue(c, 5) == 5
    assert (c.xid, c.pos, c.outstanding) == (5, 2, 5)
    c.buf += _answer(c, 10)
    errors: Counter = Counter()
    assert wire.consume_replies(c, errors) == (5, 0)
    assert (c.rxid, c.rpos, c.outstanding, errors) == (5, 2, 0, Counter())


def test_a_finite_plan_stops_at_its_end() -> None:
    c = _conn([wire.delete("/x"), wire.delete("/y")], cyclic=False)
    assert wire.issue(c, 10) == 2
    assert wire.issue(c, 10) == 0
    c.buf += _answer(c, 0)
    assert wire.consume_replies(c, Counter()) == (2, 0)


def test_errors_bad_lengths_pings_and_notifications_are_counted() -> None:
    c = _conn([wire.get("/a", 10)], cyclic=True)
    wire.issue(c, 3)
    stat = b"\0" * wire.STAT_BYTES
    good = wire.LEN.pack(10) + b"v" * 10 + stat
    c.buf += (_reply(1, body=good) + _reply(-1, body=b"event") + _reply(2, err=-101)
              + _reply(-2) + _reply(3, body=good[:-1]))
    errors: Counter = Counter()
    assert wire.consume_replies(c, errors) == (3, 1)  # the short one is a bad reply
    assert errors == Counter({-101: 1})
    assert (c.events, c.pings) == (1, 1)


def test_a_partial_frame_waits_for_the_rest() -> None:
    c = _conn([wire.set_("/a", b"x")], cyclic=True)
    wire.issue(c, 1)
    frame = _reply(1, body=b"\0" * wire.STAT_BYTES)
    c.buf += frame[:10]
    assert wire.consume_replies(c, Counter()) == (0, 0)
    c.buf += frame[10:]
    assert wire.consume_replies(c, Counter()) == (1, 0)


def test_a_reply_out_of_order_is_a_protocol_error() -> None:
    c = _conn([wire.delete("/a")], cyclic=True)
    wire.issue(c, 2)
    c.buf += _reply(2)
    with pytest.raises(wire.ProtocolError):
        wire.consume_replies(c, Counter())
