"""Launch ZooKeeper-compatible servers (zkpy or Apache ZooKeeper) for tests.

No Twisted here: plain ``subprocess``/``socket`` so that the launchers can
be used from pytest, from benchmarks and from ad-hoc scripts alike.

Typical use::

    from zkpy.testing.launchers import server_from_name

    with server_from_name("zookeeper", settings={"maxClientCnxns": 0}) as srv:
        client = KazooClient(srv.connect_string)
        ...
        print(srv.four_letter("srvr"))

Every server binds to 127.0.0.1 only, on a free port chosen at ``start()``
time (kept across ``restart()``), with its own temporary working directory
holding ``zoo.cfg``, ``data/`` and ``server.log`` (the process's stdout and
stderr).  ``cleanup()`` (or leaving the ``with`` block) stops the process and
removes the directory.
"""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

__all__ = [
    "LOCALHOST",
    "DEFAULT_SETTINGS",
    "DEBIAN_ZOOKEEPER_JARS",
    "ServerError",
    "ServerTimeout",
    "ZooKeeperInstall",
    "BaseServer",
    "ZkpyServer",
    "ApacheZooKeeperServer",
    "find_apache_zookeeper",
    "find_real_java",
    "free_port",
    "four_letter",
    "server_from_name",
    "SERVER_KINDS",
]

LOCALHOST = "127.0.0.1"

#: zoo.cfg settings used unless overridden.  Pass ``None`` as a value in
#: ``settings`` to drop one of these entirely.
DEFAULT_SETTINGS: dict[str, object] = {
    "tickTime": 500,
    "initLimit": 10,
    "syncLimit": 5,
    # With tickTime=500 the default max would be 10s; allow the usual
    # client timeouts (Kazoo's harness asks for 15s).
    "minSessionTimeout": 1000,
    "maxSessionTimeout": 60000,
    "maxClientCnxns": 0,
    "4lw.commands.whitelist": "*",
    "admin.enableServer": "false",
}

#: Jars used when ``ZOOKEEPER_CLASSPATH`` is not set (Debian/Ubuntu packages
#: ``zookeeper``/``libzookeeper-java`` and ``libslf4j-java``).  The jar's
#: manifest names most dependencies but not netty-codec; slf4j-simple gives
#: logs on stderr and is optional.
DEBIAN_ZOOKEEPER_JARS = (
    "/usr/share/java/zookeeper.jar",
    "/usr/share/java/netty-codec.jar",
)
DEBIAN_OPTIONAL_JARS = ("/usr/share/java/slf4j-simple.jar",)

_PROJECT_ROOT = Path(__file__).resolve().parents[2]


class ServerError(RuntimeError):
    """The server could not be started/stopped as asked."""


class ServerTimeout(ServerError):
    """The server did not become ready (or did not stop) in time."""


# --------------------------------------------------------------------------
# small helpers


