"""ZooKeeper's AdminServer (``/commands``) and the Prometheus ``/metrics`` endpoint.

Both are ``twisted.web`` sites on their own ports, answering on the reactor
thread from the core's in-memory state (nothing here blocks: the only disk
access is the directory walk of ``dirs``/``srvr``, as in the four-letter words).

AdminServer, as ZooKeeper 3.8's ``JettyAdminServer`` + ``Commands``:

* ``admin.enableServer`` (default true), ``admin.serverAddress`` (0.0.0.0),
  ``admin.serverPort`` (8080), ``admin.commandURL`` (``/commands``),
  ``admin.idleTimeout`` (30000 ms), as zoo.cfg keys or ``-Dzookeeper.admin.*``.
* ``GET <commandURL>`` lists the commands' primary names as HTML links;
  ``GET <commandURL>/<name or alias>[?key=value]`` answers JSON, always with
  HTTP 200, in Jackson's pretty-printed layout: the command's fields, then
  ``command`` (the primary name) and ``error`` (null, or the message).
* Numbers come from the same functions as the four-letter words
  (``zkpy.admin.monitor``), so ``mntr`` and ``monitor``, ``srvr`` and
  ``server_stats``, ``cons`` and ``connections`` agree.

Metrics: with ``metricsProvider.className`` set to ZooKeeper's
``PrometheusMetricsProvider``, ``GET /metrics`` on ``metricsProvider.httpHost``
(0.0.0.0) : ``metricsProvider.httpPort`` (7000) serves the text exposition of
``zkpy.net.metrics`` (``name[]=`` query parameters filter, as simpleclient's servlet).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.web import resource, server

from zkpy.admin import monitor
from zkpy.storage.formats import VERSION_DIR, files_by_zxid
from zkpy.tree.digest import DIGEST_VERSION

if TYPE_CHECKING:
    from zkpy.config import ServerConfig
    from zkpy.server.core import ServerCore

log = logging.getLogger("zkpy.admin")

DEFAULT_COMMAND_URL = "/commands"
DEFAULT_IDLE_TIMEOUT_MS = 30000
#: What simpleclient 0.9.0's servlet (ZooKeeper 3.8) sends; the body is that format.
TEXT_FORMAT_0_0_4 = b"text/plain; version=0.0.4; charset=utf-8"


def _signed64(v: int) -> int:
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


def _wall_ms() -> int:
    return int(time.time() * 1000)


# -- Jackson's pretty printer ------------------------------------------------------


def jackson_json(value: Any, level: int = 0) -> str:
    """JSON as ZooKeeper's ObjectMapper (INDENT_OUTPUT) writes it.

    Objects get one field per line, indented two spaces a level, ``"k" : v``;
    arrays stay on one line (``[ a, b ]``); empty ones are ``{ }`` and ``[ ]``;
    doubles print as Java's ``Double.toString``.
    """
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return json.dumps(str(value))  # Jackson quotes non-finite numbers
        return monitor.java_double(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        if not value:
            return "{ }"
        pad = "  " * (level + 1)
        fields = [f"{pad}{json.dumps(str(k), ensure_ascii=False)} : {jackson_json(v, level + 1)}"
                  for k, v in value.items()]
        return "{\n" + ",\n".join(fields) + "\n" + "  " * level + "}"
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        if not items:
            return "[ ]"
        return "[ " + ", ".join(jackson_json(v, level) for v in items) + " ]"
    return json.dumps(str(value), ensure_ascii=False)


# -- the commands ---------------------------------------------------------------------


@dataclass
class AdminContext:
    """What the commands read: the core plus what only the entry point knows."""

    core: ServerCore
    properties: dict[str, str] = field(default_factory=dict)
    initial_config: str | None = None
    clock: Callable[[], int] = _wall_ms


CommandFn = Callable[[AdminContext, dict[str, str]], dict[str, Any]]


@dataclass(frozen=True)
class Command:
    names: tuple[str, ...]  # the primary name first
    run: CommandFn

    @property
    def primary(self) -> str:
        return self.names[0]


def _remote_address(host: str, port: int) -> str:
    """Jackson's InetSocketAddress: ``ip:port``, IPv6 in brackets (Java's long form)."""
    text = monitor.socket_address(host, port)[1:]  # "/ip:port" -> "ip:port"
    addr, _, port_text = text.rpartition(":")
    return f"[{addr}]:{port_text}" if ":" in addr else text


def connection_info(c: Any, brief: bool) -> dict[str, Any]:
    """ServerCnxn.getConnectionInfo, from the fields ``cons`` prints."""
    info: dict[str, Any] = {
        "remote_socket_address": _remote_address(c.host, c.port),
        # As in cons: OP_READ, or 0 once the connection is being closed.
        "interest_ops": 0 if c.state in ("closing", "closed") else 1,
        "outstanding_requests": len(c.pending),
        "packets_received": c.packets_received,
        "packets_sent": c.packets_sent,
    }
    if not brief:
        info.update({
            "session_id": _signed64(c.session_id),
            "last_operation": monitor.LAST_OP.get(c.last_op, c.last_op),
            "established": c.established,
            "session_timeout": c.timeout,
            "last_cxid": _signed64(c.last_cxid),
            "last_zxid": _signed64(c.last_zxid),
            "last_response_time": c.last_response,
            "last_latency": c.last_latency,
            "min_latency": max(c.min_latency, 0),
            "avg_latency": c.total_latency // c.latency_count if c.latency_count else 0,
            "max_latency": c.max_latency,
        })
    return info


def _connections(ctx: AdminContext, brief: bool) -> dict[str, Any]:
    # zkpy's connection objects do not record which listener accepted them, so TLS
    # clients are listed with the others and secure_connections stays empty.
    return {"connections": [connection_info(c, brief)
                            for c in list(ctx.core.connections.values())],
            "secure_connections": []}


def _buffer_stats(mv: Mapping[str, Any]) -> dict[str, Any]:
    return {"last_buffer_size": mv.get("last_client_response_size", 0),
            "min_buffer_size": mv.get("min_client_response_size", 0),
            "max_buffer_size": mv.get("max_client_response_size", 0)}


def _server_stats(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    """SrvrCommand: version, read_only, the ServerStats bean, client_response, node_count."""
    core = ctx.core
    mv = dict(monitor.monitor_values(core))
    lo, avg, hi = monitor.latency(core)
    data_size, log_size = monitor.dir_sizes(core)
    stats = {
        "packets_sent": core.stats.packets_sent,
        "packets_received": core.stats.packets_received,
        "fsync_threshold_exceed_count": core.metrics.fsync_threshold_exceed_count,
        "client_response_stats": _buffer_stats(mv),
        "data_dir_size": data_size,
        "log_dir_size": log_size,
        "last_processed_zxid": _signed64(core.last_zxid),
        "outstanding_requests": core.outstanding(),
        "server_state": monitor.server_state(core),
        "avg_latency": avg,
        "max_latency": hi,
        "min_latency": lo,
        "num_alive_client_connections": len(core.connections),
        "provider_null": False,
        "uptime": mv.get("uptime", 0),
        "auth_failed_count": mv.get("auth_failed_count", 0),
        "non_mtlsremote_conn_count": mv.get("non_mtls_remote_conn_count", 0),
        "non_mtlslocal_conn_count": mv.get("non_mtls_local_conn_count", 0),
    }
    return {"version": monitor.build(), "read_only": core.read_only,
            "server_stats": stats,
            "client_response": _buffer_stats(mv), "node_count": monitor.node_count(core)}


def _stats(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    out = _server_stats(ctx, kwargs)
    out.update(_connections(ctx, brief=True))
    return out


def _configuration(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    """ZooKeeperServerConf.toMap: the values ``conf`` prints, under snake_case keys."""
    core = ctx.core
    s = core.settings
    data_dir, log_dir = monitor.data_dirs(core)
    return {
        "client_port": s.client_port,
        "data_dir": monitor.snap_dir(data_dir),
        "data_log_dir": monitor.snap_dir(log_dir),
        "tick_time": s.tick_time,
        "max_client_cnxns": s.max_client_cnxns,
        "min_session_timeout": s.min_session_timeout,
        "max_session_timeout": s.max_session_timeout,
        "server_id": 0,  # as conf: a standalone ZooKeeperServer reports 0
        "client_port_listen_backlog": int(monitor.setting(core, "clientPortListenBacklog",
                                                              "-1")),
    }


def _dump(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    core = ctx.core
    expiry: dict[str, list[int]] = {}
    for s in sorted(core.sessions.sessions.values(), key=lambda s: s.deadline):
        expiry.setdefault(str(s.deadline), []).append(_signed64(s.id))
    ephemerals = {str(_signed64(sid)): sorted(paths)
                  for sid, paths in core.tree.ephemerals.items() if paths}
    return {"expiry_time_to_session_ids": expiry, "session_id_to_ephemeral_paths": ephemerals}


def _watches(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    # As wchc (and ZooKeeper 3.8.0's DataTree.getWatches): the data-watch table.
    by_session: dict[str, list[str]] = {}
    for watcher, paths in ctx.core.watches.data.by_watcher.items():
        by_session.setdefault(str(_signed64(watcher.session_id)), []).extend(sorted(paths))
    return {"session_id_to_watched_paths": by_session}


def _watches_by_path(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    table = ctx.core.watches.data.by_path
    return {"path_to_session_ids": {path: [_signed64(w.session_id) for w in watchers]
                                    for path, watchers in table.items() if watchers}}


def _watch_summary(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    # The three numbers wchs prints ("N connections watching M paths / Total watches:T").
    table = ctx.core.watches.data
    return {"num_connections": len(table.by_watcher), "num_paths": len(table.by_path),
            "num_total_watches": sum(len(p) for p in table.by_watcher.values())}


def _environment(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    return dict(monitor.environment(ctx.core))


def _system_properties(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    # Java's System.getProperties: zkpy's model of them (-D flags and zookeeper.* keys
    # from zoo.cfg) plus the environment's platform entries, sorted by name.
    props = {k: v for k, v in monitor.environment(ctx.core)
             if k not in ("zookeeper.version", "host.name")}
    props.update(ctx.properties)
    return dict(sorted(props.items()))


def _last_snapshot(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    data_dir = ctx.core.settings.data_dir
    snaps = files_by_zxid(os.path.join(data_dir, VERSION_DIR), "snapshot") if data_dir else []
    for zxid, path in reversed(snaps):
        try:
            # FileSnap: the file's last-modified time in seconds.
            return {"zxid": f"{zxid & 0xFFFFFFFFFFFFFFFF:x}",
                    "timestamp": int(os.path.getmtime(path))}
        except OSError:
            continue
    return {"zxid": f"{0xFFFFFFFFFFFFFFFF:x}", "timestamp": -1}


def _set_trace_mask(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    if "traceMask" not in kwargs:
        return {"error": "setTraceMask requires long traceMask argument"}
    try:
        mask = int(kwargs["traceMask"])
        if not -(1 << 63) <= mask < 1 << 63:
            raise ValueError
    except ValueError:
        return {"error": f"setTraceMask requires long traceMask argument, got "
                         f"{kwargs['traceMask']}"}
    monitor.set_trace_mask(ctx.core, mask)
    return {"tracemask": mask}


def _crst(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    monitor.reset_connection_stats(ctx.core)
    return {}


def _srst(ctx: AdminContext, kwargs: dict[str, str]) -> dict[str, Any]:
    monitor.reset_server_stats(ctx.core)
    return {}


def _const(**fields: Any) -> CommandFn:
    return lambda ctx, kwargs: dict(fields)


COMMANDS: tuple[Command, ...] = (
    Command(("connection_stat_reset", "crst"), _crst),
    Command(("configuration", "conf", "config"), _configuration),
    Command(("connections", "cons"), lambda ctx, kw: _connections(ctx, brief=False)),
    Command(("hash",), lambda ctx, kw: {"digests": [
        {"zxid": zxid, "digest": digest, "digest_version": DIGEST_VERSION}
        for zxid, digest in ctx.core.tree.digests.history]}),
    Command(("dirs",), lambda ctx, kw: dict(zip(("datadir_size", "logdir_size"),
                                                monitor.dir_sizes(ctx.core), strict=True))),
    Command(("dump",), _dump),
    Command(("environment", "env", "envi"), _environment),
    Command(("get_trace_mask", "gtmk"),
            lambda ctx, kw: {"tracemask": monitor.trace_mask(ctx.core)}),
    Command(("initial_configuration", "icfg"),
            lambda ctx, kw: {"initial_configuration": ctx.initial_config}),
    Command(("is_read_only", "isro"),
            lambda ctx, kw: {"read_only": ctx.core.read_only}),
    Command(("last_snapshot", "lsnp"), _last_snapshot),
    # Standalone: LeaderCommand has no quorum peer to ask.
    Command(("leader", "lead"), _const(error="server is not initialized")),
    Command(("monitor", "mntr"), lambda ctx, kw: dict(monitor.monitor_values(ctx.core))),
    Command(("observer_connection_stat_reset", "orst"), _const()),
    Command(("ruok",), _const()),
    Command(("set_trace_mask", "stmk"), _set_trace_mask),
    Command(("server_stats", "srvr"), _server_stats),
    Command(("stats", "stat"), _stats),
    Command(("stat_reset", "srst"), _srst),
    Command(("observers", "obsr"), _const(synced_observers=0, observers=[])),
    Command(("system_properties", "sysp"), _system_properties),
    Command(("voting_view",), _const(current_config={})),
    Command(("watches", "wchc"), _watches),
    Command(("watches_by_path", "wchp"), _watches_by_path),
    Command(("watch_summary", "wchs"), _watch_summary),
    Command(("zabstate",), _const(voting=False, zabstate="")),
)
BY_NAME: dict[str, Command] = {name: cmd for cmd in COMMANDS for name in cmd.names}


def run_command(ctx: AdminContext, name: str, kwargs: dict[str, str] | None = None
                ) -> dict[str, Any]:
    """Commands.runCommand + CommandResponse.toMap: fields, then command and error."""
    cmd = BY_NAME.get(name)
    if cmd is None:
        return {"command": name, "error": f"Unknown command: {name}"}
    core = ctx.core
    # What a four-letter word's arrival does: time moves on (uptime, expiry buckets).
    core.at(ctx.clock())
    data = cmd.run(ctx, dict(kwargs or {}))
    out = dict(data)
    out["command"] = cmd.primary
    out.setdefault("error", None)
    return out


def command_links(url: str) -> str:
    """JettyAdminServer's listing: a link per primary name, sorted, each and a <br/> a line."""
    return "".join(f'<a href="{url}/{name}">{name}</a>\n<br/>\n'
                   for name in sorted(cmd.primary for cmd in COMMANDS))


