"""The register linearizability checker (zkpy.testing.linearizability) on
histories whose answer is known: textbook cases, a stale read, writes whose
outcome is unknown, and random histories against a brute-force search."""

from __future__ import annotations

import itertools
import random

import pytest

from zkpy.testing.linearizability import READ, WRITE, Op, check, check_register


def w(value: object, start: int, end: int | None, client: int = 0, key: str = "k") -> Op:
    return Op(client, WRITE, key, value, start, end)


def r(value: object, start: int, end: int, client: int = 1, key: str = "k") -> Op:
    return Op(client, READ, key, value, start, end)


def test_sequential_history() -> None:
    assert check_register([w(1, 0, 1), r(1, 2, 3), w(2, 4, 5), r(2, 6, 7)], 0).ok
    assert check_register([r(0, 0, 1)], 0).ok


def test_a_stale_read_is_caught() -> None:
    # The write of 2 was answered before the read began: reading 1 is stale.
    history = [w(1, 0, 1), w(2, 2, 3), r(1, 4, 5)]
    result = check_register(history, 0)
    assert not result.ok
    assert history[2] in result.stuck
    assert "not linearizable" in check(history, {"k": 0}).explain()


def test_concurrent_operations_may_go_either_way() -> None:
    # A read overlapping a write may see either value...
    assert check_register([w(1, 0, 10), r(0, 1, 2)], 0).ok
    assert check_register([w(1, 0, 10), r(1, 1, 2)], 0).ok
    # ...but two sequential reads during it cannot go back in time.
    assert not check_register([w(1, 0, 10), r(1, 1, 2), r(0, 3, 4)], 0).ok


def test_a_write_without_an_answer_may_or_may_not_have_happened() -> None:
    assert check_register([w(1, 0, None), r(0, 5, 6)], 0).ok
    assert check_register([w(1, 0, None), r(1, 5, 6)], 0).ok
    assert check_register([w(1, 0, None), r(1, 5, 6), r(1, 7, 8)], 0).ok
    # Once seen, it happened: no going back.
    assert not check_register([w(1, 0, None), r(1, 5, 6), r(0, 7, 8)], 0).ok
    # It cannot take effect before it was invoked.
    assert not check_register([r(1, 0, 1), w(1, 2, None)], 0).ok


def test_keys_are_checked_separately() -> None:
    history = [w(1, 0, 1, key="a"), w(2, 0, 1, key="b"), r(1, 2, 3, key="a"),
               r(2, 2, 3, key="b")]
    assert check(history, {"a": 0, "b": 0}).ok
    bad = history + [r(0, 4, 5, key="b")]
    result = check(bad, {"a": 0, "b": 0})
    assert not result.ok and result.key == "b"


def _brute_force(ops: list[Op], initial: int) -> bool:
    """Every order of the operations (those without an answer optional)."""
    answered = [op for op in ops if op.end is not None]
    unknown = [op for op in ops if op.end is None]
    for k in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, k):
            for order in itertools.permutations(answered + list(chosen)):
                if _legal(order, initial):
                    return True
    return False


def _legal(order: tuple[Op, ...], initial: int) -> bool:
    for i, a in enumerate(order):
        for b in order[:i]:
            if a.end is not None and a.end < b.start:
                return False  # a ended before b began, yet b comes first
    state = initial
    for op in order:
        if op.kind == WRITE:
            state = op.value  # type: ignore[assignment]
        elif op.value != state:
            return False
    return True


@pytest.mark.parametrize("seed", range(300))
def test_random_histories_agree_with_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    ops = []
    for i in range(rng.randint(1, 6)):
        start = rng.randint(0, 20)
        end = start + rng.randint(0, 8)
        if rng.random() < 0.5:
            ops.append(w(i + 1, start, None if rng.random() < 0.2 else end, client=i))
        else:
            ops.append(r(rng.randint(0, 3), start, end, client=i))
    assert check_register(ops, 0).ok == _brute_force(ops, 0), ops
