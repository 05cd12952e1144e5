"""``python -m zkpy [-Dkey=value ...] [zoo.cfg]``: run one server in the foreground.

Without a config file zkpy starts a standalone server on 127.0.0.1:2181 with
a temporary data directory, so a newcomer has one command to try it. -D
properties come from the command line and, as for Apache ZooKeeper's scripts,
from JVMFLAGS, SERVER_JVMFLAGS and JAVA_TOOL_OPTIONS.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any

from zkpy.config import ConfigError, ServerConfig, default_config, load_config, system_properties
from zkpy.server.core import VERSION, CoreSettings

log = logging.getLogger("zkpy")


def settings_from(cfg: ServerConfig) -> CoreSettings:
    props = cfg.properties
    container_ms = int(props.get("znode.container.checkIntervalMs",
                                 props.get("zookeeper.znode.container.checkIntervalMs", "60000")))
    return CoreSettings(
        tick_time=cfg.tick_time,
        min_session_timeout=cfg.min_session_timeout,
        max_session_timeout=cfg.max_session_timeout,
        max_buffer=cfg.jute_maxbuffer,
        four_letter_words=cfg.four_letter_words,
        extended_types=cfg.extended_types_enabled,
        skip_acl=cfg.skip_acl,
        super_digest=cfg.super_digest,
        server_id=cfg.my_id if cfg.my_id is not None and not cfg.is_standalone else 1,
        container_check_ms=container_ms,
        max_client_cnxns=cfg.max_client_cnxns,
        data_dir=cfg.data_dir,
        data_log_dir=cfg.data_log_dir,
        client_port=cfg.client_port or 2181,
        client_address=cfg.client_port_address,
        config_lines=cfg.as_properties(),
        sasl_users=_sasl_users(cfg),
        global_outstanding_limit=cfg.global_outstanding_limit,
        reconfig_enabled=cfg.reconfig_enabled,
        standalone_enabled=cfg.standalone_enabled,
        # A standalone ZooKeeperServer has no local sessions.
        local_sessions=cfg.local_sessions_enabled and not cfg.is_standalone,
        local_sessions_upgrading=cfg.local_sessions_upgrading_enabled and not cfg.is_standalone,
        # Boolean.parseBoolean, as ZooKeeperServer reads it; zoo.cfg's enforceQuota lands here too.
        enforce_quota=props.get("zookeeper.enforceQuota", "false").lower() == "true",
        enforce_auth_schemes=_enforce_auth_schemes(cfg),
        allow_sasl_failed_clients=_java_bool(props.get("zookeeper.allowSaslFailedClients")),
        x509_enabled=_x509_enabled(cfg),
        readonly_mode=cfg.readonly_mode_enabled and not cfg.is_standalone,
    )


def _java_bool(value: str | None) -> bool:
    """Boolean.parseBoolean: "true" in any case, anything else false."""
    return value is not None and value.strip().lower() == "true"


def _x509_enabled(cfg: ServerConfig) -> bool:
    # zkpy: the x509 scheme exists whenever TLS is served (ZooKeeper wants authProvider.x509).
    return cfg.secure_client_port is not None or any(
        v.endswith("X509AuthenticationProvider") for v in cfg.auth_providers.values())


def _enforce_auth_schemes(cfg: ServerConfig) -> tuple[str, ...]:
    """ZooKeeper 3.8's AuthenticationHelper: which schemes every session must hold."""
    props = cfg.properties
    if _java_bool(props.get("zookeeper.sessionRequireClientSASLAuth")):
        schemes = ["sasl"]
    elif _java_bool(props.get("zookeeper.enforce.auth.enabled")):
        raw = props.get("zookeeper.enforce.auth.schemes")
        if raw is None:
            raise ConfigError("zookeeper.enforce.auth.schemes: zookeeper.enforce.auth.enabled "
                              "is true, zookeeper.enforce.auth.schemes must be configured")
        schemes = [s.strip() for s in raw.split(",")]
    else:
        return ()
    available = {"ip", "digest"}
    if cfg.jaas_config_path or any(v.endswith("SASLAuthenticationProvider")
                                   for v in cfg.auth_providers.values()):
        available.add("sasl")
    if _x509_enabled(cfg):
        available.add("x509")
    for scheme in schemes:
        if scheme not in available:
            key = ("zookeeper.sessionRequireClientSASLAuth" if scheme == "sasl"
                   and "zookeeper.enforce.auth.schemes" not in props
                   else "zookeeper.enforce.auth.schemes")
            raise ConfigError(f"{key}: authentication scheme {scheme!r} is not available "
                              f"(known: {', '.join(sorted(available))})")
    return tuple(schemes)