# -- twisted.web -------------------------------------------------------------------------


class CommandResource(resource.Resource):
    """Everything under the site; ``commandURL`` and below are ours, the rest is 404."""

    isLeaf = True

    def __init__(self, ctx: AdminContext, command_url: str = DEFAULT_COMMAND_URL,
                 backups: Any = None) -> None:
        super().__init__()
        self.ctx = ctx
        self.url = "/" + command_url.strip("/") if command_url.strip("/") else ""
        self.backups = backups  # zkpy.net.backup.Backups: ZooKeeper 3.9's snapshot/restore

    def render_POST(self, request: Any) -> Any:
        """Only ``restore`` takes a POST (as ZooKeeper 3.9's PostCommands)."""
        from zkpy.net.backup import RESTORE_NAMES

        path = request.path.decode("utf-8", "replace")
        name = path[len(self.url) + 1:] if path.startswith(self.url + "/") else ""
        if name in RESTORE_NAMES and self.backups is not None:
            return self.backups.render_restore(request, name)
        request.setResponseCode(405)
        request.setHeader(b"Content-Type", b"text/plain;charset=utf-8")
        return b"Method Not Allowed\n"

    def render_GET(self, request: Any) -> bytes:
        path = request.path.decode("utf-8", "replace")
        if path in (self.url, self.url + "/") or (not self.url and path == "/"):
            request.setHeader(b"Content-Type", b"text/html;charset=utf-8")
            return command_links(self.url).encode("utf-8")
        if not path.startswith(self.url + "/"):
            request.setResponseCode(404)
            request.setHeader(b"Content-Type", b"text/plain;charset=utf-8")
            return b"Not Found\n"
        name = path[len(self.url) + 1:]
        kwargs = {k.decode("utf-8", "replace"): v[0].decode("utf-8", "replace")
                  for k, v in request.args.items() if v}
        if self.backups is not None and name in ("snapshot", "snap"):
            return self.backups.render_snapshot(request, kwargs, name)
        try:
            response = run_command(self.ctx, name, kwargs)
            body = jackson_json(response)
        except Exception:  # a command must never take the server down
            log.exception("AdminServer command %r failed", name)
            body = '{"error": "Exception writing command response to JSON"}'
        request.setResponseCode(200)
        request.setHeader(b"Content-Type", b"application/json")
        return body.encode("utf-8")


