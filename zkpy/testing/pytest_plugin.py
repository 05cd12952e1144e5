"""A pytest plugin: a ZooKeeper for any test suite, with no JVM.

Installed with zkpy (entry point ``pytest11``), it provides:

``zookeeper``
    A fresh standalone zkpy for each test. The value is the connect string
    (a ``str``: pass it to ``KazooClient(hosts=zookeeper)``) that also
    carries ``.server`` (the launcher) and ``stop()``, ``kill()``,
    ``pause()``, ``resume()``, ``restart()`` for failure tests.
``zookeeper_session``
    The same, shared by every test of the session (faster; tests must use
    their own paths).

``--zookeeper-server=zookeeper`` (or the ini option ``zookeeper_server``,
or the environment variable ``ZKPY_TEST_SERVER``) runs the same fixtures
against Apache ZooKeeper instead, for suites that want to test both.
``--zookeeper-setting key=value`` (repeatable) adds zoo.cfg lines.
``--zookeeper-port=N`` (or the ini option ``zookeeper_port``, or
``ZKPY_TEST_PORT``) chooses the client port; by default a free one is picked.
A fixed port serves one server at a time: a test that holds both fixtures
while a port is fixed fails with a usage error naming the option.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from zkpy.testing.launchers import BaseServer, server_from_name


class ZooKeeperHandle(str):
    """The connect string of a running server, with its controls."""

    server: BaseServer

    def __new__(cls, server: BaseServer) -> ZooKeeperHandle:
        handle = super().__new__(cls, server.connect_string)
        handle.server = server
        return handle

    def stop(self) -> None:
        self.server.stop()

    def kill(self) -> None:
        self.server.kill()

    def pause(self) -> None:
        self.server.pause()

    def resume(self) -> None:
        self.server.resume()

    def restart(self) -> None:
        self.server.restart()

    def four_letter(self, word: str) -> str:
        return self.server.four_letter(word)


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("zookeeper", "ZooKeeper test servers (zkpy)")
    group.addoption("--zookeeper-server", default=None, choices=("zkpy", "zookeeper"),
                    help="server kind behind the zookeeper fixtures (default: zkpy)")
    group.addoption("--zookeeper-setting", action="append", default=[], metavar="KEY=VALUE",
                    help="extra zoo.cfg line for the fixture servers (repeatable)")
    group.addoption("--zookeeper-port", default=None, type=int, metavar="PORT",
                    help="client port of the fixture servers (default: a free port)")
    parser.addini("zookeeper_server", "server kind behind the zookeeper fixtures", default="")
    parser.addini("zookeeper_port", "client port of the fixture servers", default="")


def _kind(config: Any) -> str:
    return (config.getoption("--zookeeper-server") or config.getini("zookeeper_server")
            or os.environ.get("ZKPY_TEST_SERVER") or "zkpy")


def _settings(config: Any) -> dict[str, str]:
    out = {}
    for item in config.getoption("--zookeeper-setting"):
        key, sep, value = item.partition("=")
        if not sep:
            raise pytest.UsageError(f"--zookeeper-setting wants KEY=VALUE, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _port(config: Any) -> int | None:
    raw = (config.getoption("--zookeeper-port") or config.getini("zookeeper_port")
           or os.environ.get("ZKPY_TEST_PORT"))
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise pytest.UsageError(f"zookeeper port {raw!r} is not a number") from None


_fixed_port_holders: list[BaseServer] = []


def _start(config: Any) -> BaseServer:
    port = _port(config)
    if port is not None and any(s.running for s in _fixed_port_holders):
        raise pytest.UsageError(f"--zookeeper-port={port} serves one fixture server at a "
                                "time; this test holds both zookeeper and zookeeper_session")
    server = server_from_name(_kind(config), settings=_settings(config), port=port)
    if port is not None:
        _fixed_port_holders[:] = [s for s in _fixed_port_holders if s.running] + [server]
    server.start()
    return server


@pytest.fixture
def zookeeper(request: Any) -> Iterator[ZooKeeperHandle]:
    server = _start(request.config)
    try:
        yield ZooKeeperHandle(server)
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def zookeeper_session(request: Any) -> Iterator[ZooKeeperHandle]:
    server = _start(request.config)
    try:
        yield ZooKeeperHandle(server)
    finally:
        server.cleanup()
