"""``mypy_extensions.mypyc_attr``, or a no-op where mypy_extensions is absent.

The pure core marks the few classes that tests subclass with planted bugs
(``zkpy.zab.peer.Peer``, ``zkpy.zab.leading.Leading``) with
``@mypyc_attr(allow_interpreted_subclasses=True)``: compiled by mypyc (see
``zkpy.accel``), such a class still takes subclasses written in Python, and
its compiled callers honour their overrides. To CPython the decorator means
nothing; mypy_extensions comes with mypy, and a plain install without it gets
the no-op below, so it is not a dependency.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    try:
        from mypy_extensions import mypyc_attr
    except ImportError:  # a pure install: nothing reads the attributes

        def mypyc_attr(*attrs, **kwattrs):
            return lambda cls: cls