class MetricsResource(resource.Resource):
    """``/metrics``: the registry's text exposition, built on the reactor thread.

    (``prometheus_client.twisted.MetricsResource`` would collect on a thread-pool
    thread, reading the core while the reactor mutates it.)
    """

    isLeaf = True

    def __init__(self, registry: Any) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Any) -> bytes:
        from prometheus_client.exposition import generate_latest

        if request.path.rstrip(b"/") != b"/metrics":
            request.setResponseCode(404)
            return b"Not Found\n"
        registry = self.registry
        names = [n.decode("utf-8", "replace") for n in request.args.get(b"name[]", [])]
        if names:
            registry = registry.restricted_registry(names)
        request.setHeader(b"Content-Type", TEXT_FORMAT_0_0_4)
        return generate_latest(registry)


class EndpointError(Exception):
    """An HTTP endpoint could not start; ``exit_code`` is ZooKeeper's for the case;
    ``port_taken`` when only its port could not be bound."""

    def __init__(self, message: str, exit_code: int, port_taken: bool = False) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.port_taken = port_taken


def start_endpoints(reactor: Any, core: ServerCore, cfg: ServerConfig,
                    clock: Callable[[], int] = _wall_ms, member: Any = None) -> int | None:
    """Start the metrics provider and the AdminServer; an exit code if start-up must stop.

    Measured on ZooKeeper 3.8: an ensemble member whose AdminServer port is taken
    logs "Problem starting AdminServer" (WARN) and serves on; a standalone server
    exits 4; a metrics provider that cannot start (its port taken) exits 1 either way.
    zkpy: a member, and the zero-config server, keep serving without the endpoint
    whose port is taken (metrics included: a monitoring port must not cost the
    ensemble a voter); a standalone server from a zoo.cfg exits as ZooKeeper does.
    """
    from zkpy.config import DEFAULT_SOURCE

    survive = not cfg.is_standalone or cfg.source == DEFAULT_SOURCE
    for start in (start_metrics_provider, start_admin_server):
        try:
            if start is start_admin_server:
                start_admin_server(reactor, core, cfg, clock, member)
            else:
                start(reactor, core, cfg, clock)
        except EndpointError as e:
            if not (e.port_taken and survive):
                log.error("%s; exiting abnormally", e)
                return e.exit_code
            log.warning("%s; serving without it (set %s to move it)", e,
                        "metricsProvider.httpPort" if start is start_metrics_provider
                        else "admin.serverPort, or admin.enableServer=false,")
    return None


