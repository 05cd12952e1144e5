"""Reader for ZooKeeper's ``zoo.cfg``: turns text plus ``-D`` properties into a ServerConfig.

Contract
--------
* Pure: no Twisted, no sockets, no global state.  The only I/O is reading the
  config file itself, the optional ``dynamicConfigFile`` and ``<dataDir>/myid``.
  Java's ``System.setProperty`` is modelled by the returned
  ``ServerConfig.properties`` instead of mutating anything process-wide.
* The file uses Java ``Properties`` syntax (``#``/``!`` comments, ``=``, ``:`` or
  whitespace separators, backslash escapes and continuation lines); keys and
  values are trimmed and the last duplicate wins, as in ZooKeeper 3.8.
* Property precedence, lowest first: ``JAVA_TOOL_OPTIONS``, ``JVMFLAGS``,
  ``SERVER_JVMFLAGS``, command-line ``-D``, then zoo.cfg keys that
  QuorumPeerConfig does not know, which become ``zookeeper.<key>``.  Settings
  ZooKeeper reads from system properties (snapCount, 4lw.commands.whitelist,
  admin.*, ssl.*, authProvider.* ...) are therefore settable both ways.
* Every failure is a ConfigError whose message names the offending key, prefixed
  by ``file:line:`` when the value came from a file.
* Relative paths (dataDir, dataLogDir, dynamicConfigFile) are resolved against the
  current directory, as Java's ``File`` does, not against the config file.

Deliberate differences from ZooKeeper 3.8 are marked "zkpy:" in comments.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NoReturn

DEFAULT_TICK_TIME = 3000
DEFAULT_JUTE_MAXBUFFER = 0xFFFFF
DEFAULT_METRICS_PROVIDER = "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider"
MIN_SNAP_RETAIN_COUNT = 3
# EphemeralType packs the server id into one byte of TTL/container session ids.
MAX_EXTENDED_SERVER_ID = 0xFE
JVM_FLAG_VARIABLES = ("JAVA_TOOL_OPTIONS", "JVMFLAGS", "SERVER_JVMFLAGS")
ALL_FOUR_LETTER_WORDS = frozenset({
    "conf", "cons", "crst", "dirs", "dump", "envi", "gtmk", "hash", "isro",
    "mntr", "ruok", "srst", "srvr", "stat", "stmk", "wchc", "wchp", "wchs",
})
_WILDCARD_ADDRESSES = frozenset({"", "0.0.0.0", "::", "0:0:0:0:0:0:0:0"})
_EMPTY: Mapping[str, str] = MappingProxyType({})

# Keys QuorumPeerConfig.parseProperties handles itself (every other key becomes the
# system property "zookeeper.<key>").  zkpy has no quorum code, so the ones below are
# kept verbatim in ServerConfig.quorum_settings for the layers that may want them.
_QUORUM_PASSTHROUGH = frozenset({
    "observerMasterPort", "connectToLearnerMasterLimit", "electionAlg", "quorumListenOnAllIPs",
    "syncEnabled", "sslQuorum", "portUnification", "sslQuorumReloadCertFiles",
    "quorum.auth.enableSasl", "quorum.auth.serverRequireSasl", "quorum.auth.learnerRequireSasl",
    "quorum.auth.learner.saslLoginContext", "quorum.auth.server.saslLoginContext",
    "quorum.auth.kerberos.servicePrincipal", "quorum.cnxn.threads.size",
    "jvm.pause.info-threshold.ms", "jvm.pause.warn-threshold.ms", "jvm.pause.sleep.time.ms",
    "jvm.pause.monitor", "multiAddress.enabled", "multiAddress.reachabilityCheckTimeoutMs",
    "multiAddress.reachabilityCheckEnabled", "oraclePath",
})
_CORE_KEYS = frozenset({
    "dataDir", "dataLogDir", "clientPort", "clientPortAddress", "secureClientPort",
    "secureClientPortAddress", "clientPortListenBacklog", "tickTime", "maxClientCnxns",
    "minSessionTimeout", "maxSessionTimeout", "initLimit", "syncLimit", "peerType",
    "dynamicConfigFile", "autopurge.snapRetainCount", "autopurge.purgeInterval",
    "standaloneEnabled", "reconfigEnabled", "localSessionsEnabled",
    "localSessionsUpgradingEnabled", *_QUORUM_PASSTHROUGH,
})


class ConfigError(ValueError):
    """An invalid configuration; the message names the key (and file:line)."""


@dataclass(frozen=True)
class ServerAddress:
    """One ``server.N`` entry of the ensemble."""

    host: str
    quorum_port: int
    election_port: int
    role: str = "participant"
    client_address: str | None = None
    client_port: int | None = None

    def to_config_value(self) -> str:
        """Render back in zoo.cfg syntax (the ``server.N`` value)."""
        text = f"{_bracket(self.host)}:{self.quorum_port}:{self.election_port}:{self.role}"
        if self.client_port is not None:
            text += f";{_bracket(self.client_address or '0.0.0.0')}:{self.client_port}"
        return text


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """Effective server settings.  Build it with parse_config_text, load_config or
    default_config: direct construction does not derive dependent defaults."""

    source: str = "<none>"
    data_dir: str
    data_log_dir: str
    tick_time: int = DEFAULT_TICK_TIME
    client_port: int | None = None
    client_port_address: str = "0.0.0.0"
    secure_client_port: int | None = None
    secure_client_port_address: str = "0.0.0.0"
    client_port_listen_backlog: int = -1
    max_client_cnxns: int = 60
    min_session_timeout: int = 2 * DEFAULT_TICK_TIME
    max_session_timeout: int = 20 * DEFAULT_TICK_TIME
    four_letter_words: frozenset[str] = frozenset({"srvr"})
    jute_maxbuffer: int = DEFAULT_JUTE_MAXBUFFER
    extended_types_enabled: bool = False
    global_outstanding_limit: int = 1000
    snap_count: int = 100000
    pre_alloc_size: int = 65536
    force_sync: bool = True
    autopurge_snap_retain_count: int = MIN_SNAP_RETAIN_COUNT
    autopurge_purge_interval: int = 0
    init_limit: int = 10
    sync_limit: int = 5
    servers: dict[int, ServerAddress] = field(default_factory=dict)
    peer_type: str = "participant"
    my_id: int | None = None
    standalone_enabled: bool = True
    reconfig_enabled: bool = False
    local_sessions_enabled: bool = False
    local_sessions_upgrading_enabled: bool = False
    admin_enable_server: bool = True
    admin_server_address: str = "0.0.0.0"
    admin_server_port: int = 8080
    metrics_provider_class: str = DEFAULT_METRICS_PROVIDER
    metrics_provider_http_port: int = 7000
    metrics_provider_config: dict[str, str] = field(default_factory=dict)
    auth_providers: dict[str, str] = field(default_factory=dict)
    server_cnxn_factory: str | None = None
    outstanding_handshake_limit: int = -1
    ssl: dict[str, str] = field(default_factory=dict)
    dynamic_config_file: str | None = None
    readonly_mode_enabled: bool = False
    linearizable_reads: bool = False
    quorum_watermarks: bool = True
    skip_acl: bool = False
    super_digest: str | None = None
    jaas_config_path: str | None = None
    quorum_settings: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def is_standalone(self) -> bool:
        """True when ZooKeeper would run ZooKeeperServerMain rather than a quorum peer."""
        participants = sum(1 for s in self.servers.values() if s.role == "participant")
        return not self.servers or (self.standalone_enabled and participants == 1)

    def as_properties(self) -> list[tuple[str, str]]:
        """The effective known settings as (zoo.cfg key, value) pairs, secrets omitted."""
        pairs: list[tuple[str, object]] = [(k, getattr(self, a)) for k, a in _CONF_KEYS]
        pairs.append(("4lw.commands.whitelist", ",".join(sorted(self.four_letter_words))))
        pairs.append(("forceSync", "yes" if self.force_sync else "no"))
        pairs += [(f"server.{i}", a.to_config_value()) for i, a in sorted(self.servers.items())]
        pairs += [(f"authProvider.{k}", v) for k, v in sorted(self.auth_providers.items())]
        # The conf command answers anyone allowed to connect: keep passwords out.
        pairs += [(k, v) for k, v in sorted(self.ssl.items()) if "password" not in k.lower()]
        return [(k, _render(v)) for k, v in pairs if v is not None]


_CONF_KEYS = tuple((key, re.sub(r"[A-Z]", lambda m: "_" + m[0].lower(), key.split(".")[-1]))
                   for key in (
    "clientPort", "clientPortAddress", "secureClientPort", "secureClientPortAddress",
    "dataDir", "dataLogDir", "tickTime", "maxClientCnxns", "minSessionTimeout",
    "maxSessionTimeout", "clientPortListenBacklog", "initLimit", "syncLimit", "peerType",
    "standaloneEnabled", "reconfigEnabled", "localSessionsEnabled",
    "localSessionsUpgradingEnabled", "globalOutstandingLimit", "snapCount", "preAllocSize",
    "serverCnxnFactory", "dynamicConfigFile"))
_CONF_KEYS += (
    ("autopurge.snapRetainCount", "autopurge_snap_retain_count"),
    ("autopurge.purgeInterval", "autopurge_purge_interval"),
    ("admin.enableServer", "admin_enable_server"),
    ("admin.serverAddress", "admin_server_address"), ("admin.serverPort", "admin_server_port"),
    ("metricsProvider.className", "metrics_provider_class"),
    ("metricsProvider.httpPort", "metrics_provider_http_port"),
)


def _render(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host else host


# ---------------------------------------------------------------------------
# -D properties

def parse_jvm_flags(text: str, variable: str = "JVMFLAGS") -> dict[str, str]:
    """The ``-Dkey=value`` properties of a JVM option string; other options are ignored."""
    try:
        tokens = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"{variable}: cannot split {text!r}: {exc}") from exc
    result: dict[str, str] = {}
    for token in tokens:
        if token.startswith("-D") and len(token) > 2:
            key, _, value = token[2:].partition("=")
            result[key] = value
    return result


def system_properties(environ: Mapping[str, str], argv_props: Mapping[str, str]) -> dict[str, str]:
    """Merge -D properties: JAVA_TOOL_OPTIONS < JVMFLAGS < SERVER_JVMFLAGS < command line."""
    merged: dict[str, str] = {}
    for variable in JVM_FLAG_VARIABLES:
        merged.update(parse_jvm_flags(environ.get(variable, ""), variable))
    merged.update(argv_props)
    return merged


# ---------------------------------------------------------------------------
# Java Properties syntax

_Entry = tuple[str, str, int]  # key, value, 1-based line (0: not from a file)
_BLANKS = " \t\f"
# A key runs to the first unescaped '=', ':' or blank; then blanks, one optional
# separator and more blanks; the rest is the value.
_KEY_VALUE = re.compile(r"((?:\\.|[^=:\s\\])*)[ \t\f]*[=:]?[ \t\f]*(.*)", re.DOTALL)
_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|u|.|$)", re.DOTALL)
_JAVA_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f", "": ""}


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Yield (first line number, joined text) honouring backslash continuations."""
    physical = re.split(r"\r\n|\r|\n", text)
    index = 0
    while index < len(physical):
        number, line = index + 1, physical[index].lstrip(_BLANKS)
        index += 1
        if not line or line[0] in "#!":
            continue  # a comment never continues, even if it ends in a backslash
        while (len(line) - len(line.rstrip("\\"))) % 2 == 1:
            line = line[:-1]  # at end of file Java drops the dangling backslash too
            if index < len(physical):
                line += physical[index].lstrip(_BLANKS)
                index += 1
        yield number, line


