"""Jute, ZooKeeper's record serialization, driven by declarations.

A record is declared once as an ordered list of (name, type) fields; this module
turns the declaration into a class with ``__slots__`` plus an encoder and a
decoder. Both are generated as Python source when the record is declared, so
at run time there is no per-field dispatch: runs of fixed-width fields become a
single ``struct`` call, variable-width fields (buffers, strings, vectors,
nested records) are inlined.

Wire rules (Apache ZooKeeper's ``BinaryOutputArchive``): big-endian ``int``
(4 bytes) and ``long`` (8 bytes), ``boolean`` as one byte, ``buffer`` and
``ustring`` as an int length followed by the bytes (UTF-8 for strings), with
length -1 meaning null; ``vector`` as an int count followed by the elements,
-1 meaning null. Nested records are written inline, without a header.

Decoding never trusts the input: a length that runs past the end, a negative
length other than -1, invalid UTF-8, or any truncation raises ``JuteError``
and nothing else, so callers need to catch exactly one exception type.

Encoders are duck-typed: they read attributes by name, so any object with the
declared attributes (for example a data-tree node for ``Stat``) can be encoded
without first copying it into a record.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from zkpy.jute.base import (
    BOOL,
    BUFFER,
    INT,
    LONG,
    USTRING,
    JuteError,
    Record,
    Vector,
    decode,
    decode_all,
    encode,
)

__all__ = [
    "INT",
    "LONG",
    "BOOL",
    "BUFFER",
    "USTRING",
    "Vector",
    "JuteError",
    "Record",
    "record",
    "layout",
    "encode",
    "decode",
    "decode_all",
]


#: Whether ``zkpy.jute.schema`` binds its names to the classes of
#: ``zkpy.jute.records`` (off only while ``zkpy.jute.stubs`` writes that file).
ADOPT_RECORDS = True

_INT = struct.Struct(">i")
_pack_int = _INT.pack
_unpack_int = _INT.unpack_from


def _default_for(ftype: Any) -> str:
    if ftype is INT or ftype is LONG:
        return "0"
    if ftype is BOOL:
        return "False"
    if ftype is BUFFER:
        return "b''"
    if ftype is USTRING:
        return "''"
    return "None"


class _Gen:
    """Accumulates generated source for one record's encoder or decoder."""

    def __init__(self, scope: str = "") -> None:
        self.lines: list[str] = []
        self.consts: dict[str, Any] = {}
        self.counter = 0
        # What the constants' names start with (a record's, where records share a module).
        self.scope = scope

    def name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any, prefix: str = "_c") -> str:
        key = self.scope + self.name(prefix)
        self.consts[key] = value
        return key


def _fixed_runs(fields: Sequence[tuple[str, Any]]) -> list[list[tuple[str, Any]]]:
    """Group consecutive fixed-width primitive fields so one struct call covers them."""
    runs: list[list[tuple[str, Any]]] = []
    for fname, ftype in fields:
        fixed = ftype is INT or ftype is LONG or ftype is BOOL
        if fixed and runs and runs[-1][0][1] in (INT, LONG, BOOL):
            runs[-1].append((fname, ftype))
        else:
            runs.append([(fname, ftype)])
    return runs


def _gen_encode(gen: _Gen, ftype: Any, expr: str, indent: str) -> None:
    out = gen.lines
    if ftype is BUFFER or ftype is USTRING:
        var = gen.name("_v")
        out.append(f"{indent}{var} = {expr}")
        out.append(f"{indent}if {var} is None:")
        out.append(f"{indent}    parts.append(_NULL)")
        out.append(f"{indent}else:")
        if ftype is USTRING:  # (a variable of its own: one type per variable, for mypyc)
            raw = gen.name("_b")
            out.append(f"{indent}    {raw} = {var}.encode('utf-8')")
            var = raw
        out.append(f"{indent}    parts.append(_pi(len({var})))")
        out.append(f"{indent}    parts.append({var})")
    elif isinstance(ftype, Vector):
        var = gen.name("_v")
        item = gen.name("_i")
        out.append(f"{indent}{var} = {expr}")
        out.append(f"{indent}if {var} is None:")
        out.append(f"{indent}    parts.append(_NULL)")
        out.append(f"{indent}else:")
        out.append(f"{indent}    parts.append(_pi(len({var})))")
        out.append(f"{indent}    for {item} in {var}:")
        _gen_encode(gen, ftype.item, item, indent + "        ")
    elif isinstance(ftype, type) and issubclass(ftype, Record):
        _gen_encode_fields(gen, ftype.FIELDS, expr, indent)
    else:
        s = gen.const(struct.Struct(">" + ftype.fmt), "_s")
        out.append(f"{indent}parts.append({s}.pack({expr}))")


