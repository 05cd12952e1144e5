"""A quorum member on Twisted: carries out what ``zkpy.server.replica`` / ``zkpy.zab`` ask.

``EnsembleServer`` adds to the standalone ``ZkServer`` (client ports, session
ticker) the election and quorum ports, a Zab tick every tickTime, timers for
the election, and ``QuorumDisk``: one writer thread that carries out the
persist ops in order (txn appends, epoch files, TRUNC, SNAP), syncs once per
batch (group commit), and only then releases the messages that promise
durability (``send_after_persist``: ACKs, ACKEPOCH, LEADERINFO, the leader's
own ACKs). A fuzzy snapshot is taken every ``snapCount/2 + rand(snapCount/2)``
commits, as standalone does.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from twisted.internet import task, threads
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from zkpy.config import ServerConfig
from zkpy.net.clientport import ZkServer
from zkpy.net.peerlinks import ElectionLinks, QuorumLinks, resolve
from zkpy.net.persist import FuzzySnapshots
from zkpy.server.core import CoreSettings
from zkpy.server.replica import Replica
from zkpy.storage import dynconfig
from zkpy.storage.purge import purge
from zkpy.storage.txnlog import LogWriter
from zkpy.storage.zabdisk import (
    ACCEPTED_EPOCH,
    CURRENT_EPOCH,
    QuorumState,
    install_snapshot,
    truncate_log,
    write_epoch,
)
from zkpy.tree.datatree import CONFIG_NODE
from zkpy.zab import messages as m
from zkpy.zab.events import (
    LOOKING,
    Append,
    ConnectionLost,
    DiskState,
    InstallSnapshot,
    Message,
    Persisted,
    PersistOp,
    Ready,
    SaveEpoch,
    Start,
    Tick,
    Truncate,
    Vote,
    Wake,
)
from zkpy.zab.membership import QuorumConfig, parse_config_text
from zkpy.zab.peer import Peer

log = logging.getLogger("zkpy.quorum")


@dataclass(frozen=True)
class _Roll:
    """Start a new log file (before a snapshot, so the logs after it are separate)."""


class QuorumDisk:
    """Persist ops in order on one thread; a batch's durable sends after its sync."""

    def __init__(self, reactor: Any, snap_dir: str, log_dir: str, last_zxid: int, *,
                 prealloc_bytes: int, force_sync: bool) -> None:
        self.reactor = reactor
        self.snap_dir = snap_dir
        self.log_dir = log_dir
        self.force_sync = force_sync
        self.writer = LogWriter(log_dir, prealloc_bytes, force_sync)
        self.last_zxid = last_zxid
        self._ops: list[PersistOp | _Roll] = []
        self._after: list[tuple[int, m.QuorumPacket, Any]] = []
        self._busy = False
        self.on_synced: Any = None  # (after sends, last zxid) -> None
        self.pool = ThreadPool(minthreads=1, maxthreads=1, name="zkpy-txnlog")
        self.pool.start()
        self.snap_pool = ThreadPool(minthreads=0, maxthreads=1, name="zkpy-snapshot")
        self.snap_pool.start()
        self.batches = 0

    def submit(self, ops: list[Any], after: list[tuple[int, m.QuorumPacket, Any]]) -> None:
        self._ops.extend(ops)
        self._after.extend(after)
        if not self._busy:
            self._kick()

    def _kick(self) -> None:
        self._busy = True
        if not self.force_sync:
            # Without fsync a write only copies into the page cache: cheaper than
            # the two thread hops, which a write pays in series on the leader and
            # on a follower. Done at the end of this reactor turn, so everything
            # submitted in the turn shares one batch.
            self.reactor.callLater(0, self._write_here)
            return
        ops, self._ops = self._ops, []
        after, self._after = self._after, []
        d = threads.deferToThreadPool(self.reactor, self.pool, self._write, ops)
        d.addCallbacks(self._written, self._failed, callbackArgs=(after,))

    def _write_here(self) -> None:
        ops, self._ops = self._ops, []
        after, self._after = self._after, []
        try:
            last = self._write(ops)
        except Exception:
            self._failed(Failure())
            return
        self._written(last, after)

    def _write(self, ops: list[Any]) -> int:
        appends: list[tuple[int, bytes]] = []
        writer = self.writer
        last = self.last_zxid
        for op in ops:
            if isinstance(op, Append):
                appends.append((op.zxid, op.txn))
                last = op.zxid
                continue
            if appends:
                writer.append_many(appends)
                appends = []
            if isinstance(op, SaveEpoch):
                writer.sync()
                if op.accepted is not None:
                    write_epoch(self.snap_dir, ACCEPTED_EPOCH, op.accepted, self.force_sync)
                if op.current is not None:
                    write_epoch(self.snap_dir, CURRENT_EPOCH, op.current, self.force_sync)
            elif isinstance(op, Truncate):
                writer.roll()
                dropped = truncate_log(self.log_dir, op.zxid, self.force_sync)
                log.info("Truncated the log to 0x%x (%d transactions dropped)", op.zxid, dropped)
                last = op.zxid
            elif isinstance(op, InstallSnapshot):
                writer.roll()
                path = install_snapshot(self.snap_dir, op.zxid, op.data, self.force_sync)
                log.info("Stored the leader's snapshot as %s", os.path.basename(path))
                last = op.zxid
            elif isinstance(op, _Roll):
                writer.roll()
        if appends:
            writer.append_many(appends)
        writer.sync()
        self.last_zxid = last
        return last

    def _written(self, last: int, after: list[tuple[int, m.QuorumPacket, Any]]) -> None:
        self._busy = False
        self.batches += 1
        if self.on_synced is not None:
            self.on_synced(after, last)
        if self._ops or self._after:
            self._kick()

    def _failed(self, failure: Any) -> None:
        log.critical("Cannot write to %s: %s; stopping the server (a member that cannot "
                     "persist cannot acknowledge anything)", self.log_dir,
                     failure.getErrorMessage())
        self.reactor.stop()

    def close(self) -> None:
        self.pool.stop()
        self.snap_pool.stop()
        self.writer.close()


