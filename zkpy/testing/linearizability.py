"""A linearizability checker for histories of single-key registers.

A history is a list of ``Op``: a read or a write of one key, with the
(logical) times it was invoked and answered. ``check(history)`` says whether
some total order of the operations exists that (1) respects real time: an
operation answered before another was invoked comes first, and (2) is a legal
register history: every read returns the value of the write before it (or the
initial value). Linearizability is local (Herlihy and Wing), so the history is
checked key by key.

Operations whose outcome is unknown -- a write whose connection broke before
its answer -- have ``end=None``: they may take effect at any time after their
invocation, or never (placing such a write last, after every answered
operation, is the same as leaving it out). Failed reads are left out of the
history by the caller: they returned nothing.

The search is Wing and Gong's, with Lowe's memoization of (set of operations
linearized, register value) as Porcupine does: walk the time-ordered list of
invocations and answers; at an invocation, try to linearize that operation
now (if the register allows it and that state was not seen before); at an
answer whose operation is not linearized yet, backtrack. Exponential in the
worst case; linear on histories that are linearizable and not too
concurrent, which is what a test produces.

Pure: no I/O, no clock. ``zkpy.testing.faultrun`` records histories.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

READ = "read"
WRITE = "write"


@dataclass(frozen=True)
class Op:
    client: int
    kind: str  # READ or WRITE
    key: Hashable
    value: Hashable  # the value written, or the value read
    start: int
    end: int | None  # None: no answer (a write that may or may not have happened)


@dataclass(frozen=True)
class Result:
    ok: bool
    key: Hashable = None
    # When not linearizable: the operations of the longest prefix the search
    # could linearize, and the answered operations it could not get past.
    linearized: tuple[Op, ...] = ()
    stuck: tuple[Op, ...] = ()

    def explain(self) -> str:
        if self.ok:
            return "linearizable"
        order = ", ".join(_show(op) for op in self.linearized[-6:])
        stuck = ", ".join(_show(op) for op in self.stuck[:4])
        return (f"key {self.key!r} is not linearizable: after [{order}] nothing fits; "
                f"pending: {stuck}")


def _show(op: Op) -> str:
    end = "?" if op.end is None else op.end
    verb = "r" if op.kind == READ else "w"
    return f"c{op.client}:{verb}({op.value!r})@{op.start}-{end}"


def check(history: Iterable[Op], initial: dict[Hashable, Hashable] | None = None,
          default: Hashable = None) -> Result:
    """Linearizable if every key's sub-history is; the first key that is not, otherwise."""
    by_key: dict[Hashable, list[Op]] = defaultdict(list)
    for op in history:
        by_key[op.key].append(op)
    initial = initial or {}
    for key in sorted(by_key, key=repr):
        result = check_register(by_key[key], initial.get(key, default))
        if not result.ok:
            return Result(False, key, result.linearized, result.stuck)
    return Result(True)


_INFINITY = float("inf")


class _Entry:
    """One node of the doubly linked list of invocations and answers."""

    __slots__ = ("op", "index", "is_call", "match", "prev", "next")

    def __init__(self, op: Op | None, index: int, is_call: bool) -> None:
        self.op = op
        self.index = index
        self.is_call = is_call
        self.match: _Entry | None = None  # a call's answer
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _entries(ops: list[Op]) -> _Entry:
    """The list head (a sentinel) of every call and answer in time order; at a
    tie, calls first (operations that touch in time overlap)."""
    events: list[tuple[float, int, int]] = []
    for i, op in enumerate(ops):
        events.append((op.start, 0, i))
        events.append((_INFINITY if op.end is None else op.end, 1, i))
    events.sort()
    head = _Entry(None, -1, False)
    calls: dict[int, _Entry] = {}
    prev = head
    for _, kind, i in events:
        entry = _Entry(ops[i], i, kind == 0)
        if kind == 0:
            calls[i] = entry
        else:
            calls[i].match = entry
        prev.next, entry.prev = entry, prev
        prev = entry
    return head


def _lift(entry: _Entry) -> None:
    assert entry.prev is not None and entry.match is not None
    entry.prev.next = entry.next
    if entry.next is not None:
        entry.next.prev = entry.prev
    ret = entry.match
    assert ret.prev is not None
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(entry: _Entry) -> None:
    ret = entry.match
    assert ret is not None and ret.prev is not None and entry.prev is not None
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    entry.prev.next = entry
    if entry.next is not None:
        entry.next.prev = entry


def _step(state: Hashable, op: Op) -> tuple[bool, Hashable]:
    if op.kind == WRITE:
        return True, op.value
    return op.value == state, state


def check_register(ops: list[Op], initial: Hashable = None) -> Result:
    """Is this history of one register linearizable (from ``initial``)?"""
    if any(op.end is not None and op.end < op.start for op in ops):
        raise ValueError("an operation answered before it was invoked")
    head = _entries(ops)
    state = initial
    linearized = 0  # a bitset of operation indexes
    seen: set[tuple[int, Hashable]] = set()
    stack: list[tuple[_Entry, Hashable]] = []
    best: list[int] = []
    entry = head.next
    while head.next is not None:
        assert entry is not None
        if entry.is_call:
            assert entry.op is not None
            ok, after = _step(state, entry.op)
            if ok and (key := (linearized | 1 << entry.index, after)) not in seen:
                seen.add(key)
                stack.append((entry, state))
                state, linearized = after, key[0]
                _lift(entry)
                entry = head.next
                continue
            entry = entry.next
            continue
        # An answer whose operation is not linearized: undo the last choice.
        if len(stack) > len(best):
            best = [e.index for e, _ in stack]
        if not stack:
            return Result(False, None, tuple(ops[i] for i in best), _stuck(set(best), ops))
        top, state = stack.pop()
        linearized &= ~(1 << top.index)
        _unlift(top)
        entry = top.next
    return Result(True)


def _stuck(done: set[int], ops: list[Op]) -> tuple[Op, ...]:
    """The answered operations left over by the best attempt, in time order."""
    left = sorted((op for i, op in enumerate(ops) if i not in done and op.end is not None),
                  key=lambda op: op.start)
    return tuple(left)
