"""Four-letter words on the client port (ruok, srvr, stat, ...), in ZooKeeper's formats.

A new connection whose first four bytes spell a known command gets the
command's text and is closed. Commands not in ``4lw.commands.whitelist`` get
ZooKeeper's refusal line. Output formats follow Apache ZooKeeper 3.8 so that
monitoring scripts that parse them keep working.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from zkpy.core import ServerCore

COMMANDS = frozenset({
    "ruok", "srvr", "stat", "conf", "cons", "crst", "dump", "envi", "mntr", "wchs",
    "wchc", "wchp", "isro", "srst", "dirs", "gtmk", "stmk", "hash",
})
_BYTES = frozenset(c.encode("ascii") for c in COMMANDS)


def is_command(first4: bytes) -> bool:
    return first4 in _BYTES


def run(core: ServerCore, cmd: str, conn: Any) -> str:
    allowed = core.settings.four_letter_words
    if cmd not in allowed and "*" not in allowed:
        return f"{cmd} is not executed because it is not in the whitelist.\n"
    fn = _COMMANDS.get(cmd)
    if fn is None:
        return ""
    return fn(core)


def _latency(core: ServerCore) -> str:
    lat = core.stats.latency
    return f"Latency min/avg/max: {int(lat.min)}/{round(lat.avg, 4)}/{int(lat.max)}\n"


def _summary(core: ServerCore) -> str:
    st = core.stats
    return (_latency(core)
            + f"Received: {st.packets_received}\n"
            + f"Sent: {st.packets_sent}\n"
            + f"Connections: {len(core.connections)}\n"
            + f"Outstanding: {core.outstanding()}\n"
            + f"Zxid: 0x{core.last_zxid:x}\n"
            + "Mode: standalone\n"
            + f"Node count: {len(core.tree)}\n")


def _srvr(core: ServerCore) -> str:
    from zkpy.core import BUILD

    return f"Zookeeper version: {BUILD}\n" + _summary(core)


def _ruok(core: ServerCore) -> str:
    return "imok"


def _isro(core: ServerCore) -> str:
    return "rw"


_COMMANDS = {
    "ruok": _ruok,
    "srvr": _srvr,
    "isro": _isro,
}
