"""One zkpy server on Twisted, standalone or ensemble member: the same pipeline.

``MemberServer`` adds to ``ZkServer`` (client ports, session ticker,
throttling) a Zab ``Peer`` joined to the core by a ``Replica``, the one disk
writer (``zkpy.net.disk``), fuzzy snapshots every ``snapCount/2 +
rand(snapCount/2)`` commits, and a Zab tick every tickTime. A standalone server
is an ensemble of one (``Peer(standalone=True)``): it leads at once, has no
election or quorum ports, and its writes reach the tree the way a leader's do,
after its own disk synced them. An ensemble member also listens on its
election and quorum ports (``zkpy.net.peerlinks``) and arms the election's
timers.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from twisted.internet import task, threads

from zkpy.config import ServerConfig
from zkpy.net import heap
from zkpy.net.clientport import ZkServer, wall_ms
from zkpy.net.disk import DiskWriter, Roll
from zkpy.net.peerlinks import ElectionLinks, QuorumLinks, resolve
from zkpy.net.snapshots import FuzzySnapshots
from zkpy.server.core import CoreSettings
from zkpy.server.replica import Replica
from zkpy.storage import dynconfig
from zkpy.storage.formats import snapshot_name
from zkpy.storage.purge import purge
from zkpy.storage.recovery import StartState
from zkpy.storage.snapshot import SnapshotMaker, write_tree
from zkpy.tree.datatree import CONFIG_NODE
from zkpy.zab import messages as m
from zkpy.zab.driver import Durable, Links, NoLinks
from zkpy.zab.events import (
    LOOKING,
    ConnectionLost,
    DiskState,
    Heard,
    Message,
    Messages,
    Start,
    StateSent,
    Tick,
    Vote,
    Wake,
)
from zkpy.zab.membership import QuorumConfig, parse_config_text
from zkpy.zab.peer import Peer

log = logging.getLogger("zkpy.quorum")


def record_startup(metrics: Any, txns: int, seconds: float,
                   load_seconds: tuple[float, float] = (0.0, 0.0)) -> None:
    """ZKDatabase.loadDataBase's figures for a start: ``seconds`` from reading the
    data directory to a built server (dbinittime); of that, ``load_seconds``:
    loading the newest snapshot and reading the ``txns`` logged after it (which
    Zab then applies as it starts, where ZooKeeper's fastForwardFromEdits
    applies them as it reads them)."""
    s = metrics.summary
    snap, txn = load_seconds
    s["dbinittime"].add(int(seconds * 1000))
    s["startup_snap_load_time"].add(int(snap * 1000))
    if txns:
        s["startup_txns_loaded"].add(txns)
        s["startup_txns_load_time"].add(int(txn * 1000))


class _MemberLinks:
    """The Driver's ``Links``: the quorum and election ports of this member."""

    def __init__(self, server: MemberServer) -> None:
        self.server = server

    def send(self, dest: int, pkt: m.QuorumPacket, token: Any = None) -> None:
        self.server.links.send(dest, pkt, token)

    def token(self, dest: int) -> Any:
        return self.server.links.token(dest)

    def flush(self) -> None:
        self.server.links.flush()

    def disconnect(self, dest: int, why: str = "") -> None:
        if why:
            log.warning("Dropping server %d from our quorum connections: %s", dest, why)
        self.server.links.disconnect(dest)

    def vote(self, dest: int, notification: Any) -> None:
        log.debug("Vote to %d: %s", dest, notification)
        self.server.election.send(dest, notification)

    def configure(self, config: QuorumConfig) -> None:
        self.server._use_config(config)


