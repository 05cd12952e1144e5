"""The launchers in zkpy.testing.launchers, exercised against Apache ZooKeeper."""

import os
import signal

import pytest

from zkpy.testing.launchers import (
    ApacheZooKeeperServer,
    ServerError,
    find_apache_zookeeper,
    server_from_name,
)

INSTALL, REASON = find_apache_zookeeper()

pytestmark = [
    pytest.mark.reference,
    pytest.mark.skipif(INSTALL is None, reason="Apache ZooKeeper unavailable: %s" % REASON),
]


@pytest.fixture
def zk():
    srv = server_from_name("zookeeper")
    try:
        srv.start(timeout=60)
        yield srv
    finally:
        srv.cleanup()
    assert not srv.workdir.exists()


def test_kind_and_addresses(zk):
    assert isinstance(zk, ApacheZooKeeperServer)
    assert zk.host == "127.0.0.1"
    assert zk.connect_string == "127.0.0.1:%d" % zk.port
    assert zk.running and zk.pid > 0
    cfg = zk.config_path.read_text()
    assert "clientPortAddress=127.0.0.1" in cfg
    assert "4lw.commands.whitelist=*" in cfg
    assert "dataDir=%s" % zk.data_dir in cfg


def test_kazoo_connect_create(zk):
    from kazoo.client import KazooClient

    client = KazooClient(zk.connect_string, timeout=10)
    client.start(timeout=15)
    try:
        path = client.create("/launcher", b"hello")
        assert path == "/launcher"
        data, stat = client.get("/launcher")
        assert data == b"hello"
        assert stat.version == 0
    finally:
        client.stop()
        client.close()


def test_four_letter_words(zk):
    assert zk.four_letter("ruok") == "imok"
    srvr = zk.four_letter("srvr")
    assert "Mode: standalone" in srvr
    assert "Zookeeper version: 3." in srvr
    assert "zk_server_state\tstandalone" in zk.four_letter("mntr")


def test_stop_restart_keeps_data(zk):
    from kazoo.client import KazooClient

    client = KazooClient(zk.connect_string, timeout=10)
    client.start(timeout=15)
    client.create("/persisted", b"1")
    client.stop()
    client.close()

    port, old_pid = zk.port, zk.pid
    rc = zk.stop()
    assert rc is not None
    assert not zk.running
    zk.restart(timeout=60)
    assert zk.port == port and zk.pid != old_pid

    client = KazooClient(zk.connect_string, timeout=10)
    client.start(timeout=15)
    try:
        assert client.get("/persisted")[0] == b"1"
    finally:
        client.stop()
        client.close()


def test_pause_resume(zk):
    zk.pause()
    with pytest.raises(OSError):
        # The listening socket still accepts (kernel backlog) but nobody answers.
        zk.four_letter("ruok", timeout=1.0)
    zk.resume()
    zk.wait_ready(timeout=15)
    assert zk.four_letter("ruok") == "imok"


def test_kill(zk):
    zk.kill()
    assert not zk.running
    assert zk.returncode == -signal.SIGKILL


def test_log_text_and_system_properties():
    srv = ApacheZooKeeperServer(extended_types=True, log_level="info",
                                system_properties={"zookeeper.test.marker": "42"})
    with srv:
        assert srv.four_letter("ruok") == "imok"
        text = srv.log_text()
        # the launcher logs its argv; slf4j-simple at info logs the startup
        assert "-Dzookeeper.extendedTypesEnabled=true" in text
        assert "-Dzookeeper.test.marker=42" in text
        assert "INFO" in text
    assert not srv.running
    assert not os.path.exists(srv.workdir)


def test_start_failure_reports_log():
    srv = ApacheZooKeeperServer(settings={"tickTime": "not-a-number"})
    try:
        with pytest.raises(ServerError) as info:
            srv.start(timeout=30)
        assert "log tail" in str(info.value)
        assert not srv.running
    finally:
        srv.cleanup()


def test_unknown_kind():
    with pytest.raises(ValueError):
        server_from_name("etcd")
