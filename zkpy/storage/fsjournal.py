"""The journal of file operations a ``JournalFileSystem`` keeps (tests only).

One record per change a server made to its files, in the order it made them:
``create``/``open`` (path, a file id), ``write`` (file id, offset, the bytes),
``truncate`` (file id, size), ``sync`` and ``close`` (file id), ``mkdir``,
``rmdir``, ``remove``, ``replace`` (src, dst), ``syncfile`` and ``syncdir``
(path); ``synced`` once a sync returned, ``failed`` once a change raised.
Paths are absolute. A record is ``u32 header length | u32 payload
length | header (JSON) | payload``; a record cut short (the process killed
while appending it) ends the journal.

``zkpy.testing.powercut`` replays a journal on the simulated file system
that held the data directory's durable state when the server started, then
cuts its power: what is left is what a real power cut could have left.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_HEAD = struct.Struct(">II")


@dataclass(frozen=True)
class Record:
    op: str
    args: dict[str, Any]
    payload: bytes


def encode(op: str, args: dict[str, Any], payload: bytes = b"") -> bytes:
    header = json.dumps({"op": op, **args}, separators=(",", ":")).encode()
    return _HEAD.pack(len(header), len(payload)) + header + payload


def decode(blob: bytes) -> Iterator[Record]:
    off = 0
    while off + _HEAD.size <= len(blob):
        hlen, plen = _HEAD.unpack_from(blob, off)
        start = off + _HEAD.size
        end = start + hlen + plen
        if end > len(blob):
            return  # cut short: the process died while appending it
        args = json.loads(blob[start:start + hlen])
        op = args.pop("op")
        yield Record(op, args, bytes(blob[start + hlen:end]))
        off = end