def _gen_encode_fields(gen: _Gen, fields: Sequence[tuple[str, Any]], obj: str, indent: str) -> None:
    for run in _fixed_runs(fields):
        first_type = run[0][1]
        if first_type in (INT, LONG, BOOL):
            fmt = ">" + "".join(t.fmt for _, t in run)
            s = gen.const(struct.Struct(fmt), "_s")
            args = ", ".join(f"{obj}.{n}" for n, _ in run)
            gen.lines.append(f"{indent}parts.append({s}.pack({args}))")
        else:
            fname, ftype = run[0]
            _gen_encode(gen, ftype, f"{obj}.{fname}", indent)


def _gen_decode(gen: _Gen, ftype: Any, target: str, indent: str) -> None:
    out = gen.lines
    if ftype is BUFFER or ftype is USTRING:
        # (``buf`` is bytes, ``base.decode`` sees to it: a slice is the field's
        # bytes, and compiled, the typed length and the slice are C operations)
        n = gen.name("_n")
        out.append(f"{indent}{n}: int = _ui(buf, off)[0]")
        out.append(f"{indent}off += 4")
        out.append(f"{indent}if {n} < 0:")
        out.append(f"{indent}    if {n} != -1: raise _JE('negative length %d' % {n})")
        out.append(f"{indent}    {target} = None")
        out.append(f"{indent}else:")
        out.append(f"{indent}    if off + {n} > end: raise _JE('length %d runs past the end' % {n})")
        if ftype is USTRING:
            out.append(f"{indent}    {target} = buf[off:off + {n}].decode('utf-8')")
        else:
            out.append(f"{indent}    {target} = buf[off:off + {n}]")
        out.append(f"{indent}    off += {n}")
    elif isinstance(ftype, Vector):
        n = gen.name("_n")
        lst = gen.name("_l")
        item = gen.name("_e")
        out.append(f"{indent}{n}: int = _ui(buf, off)[0]")
        out.append(f"{indent}off += 4")
        out.append(f"{indent}if {n} < 0:")
        out.append(f"{indent}    if {n} != -1: raise _JE('negative count %d' % {n})")
        out.append(f"{indent}    {target} = None")
        out.append(f"{indent}else:")
        # Every element takes at least one byte: a cheap guard against a
        # hostile count making us loop billions of times.
        out.append(f"{indent}    if off + {n} > end: raise _JE('count %d runs past the end' % {n})")
        out.append(f"{indent}    {lst}: list[Any] = []")
        out.append(f"{indent}    for _ in range({n}):")
        _gen_decode(gen, ftype.item, item, indent + "        ")
        out.append(f"{indent}        {lst}.append({item})")
        out.append(f"{indent}    {target} = {lst}")
    elif isinstance(ftype, type) and issubclass(ftype, Record):
        cls = gen.const(ftype, "_R")
        out.append(f"{indent}{target}, off = {cls}._decode_from(buf, off, end)")
    else:
        s = gen.const(struct.Struct(">" + ftype.fmt), "_s")
        out.append(f"{indent}{target}, = {s}.unpack_from(buf, off)")
        out.append(f"{indent}off += {ftype.size}")


def _gen_decode_fields(gen: _Gen, fields: Sequence[tuple[str, Any]]) -> list[str]:
    names: list[str] = []
    for run in _fixed_runs(fields):
        first_type = run[0][1]
        if first_type in (INT, LONG, BOOL):
            fmt = ">" + "".join(t.fmt for _, t in run)
            st = struct.Struct(fmt)
            s = gen.const(st, "_s")
            targets = [gen.name("_f") for _ in run]
            names.extend(targets)
            gen.lines.append(f"    {', '.join(targets)}, = {s}.unpack_from(buf, off)")
            gen.lines.append(f"    off += {st.size}")
        else:
            target = gen.name("_f")
            names.append(target)
            _gen_decode(gen, run[0][1], target, "    ")
    return names


