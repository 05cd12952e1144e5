"""What every jute record is made of: the field types, the one error, the base class.

``zkpy.jute.codec`` turns declarations into record classes, at import time or as
source (``zkpy.jute.records``, which the accelerator compiles); both kinds of
class derive from ``Record`` here, so this module is compiled with them and lets
interpreted classes derive from it too (``allow_interpreted_subclasses``).
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar, TypeVar

from zkpy.mypyc_compat import mypyc_attr

__all__ = ["INT", "LONG", "BOOL", "BUFFER", "USTRING", "Vector", "JuteError", "Record", "encode",
           "decode", "decode_all"]


class JuteError(ValueError):
    """Raised for any malformed jute input."""


class Prim:
    """A jute primitive type: its name and, for the fixed-width ones, its struct code."""

    __slots__ = ("name", "fmt", "size")

    def __init__(self, name: str, fmt: str, size: int) -> None:
        self.name = name
        self.fmt = fmt
        self.size = size

    def __repr__(self) -> str:
        return self.name


INT = Prim("int", "i", 4)
LONG = Prim("long", "q", 8)
BOOL = Prim("boolean", "?", 1)
BUFFER = Prim("buffer", "", 0)
USTRING = Prim("ustring", "", 0)


class Vector:
    """``vector<T>``: a count followed by elements; None encodes as -1."""

    __slots__ = ("item",)

    def __init__(self, item: Any) -> None:
        self.item = item

    def __repr__(self) -> str:
        return f"vector<{self.item!r}>"


@mypyc_attr(allow_interpreted_subclasses=True)
class Record:
    """Base of every record class.

    Subclasses have their fields as attributes, ``__init__`` (all fields, keyword
    or positional, with neutral defaults), ``_encode_into(parts)`` and the class
    method ``_decode_from(buf, off, end) -> (record, off)``.
    """

    __slots__ = ()
    FIELDS: ClassVar[tuple[tuple[str, Any], ...]] = ()
    # For a record of fixed-width fields only (RequestHeader, ReplyHeader, StatPersisted,
    # ...), the precompiled struct of its whole layout, for fast paths that pack or
    # unpack it beside other bytes; None for any other record.
    STRUCT: ClassVar[struct.Struct | None] = None

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n, _ in self.FIELDS)

    def __hash__(self) -> int:
        return hash(tuple(_freeze(getattr(self, n)) for n, _ in self.FIELDS))

    def __repr__(self) -> str:
        body = ", ".join(f"{n}={getattr(self, n)!r}" for n, _ in self.FIELDS)
        return f"{type(self).__name__}({body})"

    def _encode_into(self, parts: list[bytes]) -> None:
        raise NotImplementedError

    @classmethod
    def _decode_from(cls, buf: bytes, off: int, end: int) -> tuple[Any, int]:
        raise NotImplementedError

    def encode(self) -> bytes:
        parts: list[bytes] = []
        self._encode_into(parts)
        return b"".join(parts)

    def _replace(self, **changes: Any) -> Any:
        values = {n: getattr(self, n) for n, _ in self.FIELDS}
        values.update(changes)
        return type(self)(**values)


def _freeze(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


# (here, not in zkpy.jute.codec: compiled with the records, every encode and
# decode of the hot path is a C call)
def encode(rec: Record) -> bytes:
    """Serialize one record."""
    parts: list[bytes] = []
    rec._encode_into(parts)
    return b"".join(parts)


R = TypeVar("R", bound=Record)


def decode(cls: type[R], buf: bytes | bytearray | memoryview, off: int = 0,
           end: int | None = None) -> tuple[R, int]:
    """Deserialize one ``cls`` record from ``buf[off:end]``; returns (record, next offset)."""
    if end is None:
        end = len(buf)
    if not isinstance(buf, bytes):
        # The decoders slice their fields out of bytes (a slice of a bytearray
        # would be a bytearray, and compiled, a bytes slice is a C call): a copy
        # of this record's frame, once, rather than of each field twice.
        base = off
        frame = bytes(buf[off:end])
        rec, n = decode(cls, frame, 0, len(frame))
        return rec, base + n
    try:
        rec, off = cls._decode_from(buf, off, end)
    except JuteError:
        raise
    except (struct.error, UnicodeDecodeError, IndexError, OverflowError) as exc:
        raise JuteError(f"malformed {cls.__name__}: {exc}") from None
    if off > end:
        raise JuteError(f"{cls.__name__} runs past the end of its frame")
    return rec, off


def decode_all(cls: type[R], buf: bytes | bytearray | memoryview) -> R:
    """Deserialize a record that must fill ``buf`` exactly (trailing bytes are an error)."""
    rec, off = decode(cls, buf, 0, len(buf))
    if off != len(buf):
        raise JuteError(f"{len(buf) - off} trailing bytes after {cls.__name__}")
    return rec
