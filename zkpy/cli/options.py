"""What the server command line and ``zkpy status``/``stop`` share: the
configuration the flags describe and the pid file.

Contract: builds ServerConfigs from parsed arguments (no I/O but reading a
zoo.cfg, as zkpy.config does) and owns ``<dataDir>/zookeeper_server.pid``.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence

from zkpy.config import ServerConfig, default_config, load_config, system_properties

log = logging.getLogger("zkpy")

DEFAULT_DATA_DIR = "zkpy-data"
PID_FILE = "zookeeper_server.pid"


class UsageError(Exception):
    """A bad command line or level name: the message is for the user."""


def parse_props(items: Sequence[str]) -> dict[str, str]:
    """``-Dkey=value`` items (argparse gives ``key=value``) as a dict; a bare key is ''."""
    props: dict[str, str] = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key:
            raise UsageError(f"-D{item}: a property needs a name")
        props[key] = value
    return props


def overrides_from(args: argparse.Namespace) -> dict[str, str]:
    """The zoo.cfg keys the command line sets."""
    out: dict[str, str] = {}
    if args.port is not None:
        out["clientPort"] = str(args.port)
    if args.host:
        out["clientPortAddress"] = args.host
    if args.data_dir:
        out["dataDir"] = os.path.abspath(args.data_dir)
    return out


def load_server_config(args: argparse.Namespace, environ: Mapping[str, str],
                       data_dir: str | None = None) -> ServerConfig:
    """The configuration the command line asks for; ``data_dir`` replaces dataDir
    (the --in-memory temporary directory)."""
    props = system_properties(environ, parse_props(args.props))
    overrides = overrides_from(args)
    if data_dir is not None:
        overrides["dataDir"] = data_dir
    if args.config is None:
        directory = overrides.pop("dataDir", None) or os.path.abspath(DEFAULT_DATA_DIR)
        return default_config(directory, props, overrides)
    return load_config(args.config, props, overrides)


class PidFile:
    """``<dataDir>/zookeeper_server.pid`` while serving; removed at exit if still ours."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.written = False

    def __enter__(self) -> PidFile:
        other = read_pid(self.path)
        if other is not None and other != os.getpid() and _alive(other):
            log.warning("%s names process %d, still running: another server may be using "
                        "this data directory; leaving the file as it is", self.path, other)
            return self
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            with open(self.path, "w", encoding="ascii") as f:
                f.write(f"{os.getpid()}\n")
            self.written = True
        except OSError as e:  # the server itself reports an unusable data directory
            log.debug("cannot write %s: %s", self.path, e)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.written and read_pid(self.path) == os.getpid():
            try:
                os.unlink(self.path)
            except OSError:
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_pid(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