class MemberServer(ZkServer):
    def __init__(self, reactor: Any, settings: CoreSettings, cfg: ServerConfig,
                 state: StartState, snap_dir: str, log_dir: str, clock: Any = wall_ms,
                 disk_pools: tuple[Any, Any] = (None, None)) -> None:
        super().__init__(reactor, settings, clock)
        self.cfg = cfg
        self.standalone = cfg.is_standalone
        my_id = settings.server_id if self.standalone else cfg.my_id
        assert my_id is not None
        self.my_id: int = my_id
        self._hosts: dict[str, str] = {}
        self._wake: Any = None  # the election's next timer
        self.core.restore(state.tree, state.sessions, self.clock())
        self._settled = self.core.tree  # the tree zkpy.net.heap last settled (start-up's)
        disk_state = DiskState(state.accepted_epoch, state.current_epoch, state.snapshot_zxid,
                               state.log)
        self.disk = DiskWriter(reactor, snap_dir, log_dir, state.last_zxid,
                               prealloc_bytes=cfg.pre_alloc_size * 1024,
                               force_sync=cfg.force_sync, pool=disk_pools[0],
                               snap_pool=disk_pools[1])
        self.disk.on_synced = self._persisted
        self.disk.metrics = self.core.metrics
        self.core.pending_figures = self.disk.drain  # mntr shows a quiet batch at once
        links: Links
        if self.standalone:
            self.peer = Peer(self.my_id, {self.my_id}, disk_state, standalone=True)
            links = NoLinks()
        else:
            config = self._starting_config(cfg, state)
            # Votes are re-sent every 400 ms while looking: FastLeaderElection
            # re-sends after 200 ms of silence (doubling), so one lost notification
            # costs a fraction of a second, not a whole resend interval.
            self.peer = Peer(self.my_id, config.voters, disk_state, sync_limit=cfg.sync_limit,
                             init_limit=cfg.init_limit, resend_interval=400, config=config)
            self.peer.reconfig_enabled = cfg.reconfig_enabled
            self.peer.features = m.FEATURES if cfg.quorum_watermarks else 0
            # The membership the dynamic config file already holds (none written yet).
            self._saved_version = dynconfig.version_of(cfg.dynamic_config_file)
            self.static_path = (os.path.abspath(cfg.source) if os.path.isfile(cfg.source)
                                else None)
            self.election = ElectionLinks(reactor, self.my_id, {}, self._on_vote)
            self.links = QuorumLinks(reactor, self.my_id, {}, self._on_packets, self._on_lost,
                                     connect_window=cfg.init_limit * cfg.tick_time / 1000.0,
                                     snapshot_maker=self._snapshot_maker)
            self.links.max_packet = m.packet_limit(settings.max_buffer)
            self.election.handshake_window = self.links.connect_window
            self.links.on_state_sent = lambda sid: self._step(StateSent(sid))
            self.links.on_heard = lambda sid: self._step(Heard(sid))
            links = _MemberLinks(self)
            if cfg.force_sync:  # without, the batch is written on the reactor
                self.disk.send_from_thread = self.links.send_from_thread
        self.replica = Replica(self.core, self.peer, links, self.disk,
                               self._arm_election_timer)
        if not self.standalone:
            self.core.set_config(config.text(), config.version)
            self._use_config(config)
        self.snapshots = FuzzySnapshots(reactor, self.core, snap_dir, cfg.snap_count,
                                        cfg.force_sync, self.disk.snap_pool, self.disk.fs)
        self._commits_seen = 0
        self._zab_ticker: task.LoopingCall | None = None
        reactor.addSystemEventTrigger("during", "shutdown", self.close)

    # -- the membership ------------------------------------------------------------------

    def _starting_config(self, cfg: ServerConfig, state: StartState) -> QuorumConfig:
        """The membership from zoo.cfg / the dynamic file, unless the snapshot's
        /zookeeper/config holds a newer one (a reconfig committed just before a
        crash, before its dynamic file was written)."""
        config = QuorumConfig(dict(cfg.servers), dynconfig.version_of(cfg.dynamic_config_file))
        node = state.tree.get(CONFIG_NODE)
        if node is not None and node.data:
            try:
                seen = parse_config_text(node.data.decode("utf-8"))
            except (ValueError, UnicodeDecodeError):
                seen = None
            if seen is not None and seen.version > config.version:
                log.info("The snapshot holds membership 0x%x, newer than the configured 0x%x: "
                         "using it", seen.version, config.version)
                config = seen
        return config

    def _use_config(self, config: QuorumConfig) -> None:
        """Addresses, ``conf`` and the config our votes carry follow the membership."""
        own = config.servers.get(self.my_id) or self.cfg.servers[self.my_id]
        for sid, a in config.servers.items():
            if sid == self.my_id and sid in self.links.peers:
                if (a.quorum_port, a.election_port) != (own.quorum_port, own.election_port):
                    log.warning("Membership 0x%x moves this server's ports; they change when "
                                "it restarts", config.version)
                continue
            host = self._hosts.get(a.host) or self._hosts.setdefault(a.host, resolve(a.host))
            self.links.peers[sid] = (host, a.quorum_port)
            self.election.peers[sid] = (host, a.election_port)
        if self.election.initial_message is None:
            self.election.set_own_address()
        self.election.config = config.text().encode()
        # QuorumPeerConfig's lines, as ``conf`` prints them.
        self.replica.conf = [
            ("initLimit", self.cfg.init_limit), ("syncLimit", self.cfg.sync_limit),
            ("electionAlg", 3), ("electionPort", own.election_port),
            ("quorumPort", own.quorum_port),
            ("peerType", 0 if own.role == "participant" else 1),
            ("membership: ", ""), *config.lines(), ("version", f"{config.version:x}"),
        ]
        if (self.cfg.reconfig_enabled and config.version != self._saved_version
                and self.static_path is not None):
            try:
                path = dynconfig.write_dynamic_config(self.static_path, config)
                self._saved_version = config.version
                log.info("Wrote membership 0x%x to %s", config.version, path)
            except OSError as e:
                log.error("Cannot write the dynamic config file beside %s: %s (membership "
                          "0x%x is active but will not survive a restart)", self.static_path,
                          e, config.version)

    def _snapshot_maker(self) -> SnapshotMaker:
        return SnapshotMaker(self.core.tree, self.core.session_timeouts())

    def use_quorum_auth(self, auth: Any, tls: Any = None) -> None:
        """Quorum SASL (``zkpy.auth.quorum_sasl``) on both ports, we authenticate
        to voters when we connect to their election port; quorum TLS
        (``zkpy.net.quorumtls``) when ``tls`` is given."""
        self.election.auth = self.links.auth = auth
        self.election.wants_auth = lambda sid: sid in self.peer.voters
        self.election.tls = self.links.tls = tls

    # -- start and stop ------------------------------------------------------------------

    def start(self) -> None:
        """Open the quorum ports (an ensemble member) and start Zab: a standalone
        server leads at once, with everything it logged committed."""
        if not self.standalone:
            self.links.listen()
            self.election.listen()
        ticker = task.LoopingCall(self._step, Tick())
        ticker.clock = self.reactor
        ticker.start(self.cfg.tick_time / 1000.0, now=False)
        self._zab_ticker = ticker
        self._step(Start())
        path = os.path.join(self.disk.snap_dir, snapshot_name(self.core.last_zxid))
        if self.standalone and not self.disk.fs.exists(path):
            # As ZooKeeperServer.loadData: a clean snapshot of what was recovered.
            started = time.monotonic()
            write_tree(path, self.core.tree, self.core.session_timeouts(), self.cfg.force_sync,
                       self.disk.fs)
            self.core.metrics.summary["snapshottime"].add(
                int((time.monotonic() - started) * 1000))

    def close(self) -> None:
        if self._zab_ticker is not None and self._zab_ticker.running:
            self._zab_ticker.stop()
        self.snapshots.close()
        if not self.standalone:
            self.links.close()
            self.election.close()
        self.disk.close()

    # -- events in ------------------------------------------------------------------------

    def _step(self, event: Any) -> None:
        self.disk.drain()  # a batch the log thread finished quietly comes first
        self.replica.step(event, self.clock())
        self._maybe_snapshot()
        if self.core.tree is not self._settled:  # a leader's SNAP was installed
            self._settled = self.core.tree
            heap.settle()

    def _persisted(self, after: list[Durable], last: int) -> None:
        self.replica.persisted(after, last, self.clock())
        self._maybe_snapshot()

    def _on_vote(self, sid: int, notification: Any, config: bytes = b"") -> None:
        log.debug("Vote from %d: %s", sid, notification)
        self._step(Vote(sid, notification, config))

    def hold_peers(self) -> None:
        if not self.standalone:
            self.links.hold()

    def release_peers(self) -> None:
        if not self.standalone:
            self.links.release()

    def _on_packets(self, sid: int, pkts: list[m.QuorumPacket]) -> None:
        self._step(Messages(sid, pkts) if len(pkts) > 1 else Message(sid, pkts[0]))

    def _on_lost(self, sid: int) -> None:
        self._step(ConnectionLost(sid))

    def _arm_election_timer(self) -> None:
        if self._wake is not None and self._wake.active():
            self._wake.cancel()
        self._wake = None
        if self.peer.role != LOOKING:
            return
        deadline = self.peer.election.next_deadline()
        read_only = self.replica.read_only.due()  # when a looking member turns read-only
        if read_only is not None:
            deadline = read_only if deadline is None else min(deadline, read_only)
        if deadline is not None:
            delay = max(deadline - self.clock(), 0) / 1000.0
            self._wake = self.reactor.callLater(delay, self._step, Wake())

    # -- snapshots ------------------------------------------------------------------------

    def _maybe_snapshot(self) -> None:
        commits = self.core.stats.commits
        new, self._commits_seen = commits - self._commits_seen, commits
        if new and self.snapshots.counted(new):
            self.disk.submit([Roll()], [])  # the logs after the snapshot start a new file
            self.snapshots.take()

    def purge(self) -> None:
        threads.deferToThreadPool(self.reactor, self.disk.snap_pool, purge, self.disk.snap_dir,
                                  self.disk.log_dir, self.cfg.autopurge_snap_retain_count,
                                  self.disk.fs)
