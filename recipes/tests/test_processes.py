"""Many client processes (plus threads in this one) on one lock."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from recipes import FairLock

ROOT = Path(__file__).resolve().parents[2]


def _spawn(kind, hosts, path, counter, rounds):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.Popen(
        [sys.executable, "-m", "recipes.tests._worker", kind, hosts, path, counter, str(rounds)],
        cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )


@pytest.mark.parametrize("kinds", [
    ("fair",) * 6,
    ("naive",) * 4,
    ("fair", "kazoo", "fair", "kazoo", "fair", "kazoo"),
    ("write",) * 4,
], ids=["fair", "naive", "fair+kazoo", "rwlock-writers"])
def test_processes_and_threads_exclude_each_other(server, make_client, path, kinds):
    rounds = 5
    counter = path + "-counter"
    admin = make_client()
    admin.create(counter, b"0", makepath=True)
    procs = [_spawn(k, server.connect_string, path, counter, rounds) for k in kinds]
    # two threads in this process join in, for fair-lock runs
    extra = 0
    threads = []
    if kinds[0] == "fair":
        def worker():
            c = make_client()
            lock = FairLock(c, path, "thread")
            for _ in range(rounds):
                with lock:
                    v = int(c.get(counter)[0])
                    c.set(counter, str(v + 1).encode())

        threads = [threading.Thread(target=worker) for _ in range(2)]
        extra = 2 * rounds
        for t in threads:
            t.start()
    for t in threads:
        t.join(60)
    outputs = []
    for p in procs:
        out, _ = p.communicate(timeout=90)
        outputs.append((p.returncode, out.decode(errors="replace")[-2000:]))
    assert all(rc == 0 for rc, _ in outputs), outputs
    assert int(admin.get(counter)[0]) == len(kinds) * rounds + extra