def _idle_timeout_s(props: Mapping[str, str]) -> float | None:
    try:
        ms = int(props.get("zookeeper.admin.idleTimeout", DEFAULT_IDLE_TIMEOUT_MS))
    except ValueError:
        ms = DEFAULT_IDLE_TIMEOUT_MS
    return ms / 1000.0 if ms > 0 else None


def _read_initial_config(cfg: ServerConfig) -> str | None:
    try:
        with open(cfg.source, encoding="utf-8", errors="replace") as f:
            return f.read()
    except (OSError, TypeError):
        return None


def start_admin_server(reactor: Any, core: ServerCore, cfg: ServerConfig,
                       clock: Callable[[], int] = _wall_ms, member: Any = None) -> Any:
    """Bind the AdminServer if ``admin.enableServer``; returns the listening port or None."""
    from twisted.internet.error import CannotListenError

    if not cfg.admin_enable_server:
        return None
    props = cfg.properties
    url = props.get("zookeeper.admin.commandURL", DEFAULT_COMMAND_URL)
    ctx = AdminContext(core, dict(props), _read_initial_config(cfg), clock)
    from zkpy.net.backup import Backups

    backups = Backups(reactor, core, dict(props), clock, member, jackson_json)
    site = server.Site(CommandResource(ctx, url, backups), timeout=_idle_timeout_s(props))
    site.displayTracebacks = False
    host = cfg.admin_server_address
    try:
        port = reactor.listenTCP(cfg.admin_server_port, site, interface=host)
    except CannotListenError as e:
        raise EndpointError(f"Problem starting AdminServer on address {host}, port "
                            f"{cfg.admin_server_port} and command URL {url}: {e}", 4,
                            port_taken=True) from e
    bound = port.getHost()
    log.info("Started AdminServer on address %s, port %d and command URL %s", host, bound.port,
             url)
    return port


