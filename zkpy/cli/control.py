"""``zkpy status`` and ``zkpy stop``: a running server, as zkServer.sh sees one.

Contract
--------
* Both find the server the way the server command line would describe it: a
  zoo.cfg, or the zero-config defaults, with the same ``--port``/``--host``/
  ``--data-dir`` overrides (``zkpy status`` after ``zkpy --port 2182`` needs
  ``--port 2182`` too).
* ``status`` asks the client port (``srvr``, always whitelisted) and prints
  zkServer.sh's lines (``Client port found: ...``, ``Mode: ...``) plus the pid
  from ``<dataDir>/zookeeper_server.pid``; exit 0 when it answers, 1 when not
  ("Error contacting service. It is probably not running.").
* ``stop`` sends SIGTERM to the pid in the pid file, or, without one, to the
  zkpy process listening on the client port (Linux: found through /proc), then
  waits until it has exited (``--timeout``); exit 0 when it stopped, 1 when
  there was nothing to stop or it did not exit in time.
* The other commands (``shell``, ``backup``, ``restore``) are dispatched from here.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence

from zkpy.cli.options import PID_FILE, UsageError, load_server_config, read_pid
from zkpy.config import ConfigError, ServerConfig

_WILDCARDS = ("", "0.0.0.0", "::", "0:0:0:0:0:0:0:0")


def _locate_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"zkpy {prog}", description=description)
    p.add_argument("config", nargs="?", metavar="zoo.cfg",
                   help="the server's zoo.cfg (default: the zero-config server)")
    p.add_argument("--port", type=int, help="its client port")
    p.add_argument("--host", help="its client address")
    p.add_argument("--data-dir", help="its data directory (where the pid file is)")
    p.add_argument("-D", dest="props", action="append", default=[], metavar="key=value")
    p.set_defaults(in_memory=False)
    return p


def client_address(cfg: ServerConfig) -> tuple[str, int, bool]:
    """(host, port, tls) to reach the server, as zkServer.sh status picks them."""
    if cfg.client_port is not None:
        host, port, tls = cfg.client_port_address, cfg.client_port, False
    elif cfg.secure_client_port is not None:
        host, port, tls = cfg.secure_client_port_address, cfg.secure_client_port, True
    else:
        raise ConfigError(f"{cfg.source}: clientPort is not set (nor secureClientPort)")
    return ("127.0.0.1" if host in _WILDCARDS else host), port, tls


def four_letter(host: str, port: int, word: str, timeout: float = 5.0) -> str:
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode("ascii"))
        chunks = []
        while data := s.recv(65536):
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def status(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    cfg = load_server_config(args, environ)
    print(f"Using config: {cfg.source}")
    host, port, tls = client_address(cfg)
    print(f"Client port found: {port}. Client address: {host}. Client SSL: {str(tls).lower()}.")
    pid = read_pid(os.path.join(cfg.data_dir, PID_FILE))
    try:
        if tls:
            raise OSError("zkpy status cannot speak TLS; use zkpy shell with a TLS client")
        answer = four_letter(host, port, "srvr")
    except OSError:
        print("Error contacting service. It is probably not running.")
        return 1
    mode = next((line for line in answer.splitlines() if line.startswith("Mode:")), None)
    if mode is None:  # "This ZooKeeper instance is not currently serving requests"
        print(answer.strip() or "Error contacting service. It is probably not running.")
        return 1
    print(mode)
    if pid is not None:
        print(f"Pid: {pid} ({os.path.join(cfg.data_dir, PID_FILE)})")
    return 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours (tests) has exited for our purposes
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def listening_pids(port: int) -> list[int]:
    """Processes with a TCP socket listening on ``port`` (Linux /proc; [] elsewhere)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    found = []
    for entry in os.listdir("/proc") if inodes else ():
        if not entry.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry}/fd")
            links = {os.readlink(f"/proc/{entry}/fd/{fd}") for fd in fds}
        except OSError:
            continue
        if any(f"socket:[{inode}]" in links for inode in inodes):
            found.append(int(entry))
    return found


def _is_zkpy(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"zkpy" in f.read()
    except OSError:
        return False


def stop(args: argparse.Namespace, environ: Mapping[str, str]) -> int:
    cfg = load_server_config(args, environ)
    pid_path = os.path.join(cfg.data_dir, PID_FILE)
    pid = read_pid(pid_path)
    print("Stopping zkpy ... ", end="", flush=True)
    if pid is not None and os.path.exists("/proc/self") and not _is_zkpy(pid):
        pid = None  # a stale file whose pid now belongs to another program
    if pid is None or not _alive(pid):
        _, port, _ = client_address(cfg)
        pids = [p for p in listening_pids(port) if _is_zkpy(p) and p != os.getpid()]
        if not pids:
            print(f"no zkpy to stop (no live process in {pid_path}, "
                  f"no zkpy listening on port {port})")
            return 1
        pid = pids[0]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + args.timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            print(f"process {pid} did not exit within {args.timeout:g}s")
            return 1
        time.sleep(0.05)
    print("STOPPED")
    return 0


def main(command: str, argv: Sequence[str], environ: Mapping[str, str]) -> int:
    if command == "shell":
        from zkpy.cli.shell import main as shell_main

        return shell_main(argv)
    if command in ("backup", "restore"):
        from zkpy.cli.backup import main as backup_main

        return backup_main(command, argv)
    if command == "status":
        args = _locate_parser("status", "Is a server running? Asks its client port "
                              "(srvr), as zkServer.sh status.").parse_args(argv)
        run = status
    else:
        p = _locate_parser("stop", "Stop a running server: SIGTERM to the pid in "
                           "<dataDir>/zookeeper_server.pid, or to the zkpy listening on "
                           "the client port, then wait for it to exit.")
        p.add_argument("--timeout", type=float, default=30.0,
                       help="seconds to wait for it to exit (default 30)")
        args = p.parse_args(argv)
        run = stop
    try:
        return run(args, environ)
    except (ConfigError, UsageError) as e:
        print(f"zkpy {command}: {e}", file=sys.stderr)
        return 2