def _sasl_users(cfg: ServerConfig) -> dict[str, str] | None:
    from zkpy.auth.sasl import load_jaas_users

    if not cfg.jaas_config_path:
        return None
    try:
        users = load_jaas_users(cfg.jaas_config_path)
    except OSError as e:
        raise ConfigError(f"java.security.auth.login.config: cannot read "
                          f"{cfg.jaas_config_path}: {e}") from e
    if not users:
        log.info("JAAS file %s has no Server users; SASL digest logins will fail",
                 cfg.jaas_config_path)
    return users


def parse_args(argv: list[str]) -> tuple[dict[str, str], str | None]:
    props: dict[str, str] = {}
    path = None
    for arg in argv:
        if arg.startswith("-D"):
            key, _, value = arg[2:].partition("=")
            props[key] = value
        elif arg in ("-h", "--help"):
            print(__doc__)
            sys.exit(0)
        elif path is None:
            path = arg
        else:
            raise ConfigError(f"unexpected argument {arg!r} (usage: python -m zkpy [-Dk=v] [zoo.cfg])")
    return props, path


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=os.environ.get("ZKPY_LOG_LEVEL", "INFO"),
                        format="%(asctime)s [%(levelname)s] %(name)s: %(message)s",
                        stream=sys.stderr)
    tmp = None
    try:
        argv_props, path = parse_args(sys.argv[1:] if argv is None else argv)
        props = system_properties(os.environ, argv_props)
        if path is None:
            tmp = tempfile.mkdtemp(prefix="zkpy-")
            cfg = default_config(tmp, props)
        else:
            cfg = load_config(path, props)
    except ConfigError as e:
        log.error("Invalid configuration, exiting abnormally: %s", e)
        return 2
    except OSError as e:
        log.error("Cannot read configuration: %s", e)
        return 2
    try:
        return _serve(cfg)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _quorum_member(cfg: ServerConfig, settings: CoreSettings, reactor: Any) -> Any:
    """Load the data directory as a quorum member does (tree from the snapshot,
    the log as accepted history) and build the server; None if it cannot start."""
    from zkpy.net.member import EnsembleServer
    from zkpy.storage.recovery import RecoveryError, data_dirs
    from zkpy.storage.zabdisk import load_quorum_state

    snap_dir, log_dir = data_dirs(cfg.data_dir, cfg.data_log_dir)
    try:
        os.makedirs(snap_dir, exist_ok=True)
        os.makedirs(log_dir, exist_ok=True)
        started = time.monotonic()
        state = load_quorum_state(snap_dir, log_dir)
    except RecoveryError as e:
        log.error("Cannot recover the data directory: %s", e)
        return None
    except OSError as e:
        log.error("Cannot use the data directory %s: %s", cfg.data_dir, e)
        return None
    log.info("Loaded %d znodes and %d sessions from the snapshot at zxid 0x%x, %d logged "
             "transactions after it, acceptedEpoch %d, currentEpoch %d, in %.2fs",
             len(state.tree), len(state.sessions), state.snapshot_zxid, len(state.log),
             state.accepted_epoch, state.current_epoch, time.monotonic() - started)
    from zkpy.net.peerauth import quorum_sasl
    from zkpy.net.quorumtls import QuorumTLS
    try:
        auth = quorum_sasl(cfg.quorum_settings, cfg.jaas_config_path)
        ssl_quorum = cfg.quorum_settings.get("sslQuorum", "false").strip().lower() == "true"
        tls = QuorumTLS(cfg.ssl) if ssl_quorum else None
    except ValueError as e:
        log.error("Invalid configuration, exiting abnormally: %s", e)
        return None
    server = EnsembleServer(reactor, settings, cfg, state, snap_dir, log_dir)
    server.use_quorum_auth(auth, tls)
    _autopurge(reactor, cfg, server.purge)
    return server


def _autopurge(reactor: Any, cfg: ServerConfig, purge: Any) -> None:
    """autopurge.purgeInterval hours between purges (0: never), the first one now."""
    if cfg.autopurge_purge_interval > 0:
        from twisted.internet import task

        purger = task.LoopingCall(purge)
        purger.clock = reactor
        purger.start(cfg.autopurge_purge_interval * 3600, now=True)


