"""ServerMetrics: ZooKeeper 3.8's counters and summaries, recorded by zkpy's own pipeline.

ZooKeeper's ``ServerMetrics`` holds counters (``SimpleCounter``), summaries
(``AvgMinMaxCounter``: avg/min/max/cnt/sum; ``AvgMinMaxPercentileCounter``:
the same plus p50/p95/p99/p999) and summary sets (one summary per key, e.g.
per top-level namespace or per learner). This module keeps the same names
with the same meanings; ``zkpy.admin.monitor`` prints them as ``mntr`` does
and ``zkpy.net.metrics`` exports them to Prometheus.

Cheap on the hot path: observing a value is one ``list.append`` (``Summary.add``
is the bound ``append`` of a pending list). Pending values are folded into
count/sum/min/max and a window of the latest ``WINDOW`` observations with
builtins (``sum``, ``min``, ``max``, ``deque.extend``) when someone reads the
numbers, or when ``fold_all`` runs on the server's tick, so memory stays bounded.

Percentiles come from that window (the last ``WINDOW`` observations, sorted,
interpolated as metrics-core's ``UniformSnapshot`` and rounded as ZooKeeper's
``Math.round``). ZooKeeper samples a uniform reservoir of 4096 since the last
reset, with randomness; a window of the latest values is the deterministic
choice (the pure core reads no randomness) and shows the recent behaviour an
operator looks for. Prometheus quantiles come from the same window.

Values are what the pipeline hands in, in whole milliseconds: waits between
turns from the ``now`` the adapter gives the core; the core's own stages
(routing, prep, proposal, commit, final processing), which end in the turn
they began, timed on the host's monotonic clock (``Host.monotonic_ns``); and
durations the adapter measured itself (fsync, disk batches, snapshot and load
times). Nothing here reads a clock. A stage zkpy does not have (a queue in
front of prep, a worker pool) gets no observations: its summary stays empty.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable
from decimal import ROUND_HALF_UP, Decimal
from itertools import repeat
from typing import Final

#: How many of the latest observations each summary keeps for its percentiles.
WINDOW = 4096

#: Stage times are read in nanoseconds on the host's clock and kept in whole
#: milliseconds, truncated (as TimeUnit.NANOSECONDS.toMillis).
NS_PER_MS: Final = 1_000_000

#: ZooKeeper's summaries in ``ServerMetrics``: name -> ADVANCED (with percentiles).
SUMMARIES: dict[str, bool] = {
    **dict.fromkeys((
        "fsynctime snapshottime dbinittime follower_sync_time observer_sync_time election_time "
        "connection_token_deficit inflight_snap_count inflight_diff_count "
        "node_created_watch_count node_deleted_watch_count node_changed_watch_count "
        "node_children_watch_count prep_processor_queue_size prep_process_time "
        "proposal_process_time unavailable_time leader_unavailable_time "
        "requests_in_session_queue pending_session_queue_size "
        "reads_after_write_in_session_queue reads_issued_from_session_queue "
        "session_queues_drained time_waiting_empty_pool_in_commit_processor_read_ms "
        "write_batch_time_in_commit_processor concurrent_request_processing_in_commit_processor "
        "read_commit_proc_req_queued write_commit_proc_req_queued commit_commit_proc_req_queued "
        "read_commit_proc_issued write_commit_proc_issued commit_process_time "
        "startup_txns_loaded startup_txns_load_time startup_snap_load_time "
        "sync_processor_queue_size sync_process_time sync_processor_batch_size "
        "netty_queued_buffer_capacity learner_request_processor_queue_size socket_closing_time"
    ).split(), False),
    **dict.fromkeys((
        "readlatency updatelatency propagation_latency dead_watchers_cleaner_latency "
        "prep_processor_queue_time_ms close_session_prep_time read_commitproc_time_ms "
        "write_commitproc_time_ms local_write_committed_time_ms server_write_committed_time_ms "
        "om_proposal_process_time_ms om_commit_process_time_ms read_final_proc_time_ms "
        "write_final_proc_time_ms proposal_latency proposal_ack_creation_latency "
        "commit_propagation_latency sync_processor_queue_and_flush_time_ms "
        "sync_processor_queue_time_ms sync_processor_queue_flush_time_ms quorum_ack_latency "
        "jvm_pause_time_ms request_throttle_queue_time_ms"
    ).split(), True),
}

#: ZooKeeper's summary sets: name -> ADVANCED.
SUMMARY_SETS: dict[str, bool] = {
    "write_per_namespace": False, "read_per_namespace": False,
    "learner_handler_qp_size": False, "learner_handler_qp_time_ms": True, "ack_latency": True,
}

#: ZooKeeper's counters (``ServerMetrics``), all reset by ``srst``.
COUNTERS = tuple("""
    looking_count diff_count snap_count commit_count connection_request_count
    connection_rejected bytes_received_count unrecoverable_error_count
    add_dead_watcher_stall_time dead_watchers_queued dead_watchers_cleared
    response_packet_cache_hits response_packet_cache_misses
    response_packet_get_children_cache_hits response_packet_get_children_cache_misses
    ensemble_auth_success ensemble_auth_fail ensemble_auth_skip prep_processor_request_queued
    outstanding_changes_queued outstanding_changes_removed revalidate_count
    connection_drop_count connection_revalidate_count sessionless_connections_expired
    stale_sessions_expired request_commit_queued throttled_ops learner_proposal_received_count
    learner_commit_received_count sync_processor_request_queued proposal_count
    quit_leading_due_to_disloyal_voter stale_requests stale_requests_dropped stale_replies
    request_throttle_wait_count large_requests_rejected digest_mismatches_count
    unsuccessful_handshake insecure_admin_count tls_handshake_exceeded
    cnxn_closed_without_zk_server_running skip_learner_request_to_next_processor_count
    requests_not_forwarded_to_commit_processor response_bytes watch_bytes
