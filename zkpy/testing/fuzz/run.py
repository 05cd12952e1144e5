"""The seeded fuzz loop and the registry of targets.

``TARGETS`` names every in-memory target (``name -> Target``): how to build
it, its seed inputs, and how to make one structure-aware input from a
``Mutator`` (by default: a seed, mutated). ``fuzz(name, seed, count)`` runs
``count`` inputs drawn from ``random.Random(seed)`` through a fresh target,
in order, so a failure replays from its seed; it raises ``FuzzFailure``
naming the seed, the input's index and its bytes (also written to
``$ZKPY_FUZZ_ARTIFACTS`` when that is set). The same targets take atheris'
inputs (``zkpy.testing.fuzz.atheris_main``).
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from zkpy.testing.fuzz.mutate import Mutator


@dataclass(frozen=True)
class Target:
    make: Callable[[], Any]  # an object with run(data) (and close(), if it keeps files)
    seeds: Callable[[], list[bytes]]
    generate: Callable[[Mutator], bytes] | None = None

    def input(self, mut: Mutator, seeds: list[bytes]) -> bytes:
        if self.generate is not None and mut.rng.random() < 0.8:
            return self.generate(mut)
        return mut.mutate(mut.rng.choice(seeds))


class FuzzFailure(AssertionError):
    def __init__(self, target: str, seed: int, index: int, data: bytes, error: BaseException):
        super().__init__(f"fuzz target {target!r}, seed {seed}, input #{index} "
                         f"({len(data)} bytes: {data[:64]!r}...): {type(error).__name__}: "
                         f"{error}\nreplay: python -m zkpy.testing.fuzz pure {target} "
                         f"--seed {seed} --count {index + 1}")
        self.target, self.seed, self.index, self.data = target, seed, index, data


@dataclass
class Stats:
    target: str
    seed: int
    inputs: int
    seconds: float


@contextmanager
def quiet() -> Iterator[None]:
    """Hostile input makes servers log a warning per input: keep them out of the way."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def fuzz(name: str, target: Target, seed: int, count: int, *,
         seconds: float | None = None) -> Stats:
    """Run ``count`` inputs (or as many as fit in ``seconds``) of ``target``, called ``name``."""
    rng = random.Random(f"{name}:{seed}")
    with quiet():
        seeds = target.seeds()
    mut = Mutator(rng, seeds)
    subject = target.make()
    start = time.monotonic()
    done = 0
    try:
        with quiet():
            for done in range(count):
                if seconds is not None and time.monotonic() - start > seconds:
                    break
                data = target.input(mut, seeds)
                try:
                    with _hang_guard():
                        subject.run(data)
                except Exception as e:  # any exception is a finding
                    _keep(name, seed, done, data)
                    raise FuzzFailure(name, seed, done, data, e) from e
            else:
                done = count
    finally:
        close = getattr(subject, "close", None)
        if close is not None:
            close()
    return Stats(name, seed, done, time.monotonic() - start)


class Hang(Exception):
    """One input ran for ``HANG_SECONDS``: the server would have hung on it."""


HANG_SECONDS = int(os.environ.get("ZKPY_FUZZ_HANG_SECONDS", "60"))


@contextmanager
def _hang_guard() -> Iterator[None]:
    """A catastrophe net, not a timing test: an input still running after
    ``HANG_SECONDS`` (a loop that never ends) is a finding, not a stuck run."""
    if threading.current_thread() is not threading.main_thread() or HANG_SECONDS <= 0:
        yield
        return

    def expired(signum: int, frame: Any) -> None:
        raise Hang(f"one input ran for {HANG_SECONDS}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _keep(name: str, seed: int, index: int, data: bytes) -> None:
    where = os.environ.get("ZKPY_FUZZ_ARTIFACTS")
    if where:
        os.makedirs(where, exist_ok=True)
        with open(os.path.join(where, f"{name}-{seed}-{index}.bin"), "wb") as f:
            f.write(data)
