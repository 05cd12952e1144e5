"""A peer's in-memory history against a plain list model, under any mix of operations.

``History`` trims by moving a start index and compacts now and then; whatever it
does inside, every query must answer as the naive list would.
"""

from __future__ import annotations

from bisect import bisect_left

from hypothesis import given, settings
from hypothesis import strategies as st

from zkpy.zab.history import History

OPS = st.lists(st.one_of(
    st.tuples(st.just("append"), st.integers(1, 3)),
    st.tuples(st.just("trim"), st.integers(0, 6)),
    st.tuples(st.just("truncate"), st.integers(0, 4)),
    st.tuples(st.just("reset"), st.integers(1, 3)),
), max_size=80)


class Model:
    def __init__(self) -> None:
        self.base = 0
        self.entries: list[tuple[int, bytes]] = []

    @property
    def last(self) -> int:
        return self.entries[-1][0] if self.entries else self.base


def _check(h: History, model: Model) -> None:
    assert (h.base, h.last_zxid, len(h)) == (model.base, model.last, len(model.entries))
    assert h.after(0) == [e for e in model.entries if e[0] > 0]
    zxids = [z for z, _ in model.entries]
    for z in range(model.base - 1, model.last + 3):
        assert h.holds(z) == (z == model.base or z in zxids)
        assert h.txn(z) == dict(model.entries).get(z)
        i = bisect_left(zxids, z)
        assert h.before(z) == (zxids[i - 1] if i else model.base)
        assert h.after(z, z + 2) == [e for e in model.entries if z < e[0] <= z + 2]


@settings(max_examples=300, deadline=None)
@given(OPS)
def test_history_answers_as_a_list_would(ops: list[tuple[str, int]]) -> None:
    h, model = History(), Model()
    for op, n in ops:
        if op == "append":
            z = model.last + n
            h.append(z, str(z).encode())
            model.entries.append((z, str(z).encode()))
        elif op == "trim":
            applied = model.entries[len(model.entries) // 2][0] if model.entries else model.base
            h.trim(applied, n)
            upto = [e for e in model.entries if e[0] <= applied]
            if len(upto) > n:
                dropped = upto[:len(upto) - n]
                model.base = dropped[-1][0]
                model.entries = model.entries[len(dropped):]
        elif op == "truncate":
            z = model.base + n
            h.truncate(z)
            model.entries = [e for e in model.entries if e[0] <= z]
        else:
            z = model.last + n
            h.reset(z)
            model.base, model.entries = z, []
        _check(h, model)