""".split())

_PERCENTILES = (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("p999", 0.999))


def _quantile(ordered: list[int], q: float) -> float:
    """metrics-core's UniformSnapshot.getValue over sorted values."""
    n = len(ordered)
    if not n:
        return 0.0
    pos = q * (n + 1)
    index = int(pos)
    if index < 1:
        return float(ordered[0])
    if index >= n:
        return float(ordered[-1])
    lower, upper = ordered[index - 1], ordered[index]
    return lower + (pos - math.floor(pos)) * (upper - lower)


def avg4(total: float, count: int) -> float:
    """An average rounded half up to 4 decimals, as ``AvgMinMaxCounter.getAvg``
    (``new BigDecimal(double).setScale(4, HALF_UP)``: the double's exact value)."""
    if not count:
        return 0.0
    exact = Decimal(total / count)
    return float(exact.quantize(Decimal("0.0001"), rounding=ROUND_HALF_UP))


def java_round(x: float) -> int:
    """``Math.round``: half up."""
    return math.floor(x + 0.5)


def span(values: list[int]) -> tuple[int, int, int]:
    """The min, max and sum of ``values`` (at least one), in one pass: compiled,
    in native ints. (Three passes of min, max and sum were half of a busy
    member's one-second tick, folding every summary.)"""
    lo = hi = values[0]
    total = 0
    for value in values:
        total += value
        if value < lo:
            lo = value
        elif value > hi:
            hi = value
    return lo, hi, total