_BASE_NS = {"_pi": _pack_int, "_ui": _unpack_int, "_NULL": _pack_int(-1), "_JE": JuteError}


def _compile(source: str, consts: dict[str, Any], name: str) -> Any:
    namespace = dict(_BASE_NS)
    namespace.update(consts)
    exec(compile(source, f"<jute {name}>", "exec"), namespace)
    return namespace


def sources(name: str, fields: Sequence[tuple[str, Any]], scope: str = ""
            ) -> tuple[str, _Gen, _Gen]:
    """The generated source of a record's ``__init__``, encoder and decoder (each a
    ``_Gen``: its lines, and the constants they name), for ``record`` to compile
    here and for ``zkpy.jute.stubs`` to write out as ``zkpy.jute.records`` (where
    ``scope`` starts the names of the record's constants)."""
    params = ", ".join(f"{n}={_default_for(t)}" for n, t in fields)
    init_body = "".join(f"    self.{n} = {n}\n" for n, _ in fields) or "    pass\n"
    init_src = f"def __init__(self, {params}):\n{init_body}" if fields else "def __init__(self):\n    pass\n"

    enc = _Gen(scope and scope + "_e")  # (the two share a module's names in records.py)
    enc.lines.append("def _encode_into(self, parts):")
    _gen_encode_fields(enc, fields, "self", "    ")
    if len(enc.lines) == 1:
        enc.lines.append("    pass")

    dec = _Gen(scope and scope + "_d")
    dec.lines.append("def _decode_from(cls, buf, off, end):")
    targets = _gen_decode_fields(dec, fields)
    # (the class by name, not cls: compiled, a direct call of its constructor)
    dec.lines.append(f"    return {name}({', '.join(targets)}), off")
    return init_src, enc, dec


def field_source(ftype: Any) -> str:
    """A field's declared type as source: ``INT``, ``Vector(USTRING)``, ``ACL`` (what
    ``zkpy.jute.records`` declares, and what ``zkpy.jute.schema`` compares it by)."""
    if isinstance(ftype, Vector):
        return f"Vector({field_source(ftype.item)})"
    if isinstance(ftype, type) and issubclass(ftype, Record):
        return ftype.__name__
    return {"int": "INT", "long": "LONG", "boolean": "BOOL", "buffer": "BUFFER",
            "ustring": "USTRING"}[ftype.name]


def whole_struct(fields: Sequence[tuple[str, Any]]) -> struct.Struct | None:
    """A record's ``STRUCT``: one struct for all of it when every field is fixed-width."""
    if fields and all(t in (INT, LONG, BOOL) for _, t in fields):
        return struct.Struct(">" + "".join(t.fmt for _, t in fields))
    return None


def record(name: str, fields: Sequence[tuple[str, Any]], doc: str = "") -> Any:
    """Declare a jute record; returns the generated class."""
    fields = tuple(fields)
    init_src, enc, dec = sources(name, fields)
    ns = _compile(init_src, {}, name)
    ns_enc = _compile("\n".join(enc.lines), enc.consts, name)
    ns_dec = _compile("\n".join(dec.lines), dec.consts, name)
    attrs: dict[str, Any] = {
        "__slots__": tuple(n for n, _ in fields),
        "__init__": ns["__init__"],
        "_encode_into": ns_enc["_encode_into"],
        "_decode_from": classmethod(ns_dec["_decode_from"]),
        "FIELDS": fields,
        "STRUCT": whole_struct(fields),
        "__doc__": doc or f"jute record {name}",
    }
    cls = type(name, (Record,), attrs)
    ns_dec[name] = cls  # what the decoder calls
    return cls


def layout(*records: type[Record], prefix: str = "") -> struct.Struct:
    """One struct for fixed-width records laid end to end after ``prefix`` (struct
    codes, e.g. "i" for a frame length): ``layout(ReplyHeader, prefix="i")`` packs a
    framed reply header in one call, from the records' own declarations."""
    fmts = []
    for rec in records:
        if rec.STRUCT is None:
            raise TypeError(f"{rec.__name__} has fields of variable width")
        fmts.append(rec.STRUCT.format.lstrip(">"))
    return struct.Struct(">" + prefix + "".join(fmts))
