"""``python -m zkpy``: the same command line as ``zkpy`` (zkpy.cli parses it).

This module builds and runs one server from a ServerConfig (``_serve``);
zkpy.cli chooses the configuration (zoo.cfg, or the zero-config server on
127.0.0.1:2181 with its data in ./zkpy-data), sets up logging and the pid file.
-D properties come from the command line and, as for Apache ZooKeeper's
scripts, from JVMFLAGS, SERVER_JVMFLAGS and JAVA_TOOL_OPTIONS.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any

from zkpy.config import ConfigError, ServerConfig
from zkpy.server.core import CoreSettings
from zkpy.version import VERSION

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
        # A standalone server's reads are linearizable as they are.
        linear_reads=cfg.linearizable_reads and not cfg.is_standalone,
        netty=(cfg.server_cnxn_factory or "").endswith("NettyServerCnxnFactory"),
        outstanding_handshake_limit=cfg.outstanding_handshake_limit,
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
    from zkpy.auth.sasl import parse_jaas_users

    if not cfg.jaas_config_path:
        return None
    try:
        with open(cfg.jaas_config_path, encoding="utf-8") as f:
            users = parse_jaas_users(f.read())
    except OSError as e:
        raise ConfigError(f"java.security.auth.login.config: cannot read "
                          f"{cfg.jaas_config_path}: {e}") from e
    if not users:
        log.info("JAAS file %s has no Server users; SASL digest logins will fail",
                 cfg.jaas_config_path)
    return users


def main(argv: list[str] | None = None) -> int:
    """The command line lives in zkpy.cli (argparse, logging, zero-config data dir)."""
    from zkpy.cli import main as cli_main

    return cli_main(argv, run=_serve)


def _digests(cfg: ServerConfig) -> None:
    """zookeeper.digest.enabled (or zoo.cfg's digest.enabled), read once before any
    tree is built, as ZooKeeperServer's static initializer reads it."""
    from zkpy.tree import digest

    digest.set_enabled(digest.enabled_in(cfg.properties))
    log.info("%s = %s", digest.PROPERTY, "true" if digest.enabled() else "false")


def _build_server(cfg: ServerConfig, settings: CoreSettings, reactor: Any) -> Any:
    """Load the data directory and build the server (standalone or ensemble member:
    the same pipeline); None if it cannot start."""
    from zkpy.net import heap
    from zkpy.net.member import MemberServer, record_startup
    from zkpy.storage.fs import LOCAL
    from zkpy.storage.recovery import RecoveryError, data_dirs, load

    snap_dir, log_dir = data_dirs(cfg.data_dir, cfg.data_log_dir)
    try:
        # Durably (each new directory synced into its parent): a power cut must
        # not take version-2, and every log and snapshot in it, with it.
        LOCAL.makedirs(snap_dir)
        LOCAL.makedirs(log_dir)
        started = time.monotonic()
        heap.hold()
        try:
            state = load(snap_dir, log_dir)
        finally:
            heap.release()
    except RecoveryError as e:
        log.error("Cannot recover the data directory: %s", e)
        return None
    except OSError as e:
        log.error("Cannot use the data directory %s: %s", cfg.data_dir, e)
        return None
    log.info("Loaded %d znodes and %d sessions from the snapshot at zxid 0x%x, %d logged "
             "transactions after it%s, in %.2fs from %s", len(state.tree), len(state.sessions),
             state.snapshot_zxid, len(state.log),
             "" if cfg.is_standalone else f", acceptedEpoch {state.accepted_epoch}, "
                                          f"currentEpoch {state.current_epoch}",
             time.monotonic() - started, cfg.data_dir)
    auth = tls = None
    if not cfg.is_standalone:
        from zkpy.net.peerauth import quorum_sasl
        from zkpy.net.quorumtls import QuorumTLS

        try:
            auth = quorum_sasl(cfg.quorum_settings, cfg.jaas_config_path)
            ssl_quorum = cfg.quorum_settings.get("sslQuorum", "false").strip().lower() == "true"
            tls = QuorumTLS(cfg.ssl) if ssl_quorum else None
        except ValueError as e:
            log.error("Invalid configuration, exiting abnormally: %s", e)
            return None
    server = MemberServer(reactor, settings, cfg, state, snap_dir, log_dir)
    record_startup(server.core.metrics, len(state.log), time.monotonic() - started,
                   state.load_seconds)
    heap.settle()  # the tree stays: later collections need not walk it
    if auth is not None or tls is not None:
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


def _abandon(reactor: Any, code: int) -> int:
    """Exit before serving: stop the transaction log's threads first, or exit would hang."""
    reactor.fireSystemEvent("shutdown")
    return code


def _serve(cfg: ServerConfig) -> int:
    from zkpy.net import reactor as serving

    serving.install()  # before anything imports twisted.internet.reactor
    from twisted.internet import reactor as _reactor
    from twisted.internet.error import CannotListenError

    reactor: Any = _reactor
    _digests(cfg)
    try:
        settings = settings_from(cfg)
    except ConfigError as e:
        log.error("Invalid configuration, exiting abnormally: %s", e)
        return 2
    if cfg.client_port is None and cfg.secure_client_port is None:
        log.error("%s: clientPort is not set (nor secureClientPort)", cfg.source)
        return 2
    server = _build_server(cfg, settings, reactor)
    if server is None:
        return 1
    try:
        server.start()
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
    from zkpy.net.adminserver import start_endpoints

    code = start_endpoints(reactor, server.core, cfg, server.clock, member=server)
    if code is not None:
        return _abandon(reactor, code)
    log.info("zkpy %s %s, tickTime=%d, dataDir=%s, sessions %d..%dms",
             VERSION, "standalone" if cfg.is_standalone
             else f"server {cfg.my_id} of an ensemble of {len(cfg.servers)} (initLimit="
                  f"{cfg.init_limit}, syncLimit={cfg.sync_limit})",
             cfg.tick_time, cfg.data_dir, cfg.min_session_timeout, cfg.max_session_timeout)
    if cfg.linearizable_reads:
        log.info("linearizableReads = true: %s", "a standalone server's reads are linearizable "
                 "as they are" if cfg.is_standalone else "reads wait for a read point the "
                 "leader confirmed with a quorum")
    from zkpy import accel

    log.info("%s", accel.describe())

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
