"""One in-memory target under atheris (libFuzzer's coverage guidance for Python).

    python -m zkpy.testing.fuzz atheris TARGET [--corpus DIR] [libFuzzer options]

The corpus directory (a fresh temporary one by default) is seeded with the
target's seed inputs; libFuzzer grows it with every input that reached new
code, so a later run goes on from there. zkpy's own modules are
instrumented (``atheris.instrument_imports``); a crash leaves its input as
``crash-<sha1>`` in the current directory, and running this command with that
file as the only argument replays it. Only ``ContractViolation`` and
unexpected exceptions count as crashes: what a target allows (the format's
own error) returns normally.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile


def main(argv: list[str]) -> int:
    try:
        import atheris
    except ImportError:
        print("atheris is not installed: pip install atheris", file=sys.stderr)
        return 2
    if not argv or argv[0].startswith("-"):
        print("usage: python -m zkpy.testing.fuzz atheris TARGET [--corpus DIR] "
              "[libFuzzer options]", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    corpus = None
    if "--corpus" in rest:
        at = rest.index("--corpus")
        corpus = rest[at + 1]
        del rest[at:at + 2]
    with atheris.instrument_imports(include=["zkpy"]):
        from zkpy.testing.fuzz.registry import TARGETS
        from zkpy.testing.fuzz.run import quiet

        target = TARGETS[name]
    replaying = any(not a.startswith("-") for a in rest)
    if not replaying:
        corpus = corpus or tempfile.mkdtemp(prefix=f"zkpy-atheris-{name}-")
        _seed(corpus, target.seeds())
        rest.append(corpus)
    subject = target.make()

    def one(data: bytes) -> None:
        with quiet():
            subject.run(data)

    atheris.Setup([sys.argv[0], *rest], one)
    atheris.Fuzz()
    return 0


def _seed(corpus: str, seeds: list[bytes]) -> None:
    os.makedirs(corpus, exist_ok=True)
    for data in seeds:
        path = os.path.join(corpus, "seed-" + hashlib.sha1(data).hexdigest())
        if not os.path.exists(path):
            with open(path, "wb") as f:
                f.write(data)