class EnsembleServer(ZkServer):
    def __init__(self, reactor: Any, settings: CoreSettings, cfg: ServerConfig,
                 state: QuorumState, snap_dir: str, log_dir: str) -> None:
        super().__init__(reactor, settings)
        assert cfg.my_id is not None
        self.cfg = cfg
        self.my_id = cfg.my_id
        self._hosts: dict[str, str] = {}
        # The membership the dynamic config file already holds (none written yet).
        self._saved_version = dynconfig.version_of(cfg.dynamic_config_file)
        self.core.restore(state.tree, state.sessions, self.clock())
        self.static_path = os.path.abspath(cfg.source) if os.path.isfile(cfg.source) else None
        config = self._starting_config(cfg, state)
        disk_state = DiskState(state.accepted_epoch, state.current_epoch, state.snapshot_zxid,
                               state.log)
        # Votes are re-sent every 400 ms while looking: FastLeaderElection
        # re-sends after 200 ms of silence (doubling), so one lost notification
        # costs a fraction of a second, not a whole resend interval.
        self.peer = Peer(self.my_id, config.voters, disk_state, sync_limit=cfg.sync_limit,
                         init_limit=cfg.init_limit, resend_interval=400, config=config)
        self.peer.reconfig_enabled = cfg.reconfig_enabled
        last = state.log[-1][0] if state.log else state.snapshot_zxid
        self.disk = QuorumDisk(reactor, snap_dir, log_dir, last,
                               prealloc_bytes=cfg.pre_alloc_size * 1024,
                               force_sync=cfg.force_sync)
        self.disk.on_synced = self._synced
        self.replica = Replica(self.core, self.peer, self._carry_out)
        self.core.set_config(config.text(), config.version)
        self.election = ElectionLinks(reactor, self.my_id, {}, self._on_vote)
        self.links = QuorumLinks(reactor, self.my_id, {}, self._on_packet, self._on_lost,
                                 connect_window=cfg.init_limit * cfg.tick_time / 1000.0)
        self._use_config(config)
        self.snapshots = FuzzySnapshots(reactor, self.core, snap_dir, cfg.snap_count,
                                        cfg.force_sync, self.disk.snap_pool)
        self._commits_seen = 0
        self._zab_ticker: task.LoopingCall | None = None
        self._wake: Any = None
        reactor.addSystemEventTrigger("during", "shutdown", self.close)

    # -- the membership ------------------------------------------------------------------

    def _starting_config(self, cfg: ServerConfig, state: QuorumState) -> QuorumConfig:
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

    def use_quorum_auth(self, auth: Any, tls: Any = None) -> None:
        """Quorum SASL (``zkpy.auth.quorum_sasl``) on both ports, we authenticate
        to voters when we connect to their election port; quorum TLS
        (``zkpy.net.quorumtls``) when ``tls`` is given."""
        self.election.auth = self.links.auth = auth
        self.election.wants_auth = lambda sid: sid in self.peer.voters
        self.election.tls = self.links.tls = tls

    # -- start and stop ------------------------------------------------------------------

    def start_quorum(self) -> None:
        self.links.listen()
        self.election.listen()
        ticker = task.LoopingCall(self._step, Tick())
        ticker.clock = self.reactor
        ticker.start(self.cfg.tick_time / 1000.0, now=False)
        self._zab_ticker = ticker
        self._step(Start())

    def close(self) -> None:
        if self._zab_ticker is not None and self._zab_ticker.running:
            self._zab_ticker.stop()
        self.links.close()
        self.election.close()
        self.disk.close()

    # -- events in ------------------------------------------------------------------------

    def _step(self, event: Any) -> None:
        self.replica.step(event, self.clock())
        self._maybe_snapshot()

    def _on_vote(self, sid: int, notification: Any, config: bytes = b"") -> None:
        log.debug("Vote from %d: %s", sid, notification)
        self._step(Vote(sid, notification, config))

    def _on_packet(self, sid: int, pkt: m.QuorumPacket) -> None:
        self._step(Message(sid, pkt))

    def _on_lost(self, sid: int) -> None:
        self._step(ConnectionLost(sid))

    def _synced(self, after: list[tuple[int, m.QuorumPacket, Any]], last: int) -> None:
        for dest, pkt, token in after:
            if dest == self.my_id:
                self.replica.step(Message(dest, pkt), self.clock())
            else:
                self.links.send(dest, pkt, token)
        self._step(Persisted(last))

    # -- a Ready, carried out --------------------------------------------------------------

    def _carry_out(self, ready: Ready) -> None:
        for config in ready.config:
            self._use_config(config)
        links = self.links
        for sid in ready.disconnect:
            links.disconnect(sid)
        if ready.persist or ready.send_after_persist:
            after = [(dest, pkt, None if dest == self.my_id else links.token(dest))
                     for dest, pkt in ready.send_after_persist]
            self.disk.submit(list(ready.persist), after)
        for dest, pkt in ready.send:
            if dest == self.my_id:
                self.reactor.callLater(0, self._step, Message(dest, pkt))
            else:
                links.send(dest, pkt)
        for dest, notification in ready.votes:
            log.debug("Vote to %d: %s", dest, notification)
            self.election.send(dest, notification)
        self._arm_election_timer()

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
            self.disk.submit([_Roll()], [])  # the logs after the snapshot start a new file
            self.snapshots.take()

    def purge(self) -> None:
        threads.deferToThreadPool(self.reactor, self.disk.snap_pool, purge, self.disk.snap_dir,
                                  self.disk.log_dir, self.cfg.autopurge_snap_retain_count)
