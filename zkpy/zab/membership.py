"""The ensemble's membership: who votes, who observes, and its version.

``QuorumConfig`` is ZooKeeper's QuorumMaj: the ``server.N`` entries plus the
config version, which is the zxid of the reconfig that made it (0 for a
config read from zoo.cfg that no leader has stamped yet). Its text form is
the data of ``/zookeeper/config``, the payload of a reconfig txn and of
NEWLEADER, and (without the version line) the dynamic config file.

``reconfigured`` computes the membership a ``reconfig`` request asks for,
incremental (joining/leaving) or bulk (newMembers), raising
``ReconfigError`` for what ZooKeeper answers with BADARGUMENTS.
Pure: no I/O, nothing here knows about sockets or the tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from zkpy.config import ServerAddress, parse_server_address

_SERVER_KEY = re.compile(r"server\.([0-9]{1,18})")


class ReconfigError(ValueError):
    """A reconfig request that does not describe a valid membership."""


@dataclass(frozen=True)
class QuorumConfig:
    servers: dict[int, ServerAddress] = field(default_factory=dict)
    version: int = 0

    @property
    def voters(self) -> frozenset[int]:
        return frozenset(sid for sid, a in self.servers.items() if a.role == "participant")

    @property
    def observers(self) -> frozenset[int]:
        return frozenset(sid for sid, a in self.servers.items() if a.role == "observer")

    def quorum(self, ids: set[int] | frozenset[int]) -> bool:
        voters = self.voters
        return len(ids & voters) * 2 > len(voters)

    def lines(self) -> list[tuple[str, str]]:
        """The ``server.N`` entries in id order, as (key, value)."""
        return [(f"server.{sid}", a.to_config_value()) for sid, a in sorted(self.servers.items())]

    def text(self) -> str:
        """QuorumMaj.toString: the entries, then ``version=<hex>`` (no newline after)."""
        body = "".join(f"{k}={v}\n" for k, v in self.lines())
        return f"{body}version={self.version:x}"

    def dynamic_file_text(self) -> str:
        """What the dynamic config file holds: the entries (its name carries the version)."""
        return "".join(f"{k}={v}\n" for k, v in self.lines())

    def with_version(self, version: int) -> QuorumConfig:
        return QuorumConfig(dict(self.servers), version)

    def same_members(self, other: QuorumConfig) -> bool:
        return self.servers == other.servers


def parse_config_text(text: str) -> QuorumConfig:
    """The inverse of ``QuorumConfig.text`` (ValueError when malformed)."""
    servers: dict[int, ServerAddress] = {}
    version = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{line!r} is not key=value")
        key = key.strip()
        if key == "version":
            version = int(value.strip(), 16)
            continue
        match = _SERVER_KEY.fullmatch(key)
        if match is None:
            raise ValueError(f"unexpected key {key!r} in a membership")
        servers[int(match.group(1))] = parse_server_address(value.strip())
    return QuorumConfig(servers, version)


def _entries(spec: str, what: str, need_client: bool) -> dict[int, ServerAddress]:
    """``server.N=...`` entries separated by commas (ReconfigError if malformed)."""
    out: dict[int, ServerAddress] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        key, sep, value = item.partition("=")
        match = _SERVER_KEY.fullmatch(key.strip())
        if not sep or match is None:
            raise ReconfigError(f"{what}: {item!r} is not server.N=host:quorumPort:electionPort"
                                "[:role];[clientAddress:]clientPort")
        try:
            address = parse_server_address(value.strip())
        except ValueError as e:
            raise ReconfigError(f"{what}: {e}") from None
        if need_client and address.client_port is None:
            # As PrepRequestProcessor: a server cannot join without a client address.
            raise ReconfigError(f"{what}: server {match.group(1)} has no client port")
        out[int(match.group(1))] = address
    return out


def reconfigured(current: QuorumConfig, joining: str | None, leaving: str | None,
                 new_members: str | None) -> QuorumConfig:
    """The membership asked for (version 0: the proposal's zxid becomes its version)."""
    if new_members is not None and (joining is not None or leaving is not None):
        raise ReconfigError("a reconfig is either incremental (joining/leaving) or bulk "
                            "(newMembers), not both")
    if new_members is not None:
        servers = _entries(new_members, "newMembers", False)
    else:
        servers = dict(current.servers)
        for sid in _ids(leaving):
            servers.pop(sid, None)
        servers.update(_entries(joining or "", "joining", True))
    config = QuorumConfig(servers, 0)
    if not config.voters:
        raise ReconfigError("the new configuration has no participants")
    return config


def _ids(spec: str | None) -> list[int]:
    out = []
    for item in (spec or "").split(","):
        item = item.strip()
        if not item:
            continue
        if not re.fullmatch(r"[0-9]{1,18}", item):
            raise ReconfigError(f"leaving: {item!r} is not a server id")
        out.append(int(item))
    return out


# TxnHeader: clientId (8), cxid (4), zxid (8), time (8), then the type (4) at 28.
_RECONFIG = 16  # OpCode.reconfig
_SET_DATA_PATH_AT = 32


def reconfig_of(txn: bytes) -> QuorumConfig | None:
    """The membership a logged reconfig txn (header + SetDataTxn) installs, else None."""
    # On every proposal and commit: one byte decides for all but reconfigs.
    if len(txn) < _SET_DATA_PATH_AT + 4 or txn[31] != _RECONFIG or txn[28:31] != b"\0\0\0":
        return None
    off = _SET_DATA_PATH_AT
    path_len = int.from_bytes(txn[off:off + 4], "big", signed=True)
    off += 4 + max(path_len, 0)
    data_len = int.from_bytes(txn[off:off + 4], "big", signed=True)
    data = txn[off + 4:off + 4 + max(data_len, 0)]
    try:
        return parse_config_text(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
