"""The event loop a zkpy server runs on: Twisted's epoll reactor, minus a per-event wrapper.

Twisted's ``EPollReactor`` runs each ready descriptor's read or write inside
``log.callWithLogger``, which asks the descriptor for its log prefix and
pushes a fresh context dict for Twisted's legacy log around the call. That is
about 2 us of Python per ready descriptor here (2.25 us against 0.08 us for the
call itself, timed with ``timeit``), paid on every hop of a write: a write
through a follower wakes its three servers about ten times.

zkpy logs through the standard library, which never reads that context.
What changes without it: a traceback Twisted logs for an exception escaping a
protocol (``_doReadOrWrite`` logs it and closes that connection, as before) is
not prefixed with the connection's name. The traceback still names the
protocol's code.

``install()`` is called by ``python -m zkpy`` before anything imports
``twisted.internet.reactor``. Anywhere else (tests, a platform without
epoll) the reactor stays Twisted's default.
"""

from __future__ import annotations

import errno
import logging
import sys
from typing import Any

log = logging.getLogger("zkpy.net")

try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # not Linux: no epoll
    EPollReactor = None  # type: ignore[assignment,misc]

__all__ = ["install", "ServingReactor"]


if EPollReactor is not None:

    class ServingReactor(EPollReactor):  # type: ignore[misc,valid-type]
        """``EPollReactor`` whose poll hands each event straight to ``_doReadOrWrite``."""

        def doPoll(self, timeout: float | None) -> None:
            try:
                ready = self._poller.poll(-1 if timeout is None else timeout,
                                          len(self._selectables))
            except OSError as err:
                if err.errno == errno.EINTR:  # a signal: the loop comes round again
                    return
                raise
            selectables = self._selectables
            dispatch = self._doReadOrWrite
            for fd, event in ready:
                selectable = selectables.get(fd)
                # None: an earlier event of this same poll removed it (a
                # connection closed by the one read before).
                if selectable is not None:
                    dispatch(selectable, fd, event)

        doIteration = doPoll
else:
    ServingReactor = None  # type: ignore[assignment,misc]


def install() -> bool:
    """Make ``ServingReactor`` Twisted's reactor; False (and Twisted's default
    kept) where there is no epoll or a reactor is already installed."""
    if ServingReactor is None:
        return False
    if "twisted.internet.reactor" in sys.modules:
        log.debug("A reactor is already installed; keeping it")
        return False
    from twisted.internet.main import installReactor

    reactor: Any = ServingReactor()
    installReactor(reactor)
    return True
