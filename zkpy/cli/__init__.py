"""The ``zkpy`` command line (also ``python -m zkpy``).

Contract
--------
* ``zkpy [zoo.cfg] [--port N] [--host ADDR] [--data-dir DIR] [--in-memory]
  [--log-level LEVEL] [--log-file FILE] [--log-config FILE] [-Dkey=value ...]``
  runs one server in the foreground; ``zkpy status|stop|shell|backup|restore``
  are the other commands (each has its own ``--help``).
* Without a zoo.cfg the server is zkpy's zero-config one: 127.0.0.1:2181, every
  four-letter word, the AdminServer on loopback, and its data in ``./zkpy-data``
  (DEFAULT_DATA_DIR, relative to the current directory, as etcd keeps
  ``./default.etcd``), which survives a restart.  ``--in-memory`` is the explicit
  throwaway mode: a temporary directory deleted at exit.
* ``--port``/``--host``/``--data-dir`` override clientPort/clientPortAddress/dataDir
  of a zoo.cfg too; ``-D`` properties behave as for Apache ZooKeeper (see
  zkpy.config).  A bad configuration exits 2 with a message naming the key.
* Logging goes through the standard ``logging`` package: ``--log-level`` (or
  ZKPY_LOG_LEVEL) takes a level name in any case (ZooKeeper's WARN and TRACE
  too); ``--log-file`` writes a size-rotated file (stderr keeps warnings);
  ``--log-config`` hands a ``logging.config`` file (ini, or JSON for dictConfig).
* While serving, the process id is in ``<dataDir>/zookeeper_server.pid`` (the
  name zkServer.sh uses), removed at exit; ``zkpy status`` and ``zkpy stop`` read it.

Argument parsing and logging set-up are pure functions (tests/test_cli.py); the
server itself is built by ``zkpy.__main__._serve``.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import logging.handlers
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence

from zkpy import __version__
from zkpy.cli.options import (
    DEFAULT_DATA_DIR,
    PID_FILE,
    PidFile,
    UsageError,
    load_server_config,
    overrides_from,
    parse_props,
    read_pid,
)
from zkpy.config import ConfigError, ServerConfig, parse_properties_text, read_config_text

__all__ = ["DEFAULT_DATA_DIR", "PID_FILE", "PidFile", "UsageError", "load_server_config",
           "main", "overrides_from", "parse_level", "parse_props", "read_pid", "server_parser"]

log = logging.getLogger("zkpy")

LOG_FORMAT = "%(asctime)s [%(levelname)s] %(name)s: %(message)s"
COMMANDS = ("status", "stop", "shell", "backup", "restore")
# ZooKeeper's log4j level names that the logging package does not have.
_LEVEL_ALIASES = {"TRACE": "DEBUG", "ALL": "DEBUG", "FATAL": "CRITICAL", "OFF": "CRITICAL"}

_EPILOG = """\
other commands (zkpy COMMAND --help for each):
  status     is a server running? (as zkServer.sh status)
  stop       stop a running server (as zkServer.sh stop)
  shell      an interactive shell on a server: ls, get, set, create, delete, stat, watch, tree, acl
  backup     stream a snapshot from a running server's AdminServer into a file
  restore    load a snapshot file into a running server through its AdminServer

Without a zoo.cfg, zkpy serves on 127.0.0.1:2181 and keeps its data in ./zkpy-data.
"""


def parse_level(name: str) -> int:
    """A logging level from its name in any case, ZooKeeper's names, or a number."""
    text = name.strip().upper()
    text = _LEVEL_ALIASES.get(text, text)
    if text.isdigit():
        return int(text)
    level = logging.getLevelName(text)
    if not isinstance(level, int):
        raise UsageError(f"unknown log level {name!r} (use debug, info, warning, error "
                         "or critical, in any case)")
    return level