class Summary:
    """One ``AvgMinMaxCounter`` (``percentiles``: an ``AvgMinMaxPercentileCounter``)."""

    __slots__ = ("name", "percentiles", "add", "extend", "_pending", "_runs", "count",
                 "total", "min", "max", "window", "last")

    def __init__(self, name: str, percentiles: bool = False, window: int = WINDOW) -> None:
        self.name = name
        self.percentiles = percentiles
        self._pending: list[int] = []
        self._runs: list[tuple[int, int]] = []  # (value, how many times), in bulk
        #: Observe one value (the hot path: a bound ``list.append``).
        self.add = self._pending.append
        #: Observe several values at once.
        self.extend = self._pending.extend
        #: The latest observations (for percentiles); none kept with ``window=0``.
        self.window: deque[int] = deque(maxlen=window)
        self.count = self.total = 0
        self.min = self.max = 0
        self.last = 0

    def add_repeated(self, value: int, times: int) -> None:
        """Observe ``value`` ``times`` times (cheap whatever ``times`` is)."""
        if times > 0:
            self._runs.append((value, times))

    def reset(self) -> None:
        self._pending.clear()
        self._runs.clear()
        self.window.clear()
        self.count = self.total = 0
        self.min = self.max = 0
        self.last = 0

    def fold(self) -> None:
        """Take the pending observations into the totals and the window (those
        added one by one first, then the runs)."""
        pending = self._pending
        if pending:
            self._observe(pending, *span(pending))
            pending.clear()
        if self._runs:
            for value, times in self._runs:
                self._take(value, value, times, value * times, value)
                if self.window.maxlen:
                    self.window.extend(repeat(value, min(times, WINDOW)))
            self._runs.clear()

    def take(self, values: list[int]) -> tuple[int, int, int]:
        """Observe ``values`` at once (after any pending ones); returns their
        (min, max, sum) for whoever else counts the same values."""
        self.fold()
        lo, hi, total = span(values)
        self._observe(values, lo, hi, total)
        return lo, hi, total

    def take_totals(self, count: int, total: int, lo: int, hi: int, recent: list[int]
                    ) -> None:
        """Observe ``count`` values of sum ``total``, least ``lo`` and greatest
        ``hi``, of which ``recent`` are the latest, in order (at least one):
        they go to the window, and the last of them is ``last``."""
        self.fold()
        self._take(lo, hi, count, total, recent[-1])
        if self.window.maxlen:
            self.window.extend(recent[-WINDOW:])

    def take_known(self, values: list[int], lo: int, hi: int, total: int) -> None:
        """``take`` for values whose min, max and sum are already known."""
        self.fold()
        self._observe(values, lo, hi, total)

    def _observe(self, values: list[int], lo: int, hi: int, total: int) -> None:
        """``values`` (at least one), whose min, max and sum are known, taken in."""
        self._take(lo, hi, len(values), total, values[-1])
        if self.window.maxlen:
            self.window.extend(values[-WINDOW:])

    def _take(self, lo: int, hi: int, n: int, total: int, last: int) -> None:
        if not self.count or lo < self.min:
            self.min = lo
        if not self.count or hi > self.max:
            self.max = hi
        self.count += n
        self.total += total
        self.last = last

    def avg(self) -> float:
        return avg4(self.total, self.count)

    def quantiles(self, qs: Iterable[float]) -> list[float]:
        """The window's quantiles (NaN for an empty window, as Prometheus' CKMS)."""
        self.fold()
        ordered = sorted(self.window)
        if not ordered:
            return [math.nan for _ in qs]
        return [_quantile(ordered, q) for q in qs]

    def values(self, prefix: str = "") -> list[tuple[str, int | float]]:
        """mntr's keys and values for this summary, in ZooKeeper's order."""
        self.fold()
        name = prefix + self.name
        out: list[tuple[str, int | float]] = [
            (f"avg_{name}", self.avg()), (f"min_{name}", self.min), (f"max_{name}", self.max),
            (f"cnt_{name}", self.count), (f"sum_{name}", self.total)]
        if self.percentiles:
            ordered = sorted(self.window)
            out += [(f"{label}_{name}", java_round(_quantile(ordered, q)))
                    for label, q in _PERCENTILES]
        return out


class SummarySet:
    """``AvgMinMaxCounterSet`` (or its percentile form): one summary per key."""

    __slots__ = ("name", "percentiles", "by_key")

    def __init__(self, name: str, percentiles: bool = False) -> None:
        self.name = name
        self.percentiles = percentiles
        self.by_key: dict[str, Summary] = {}

    def get(self, key: str) -> Summary:
        summary = self.by_key.get(key)
        if summary is None:
            summary = self.by_key[key] = Summary(f"{key}_{self.name}", self.percentiles)
        return summary

    def add(self, key: str, value: int) -> None:
        self.get(key).add(value)

    def fold(self) -> None:
        for summary in self.by_key.values():
            summary.fold()

    def reset(self) -> None:
        """As ZooKeeper: every key's summary is zeroed, the keys stay."""
        for summary in self.by_key.values():
            summary.reset()


#: DataTree.STAT_OVERHEAD_BYTES: what a read's Stat adds to its bytes.
STAT_OVERHEAD_BYTES = 6 * 8 + 5 * 4


def top_namespace(path: str) -> str:
    """PathUtils.getTopNamespace ("" for "/" and "", which have none)."""
    return path.partition("/")[2].partition("/")[0]


#: How many paths' namespaces a NamespaceSet remembers (then it starts afresh).
NAMESPACE_CACHE = 1 << 16


