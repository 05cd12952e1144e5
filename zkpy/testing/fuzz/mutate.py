"""Seeded mutation: the one source of hostile bytes for every zkpy fuzzer.

Everything here draws from a ``random.Random`` the caller seeds, so the same
seed gives the same inputs in the same order and a failure replays.

- ``Mutator.mutate(data)`` stacks one to four byte-level mutations (bit
  flips, interesting 8/16/32/64-bit values written over the input, inserted,
  deleted, duplicated or truncated runs, splices with another seed), the
  moves coverage-guided fuzzers make, without the coverage.
- ``Mutator.record(cls)`` builds a jute record of ``cls`` with every field
  chosen from values that have broken servers before (paths that are not
  paths, -1 and 2^31-1, null vectors, invalid UTF-8 only where the wire
  allows bytes), so a structure-aware fuzzer reaches the code behind the
  decoder, where byte noise alone rarely gets.

It decides nothing about what a target must do with the bytes.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Sequence
from typing import Any

from zkpy.jute.codec import BOOL, BUFFER, INT, LONG, USTRING, Record, Vector

INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF, 0x2F, 0x42)
INTERESTING_32 = (0, 1, -1, 2, 4, 8, 16, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0xFFFFF,
                  0x100000, 0x7FFFFFFF, -0x80000000, -2, 1 << 20, 1 << 24)
INTERESTING_64 = (0, 1, -1, 0x7FFFFFFFFFFFFFFF, -0x8000000000000000, 0xFFFFFFFF,
                  0x100000000, 0x1FFFFFFFF, 0x7FFFFFFF00000000, 1 << 32, (1 << 32) - 1)
PATHS = ("/", "/a", "/a/b", "/a/b/c", "/fuzz", "/fuzz/x", "/zookeeper", "/zookeeper/config",
         "/zookeeper/quota", "/zookeeper/quota/fuzz/zookeeper_limits", "", "a", "//", "/a/",
         "/.", "/..", "/a/./b", "/\u00e9", "/\x00", "/a\x00b", "/" + "x" * 300, "/fuzz/seq-",
         "/zookeeper/quota/fuzz", "/ttl", "/container", "/\ud7ff", "/a b")
SCHEMES = ("world", "digest", "ip", "auth", "sasl", "x509", "super", "", "unknown")
IDS = ("anyone", "user:pw", "user:tp4nIpBoqKPlA0dV8xN4m2m1Zss=", "127.0.0.1", "10.0.0.0/8",
       "0.0.0.0/0", "::1", "", "super:x", "a:b:c", "not/an/ip", "300.1.1.1/33")
SMALL_BYTES = (b"", b"x", b"\x00", b"\xff\xfe", b"data", b"n=1\n", bytes(range(32)),
               b"server.1=127.0.0.1:2888:3888", b"x" * 1024)


class Mutator:
    """Hostile variations of bytes and records, reproducible from ``rng``'s seed."""

    def __init__(self, rng: random.Random, seeds: Sequence[bytes] = ()) -> None:
        self.rng = rng
        self.seeds = list(seeds)

    # -- bytes ---------------------------------------------------------------------

    def mutate(self, data: bytes, rounds: int | None = None) -> bytes:
        """``data`` with 1..4 stacked mutations (``rounds`` to fix how many)."""
        buf = bytearray(data)
        for _ in range(rounds if rounds is not None else self.rng.randint(1, 4)):
            self.rng.choice(_MOVES)(self, buf)
        return bytes(buf)

    def _pos(self, buf: bytearray, width: int = 1) -> int | None:
        if len(buf) < width:
            return None
        return self.rng.randrange(len(buf) - width + 1)

    def _flip(self, buf: bytearray) -> None:
        at = self._pos(buf)
        if at is not None:
            buf[at] ^= 1 << self.rng.randrange(8)

    def _byte(self, buf: bytearray) -> None:
        at = self._pos(buf)
        if at is not None:
            buf[at] = self.rng.choice(INTERESTING_8 + (self.rng.randrange(256),))

    def _int32(self, buf: bytearray) -> None:
        at = self._pos(buf, 4)
        if at is not None:
            value = self.rng.choice(INTERESTING_32 + (len(buf), len(buf) - at, len(buf) - at - 4))
            buf[at:at + 4] = struct.pack(">i", _wrap(value, 32))

    def _int64(self, buf: bytearray) -> None:
        at = self._pos(buf, 8)
        if at is not None:
            buf[at:at + 8] = struct.pack(">q", _wrap(self.rng.choice(INTERESTING_64), 64))

    def _add(self, buf: bytearray, value: int = 0) -> None:
        """A small step up or down of a 32-bit field (off-by-one lengths)."""
        at = self._pos(buf, 4)
        if at is not None:
            (n,) = struct.unpack_from(">i", buf, at)
            step = value or self.rng.choice((-16, -4, -2, -1, 1, 2, 4, 16))
            buf[at:at + 4] = struct.pack(">i", _wrap(n + step, 32))

    def _insert(self, buf: bytearray) -> None:
        at = self.rng.randrange(len(buf) + 1)
        buf[at:at] = self.rng.randbytes(self.rng.choice((1, 2, 4, 8, 17)))

    def _delete(self, buf: bytearray) -> None:
        if buf:
            at = self.rng.randrange(len(buf))
            del buf[at:at + self.rng.choice((1, 2, 4, 8, 33))]

    def _duplicate(self, buf: bytearray) -> None:
        if buf:
            at = self.rng.randrange(len(buf))
            piece = buf[at:at + self.rng.randint(1, 64)]
            buf[at:at] = piece * self.rng.choice((1, 2, 16))

    def _truncate(self, buf: bytearray) -> None:
        if buf:
            del buf[self.rng.randrange(len(buf)):]

    def _splice(self, buf: bytearray) -> None:
        if not self.seeds:
            return self._insert(buf)
        other = self.rng.choice(self.seeds)
        at = self.rng.randrange(len(buf) + 1)
        start = self.rng.randrange(len(other) + 1)
        buf[at:] = other[start:start + self.rng.randint(1, 256)] + buf[at:]
        return None

    # -- values and records -----------------------------------------------------------

    def int32(self) -> int:
        return self.rng.choice(INTERESTING_32 + (self.rng.randint(-3, 40),))

    def int64(self) -> int:
        return self.rng.choice(INTERESTING_64 + (self.rng.randint(-3, 1 << 40),))

    def path(self) -> str:
        p = self.rng.choice(PATHS)
        return p if self.rng.random() < 0.8 else p + "/" + self.rng.choice(("a", "b", "c", "0"))

    def buffer(self) -> bytes | None:
        return None if self.rng.random() < 0.05 else self.rng.choice(SMALL_BYTES)

    def value(self, ftype: Any, name: str) -> Any:
        """A value of jute type ``ftype`` for a field called ``name``."""
        rng = self.rng
        if ftype is INT:
            return rng.choice((0, 1, 2, 3, 31, -1)) if rng.random() < 0.6 else self.int32()
        if ftype is LONG:
            return rng.choice((0, -1, 1)) if rng.random() < 0.5 else self.int64()
        if ftype is BOOL:
            return rng.random() < 0.5
        if ftype is BUFFER:
            return self.buffer()
        if ftype is USTRING:
            return self._string(name)
        if isinstance(ftype, Vector):
            if rng.random() < 0.05:
                return None
            return [self.value(ftype.item, name) for _ in range(rng.choice((0, 1, 1, 2, 3)))]
        if isinstance(ftype, type) and issubclass(ftype, Record):
            return self.record(ftype)
        raise TypeError(f"no values for {ftype!r}")

    def _string(self, name: str) -> str | None:
        rng = self.rng
        if rng.random() < 0.03:
            return None
        lowered = name.lower()
        if lowered == "scheme" or lowered == "authscheme":
            return rng.choice(SCHEMES)
        if lowered == "id" or lowered == "user":
            return rng.choice(IDS)
        if "servers" in lowered or "members" in lowered:
            return rng.choice(("", "server.9=127.0.0.1:1:2;3", "1,2", "server.1=x", "9"))
        return self.path()

    def record(self, cls: Any) -> Any:
        """A ``cls`` record with fields from ``value``."""
        return cls(*(self.value(ftype, name) for name, ftype in cls.FIELDS))


_MOVES = (Mutator._flip, Mutator._byte, Mutator._int32, Mutator._int32, Mutator._int64,
          Mutator._add, Mutator._insert, Mutator._delete, Mutator._duplicate,
          Mutator._truncate, Mutator._splice)


def _wrap(value: int, bits: int) -> int:
    """``value`` as a signed ``bits``-bit integer (two's complement)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >= 1 << (bits - 1) else value