def server_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="zkpy", description="Run a ZooKeeper-compatible server in the foreground.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", nargs="?", metavar="zoo.cfg",
                   help="a ZooKeeper configuration file (default: zero-config, see below)")
    p.add_argument("--port", type=_port, help="client port (clientPort; default 2181)")
    p.add_argument("--host", help="client address (clientPortAddress; zero-config: 127.0.0.1)")
    p.add_argument("--data-dir", help=f"data directory (dataDir; zero-config: ./{DEFAULT_DATA_DIR})")
    p.add_argument("--in-memory", action="store_true",
                   help="throwaway server: data in a temporary directory deleted at exit")
    _add_logging(p)
    p.add_argument("-D", dest="props", action="append", default=[], metavar="key=value",
                   help="a Java-style system property, as for ZooKeeper (repeatable)")
    p.add_argument("--version", action="version",
                   version=f"zkpy {__version__} (Apache ZooKeeper 3.8 protocol and formats)")
    return p


def _add_logging(p: argparse.ArgumentParser) -> None:
    p.add_argument("--log-level", help="debug, info (default), warning, error; any case "
                   "(or ZKPY_LOG_LEVEL)")
    p.add_argument("--log-file", help="log to this file, rotated by size (stderr keeps warnings)")
    p.add_argument("--log-max-bytes", type=int, default=64 << 20,
                   help="rotate the log file at this size (default 64 MiB)")
    p.add_argument("--log-backups", type=int, default=10,
                   help="rotated log files to keep (default 10)")
    p.add_argument("--log-config", help="a logging.config file (ini, or .json for dictConfig); "
                   "replaces the other logging options")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port {port} is out of range 0..65535")
    return port


def configure_logging(args: argparse.Namespace, environ: Mapping[str, str]) -> None:
    """Set up the root logger from the command line (or a logging.config file)."""
    if getattr(args, "log_config", None):
        path = args.log_config
        if path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                logging.config.dictConfig(json.load(f))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
        return
    level = parse_level(args.log_level or environ.get("ZKPY_LOG_LEVEL") or "INFO")
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    formatter = logging.Formatter(LOG_FORMAT)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(formatter)
    if getattr(args, "log_file", None):
        rotating = logging.handlers.RotatingFileHandler(
            args.log_file, maxBytes=max(args.log_max_bytes, 0),
            backupCount=max(args.log_backups, 0), encoding="utf-8")
        rotating.setFormatter(formatter)
        root.addHandler(rotating)
        console.setLevel(max(level, logging.WARNING))
    root.addHandler(console)
    root.setLevel(level)


def config_warnings(path: str) -> list[str]:
    from zkpy.confcheck import config_warnings as check

    return check(parse_properties_text(read_config_text(path), path), path)


ServeFn = Callable[[ServerConfig], int]


def serve(args: argparse.Namespace, environ: Mapping[str, str], run: ServeFn) -> int:
    tmp = tempfile.mkdtemp(prefix="zkpy-in-memory-") if args.in_memory else None
    try:
        try:
            cfg = load_server_config(args, environ, tmp)
            for warning in config_warnings(args.config) if args.config else ():
                log.warning("%s", warning)
        except (ConfigError, UsageError) as e:
            log.error("Invalid configuration, exiting abnormally: %s", e)
            return 2
        _announce(cfg, tmp is not None)
        with PidFile(os.path.join(cfg.data_dir, PID_FILE)):
            return run(cfg)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


def _announce(cfg: ServerConfig, throwaway: bool) -> None:
    if throwaway:
        where = "a temporary directory, deleted at exit (--in-memory)"
    else:
        where = "kept across restarts"
    log.info("zkpy %s: data directory %s (%s)", __version__, cfg.data_dir, where)
    log.debug("Effective configuration (%s): %s", cfg.source,
              ", ".join(f"{k}={v}" for k, v in cfg.as_properties()))


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None,
         run: ServeFn | None = None) -> int:
    """The whole command line; ``run`` builds and runs a server from its
    configuration (zkpy.__main__ passes its ``_serve``: the entry point is there)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    environ = os.environ if environ is None else environ
    if argv and argv[0] in COMMANDS:
        from zkpy.cli import control

        return control.main(argv[0], argv[1:], environ)
    args = server_parser().parse_args(argv)
    try:
        configure_logging(args, environ)
    except (UsageError, OSError, ValueError, KeyError) as e:
        print(f"zkpy: cannot set up logging: {e}", file=sys.stderr)
        return 2
    if run is None:
        print("zkpy: start the server through zkpy.__main__ (python -m zkpy, or the zkpy "
              "command)", file=sys.stderr)
        return 2
    return serve(args, environ, run)


if __name__ == "__main__":
    sys.exit(main())