class _Tally:
    """One namespace's share of a NamespaceSet's fold."""

    __slots__ = ("count", "total", "lo", "hi", "wanted", "latest")

    def __init__(self, value: int) -> None:
        self.count = 1
        self.total = self.lo = self.hi = value
        self.wanted = 0  # how many of its latest values its window takes
        self.latest: list[int] = []  # those, newest first


class NamespaceSet(SummarySet):
    """``read_per_namespace``/``write_per_namespace``: bytes per top-level znode.

    The hot path notes ``(path, bytes)`` (``note``, a bound ``append``); the
    namespace (``PathUtils.getTopNamespace``) is worked out when folding, with
    builtins over the whole batch. ``overhead`` is added to each (a read's
    Stat; a write adds the path only). ``note_cached``, for getData and
    getChildren2 reads, also counts what ZooKeeper's response cache would
    have looked up (``cache_lookups``).
    """

    __slots__ = ("note", "note_cached", "_pending", "_cached", "overhead", "cache_lookups",
                 "_namespace_of")

    def __init__(self, name: str, overhead: int) -> None:
        super().__init__(name)
        self._pending: list[tuple[str, int]] = []
        self._cached: list[tuple[str, int]] = []
        self.note = self._pending.append
        self.note_cached = self._cached.append
        self.overhead = overhead
        self.cache_lookups = 0
        self._namespace_of: dict[str, str] = {}  # path -> its top namespace

    def fold(self) -> None:
        if self._cached:
            self.cache_lookups += len(self._cached)
            self._pending += self._cached
            self._cached.clear()
        pending = self._pending
        if pending:
            # A heavy write load notes tens of thousands of (path, bytes) a
            # second: one pass tallies each namespace, and a second walks back
            # from the end only as far as each namespace's latest WINDOW
            # values, which go in order to the window its quantiles come from.
            # (Folded by six passes of builtins, each making a list, this set
            # was about half of each member's one-second tick, compiled, under
            # zkbench's heavy writes: the tick took 39-59 ms, median per
            # member; with this fold, 27-33 ms.)
            overhead = self.overhead
            known = self._namespace_of
            tallies: dict[str, _Tally] = {}
            for path, size in pending:
                ns = known.get(path)
                if ns is None:
                    if len(known) >= NAMESPACE_CACHE:
                        known.clear()
                    ns = known[path] = top_namespace(path)
                if not ns:  # "/" has no namespace
                    continue
                value = len(path) + size + overhead
                tally = tallies.get(ns)
                if tally is None:
                    tallies[ns] = _Tally(value)
                else:
                    tally.count += 1
                    tally.total += value
                    if value < tally.lo:
                        tally.lo = value
                    elif value > tally.hi:
                        tally.hi = value
            for tally in tallies.values():
                tally.wanted = min(tally.count, WINDOW)
            short = len(tallies)
            for path, size in reversed(pending):
                if not short:
                    break
                ns = known.get(path)
                if ns is None:  # (the cache started afresh during the first pass)
                    ns = top_namespace(path)
                if not ns:
                    continue
                tally = tallies[ns]
                if len(tally.latest) < tally.wanted:
                    tally.latest.append(len(path) + size + overhead)
                    if len(tally.latest) == tally.wanted:
                        short -= 1
            pending.clear()
            for ns, tally in tallies.items():
                tally.latest.reverse()
                self.get(ns).take_totals(tally.count, tally.total, tally.lo, tally.hi,
                                         tally.latest)
        super().fold()

    def reset(self) -> None:
        self._pending.clear()
        self._cached.clear()
        self.cache_lookups = 0
        super().reset()


