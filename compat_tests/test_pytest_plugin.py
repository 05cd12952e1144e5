"""The `zookeeper` fixture that zkpy installs as a pytest plugin, used as an
application's test suite would use it (the README's example, run in a
scratch directory by pytester)."""

import pytest

from zkpy.testing.launchers import find_apache_zookeeper

pytest_plugins = ["pytester"]

EXAMPLE = '''
from kazoo.client import KazooClient


def test_lock_survives_a_restart(zookeeper):
    client = KazooClient(hosts=zookeeper)
    client.start()
    client.create("/app/config", b"v1", makepath=True)
    zookeeper.restart()                    # the server comes back with its data
    client.retry(client.get, "/app/config")
    assert client.get("/app/config")[0] == b"v1"
    client.stop()


def test_each_test_gets_a_fresh_server(zookeeper):
    client = KazooClient(hosts=zookeeper)
    client.start()
    assert client.exists("/app") is None
    client.stop()


def test_shared_server(zookeeper_session):
    client = KazooClient(hosts=zookeeper_session)
    client.start()
    client.ensure_path("/shared")
    assert "shared" in client.get_children("/")
    client.stop()
'''


def test_example_passes_against_zkpy(pytester):
    pytester.makepyfile(test_example=EXAMPLE)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


@pytest.mark.skipif(find_apache_zookeeper()[0] is None,
                    reason="Apache ZooKeeper (Java) is not installed")
def test_same_example_against_apache_zookeeper(pytester):
    pytester.makepyfile(test_example=EXAMPLE)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider",
                                           "--zookeeper-server=zookeeper")
    result.assert_outcomes(passed=3)


def test_bad_setting_is_a_usage_error(pytester):
    pytester.makepyfile(test_example="def test_x(zookeeper):\n    pass\n")
    result = pytester.runpytest_subprocess("-q", "--zookeeper-setting", "novalue")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*KEY=VALUE*"])


def test_client_port_can_be_chosen(pytester):
    from zkpy.testing.launchers import free_port

    port = free_port()
    pytester.makepyfile(test_port=f"""
from kazoo.client import KazooClient


def test_on_the_chosen_port(zookeeper):
    assert zookeeper == "127.0.0.1:{port}"
    client = KazooClient(hosts="127.0.0.1:{port}")
    client.start()
    client.ensure_path("/here")
    client.stop()


def test_again_on_the_same_port(zookeeper):
    assert zookeeper.endswith(":{port}")


def test_both_fixtures_cannot_share_one_port(zookeeper_session, zookeeper):
    pass
""")
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider",
                                           f"--zookeeper-port={port}")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*serves one fixture server at a time*"])
