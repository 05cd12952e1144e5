"""What each stage of the write pipeline records in ZooKeeper's metric names.

ZooKeeper's request processors (prep, proposal, commit, final) each keep
figures about their queues and times. zkpy runs the same stages in one
thread, a turn at a time: a write is prepared as it arrives, proposed at the
end of its turn with the others of that turn, and applied when Zab commits
it. The functions here record, per turn or per commit batch, what those
stages did, in the names operators know. Times are whole milliseconds of the
``now`` the adapter gives the core, so a stage that ends in the turn it
started took 0 ms, which is what ZooKeeper's millisecond clock reads for a
stage that fast too. No clock is read here.

Standalone, ZooKeeper has no proposal or commit processor (prep, sync,
final), so the leader-only figures (proposal_count, commit processor queues)
are recorded only when leading an ensemble.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zkpy.server.metrics import ServerMetrics


def proposed(metrics: ServerMetrics, reqs: Sequence[Any], now: int, leading: bool) -> None:
    """A turn's prepared writes go to Zab (PrepRequestProcessor and
    ProposalRequestProcessor): each waited ``now - created`` before prep took it;
    prep and proposal ran within the turn."""
    n = len(reqs)
    s = metrics.summary
    # Most were read in this turn (0 ms); those that waited for their session did not.
    waited = [now - req.created for req in reqs if req.created != now]
    queue_time = s["prep_processor_queue_time_ms"]
    queue_time.add_repeated(0, n - len(waited))
    queue_time.extend(waited)
    # zkpy prepares a write as it is read: nothing waits in a prep queue.
    s["prep_processor_queue_size"].add_repeated(0, n)
    s["prep_process_time"].add_repeated(0, n)
    s["proposal_process_time"].add_repeated(0, n)
    metrics.prep_processor_request_queued += n
    if leading:
        metrics.proposal_count += n
