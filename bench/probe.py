"""What the benchmark reads about processes and the machine.

Contract: CPU time (user + system) and RSS of server processes, each
process with its descendants, read with psutil; the live heap of a JVM
after a full GC (``jcmd``); a description of the machine for the report
header.  Reads only; it never signals or changes a process.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]


class Probe:
    """CPU and RSS of a set of server processes (an ensemble's members),
    each counted with its child processes."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = list(pids)
        self.roots = [psutil.Process(p) for p in pids]

    def _tree(self, root: psutil.Process) -> list[psutil.Process]:
        try:
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return [root]

    def cpu_each(self) -> list[float]:
        """CPU seconds so far of each root (and its descendants)."""
        out = []
        for root in self.roots:
            total = 0.0
            for p in self._tree(root):
                try:
                    t = p.cpu_times()
                except psutil.Error:
                    continue
                total += t.user + t.system
            out.append(total)
        return out

    def cpu(self) -> float:
        return sum(self.cpu_each())

    def rss_each(self) -> list[int]:
        out = []
        for root in self.roots:
            total = 0
            for p in self._tree(root):
                try:
                    total += p.memory_info().rss
                except psutil.Error:
                    continue
            out.append(total)
        return out

    def rss(self) -> int:
        return sum(self.rss_each())


def pin(pid: int, cpus: set[int]) -> None:
    """Pin every thread of process *pid* to *cpus* (threads it starts later inherit
    the affinity of the thread that starts them)."""
    try:
        tasks = [int(t) for t in os.listdir("/proc/%d/task" % pid)]
    except OSError:
        tasks = [pid]
    for tid in tasks:
        try:
            os.sched_setaffinity(tid, cpus)
        except OSError:
            pass  # the thread is gone


def parse_cpus(spec: str) -> set[int]:
    """``1`` or ``0,2-3``: CPU numbers."""
    out: set[int] = set()
    for part in spec.split(","):
        a, _, b = part.strip().partition("-")
        out.update(range(int(a), int(b or a) + 1))
    return out


def self_cpu() -> float:
    """CPU seconds used so far by this process, all threads (nanosecond clock,
    not the 10 ms ticks of /proc)."""
    return time.process_time()


def jvm_heap_after_gc(pid: int, timeout: float = 120.0) -> int | None:
    """Bytes of Java heap in use right after a full GC (``jcmd GC.run``, then
    ``GC.heap_info``), or ``None`` when jcmd is missing or fails."""
    jcmd = shutil.which("jcmd")
    if jcmd is None:
        return None
    try:
        subprocess.run([jcmd, str(pid), "GC.run"], capture_output=True, timeout=timeout,
                       check=True)
        info = subprocess.run([jcmd, str(pid), "GC.heap_info"], capture_output=True, text=True,
                              timeout=timeout, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    # "garbage-first heap   total 1048576K, used 123456K [0x..." (G1); other GCs alike.
    m = re.search(r"heap\s+total\s+\d+K,\s+used\s+(\d+)K", info)
    return int(m.group(1)) * 1024 if m else None


def find_listening_pid(port: int) -> int | None:
    """Best effort: the pid listening on *port* (visible for our own processes)."""
    try:
        conns = psutil.net_connections(kind="tcp")
    except (psutil.Error, OSError):
        return None
    for c in conns:
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return c.pid
    return None


def git_revision(root: Path = REPO_ROOT) -> str | None:
    """Short commit of the checkout, flagged when zkpy/ has uncommitted changes."""
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "zkpy"],
                               capture_output=True, text=True, timeout=10).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return (sha + (" + uncommitted changes in zkpy/" if dirty else "")) if sha else None


def machine_info() -> dict:
    info: dict = {
        "nproc": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version() + " (" + sys.executable + ")",
        "platform": platform.platform(),
        "mem_total_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "zkpy_revision": git_revision(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        info["loadavg_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        from zkpy.testing.launchers import find_real_java

        java = find_real_java()
        if java:
            out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30)
            info["java"] = (out.stderr or out.stdout).strip().splitlines()[0]
    except Exception as exc:  # a header line, never a reason to stop
        info["java"] = "unknown (%s)" % exc
    return info


def machine_lines(info: dict) -> list[str]:
    lines = ["machine: nproc=%s (usable %s), %s, %.1f GiB RAM; %s" % (
        info["nproc"], info.get("usable_cpus"), info.get("cpu", "?"), info["mem_total_gib"],
        info["platform"]),
        "python:  " + info["python"],
        "java:    " + info.get("java", "not found")]
    if info.get("zkpy_revision"):
        lines.append("zkpy:    git " + info["zkpy_revision"])
    if "loadavg_1min" in info:
        lines.append("loadavg: %.2f (1 min) before starting; other work on this machine shows "
                     "up as noise in ops/s" % info["loadavg_1min"])
    return lines
