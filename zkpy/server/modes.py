"""What a server does in each of its modes: one value, one table.

A ZooKeeper server is always in exactly one of these modes; ``ServerCore.become``
is the only way to change it (``zkpy.server.replica`` calls it when Zab's role
changes, or when read-only mode starts). Everything that differs between the
modes is a column of ``RULES``, so a transition cannot forget a hook:

- ``serving``: clients are taken at all (a member that is not synced with an
  established leader turns them away, as ZooKeeper's ServerCnxn does while its
  ZooKeeperServer is not running);
- ``writes`` / ``syncs``: where a write or a sync goes: prepared and proposed
  here (``PROPOSE``), forwarded to the leader (``FORWARD``), answered here in
  session order (``LOCAL``, syncs only: nobody is ahead of us), answered
  NOTREADONLY (``READ_ONLY``), or refused by closing the connection so the
  client tries another server (``REFUSE``);
- ``expires``: global sessions expire and containers/TTL nodes are reaped here
  (the leader, or a standalone server, alone does it);
- ``reports_touches``: the sessions our clients keep alive are collected for
  the leader's PING (followers and observers);
- ``in_ensemble``: the four-letter words use a quorum member's formats.

No behaviour lives here, only the table; no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Mode(enum.Enum):
    """The value is what ``srvr`` says after ``Mode:`` (not serving: nothing)."""

    STANDALONE = "standalone"
    LEADING = "leader"
    FOLLOWING = "follower"
    OBSERVING = "observer"
    READ_ONLY = "read-only"
    NOT_SERVING = "looking"


class Route(enum.Enum):
    PROPOSE = "propose"
    FORWARD = "forward"
    LOCAL = "local"
    READ_ONLY = "read-only"
    REFUSE = "refuse"


@dataclass(frozen=True)
class Rules:
    serving: bool
    writes: Route
    syncs: Route
    expires: bool
    reports_touches: bool
    in_ensemble: bool


RULES: dict[Mode, Rules] = {
    #                      serving  writes          syncs           expires  touches ensemble
    Mode.STANDALONE: Rules(True, Route.PROPOSE, Route.LOCAL, True, False, False),
    Mode.LEADING: Rules(True, Route.PROPOSE, Route.LOCAL, True, False, True),
    Mode.FOLLOWING: Rules(True, Route.FORWARD, Route.FORWARD, False, True, True),
    Mode.OBSERVING: Rules(True, Route.FORWARD, Route.FORWARD, False, True, True),
    Mode.READ_ONLY: Rules(True, Route.READ_ONLY, Route.READ_ONLY, False, False, True),
    Mode.NOT_SERVING: Rules(False, Route.REFUSE, Route.REFUSE, False, False, True),
}