def _unescape(raw: str, where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code[:1] == "u":
            if len(code) != 5:
                raise ConfigError(f"{where}: malformed \\uxxxx escape")
            return chr(int(code[1:], 16))
        return _JAVA_ESCAPES.get(code, code)

    return _ESCAPE.sub(replace, raw)


def parse_properties_text(text: str, source_name: str = "zoo.cfg") -> list[_Entry]:
    """Parse java.util.Properties text into trimmed (key, value, line) entries."""
    entries: list[_Entry] = []
    for number, line in _logical_lines(text):
        match = _KEY_VALUE.fullmatch(line)
        assert match is not None  # the pattern accepts any string
        raw_key, raw_value = match.groups()
        key = _unescape(raw_key, f"{source_name}:{number}: {raw_key}").strip()
        if not key:
            # zkpy: Java accepts an empty key; ZooKeeper would set property "zookeeper.".
            raise ConfigError(f"{source_name}:{number}: missing key before the separator")
        value = _unescape(raw_value, f"{source_name}:{number}: {key}").strip()
        entries.append((key, value, number))
    return entries


# ---------------------------------------------------------------------------
# Scalar conversions (raise ValueError with a message that omits the key)

_JAVA_DECIMAL = re.compile(r"[+-]?[0-9]+")
_JAVA_DECODE = re.compile(r"([+-]?)(?:0[xX]([0-9a-fA-F]+)|#([0-9a-fA-F]+)|0([0-7]+)|([1-9][0-9]*|0))")


def _java_int(text: str, *, bits: int = 32, decode: bool = False) -> int:
    """Integer.parseInt, or Integer.decode (hex/octal) for what Java reads via getInteger."""
    if not decode:
        if not _JAVA_DECIMAL.fullmatch(text):
            raise ValueError(f"{text!r} is not an integer")
        value = int(text)
    else:
        match = _JAVA_DECODE.fullmatch(text)
        if not match:
            raise ValueError(f"{text!r} is not an integer")
        sign, hex1, hex2, octal, decimal = match.groups()
        magnitude = int(hex1 or hex2, 16) if (hex1 or hex2) else int(octal, 8) if octal else int(decimal)
        value = -magnitude if sign == "-" else magnitude
    limit = 1 << (bits - 1)
    if not -limit <= value < limit:
        raise ValueError(f"{text!r} is out of range for a {bits}-bit integer")
    return value


def _parse_bool(text: str) -> bool:
    # zkpy: stricter than Java on purpose.  Java's Boolean.parseBoolean turns any typo
    # into false and ZooKeeper's "yes"/"no" properties treat typos as the default;
    # both silently change behaviour, so we reject anything we do not recognise.
    lowered = text.lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    raise ValueError(f"{text!r} is not a boolean (expected true/false or yes/no)")


# ---------------------------------------------------------------------------
# Settings: file keys and merged properties, with errors reported by origin

_INT_RANGE = (-(1 << 63), (1 << 63) - 1)


class _Settings:
    """Lookup by name: plain names are zoo.cfg keys, "-D<name>" are system properties."""

    def __init__(self, entries: list[_Entry], properties: Mapping[str, str], source: str):
        self.source = source
        self.file: dict[str, tuple[str, int]] = {}
        self.servers: dict[str, tuple[str, int]] = {}
        self.props: dict[str, str] = dict(properties)
        self.origin: dict[str, tuple[str, int]] = {}  # property -> (file key, line)
        for key, value, line in entries:
            if key.startswith(("server.", "group.", "weight.")):
                self.servers[key] = (value, line)
            elif key in _CORE_KEYS or key.startswith("metricsProvider."):
                self.file[key] = (value, line)
            else:
                # ZooKeeper does System.setProperty("zookeeper." + key, value) here,
                # which is why zoo.cfg beats a -D property of the same name.
                self.props[f"zookeeper.{key}"] = value
                self.origin[f"zookeeper.{key}"] = (key, line)

    def where(self, key: str, line: int, source: str | None = None) -> str:
        return f"{source or self.source}{f':{line}' if line else ''}: {key}"

    def lookup(self, name: str) -> tuple[str, str] | None:
        """(value, where-prefix for messages) or None when unset."""
        if not name.startswith("-D"):
            table = self.servers if name in self.servers else self.file
            if name not in table:
                return None
            return table[name][0], self.where(name, table[name][1])
        prop = name[2:]
        if prop not in self.props:
            return None
        if prop in self.origin:
            return self.props[prop].strip(), self.where(*self.origin[prop])
        return self.props[prop].strip(), name

    def fail(self, name: str, message: str) -> NoReturn:
        found = self.lookup(name)
        raise ConfigError(f"{found[1] if found else f'{self.source}: {name}'}: {message}")

    def text(self, name: str, default: str | None = None) -> str | None:
        found = self.lookup(name)
        return found[0] if found else default

    def integer(self, name: str, default: int, minimum: int = _INT_RANGE[0],
                maximum: int = _INT_RANGE[1], *, decode: bool = False, bits: int = 32) -> int:
        found = self.lookup(name)
        if found is None:
            return default
        try:
            value = _java_int(found[0], bits=bits, decode=decode)
        except ValueError as exc:
            self.fail(name, str(exc))
        if value < minimum:
            self.fail(name, f"must be at least {minimum}, got {value}")
        if value > maximum:
            self.fail(name, f"must be at most {maximum}, got {value}")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        found = self.lookup(name)
        try:
            return _parse_bool(found[0]) if found else default
        except ValueError as exc:
            self.fail(name, str(exc))


# ---------------------------------------------------------------------------
# Field groups

def _directories(s: _Settings) -> dict[str, object]:
    data_dir = s.text("dataDir")
    if not data_dir:
        s.fail("dataDir", "dataDir is not set")
    dynamic = s.text("dynamicConfigFile")
    return {  # Java's File resolves relative paths against user.dir, not the config file.
        "data_dir": os.path.abspath(data_dir),
        "data_log_dir": os.path.abspath(s.text("dataLogDir") or data_dir),
        "dynamic_config_file": os.path.abspath(dynamic) if dynamic else None,
    }


def _client_ports(s: _Settings) -> dict[str, object]:
    fields: dict[str, object] = {}
    for key, name in (("clientPort", "client_port"), ("secureClientPort", "secure_client_port")):
        # 0 means "not set", exactly as QuorumPeerConfig treats it.
        port = s.integer(key, 0, 0, 65535) or None
        address = s.text(f"{key}Address")
        if port is None and address is not None:
            s.fail(f"{key}Address", f"{key}Address is set but {key} is not set")
        fields[name] = port
        fields[f"{name}_address"] = address or "0.0.0.0"
    fields["client_port_listen_backlog"] = s.integer("clientPortListenBacklog", -1)
    return fields


def _timeouts(s: _Settings) -> dict[str, object]:
    tick = s.integer("tickTime", DEFAULT_TICK_TIME, minimum=1)
    # -1 is ZooKeeper's "not set" marker for both bounds.
    low = s.integer("minSessionTimeout", -1, minimum=-1)
    high = s.integer("maxSessionTimeout", -1, minimum=-1)
    low = 2 * tick if low == -1 else low
    high = 20 * tick if high == -1 else high
    if low > high:
        s.fail("minSessionTimeout",
               f"minSessionTimeout ({low}) must not be larger than maxSessionTimeout ({high})")
    return {
        "tick_time": tick, "min_session_timeout": low, "max_session_timeout": high,
        "max_client_cnxns": s.integer("maxClientCnxns", 60, minimum=0),
    }


def _misc(s: _Settings) -> dict[str, object]:
    peer_type = (s.text("peerType") or "participant").lower()
    if peer_type not in ("participant", "observer"):
        s.fail("peerType", f"unrecognised peer type {s.text('peerType')!r}")
    if s.integer("electionAlg", 3) != 3:
        s.fail("electionAlg", "only 3 (FastLeaderElection) is supported")
    return {
        "peer_type": peer_type,
        "init_limit": s.integer("initLimit", 10),
        "sync_limit": s.integer("syncLimit", 5),
        # ZooKeeper clamps rather than rejects: PurgeTxnLog refuses to keep fewer than 3.
        "autopurge_snap_retain_count": max(MIN_SNAP_RETAIN_COUNT,
                                           s.integer("autopurge.snapRetainCount", 3)),
        "autopurge_purge_interval": s.integer("autopurge.purgeInterval", 0),
        "standalone_enabled": s.boolean("standaloneEnabled", True),
        "reconfig_enabled": s.boolean("reconfigEnabled", False),
        "local_sessions_enabled": s.boolean("localSessionsEnabled", False),
        "local_sessions_upgrading_enabled": s.boolean("localSessionsUpgradingEnabled", False),
        "quorum_settings": {k: v for k, (v, _) in s.file.items() if k in _QUORUM_PASSTHROUGH},
        "metrics_provider_class": s.text("metricsProvider.className", DEFAULT_METRICS_PROVIDER),
        "metrics_provider_http_port": s.integer("metricsProvider.httpPort", 7000, 0, 65535),
        "metrics_provider_config": {k[len("metricsProvider."):]: v for k, (v, _) in s.file.items()
                                    if k.startswith("metricsProvider.")},
    }


def _four_letter_words(s: _Settings, readonly: bool) -> frozenset[str]:
    words: set[str] = set()
    for item in (s.text("-Dzookeeper.4lw.commands.whitelist") or "").split(","):
        if item.strip() == "*":
            words |= ALL_FOUR_LETTER_WORDS
            break
        if item.strip():
            words.add(item.strip())
    # As FourLetterCommands: read-only clients need isro, and zkServer.sh status needs srvr.
    if readonly:
        words.add("isro")
    return frozenset(words | {"srvr"})


def _prefixed(props: Mapping[str, str], prefix: str, keep: int) -> dict[str, str]:
    return {k[keep:]: v for k, v in props.items() if k.startswith(prefix)}


def _from_properties(s: _Settings) -> dict[str, object]:
    readonly = s.boolean("-Dreadonlymode.enabled", False)
    return {
        "four_letter_words": _four_letter_words(s, readonly),
        "readonly_mode_enabled": readonly,
        # zkpy: linearizableReads=true in zoo.cfg lands here too (zkpy.server.linear_reads).
        "linearizable_reads": s.boolean("-Dzookeeper.linearizableReads", False),
        # zkpy: quorumWatermarks=false makes this member's quorum hellos
        # ZooKeeper's bytes, so it sends and asks for an ACK and a COMMIT per
        # proposal from every member (zkpy.zab.messages.WATERMARKS).
        "quorum_watermarks": s.boolean("-Dzookeeper.quorumWatermarks", True),
        "jute_maxbuffer": s.integer("-Djute.maxbuffer", DEFAULT_JUTE_MAXBUFFER, 1, decode=True),
        "extended_types_enabled": s.boolean("-Dzookeeper.extendedTypesEnabled", False),
        "global_outstanding_limit": s.integer("-Dzookeeper.globalOutstandingLimit", 1000, 1),
        # ZooKeeperServer.getSnapCount resets anything below 2 to 2.
        "snap_count": max(2, s.integer("-Dzookeeper.snapCount", 100000)),
        "pre_alloc_size": s.integer("-Dzookeeper.preAllocSize", 65536, 1, decode=True, bits=64),
        "force_sync": s.boolean("-Dzookeeper.forceSync", True),
        "admin_enable_server": s.boolean("-Dzookeeper.admin.enableServer", True),
        "admin_server_address": s.text("-Dzookeeper.admin.serverAddress", "0.0.0.0"),
        "admin_server_port": s.integer("-Dzookeeper.admin.serverPort", 8080, 0, 65535,
                                       decode=True),
        "server_cnxn_factory": s.text("-Dzookeeper.serverCnxnFactory"),
        "outstanding_handshake_limit": s.integer(
            "-Dzookeeper.netty.server.outstandingHandshake.limit", -1),
        "auth_providers": _prefixed(s.props, "zookeeper.authProvider.", 23),
        "ssl": _prefixed(s.props, "zookeeper.ssl.", 10),
        "skip_acl": s.boolean("-Dzookeeper.skipACL", False),
        "super_digest": s.text("-Dzookeeper.DigestAuthenticationProvider.superDigest"),
        "jaas_config_path": s.text("-Djava.security.auth.login.config"),
    }


# ---------------------------------------------------------------------------
# Ensemble: server.N, dynamic config file, myid

_WRONG_FORMAT = ("does not have the form host:quorumPort:electionPort[:participant|:observer]"
                 "[;[clientAddress:]clientPort]")


def _split_host(text: str) -> list[str]:
    """Split on ':' keeping a bracketed IPv6 literal at the front intact."""
    if not text.startswith("["):
        return text.split(":")
    end = text.find("]:")
    if end < 0:
        raise ValueError(f"{text!r} starts with '[' but has no matching ']:'")
    return [text[1:end], *text[end + 2:].split(":")]


def _server_port(text: str) -> int:
    port = _java_int(text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1..65535")
    return port


def _check_host(host: str, value: str) -> str:
    """A host that a resolver can take and that the membership's text carries
    whole: no blanks or control characters (they also split Python's lines)."""
    if not host or not host.isprintable() or any(ch.isspace() for ch in host):
        raise ValueError(f"{value!r}: {host!r} is not a host name or address")
    return host


def parse_server_address(value: str) -> ServerAddress:
    """Parse a ``server.N`` value; ValueError (without the key) when malformed."""
    if "|" in value:
        # zkpy: ZooKeeper 3.6+ accepts '|'-separated multiple addresses; we do not.
        raise ValueError(f"{value!r}: multiple addresses separated by '|' are not supported")
    server_part, _, client_part = value.partition(";")
    parts = _split_host(server_part)
    if ";" in client_part or not 3 <= len(parts) <= 4 or not parts[0]:
        raise ValueError(f"{value!r} {_WRONG_FORMAT}")
    _check_host(parts[0], value)
    role = parts[3].lower() if len(parts) == 4 else "participant"
    if role not in ("participant", "observer"):
        raise ValueError(f"unrecognised peer type {parts[3]!r}")
    client_address = client_port = None
    if client_part:  # Java's split drops a trailing empty ";" section
        client = _split_host(client_part)
        if len(client) > 2 or not client[-1]:
            raise ValueError(f"{value!r} {_WRONG_FORMAT}")
        client_address = _check_host(client[0], value) if len(client) == 2 else "0.0.0.0"
        client_port = _server_port(client[-1])
    return ServerAddress(parts[0], _server_port(parts[1]), _server_port(parts[2]), role,
                         client_address, client_port)


def _servers_from(s: _Settings, table: Mapping[str, tuple[str, int]],
                  source: str) -> dict[int, ServerAddress]:
    servers: dict[int, ServerAddress] = {}
    for key, (value, line) in table.items():
        where = s.where(key, line, source)
        if key == "version" and source != s.source:
            continue  # a dynamic config file's version (zkpy.storage.dynconfig reads it)
        if key.startswith(("group.", "weight.")):
            # zkpy: hierarchical quorums (QuorumHierarchical) are not implemented.
            raise ConfigError(f"{where}: hierarchical quorums (group/weight) are not supported")
        if not key.startswith("server."):
            raise ConfigError(f"{where}: unrecognised parameter in a dynamic config file")
        sid = key[len("server."):]
        if not re.fullmatch(r"[0-9]{1,18}", sid):
            raise ConfigError(f"{where}: {sid!r} is not a valid server id")
        try:
            servers[int(sid)] = parse_server_address(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from exc
    return servers


def _ensemble(s: _Settings, dynamic_file: str | None) -> dict[int, ServerAddress]:
    if dynamic_file is None:
        return _servers_from(s, s.servers, s.source)
    if s.servers:
        key = next(iter(s.servers))
        s.fail(key, "must be in the separate dynamic config file when dynamicConfigFile is set")
    try:
        with open(dynamic_file, "rb") as handle:
            text = _decode(handle.read())
    except OSError as exc:
        s.fail("dynamicConfigFile", f"cannot read {dynamic_file}: {exc.strerror}")
    entries = parse_properties_text(text, dynamic_file)
    return _servers_from(s, {k: (v, n) for k, v, n in entries}, dynamic_file)


def _read_myid(data_dir: str) -> int | None:
    path = os.path.join(data_dir, "myid")
    try:
        with open(path, encoding="latin-1") as handle:
            first = handle.readline().strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"{path}: myid: cannot read: {exc.strerror}") from exc
    if not re.fullmatch(r"[0-9]{1,18}", first):
        raise ConfigError(f"{path}: myid: {first!r} is not a server id (a non-negative integer)")
    return int(first)


def _check_membership(s: _Settings, servers: Mapping[int, ServerAddress],
                      standalone_enabled: bool) -> bool:
    """Apply QuorumMaj's sanity rules; return whether the ensemble is distributed."""
    participants = [sid for sid, a in servers.items() if a.role == "participant"]
    observers = [sid for sid, a in servers.items() if a.role == "observer"]
    if not participants:
        if not standalone_enabled:
            s.fail("standaloneEnabled", "is false but no participant server.N is configured")
        if observers:
            s.fail(f"server.{observers[0]}", "observers without participants are invalid")
    elif len(participants) == 1 and standalone_enabled and observers:
        s.fail(f"server.{observers[0]}", "observers without a quorum are invalid")
    return not standalone_enabled or len(participants) > 1


def _quorum(s: _Settings, fields: dict[str, object]) -> dict[str, object]:
    servers = _ensemble(s, fields["dynamic_config_file"])  # type: ignore[arg-type]
    result: dict[str, object] = {"servers": servers, "my_id": None}
    distributed = _check_membership(s, servers, bool(fields["standalone_enabled"]))
    if not servers:
        return result
    for key, name in (("initLimit", "init_limit"), ("syncLimit", "sync_limit")):
        if int(fields[name]) <= 0:  # type: ignore[call-overload]
            s.fail(key, "must be greater than 0 when server.N entries are configured")
    myid_path = os.path.join(str(fields["data_dir"]), "myid")
    my_id = _read_myid(str(fields["data_dir"]))
    if my_id is None and distributed:
        raise ConfigError(f"{myid_path}: myid: file is missing (required by the server.N entries)")
    if my_id is not None and distributed and my_id not in servers:
        raise ConfigError(f"{myid_path}: myid: {my_id} has no matching server.{my_id} entry")
    if my_id is not None and fields["extended_types_enabled"] and my_id > MAX_EXTENDED_SERVER_ID:
        raise ConfigError(f"{myid_path}: myid: must be at most {MAX_EXTENDED_SERVER_ID} "
                          "when zookeeper.extendedTypesEnabled is true")
    result["my_id"] = my_id
    if my_id in servers:
        result.update(_own_entry(s, my_id, servers[my_id], fields))
    return result


def _own_entry(s: _Settings, my_id: int, own: ServerAddress,
               fields: Mapping[str, object]) -> dict[str, object]:
    """Like setupClientPort/setupPeerType: this server's own line wins over static keys."""
    result: dict[str, object] = {"peer_type": own.role}
    if own.client_port is None:
        return result
    port, address = fields["client_port"], fields["client_port_address"]
    if port is not None and (port != own.client_port or (
            address not in _WILDCARD_ADDRESSES and address != own.client_address)):
        s.fail(f"server.{my_id}", f"client address {own.client_address}:{own.client_port} "
               f"differs from clientPortAddress/clientPort {address}:{port}")
    result["client_port"] = own.client_port
    result["client_port_address"] = own.client_address
    return result


# ---------------------------------------------------------------------------
# Public entry points

def _decode(raw: bytes) -> str:
    # zkpy: Java's Properties.load(InputStream) is ISO-8859-1; we prefer UTF-8 (a
    # superset for ASCII files) and fall back to ISO-8859-1 for legacy files.
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _build(entries: list[_Entry], properties: Mapping[str, str], source: str) -> ServerConfig:
    s = _Settings(entries, properties, source)
    fields: dict[str, object] = {"source": source}
    for group in (_directories, _client_ports, _timeouts, _misc, _from_properties):
        fields.update(group(s))
    fields.update(_quorum(s, fields))
    fields["properties"] = s.props
    return ServerConfig(**fields)  # type: ignore[arg-type]


def parse_config_text(text: str, properties: Mapping[str, str] = _EMPTY,
                      source_name: str = "zoo.cfg",
                      overrides: Mapping[str, str] = _EMPTY) -> ServerConfig:
    """Parse zoo.cfg text; ``properties`` are the -D system properties and
    ``overrides`` zoo.cfg keys given on the command line, which win over the file's."""
    entries = parse_properties_text(text, source_name)
    entries += [(key, value, 0) for key, value in overrides.items()]
    return _build(entries, properties, source_name)


def load_config(path: str | None, properties: Mapping[str, str] = _EMPTY,
                overrides: Mapping[str, str] = _EMPTY) -> ServerConfig:
    """Read and parse a zoo.cfg file; ``None`` means no file (an empty configuration)."""
    if path is None:
        return parse_config_text("", properties, "<no config file>", overrides)
    return parse_config_text(read_config_text(path), properties, path, overrides)


def read_config_text(path: str) -> str:
    """A zoo.cfg's text, decoded as load_config decodes it."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration file: {exc.strerror}") from exc
    return _decode(raw)


#: ServerConfig.source of the configuration built without a zoo.cfg.
DEFAULT_SOURCE = "<default>"


def default_config(data_dir: str, properties: Mapping[str, str] = _EMPTY,
                   overrides: Mapping[str, str] = _EMPTY) -> ServerConfig:
    """The configuration for ``zkpy`` without a zoo.cfg: 127.0.0.1:2181, every
    four-letter word, the AdminServer on loopback; ``overrides`` replace any of it."""
    defaults = {
        "tickTime": "2000", "dataDir": data_dir, "clientPort": "2181",
        "clientPortAddress": "127.0.0.1", "4lw.commands.whitelist": "*",
        # The try-it-out server stays on loopback, AdminServer included.
        "admin.serverAddress": "127.0.0.1",
    }
    defaults.update(overrides)
    entries: list[_Entry] = [(key, value, 0) for key, value in defaults.items()]
    return _build(entries, properties, DEFAULT_SOURCE)
