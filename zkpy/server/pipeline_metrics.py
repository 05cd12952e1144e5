"""What the prep and proposal stages of the write pipeline record, in ZooKeeper's names.

ZooKeeper's request processors (prep, proposal, commit, final) each keep
figures about their queues and times. zkpy runs the same stages in one
thread, a turn at a time: a write is prepared as it arrives (its prep time is
timed there, on the host's clock, by ``ServerCore.submit``), proposed at the
end of its turn with the others of that turn, and applied when Zab commits
it. ``proposed`` records, per turn, what the proposal stage did. No clock is
read here: the caller hands in what it measured.

What zkpy has no counterpart for is not recorded: there is no queue in front
of prep (a write is prepared in the call that read it), so
``prep_processor_queue_size`` stays empty. ZooKeeper passes every request,
reads too, through prep and times handing each one on to the next processor
(``proposal_process_time``); zkpy's reads skip prep, so these figures count
writes only (standalone and leader alike), and proposal_count only when
leading an ensemble, as ZooKeeper's Leader counts its proposals.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from zkpy.server.metrics import ServerMetrics

if TYPE_CHECKING:
    from zkpy.server.prep import Request


def proposed(metrics: ServerMetrics, reqs: Sequence[Request], now: int, leading: bool,
             took_ms: int) -> None:
    """A turn's prepared writes were handed on to Zab together (what follows
    PrepRequestProcessor), which took ``took_ms`` (host clock): each waited
    ``now - created`` (turn clock) between arriving and being prepared, and was
    being handed on for the whole of that batch's hand-over."""
    n = len(reqs)
    s = metrics.summary
    # Most were read in this turn (0 ms); those that waited for their session did not.
    waited = [now - req.created for req in reqs if req.created != now]
    queue_time = s["prep_processor_queue_time_ms"]
    queue_time.add_repeated(0, n - len(waited))
    queue_time.extend(waited)
    metrics.prep_processor_request_queued += n
    s["proposal_process_time"].add_repeated(took_ms, n)
    if leading:
        metrics.proposal_count += n