def _open_data_dir(server: Any, cfg: ServerConfig, reactor: Any) -> bool:
    """Recover the tree and sessions, snapshot them, and log every commit from now on."""

    from zkpy.net.clientport import wall_ms
    from zkpy.net.persist import LogCommitter
    from zkpy.storage.formats import snapshot_name
    from zkpy.storage.recovery import RecoveryError, data_dirs, recover
    from zkpy.storage.snapshot import write_tree

    snap_dir, log_dir = data_dirs(cfg.data_dir, cfg.data_log_dir)
    try:
        os.makedirs(snap_dir, exist_ok=True)
        os.makedirs(log_dir, exist_ok=True)
        started = time.monotonic()
        rec = recover(snap_dir, log_dir)
        server.core.restore(rec.tree, rec.sessions, wall_ms())
        snap = os.path.join(snap_dir, snapshot_name(rec.last_zxid))
        if not os.path.exists(snap):
            # As ZooKeeper does after loading: a clean snapshot of what was recovered.
            write_tree(snap, rec.tree, rec.sessions, cfg.force_sync)
        log.info("Loaded %d znodes and %d sessions at zxid 0x%x in %.2fs from %s",
                 len(rec.tree), len(rec.sessions), rec.last_zxid, time.monotonic() - started,
                 cfg.data_dir)
    except RecoveryError as e:
        log.error("Cannot recover the data directory: %s", e)
        return False
    except OSError as e:
        log.error("Cannot use the data directory %s: %s", cfg.data_dir, e)
        return False
    committer = LogCommitter(reactor, server.core, snap_dir, log_dir,
                             prealloc_bytes=cfg.pre_alloc_size * 1024,
                             force_sync=cfg.force_sync, snap_count=cfg.snap_count,
                             retain=cfg.autopurge_snap_retain_count)
    server.core.committer = committer
    _autopurge(reactor, cfg, committer.purge)
    return True


def _abandon(reactor: Any, code: int) -> int:
    """Exit before serving: stop the transaction log's threads first, or exit would hang."""
    reactor.fireSystemEvent("shutdown")
    return code


def _serve(cfg: ServerConfig) -> int:
    from twisted.internet import reactor as _reactor
    from twisted.internet.error import CannotListenError

    from zkpy.net.clientport import ZkServer

    reactor: Any = _reactor
    try:
        settings = settings_from(cfg)
    except ConfigError as e:
        log.error("Invalid configuration, exiting abnormally: %s", e)
        return 2
    if cfg.client_port is None and cfg.secure_client_port is None:
        log.error("%s: clientPort is not set (nor secureClientPort)", cfg.source)
        return 2
    server: Any
    if cfg.is_standalone:
        server = ZkServer(reactor, settings)
        if not _open_data_dir(server, cfg, reactor):
            return 1
    else:
        server = _quorum_member(cfg, settings, reactor)
        if server is None:
            return 1
    try:
        if not cfg.is_standalone:
            server.start_quorum()
        server.listen(plain=cfg.client_port is not None)
        if cfg.secure_client_port is not None:
            from zkpy.net.tls import ServerTLS, TLSConfigError

            try:
                tls = ServerTLS(cfg.ssl)
            except TLSConfigError as e:
                log.error("Invalid TLS configuration: %s", e)
                return _abandon(reactor, 2)
            server.listen_tls(tls, cfg.secure_client_port, cfg.secure_client_port_address)
    except CannotListenError as e:
        log.error("Cannot bind a port: %s", e)
        return _abandon(reactor, 1)
    from zkpy.net.adminserver import EndpointError, start_admin_server, start_metrics_provider

    try:  # ZooKeeper exits 4 when the AdminServer cannot start, 1 for the metrics provider
        start_metrics_provider(reactor, server.core, cfg, server.clock)
        start_admin_server(reactor, server.core, cfg, server.clock)
    except EndpointError as e:
        log.error("%s; exiting abnormally", e)
        return _abandon(reactor, e.exit_code)
    log.info("zkpy %s %s, tickTime=%d, dataDir=%s, sessions %d..%dms",
             VERSION, "standalone" if cfg.is_standalone
             else f"server {cfg.my_id} of an ensemble of {len(cfg.servers)} (initLimit="
                  f"{cfg.init_limit}, syncLimit={cfg.sync_limit})",
             cfg.tick_time, cfg.data_dir, cfg.min_session_timeout, cfg.max_session_timeout)

    # Twisted's own SIGTERM/SIGINT handling: it also arms a wakeup fd, so a
    # signal that lands on one of the log threads still wakes the reactor at once.
    reactor.addSystemEventTrigger("before", "shutdown", _shutdown_watchdog)
    reactor.run(installSignalHandlers=True)
    log.info("zkpy stopped")
    return 0


def _shutdown_watchdog(limit: float = 15.0) -> None:
    """A clean shutdown finishes in well under a second; if it ever hangs (a
    stuck disk, say), exit anyway rather than ignore the operator's SIGTERM.
    What was acknowledged is on disk already."""
    log.info("Shutting down")

    def guard() -> None:
        time.sleep(limit)
        log.error("Shutdown did not finish within %.0fs; exiting now", limit)
        os._exit(1)

    threading.Thread(target=guard, name="zkpy-shutdown-watchdog", daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
