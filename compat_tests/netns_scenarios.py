"""Scenarios that need ZooKeeper's fixed ports (2181, 2888, 3888, 8080), run in a
private network namespace (and a private mount namespace for /var/lib) so they
never meet another server on this machine.

``run_isolated(name, *args)`` starts ``python -m compat_tests.netns_scenarios NAME
ARGS`` under ``unshare --net --mount``, with loopback up and a tmpfs on /var/lib;
the scenario prints one JSON object as its last line, which is returned.  Every
server a scenario starts is stopped by it before it returns; the namespaces end
with it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def namespaces_available() -> str | None:
    """None when unshare can make the namespaces here, else why not."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare and ip (util-linux, iproute2) are needed"
    probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True,
                           text=True)
    return None if probe.returncode == 0 else f"unshare failed: {probe.stderr.strip()}"


def run_isolated(name: str, *args: str, timeout: float = 240) -> dict[str, Any]:
    script = ("ip link set lo up && mount -t tmpfs tmpfs /var/lib && "
              f"exec {sys.executable} -m compat_tests.netns_scenarios \"$@\"")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PYTHONUNBUFFERED="1")
    proc = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script, "sh", name, *args],
                          capture_output=True, text=True, timeout=timeout, cwd=str(ROOT), env=env)
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise AssertionError(f"scenario {name} failed ({proc.returncode}):\n{proc.stdout}\n"
                             f"{proc.stderr}")
    return json.loads(lines[-1])


# -- inside the namespace -----------------------------------------------------------


def zkpy_command(words: list[str]) -> list[str]:
    """``zkpy ...`` as the README writes it, run from this checkout."""
    assert words[0] == "zkpy", words
    return [sys.executable, "-m", "zkpy", *words[1:]]


def four_letter(port: int, word: str, timeout: float = 2.0) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(word.encode())
        out = b""
        while data := s.recv(65536):
            out += data
    return out.decode("utf-8", "replace")


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.1)


def serving_mode(port: int) -> str | None:
    text = four_letter(port, "srvr")
    mode = [line for line in text.splitlines() if line.startswith("Mode:")]
    return mode[0].split(":", 1)[1].strip() if mode else None


