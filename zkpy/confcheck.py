"""Advice on a zoo.cfg that Apache ZooKeeper would accept without a word.

Contract
--------
* Pure: takes the (key, value, line) entries ``zkpy.config.parse_properties_text``
  returns and gives back human-readable warnings; it never changes what the
  configuration means (zkpy reads zoo.cfg exactly as ZooKeeper 3.8 does).
* Two mistakes are caught, both silent in ZooKeeper:

  - a key that neither zkpy nor ZooKeeper 3.8 knows (``tickTme``): ZooKeeper
    turns it into the system property ``zookeeper.tickTme`` and goes on with the
    default; the warning names the closest known key;
  - a value holding `` #`` (``dataDir=/var/lib/zk  # holds myid``): java.util.Properties
    has no inline comments, so ZooKeeper keeps the text as part of the value
    (measured: ZooKeeper 3.8 creates a directory named ``zk  # holds myid``, and
    ``clientPort=2181 # x`` stops it with a NumberFormatException).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

#: Keys Apache ZooKeeper 3.8 reads from zoo.cfg, directly (QuorumPeerConfig) or as the
#: ``zookeeper.<key>`` system property every other zoo.cfg key becomes (ZooKeeperAdmin
#: guide, 3.8).  Prefixed families (server.N, ssl.*, ...) are in KNOWN_PREFIXES.
KNOWN_KEYS = frozenset({
    # QuorumPeerConfig.parseProperties
    "dataDir", "dataLogDir", "clientPort", "clientPortAddress", "secureClientPort",
    "secureClientPortAddress", "clientPortListenBacklog", "observerMasterPort", "tickTime",
    "maxClientCnxns", "minSessionTimeout", "maxSessionTimeout", "initLimit", "syncLimit",
    "connectToLearnerMasterLimit", "electionAlg", "quorumListenOnAllIPs", "peerType",
    "syncEnabled", "dynamicConfigFile", "autopurge.snapRetainCount",
    "autopurge.purgeInterval", "standaloneEnabled", "reconfigEnabled", "sslQuorum",
    "portUnification", "sslQuorumReloadCertFiles", "client.portUnification",
    "localSessionsEnabled", "localSessionsUpgradingEnabled", "oraclePath",
    "quorum.auth.enableSasl", "quorum.auth.serverRequireSasl",
    "quorum.auth.learnerRequireSasl", "quorum.auth.learner.saslLoginContext",
    "quorum.auth.server.saslLoginContext", "quorum.auth.kerberos.servicePrincipal",
    "quorum.cnxn.threads.size", "jvm.pause.info-threshold.ms", "jvm.pause.warn-threshold.ms",
    "jvm.pause.sleep.time.ms", "jvm.pause.monitor", "multiAddress.enabled",
    "multiAddress.reachabilityCheckTimeoutMs", "multiAddress.reachabilityCheckEnabled",
    "metricsProvider.className", "metricsProvider.httpHost", "metricsProvider.httpPort",
    "metricsProvider.exportJvmInfo", "metricsProvider.numWorkerThreads",
    "metricsProvider.maxQueueSize", "metricsProvider.workerShutdownTimeoutMs",
    # read as zookeeper.<key> system properties
    "4lw.commands.whitelist", "admin.enableServer", "admin.serverAddress", "admin.serverPort",
    "admin.idleTimeout", "admin.commandURL", "admin.portUnification",
    "admin.forceHttps", "admin.snapshot.enabled", "admin.restore.enabled",
    "admin.rateLimiterIntervalInMS", "globalOutstandingLimit", "preAllocSize", "snapCount",
    "commitLogCount", "snapSizeLimitInKb", "txnLogSizeLimitInKb", "maxCnxns",
    "forceSync", "fsync.warningthresholdms", "skipACL", "extendedTypesEnabled",
    "emulate353TTLNodes", "serverCnxnFactory", "leaderServes", "cnxTimeout",
    "quorumCnxnTimeoutMs", "tcpKeepAlive", "clientTcpKeepAlive", "electionPortBindRetry",
    "observer.reconnectDelayMs", "observer.election.DelayMs", "enforceQuota",
    "enforce.auth.enabled", "enforce.auth.schemes", "sessionRequireClientSASLAuth",
    "requireClientAuthScheme", "allowSaslFailedClients", "maxResponseCacheSize",
    "maxGetChildrenResponseCacheSize", "snapshot.trust.empty", "snapshot.compression.method",
    "audit.enable", "audit.impl.class", "largeRequestMaxBytes", "largeRequestThreshold",
    "outstandingHandshake.limit", "netty.server.outstandingHandshake.limit",
    "digest.enabled", "flushDelay", "maxWriteQueuePollTime", "maxBatchSize",
    "requestThrottleLimit", "requestThrottleStallTime", "requestThrottleDropStale",
    "request_throttler.shutdownTimeout", "throttled_op_wait_time",
    "learner.closeSocketAsync", "leader.closeSocketAsync", "learner.asyncSending",
    "forward_learner_requests_to_commit_processor_disabled",
    "serializeLastProcessedZxid.enabled", "watchManagerName", "watcherCleanThreshold",
    "watcherCleanIntervalInSeconds", "maxInProcessingDeadWatchers", "watcherCleanThreadsNum",
    "fastleader.minNotificationInterval", "fastleader.maxNotificationInterval",
    "connection_throttle_tokens", "connection_throttle_fill_time",
    "connection_throttle_fill_count", "connection_throttle_freeze_time",
    "connection_throttle_drop_increase", "connection_throttle_drop_decrease",
    "connection_throttle_decrease_ratio", "connection_throttle_weight_enabled",
    "connection_throttle_global_session_weight", "connection_throttle_local_session_weight",
    "connection_throttle_renew_session_weight", "leaderConnectDelayDuringRetryMs",
    "znode.container.checkIntervalMs", "znode.container.maxPerMinute",
    "znode.container.maxNeverUsedIntervalMs", "nio.numSelectorThreads",
    "nio.numWorkerThreads", "nio.directBufferBytes", "nio.shutdownTimeout",
    "nio.sessionlessCnxnTimeout", "commitProcessor.numWorkerThreads",
    "commitProcessor.shutdownTimeout", "commitProcessor.maxReadBatchSize",
    "commitProcessor.maxCommitBatchSize", "syncRequestProcessor.maxBatchSize",
    "closeSessionTxn.enabled", "readonlymode.enabled",
    "DigestAuthenticationProvider.superDigest", "X509AuthenticationProvider.superUser",
    "kerberos.removeHostFromPrincipal", "kerberos.removeRealmFromPrincipal",
    "superUser", "ssl.authProvider", "authProvider", "reconfig.skipValidation",
    "messageTracker.BufferSize", "messageTracker.Enabled", "jute.maxbuffer",
    "jute.maxbuffer.extrasize", "traceFile", "minRequestLatency",
    # zkpy's own (ZooKeeper keeps it as the property zookeeper.linearizableReads)
    "linearizableReads",
})

#: Families of keys: anything starting with one of these is known.
_SECRET = re.compile(r"password|secret|digest", re.IGNORECASE)

KNOWN_PREFIXES = ("server.", "group.", "weight.", "ssl.", "ssl.quorum.", "authProvider.",
                  "metricsProvider.", "sasl.", "zookeeper.")


def closest_key(key: str, known: Iterable[str] = KNOWN_KEYS) -> str | None:
    """The known key ``key`` was most likely meant to be, or None if none is close."""
    known = list(known)
    by_lower = {k.lower(): k for k in known}
    if key.lower() in by_lower:  # a key in the wrong case: tickTime, not ticktime
        return by_lower[key.lower()]
    match = difflib.get_close_matches(key, known, n=1, cutoff=0.75)
    if not match:
        lowered = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.75)
        return by_lower[lowered[0]] if lowered else None
    return match[0]


def is_known(key: str) -> bool:
    return key in KNOWN_KEYS or key.startswith(KNOWN_PREFIXES)


def config_warnings(entries: Iterable[tuple[str, str, int]], source: str = "zoo.cfg"
                    ) -> list[str]:
    """Warnings for keys nobody knows and for values that carry an inline comment."""
    warnings = []
    for key, value, line in entries:
        where = f"{source}:{line}" if line else source
        if not is_known(key):
            guess = closest_key(key)
            hint = f"; did you mean {guess!r}?" if guess else ""
            warnings.append(f"{where}: unknown key {key!r} (neither zkpy nor ZooKeeper reads "
                            f"it; it only becomes the property 'zookeeper.{key}'){hint}")
        comment = _inline_comment(value)
        if comment is not None:
            shown = "…" if _SECRET.search(key) else repr(value)
            warnings.append(f"{where}: the value of {key!r} is {shown}: zoo.cfg has no "
                            f"inline comments, so the text from '#' on is part of it (as in "
                            f"ZooKeeper); put the comment on a line of its own")
    return warnings


def _inline_comment(value: str) -> str | None:
    match = re.search(r"\s#", value)
    return value[match.start() + 1:] if match else None