def start_metrics_provider(reactor: Any, core: ServerCore, cfg: ServerConfig,
                           clock: Callable[[], int] = _wall_ms) -> Any:
    """Serve ``/metrics`` if the Prometheus provider is configured; the port or None."""
    from twisted.internet.error import CannotListenError

    # prometheus_client is only needed when metrics are wanted.
    from zkpy.net.metrics import (
        PASSIVE_PROVIDERS,
        PROMETHEUS_PROVIDER,
        make_registry,
        provider_settings,
    )

    cls = cfg.metrics_provider_class
    if cls in PASSIVE_PROVIDERS:
        return None
    if cls != PROMETHEUS_PROVIDER:
        # ZooKeeper: "metrics provider class was not found", an invalid config (exit 2).
        raise EndpointError(f"Cannot boot MetricsProvider {cls}: zkpy provides "
                            f"{PROMETHEUS_PROVIDER} and the built-in ones only", 2)
    conf = dict(cfg.metrics_provider_config)
    conf["httpPort"] = str(cfg.metrics_provider_http_port)
    try:
        host, port_no, export = provider_settings(conf)
    except ValueError as e:
        raise EndpointError(f"Cannot boot MetricsProvider {cls}: {e}", 1) from e
    registry = make_registry(core, export, clock)
    site = server.Site(MetricsResource(registry))
    site.displayTracebacks = False
    try:
        port = reactor.listenTCP(port_no, site, interface=host)
    except CannotListenError as e:
        raise EndpointError(f"Cannot boot MetricsProvider {cls}: cannot start /metrics server "
                            f"on {host}:{port_no}: {e}", 1, port_taken=True) from e
    log.info("Started /metrics HTTP endpoint at host: %s, port: %d, exportJvmInfo: %s", host,
             port.getHost().port, export)
    return port


__all__ = [
    "AdminContext", "COMMANDS", "Command", "CommandResource", "EndpointError", "MetricsResource",
    "command_links", "connection_info", "jackson_json", "run_command", "start_admin_server",
    "start_endpoints", "start_metrics_provider",
]