class Servers:
    """Processes started by a scenario; all stopped (SIGTERM, then SIGKILL) at exit."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, argv: list[str], log_name: str) -> subprocess.Popen[bytes]:
        log = self.workdir / log_name
        with open(log, "ab") as out:
            proc = subprocess.Popen(argv, cwd=self.workdir, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL)
        self.procs.append((proc, log))
        return proc

    def stop(self, proc: subprocess.Popen[bytes], timeout: float = 20) -> int:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        for proc, _ in self.procs:
            self.stop(proc)


def kazoo(port: int) -> Any:
    from kazoo.client import KazooClient

    client = KazooClient(hosts=f"127.0.0.1:{port}", timeout=10)
    client.start(timeout=30)
    return client


# -- scenario: the README's ensemble --------------------------------------------------


def readme_ensemble(readme: str, workdir: str) -> dict[str, Any]:
    """Paste the README's ensemble block into three files and run its commands,
    with the AdminServer's and the metrics' default ports already taken."""
    text = Path(readme).read_text()
    section = text[text.index("## An ensemble"):]
    section = section[:section.index("\n## ", 5)]
    blocks = [b for b in re.findall(r"((?:^    .*\n|^\n)+)", section, re.M) if b.strip()]
    config = "\n".join(line[4:] for line in blocks[0].strip("\n").splitlines()) + "\n"
    commands = [line[4:] for line in blocks[1].strip("\n").splitlines()]
    others = re.findall(r"`dataDir=(\S+)`\s+and\s+`clientPort=(\d+)`", section)
    assert len(others) == 2, others
    work = Path(workdir)
    (work / "zoo1.cfg").write_text(config)
    for n, (data_dir, port) in enumerate(others, start=2):
        text_n = re.sub(r"^dataDir=.*$", f"dataDir={data_dir}", config, flags=re.M)
        (work / f"zoo{n}.cfg").write_text(re.sub(r"^clientPort=.*$", f"clientPort={port}",
                                                 text_n, flags=re.M))
    ports = [int(re.search(r"^clientPort=(\d+)", (work / f"zoo{n}.cfg").read_text(),
                           re.M)[1]) for n in (1, 2, 3)]
    busy = []
    for port in (8080, 7000):  # "whichever ports are busy": someone else has them
        holder = socket.socket()
        holder.bind(("0.0.0.0", port))
        holder.listen()
        busy.append(holder)
    result: dict[str, Any] = {"config": config, "commands": commands, "ports": ports}
    with Servers(work) as servers:
        procs = []
        for n in (1, 2, 3):
            for command in commands:
                command = command.replace("N", str(n))
                if command.startswith("zkpy "):
                    procs.append(servers.start(zkpy_command(command.split()), f"server{n}.log"))
                else:
                    subprocess.run(command, shell=True, check=True, cwd=work)
        for port in ports:
            wait_for(lambda p=port: serving_mode(p) in ("leader", "follower"), 90,
                     f"port {port} serving")
        result["modes"] = [serving_mode(p) for p in ports]
        writer, reader = kazoo(ports[0]), kazoo(ports[2])
        writer.create("/pasted", b"from the README")
        reader.sync("/pasted")
        result["replicated"] = reader.get("/pasted")[0].decode()
        writer.stop()
        reader.stop()
        status = subprocess.run(zkpy_command(["zkpy", "status", "zoo2.cfg"]), cwd=work,
                                capture_output=True, text=True)
        result["status"] = [status.returncode, status.stdout]
        result["alive"] = [p.poll() is None for p in procs]
        result["exit_codes"] = [servers.stop(p) for p in procs]
        result["logs"] = [(work / f"server{n}.log").read_text() for n in (1, 2, 3)]
    for holder in busy:
        holder.close()
    return result


# -- scenario: zero-config keeps data ----------------------------------------------------


def zero_config(workdir: str) -> dict[str, Any]:
    """``zkpy`` with no arguments, a znode, SIGTERM, ``zkpy`` again; then --in-memory."""
    work = Path(workdir)
    result: dict[str, Any] = {}
    zkpy = zkpy_command(["zkpy"])
    with Servers(work) as servers:
        first = servers.start(zkpy, "first.log")
        wait_for(lambda: four_letter(2181, "ruok") == "imok", 60, "zero-config server")
        client = kazoo(2181)
        client.create("/config", b"kept")
        client.stop()
        result["first_exit"] = servers.stop(first)
        result["data_dir_entries"] = sorted(os.listdir(work / "zkpy-data"))
        admin_port_taken = socket.socket()  # the restart finds 8080 taken: it serves anyway
        admin_port_taken.bind(("127.0.0.1", 8080))
        admin_port_taken.listen()
        second = servers.start(zkpy, "second.log")
        wait_for(lambda: four_letter(2181, "ruok") == "imok", 60, "restarted server")
        client = kazoo(2181)
        result["after_restart"] = client.get("/config")[0].decode()
        client.stop()
        status = subprocess.run(zkpy_command(["zkpy", "status"]), cwd=work,
                                capture_output=True, text=True)
        result["status"] = [status.returncode, status.stdout, second.pid]
        stop = subprocess.run(zkpy_command(["zkpy", "stop"]), cwd=work, capture_output=True,
                              text=True)
        result["stop"] = [stop.returncode, stop.stdout, second.poll()]
        after = subprocess.run(zkpy_command(["zkpy", "status"]), cwd=work, capture_output=True,
                               text=True)
        result["status_after_stop"] = [after.returncode, after.stdout]
        throwaway = servers.start([*zkpy, "--in-memory"], "in-memory.log")
        wait_for(lambda: four_letter(2181, "ruok") == "imok", 60, "in-memory server")
        client = kazoo(2181)
        result["in_memory_sees"] = client.exists("/config") is not None
        client.create("/scratch", b"")
        client.stop()
        servers.stop(throwaway)
        again = servers.start([*zkpy, "--in-memory"], "in-memory-2.log")
        wait_for(lambda: four_letter(2181, "ruok") == "imok", 60, "second in-memory server")
        client = kazoo(2181)
        result["scratch_after_restart"] = client.exists("/scratch") is not None
        client.stop()
        servers.stop(again)
        admin_port_taken.close()
        result["logs"] = {name: (work / name).read_text()
                          for name in ("first.log", "second.log", "in-memory.log")}
    return result


SCENARIOS = {"readme_ensemble": readme_ensemble, "zero_config": zero_config}

if __name__ == "__main__":
    print(json.dumps(SCENARIOS[sys.argv[1]](*sys.argv[2:])))
