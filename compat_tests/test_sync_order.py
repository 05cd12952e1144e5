"""A session's replies keep its order when it pipelines writes and syncs
through a follower of a real zkpy ensemble (with and without
``linearizableReads``), as Apache ZooKeeper's do.

    pytest compat_tests/test_sync_order.py

The follower forwards a setData and the sync behind it to the leader in one
write, so the leader reads them together; and it reads the leader's COMMITs
and SYNCs back in batches. ``tests/test_sync_order.py`` drives the same
shapes deterministically; here the kernel decides what shares a read.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

import pytest

from compat_tests.differential.rawclient import RawClient
from compat_tests.ensembles import started
from zkpy.jute import schema as S
from zkpy.jute.codec import encode
from zkpy.jute.protocol import Op
from zkpy.testing.ensemble import Ensemble

PAIRS = 2000
_LEN = struct.Struct(">i")
_REPLY = struct.Struct(">iqi")


@pytest.fixture(params=["plain", "linear"])
def ensemble(request: pytest.FixtureRequest) -> Iterator[Ensemble]:
    settings = {"linearizableReads": "true"} if request.param == "linear" else {}
    yield from started(request, Ensemble("zkpy", 3, settings))


def _frame(xid: int, op: int, record: object) -> bytes:
    body = struct.pack(">ii", xid, op) + encode(record)
    return _LEN.pack(len(body)) + body


def test_pipelined_writes_and_syncs_through_a_follower_are_answered_in_order(
        ensemble: Ensemble) -> None:
    follower = ensemble.followers()[0]
    raw = RawClient(follower.host, follower.port)
    try:
        err, _ = raw.call(Op.create, S.CreateRequest(
            "/o", b"", [S.ACL(31, S.Id("world", "anyone"))], 0))
        assert err == 0
        frames, xids = [], []
        for i in range(PAIRS):
            for op, record in ((Op.setData, S.SetDataRequest("/o", b"%d" % i, -1)),
                               (Op.sync, S.SyncRequest("/o"))):
                raw.xid += 1
                xids.append(raw.xid)
                frames.append(_frame(raw.xid, op, record))
        assert raw.sock is not None
        raw.sock.sendall(b"".join(frames))
        answered = []
        while len(answered) < len(xids):
            xid, _, err = _REPLY.unpack_from(raw._read_frame(), 0)
            if xid >= 0:
                assert err == 0, (xid, err)
                answered.append(xid)
        assert answered == xids
    finally:
        raw.close_socket()