def free_port(host: str = LOCALHOST) -> int:
    """Return a TCP port on *host* that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def four_letter(host: str, port: int, word: str, timeout: float = 5.0) -> str:
    """Send a four-letter word and return the whole answer (read to EOF)."""
    if len(word) != 4:
        raise ValueError("four-letter words have four letters: %r" % (word,))
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(word.encode("ascii"))
        chunks = []
        while True:
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode("utf-8", "replace")


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_real_java() -> str | None:
    """Locate a ``java`` executable.

    ``$JAVA_HOME/bin/java`` first, then ``PATH`` -- skipping any shim that
    identifies itself with a ``ZKPY_JAVA_SHIM`` marker (see
    ``compat_tests/java_shim``), so that a PATH prepared for running the
    Kazoo suite against zkpy still finds the real JVM here.
    """
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = os.path.join(java_home, "bin", "java")
        if _is_executable(candidate):
            return candidate
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        candidate = os.path.join(entry or ".", "java")
        if not _is_executable(candidate):
            continue
        try:
            with open(candidate, "rb") as fh:
                head = fh.read(4096)
        except OSError:
            continue
        if b"ZKPY_JAVA_SHIM" in head:
            continue
        return candidate
    return None


class ZooKeeperInstall(NamedTuple):
    """Where Apache ZooKeeper was found."""

    java: str
    classpath: str


def find_apache_zookeeper() -> tuple[ZooKeeperInstall | None, str]:
    """Find Java and the ZooKeeper classpath.

    Returns ``(install, "")`` when usable, ``(None, reason)`` otherwise::

        install, reason = find_apache_zookeeper()
        if install is None:
            pytest.skip(reason)

    The classpath comes from ``$ZOOKEEPER_CLASSPATH`` when set, else from the
    Debian jars in :data:`DEBIAN_ZOOKEEPER_JARS`.
    """
    java = find_real_java()
    if java is None:
        return None, "no java executable found (JAVA_HOME unset/invalid and none on PATH)"
    env_cp = os.environ.get("ZOOKEEPER_CLASSPATH")
    if env_cp:
        entries = [e for e in env_cp.split(os.pathsep) if e]
        missing = [e for e in entries if "*" not in e and not os.path.exists(e)]
        if not entries or missing:
            return None, "ZOOKEEPER_CLASSPATH names missing entries: %s" % (
                ", ".join(missing) or "(empty)",
            )
        return ZooKeeperInstall(java, env_cp), ""
    missing = [j for j in DEBIAN_ZOOKEEPER_JARS if not os.path.exists(j)]
    if missing:
        return None, (
            "Apache ZooKeeper jars not found (%s); install the Debian packages "
            "'zookeeper' and 'libslf4j-java' or set ZOOKEEPER_CLASSPATH" % ", ".join(missing)
        )
    jars = list(DEBIAN_ZOOKEEPER_JARS) + [j for j in DEBIAN_OPTIONAL_JARS if os.path.exists(j)]
    return ZooKeeperInstall(java, os.pathsep.join(jars)), ""


# --------------------------------------------------------------------------
# server registry so that nothing outlives the interpreter

_LIVE: weakref.WeakSet[BaseServer] = weakref.WeakSet()


def _cleanup_all() -> None:
    for srv in list(_LIVE):
        try:
            srv.cleanup()
        except Exception:  # pragma: no cover - best effort at exit
            pass


atexit.register(_cleanup_all)


def _format_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


class BaseServer:
    """A single standalone server process managed from Python.

    :param settings: extra/overriding zoo.cfg entries (``None`` value drops
        a default).  ``dataDir``, ``clientPort`` and ``clientPortAddress``
        are always written by the launcher.
    :param system_properties: mapping or iterable of ``"key=value"``;
        passed as ``-Dkey=value``.
    :param extended_types: add ``-Dzookeeper.extendedTypesEnabled=true``
        (TTL nodes).
    :param port: client port; a free one is picked when omitted.
    :param workdir: directory to use (created if needed; not removed by
        ``cleanup()`` unless we created it).
    :param env: extra environment variables for the process.
    :param keep_workdir: keep the temporary directory in ``cleanup()``.
    """

    kind = "base"

    def __init__(
        self,
        settings: Mapping[str, object] | None = None,
        *,
        system_properties: Mapping[str, object] | Iterable[str] | None = None,
        extended_types: bool = False,
        port: int | None = None,
        workdir: str | os.PathLike | None = None,
        env: Mapping[str, str] | None = None,
        keep_workdir: bool = False,
    ) -> None:
        self.host = LOCALHOST
        self._port = port
        self.settings: dict[str, object] = dict(DEFAULT_SETTINGS)
        for key, value in (settings or {}).items():
            if value is None:
                self.settings.pop(key, None)
            else:
                self.settings[key] = value
        self.system_properties: dict[str, str] = {}
        if isinstance(system_properties, Mapping):
            for k, v in system_properties.items():
                self.system_properties[str(k)] = _format_value(v)
        elif system_properties:
            for item in system_properties:
                item = item[2:] if item.startswith("-D") else item
                k, _, v = item.partition("=")
                self.system_properties[k] = v
        if extended_types:
            self.system_properties["zookeeper.extendedTypesEnabled"] = "true"
        self.extra_env = dict(env or {})
        self.keep_workdir = keep_workdir
        if workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="zkpy-%s-" % self.kind))
            self._own_workdir = True
        else:
            self.workdir = Path(workdir)
            self.workdir.mkdir(parents=True, exist_ok=True)
            self._own_workdir = False
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "zoo.cfg"
        self.log_path = self.workdir / "server.log"
        self.process: subprocess.Popen | None = None
        self._paused = False
        self._cleaned = False
        _LIVE.add(self)

    # -- properties ---------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = free_port(self.host)
        return self._port

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    @property
    def connect_string(self) -> str:
        return "%s:%d" % (self.host, self.port)

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.process.poll() if self.process is not None else None

    # -- to be provided by subclasses ---------------------------------------

    def command(self) -> list[str]:
        """The argv that starts the server with ``self.config_path``."""
        raise NotImplementedError

    def system_property_args(self) -> list[str]:
        return ["-D%s=%s" % (k, v) for k, v in self.system_properties.items()]

    # -- configuration --------------------------------------------------------

    def config_text(self) -> str:
        lines = ["# written by zkpy.testing.launchers (%s)" % self.kind]
        for key, value in self.settings.items():
            if key in ("dataDir", "clientPort", "clientPortAddress"):
                continue
            lines.append("%s=%s" % (key, _format_value(value)))
        lines.append("dataDir=%s" % self.data_dir)
        lines.append("clientPort=%d" % self.port)
        lines.append("clientPortAddress=%s" % self.host)
        return "\n".join(lines) + "\n"

    def write_config(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text())
        return self.config_path

    def process_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        return env

    # -- lifecycle ----------------------------------------------------------

    def start(self, timeout: float = 30, *, wait: bool = True,
              keep_config: bool = False) -> BaseServer:
        """Write zoo.cfg, start the process, wait until ready (see
        :meth:`ready_problem`: ``ruok`` -> ``imok``).  ``wait=False`` returns
        once the process is spawned (an ensemble member cannot serve until
        a quorum is up).  ``keep_config``: start from the zoo.cfg already
        there (as the server itself may have rewritten it, e.g. after a
        reconfig pointed it at a new dynamic config file)."""
        if self._cleaned:
            raise ServerError("server already cleaned up")
        if self.running:
            return self
        if not (keep_config and self.config_path.exists()):
            self.write_config()
        argv = self.command()
        with open(self.log_path, "ab") as log:
            log.write(("\n=== %s start: %s\n" % (time.strftime("%H:%M:%S"), " ".join(argv))).encode())
            log.flush()
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=str(self.workdir),
                env=self.process_env(),
                start_new_session=True,
            )
        self._paused = False
        if not wait:
            return self
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.kill()
            raise
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last_error: object = None
        while True:
            if self.process is None or self.process.poll() is not None:
                rc = self.process.returncode if self.process else None
                raise ServerError(
                    "%s server exited with status %s before becoming ready; log tail:\n%s"
                    % (self.kind, rc, self.log_tail())
                )
            try:
                last_error = self.ready_problem()
                if last_error is None:
                    return
            except OSError as exc:
                last_error = exc
            if time.monotonic() >= deadline:
                raise ServerTimeout(
                    "%s server on %s not ready after %ss (%s); log tail:\n%s"
                    % (self.kind, self.connect_string, timeout, last_error, self.log_tail())
                )
            time.sleep(0.1)

    def ready_problem(self) -> str | None:
        """``None`` when ready, else a short description.

        Ready means ``ruok`` answers ``imok`` and ``srvr`` does not say the
        instance is "not currently serving requests" (Apache ZooKeeper
        answers ``imok`` a moment before it serves).  A server that does
        not implement ``srvr`` is judged on ``ruok`` alone.
        """
        if self.four_letter("ruok", timeout=1.0).strip() != "imok":
            return "ruok did not answer imok"
        try:
            srvr = self.four_letter("srvr", timeout=1.0)
        except OSError:
            return None
        if "not currently serving" in srvr:
            return "srvr: " + srvr.strip()
        return None

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, wait up to *timeout*, then SIGKILL.  Returns the exit status."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            if self._paused:
                self._signal(signal.SIGCONT)
                self._paused = False
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait()
        self._paused = False
        return proc.returncode

    def kill(self) -> int | None:
        """SIGKILL and reap."""
        proc = self.process
        if proc is None:
            return None
        if proc.poll() is None:
            self._signal(signal.SIGKILL)
            proc.wait()
        self._paused = False
        return proc.returncode

    def pause(self, timeout: float = 5.0) -> None:
        """SIGSTOP: the process keeps its sockets but stops answering. Returns once
        the kernel reports it stopped (a group stop reaches every thread of a
        busy JVM only as each comes back from the kernel)."""
        self._require_running()
        self._signal(signal.SIGSTOP)
        self._paused = True
        assert self.process is not None
        stat = Path(f"/proc/{self.process.pid}/stat")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                state = stat.read_text().rsplit(")", 1)[1].split()[0]
            except (OSError, IndexError):
                return  # no /proc here: the signal is all we can do
            if state in ("T", "t"):
                return
            time.sleep(0.01)
        raise ServerError(f"{self!r} did not stop within {timeout}s of SIGSTOP")

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        self._require_running()
        self._signal(signal.SIGCONT)
        self._paused = False

    def restart(self, timeout: float = 30) -> BaseServer:
        """Stop and start again on the same port with the same data."""
        self.stop()
        return self.start(timeout=timeout)

    def cleanup(self) -> None:
        """Stop the process (SIGKILL if it lingers) and remove the temp dir."""
        if self._cleaned:
            return
        try:
            self.stop(timeout=10)
        finally:
            self._cleaned = True
            _LIVE.discard(self)
            if self._own_workdir and not self.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> BaseServer:
        if not self.running:
            self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return "<%s %s pid=%s dir=%s>" % (
            type(self).__name__,
            self.connect_string if self._port else "(no port yet)",
            self.pid,
            self.workdir,
        )

    # -- introspection --------------------------------------------------------

    def four_letter(self, word: str, timeout: float = 5.0) -> str:
        return four_letter(self.host, self.port, word, timeout=timeout)

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    # -- internals ------------------------------------------------------------

    def _require_running(self) -> None:
        if not self.running:
            raise ServerError("%s server is not running" % self.kind)

    def _signal(self, sig: int) -> None:
        assert self.process is not None
        try:
            os.kill(self.process.pid, sig)
        except OSError as exc:  # already gone
            if exc.errno != errno.ESRCH:
                raise


class ZkpyServer(BaseServer):
    """``python -m zkpy -Dkey=value ... zoo.cfg``.

    :param python: interpreter to use (default ``sys.executable``).
    :param extra_args: extra arguments placed before the config path.
    :param source_root: the directory holding the ``zkpy`` package to run
        (default this checkout); prepended to ``PYTHONPATH`` so that it is
        the one that runs (the benchmark runs other revisions this way).
    """

    kind = "zkpy"

    def __init__(self, settings=None, *, python: str | None = None,
                 extra_args: Iterable[str] = (),
                 source_root: str | os.PathLike | None = None, **kw) -> None:
        self.python = python or sys.executable
        self.extra_args = list(extra_args)
        self.source_root = Path(source_root) if source_root is not None else _PROJECT_ROOT
        super().__init__(settings, **kw)

    def command(self) -> list[str]:
        return [self.python, "-m", "zkpy", *self.system_property_args(),
                *self.extra_args, str(self.config_path)]

    def process_env(self) -> dict[str, str]:
        env = super().process_env()
        pp = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(self.source_root) + (os.pathsep + pp if pp else "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        return env


class ApacheZooKeeperServer(BaseServer):
    """Apache ZooKeeper's ``QuorumPeerMain`` in standalone mode.

    :param install: a :class:`ZooKeeperInstall`; found with
        :func:`find_apache_zookeeper` when omitted (raises
        :class:`ServerError` with the reason when absent).
    :param jvm_args: JVM options (default ``["-Xmx512m"]``).
    :param log_level: slf4j-simple default level (``warn``).
    """

    kind = "zookeeper"

    def __init__(self, settings=None, *, install: ZooKeeperInstall | None = None,
                 jvm_args: Iterable[str] = ("-Xmx512m",), log_level: str = "warn",
                 **kw) -> None:
        if install is None:
            install, reason = find_apache_zookeeper()
            if install is None:
                raise ServerError(reason)
        self.install = install
        self.jvm_args = list(jvm_args)
        self.log_level = log_level
        super().__init__(settings, **kw)

    def command(self) -> list[str]:
        return [
            self.install.java,
            *self.jvm_args,
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=%s" % self.log_level,
            "-Dfile.encoding=UTF-8",
            "-Djava.awt.headless=true",
            *self.system_property_args(),
            "-cp",
            self.install.classpath,
            "org.apache.zookeeper.server.quorum.QuorumPeerMain",
            str(self.config_path),
        ]


SERVER_KINDS: dict[str, type[BaseServer]] = {
    "zkpy": ZkpyServer,
    "zookeeper": ApacheZooKeeperServer,
    "apache": ApacheZooKeeperServer,
    "zk": ApacheZooKeeperServer,
}


def server_from_name(name: str, **kw) -> BaseServer:
    """``"zkpy"`` -> :class:`ZkpyServer`; ``"zookeeper"`` (or ``"apache"``,
    ``"zk"``) -> :class:`ApacheZooKeeperServer`.  Not started yet."""
    try:
        cls = SERVER_KINDS[name.lower()]
    except KeyError:
        raise ValueError("unknown server kind %r (expected one of %s)"
                         % (name, ", ".join(sorted(SERVER_KINDS)))) from None
    return cls(**kw)