class ServerMetrics:
    """Every counter, summary and summary set of ZooKeeper's ``ServerMetrics``.

    Counters are plain attributes (``metrics.commit_count += 1``); summaries and
    sets are reached by name (``metrics.summary["fsynctime"]``), and the ones the
    hot path uses are also attributes named as ZooKeeper names them.
    """

    def __init__(self) -> None:
        self.summary = {name: Summary(name, pct) for name, pct in SUMMARIES.items()}
        self.sets = {name: SummarySet(name, pct) for name, pct in SUMMARY_SETS.items()}
        self.write_per_namespace = self.sets["write_per_namespace"] = NamespaceSet(
            "write_per_namespace", 0)
        self.read_per_namespace = self.sets["read_per_namespace"] = NamespaceSet(
            "read_per_namespace", STAT_OVERHEAD_BYTES)
        s = self.summary
        self.readlatency = s["readlatency"]
        self.updatelatency = s["updatelatency"]
        self.propagation_latency = s["propagation_latency"]
        self.request_throttle_queue_time_ms = s["request_throttle_queue_time_ms"]
        # An ensemble member's reads pass its commit stage (CommitProcessor): each
        # read's wait there is its latency (it waits only behind its session's
        # writes), its final stage is within the turn. Copied from readlatency
        # when folding, so reads pay nothing more for it.
        self.mirror_reads = False
        self.released_reads = 0  # reads answered once the writes before them committed
        self.reads_waiting = 0  # reads waiting behind a write of their session, now
        self.reads_answered = 0  # reads through a member's commit stage (mirror_reads)
        # Requests alone in the read that brought them: they waited behind none
        # (request_throttle_queue_time_ms 0 each, taken in bulk when folding).
        self.unqueued_requests = 0
        # ServerStats' fsyncThresholdExceedCount (not reset by srst, as there).
        self.fsync_threshold_exceed_count = 0
        # Whoever notes raw facts on the hot path and derives observations from
        # them later (``QuorumFigures.fold``): called first when folding.
        self.folders: list[Callable[[], None]] = []
        self.reset_counters()

    def reset_counters(self) -> None:
        for name in COUNTERS:
            setattr(self, name, 0)

    def counter(self, name: str) -> int:
        value: int = getattr(self, name)
        return value

    def fold_all(self) -> None:
        """Fold every pending observation (bounded memory between reads)."""
        for fold in self.folders:
            fold()
        if self.mirror_reads:  # (reads observed here directly, e.g. by tests)
            self.summary["read_commitproc_time_ms"].extend(self.readlatency._pending)
        if self.unqueued_requests:
            self.request_throttle_queue_time_ms.add_repeated(0, self.unqueued_requests)
            self.unqueued_requests = 0
        for summary in self.summary.values():
            summary.fold()
        for summary_set in self.sets.values():
            summary_set.fold()
        namespaces = self.read_per_namespace
        self.response_packet_cache_misses += namespaces.cache_lookups
        namespaces.cache_lookups = 0

    def reset(self) -> None:
        """``srst``: ServerMetrics.resetAll (counters, summaries, summary sets)."""
        for fold in self.folders:  # what they noted goes with the reset
            fold()
        self.reset_counters()
        self.unqueued_requests = 0
        for summary in self.summary.values():
            summary.reset()
        for summary_set in self.sets.values():
            summary_set.reset()

    # Counters are set in reset_counters; every one is declared here (for the type
    # checker, and for mypyc, whose compiled class has only the attributes declared).
    looking_count: int
    diff_count: int
    snap_count: int
    commit_count: int
    connection_request_count: int
    connection_rejected: int
    bytes_received_count: int
    prep_processor_request_queued: int
    outstanding_changes_queued: int
    outstanding_changes_removed: int
    request_commit_queued: int
    learner_proposal_received_count: int
    learner_commit_received_count: int
    sync_processor_request_queued: int
    proposal_count: int
    response_bytes: int
    watch_bytes: int
    response_packet_cache_misses: int
    response_packet_get_children_cache_misses: int
    connection_drop_count: int
    stale_sessions_expired: int
    large_requests_rejected: int
    throttled_ops: int
    request_throttle_wait_count: int
    unsuccessful_handshake: int
    sessionless_connections_expired: int
    dead_watchers_queued: int
    dead_watchers_cleared: int
    skip_learner_request_to_next_processor_count: int
    cnxn_closed_without_zk_server_running: int
    revalidate_count: int
    connection_revalidate_count: int
    unrecoverable_error_count: int
    add_dead_watcher_stall_time: int
    response_packet_cache_hits: int
    response_packet_get_children_cache_hits: int
    ensemble_auth_success: int
    ensemble_auth_fail: int
    ensemble_auth_skip: int
    quit_leading_due_to_disloyal_voter: int
    stale_requests: int
    stale_requests_dropped: int
    stale_replies: int
    digest_mismatches_count: int
    insecure_admin_count: int
    tls_handshake_exceeded: int
    requests_not_forwarded_to_commit_processor: int
