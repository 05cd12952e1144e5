"""AdminServer (``/commands``) and Prometheus ``/metrics``: formats, values, wiring.

In-process tests drive the pure core with the byte-level harness and call the
command table directly; end-to-end tests start ``python -m zkpy`` with both
endpoints on free loopback ports, make znodes, watches and sessions with Kazoo,
then fetch and parse what the endpoints answer and compare it with the state
and with the four-letter words.
"""

from __future__ import annotations

import json
import re
import socket
import urllib.error
import urllib.request
from typing import Any

import pytest
from zk_harness import T0, connected, make_core

from zkpy.admin import fourletter, monitor
from zkpy.net.adminserver import (
    BY_NAME,
    COMMANDS,
    AdminContext,
    command_links,
    jackson_json,
    run_command,
)
from zkpy.net.metrics import PROMETHEUS_PROVIDER, make_registry
from zkpy.testing.launchers import ServerError, ZkpyServer, free_port

parser = pytest.importorskip("prometheus_client.parser")

ALIASES = {
    "srvr": "server_stats", "stat": "stats", "mntr": "monitor", "cons": "connections",
    "conf": "configuration", "config": "configuration", "envi": "environment",
    "env": "environment", "wchs": "watch_summary", "wchc": "watches", "wchp": "watches_by_path",
    "isro": "is_read_only", "crst": "connection_stat_reset", "srst": "stat_reset",
    "ruok": "ruok", "dirs": "dirs", "dump": "dump", "gtmk": "get_trace_mask",
    "stmk": "set_trace_mask", "lsnp": "last_snapshot", "lead": "leader", "hash": "hash",
    "icfg": "initial_configuration", "orst": "observer_connection_stat_reset",
    "obsr": "observers", "sysp": "system_properties",
}


def mntr_values(text: str) -> dict[str, str]:
    return dict(line.split("\t", 1) for line in text.splitlines())


def metric_values(text: str) -> dict[str, float]:
    """Every sample of a text exposition, as name{labels} -> value."""
    out = {}
    for family in parser.text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out


# -- in-process: the command table over the pure core -----------------------------------


def test_jackson_layout() -> None:
    text = jackson_json({"a": 1, "b": [1, "x"], "c": {}, "d": [], "e": None, "f": 0.5,
                         "g": {"h": True, "i": [{"j": 2}]}})
    assert text == ('{\n  "a" : 1,\n  "b" : [ 1, "x" ],\n  "c" : { },\n  "d" : [ ],\n'
                    '  "e" : null,\n  "f" : 0.5,\n  "g" : {\n    "h" : true,\n'
                    '    "i" : [ {\n      "j" : 2\n    } ]\n  }\n}')
    assert json.loads(text)["g"]["i"][0]["j"] == 2
    assert jackson_json(12.0) == "12.0" and jackson_json(1e7) == "1.0E7"


def test_command_table_names_and_aliases() -> None:
    primaries = [c.primary for c in COMMANDS]
    assert len(primaries) == len(set(primaries)) == 26
    for alias, primary in ALIASES.items():
        assert BY_NAME[alias].primary == primary
    listing = command_links("/commands")
    assert re.findall(r'<a href="/commands/(\w+)">(\w+)</a>\n<br/>\n', listing) == [
        (p, p) for p in sorted(primaries)]


def test_every_command_has_command_and_error_last() -> None:
    core = make_core()
    ctx = AdminContext(core, clock=lambda: T0)
    for cmd in COMMANDS:
        out = run_command(ctx, cmd.primary)
        assert out["command"] == cmd.primary
        assert "error" in out
        if cmd.primary == "leader":  # errors set by a command come first, as in ZooKeeper
            assert out == {"error": "server is not initialized", "command": "leader"}
        elif cmd.primary == "set_trace_mask":  # no traceMask argument
            assert list(out) == ["error", "command"] and out["error"].startswith("setTraceMask")
        else:
            assert out["error"] is None, out
            assert list(out)[-2:] == ["command", "error"]
        json.loads(jackson_json(out))
    assert run_command(ctx, "nope") == {"command": "nope", "error": "Unknown command: nope"}


def test_commands_agree_with_four_letter_words() -> None:
    core = make_core(client_port=2181, four_letter_words=frozenset({"*"}))
    a = connected(core, port=40001)
    b = connected(core, port=40002)
    assert a.create("/app") == 0 and a.create("/app/x", b"12345", flags=1) == 0
    a.get("/app", watch=True)
    b.exists("/app/x", watch=True)
    b.get("/app", watch=True)
    ctx = AdminContext(core, clock=lambda: T0 + 5000)

    mntr = run_command(ctx, "mntr")
    assert mntr["command"] == "monitor"
    expected = [(k, v) for k, v in monitor.monitor_values(core) if k != "uptime"]
    assert [(k, v) for k, v in mntr.items() if k not in ("command", "error", "uptime")] == \
        expected
    assert mntr["uptime"] == 5000
    assert mntr["znode_count"] == 7 and mntr["ephemerals_count"] == 1

    srvr = run_command(ctx, "srvr")
    assert srvr["node_count"] == monitor.node_count(core) == 7
    assert srvr["server_stats"]["packets_received"] == core.stats.packets_received
    assert srvr["server_stats"]["num_alive_client_connections"] == 2

    summary = run_command(ctx, "wchs")
    text = fourletter.run(core, "wchs", None)
    assert text == (f"{summary['num_connections']} connections watching "
                    f"{summary['num_paths']} paths\nTotal watches:{summary['num_total_watches']}\n")
    assert (summary["num_connections"], summary["num_paths"], summary["num_total_watches"]) == \
        (2, 2, 3)
    assert run_command(ctx, "wchc")["session_id_to_watched_paths"] == {
        str(a.session_id): ["/app"], str(b.session_id): ["/app", "/app/x"]}
    assert sorted(run_command(ctx, "wchp")["path_to_session_ids"]["/app"]) == \
        sorted([a.session_id, b.session_id])
    dump = run_command(ctx, "dump")
    assert dump["session_id_to_ephemeral_paths"] == {str(a.session_id): ["/app/x"]}
    assert sorted(sid for sids in dump["expiry_time_to_session_ids"].values() for sid in sids) \
        == sorted([a.session_id, b.session_id])

    cons = run_command(ctx, "cons")["connections"]
    by_sid = {c["session_id"]: c for c in cons}
    assert set(by_sid) == {a.session_id, b.session_id}
    ca = by_sid[a.session_id]
    assert ca["remote_socket_address"] == "127.0.0.1:40001"
    assert ca["packets_received"] == a.conn.packets_received
    assert ca["last_operation"] == "GETD" and ca["session_timeout"] == a.timeout
    assert "session_id" not in run_command(ctx, "stat")["connections"][0]

    run_command(ctx, "crst")
    assert run_command(ctx, "cons")["connections"][0]["packets_received"] == 0
    run_command(ctx, "srst")
    assert run_command(ctx, "srvr")["server_stats"]["packets_received"] == 0

    assert run_command(ctx, "stmk", {"traceMask": "12"})["tracemask"] == 12
    assert fourletter.run(core, "gtmk", None) == "12"
    assert run_command(ctx, "stmk", {"traceMask": "x"})["error"].startswith("setTraceMask")


def test_prometheus_collector_reports_mntr_values() -> None:
    core = make_core()
    a = connected(core)
    a.create("/m", b"abc")
    a.get("/m", watch=True)
    text = _exposition(make_registry(core, export_process_info=False))
    values = metric_values(text)
    mntr = dict(monitor.monitor_values(core))
    for name in ("znode_count", "watch_count", "ephemerals_count", "global_sessions",
                 "num_alive_connections", "packets_received", "packets_sent",
                 "approximate_data_size", "outstanding_requests"):
        assert values[name] == mntr[name], name
    families = {f.name: f for f in parser.text_string_to_metric_families(text)}
    assert families["znode_count"].type == "gauge"
    assert families["readlatency"].type == "summary"
    assert values["readlatency_count"] == 1  # the getData
    assert values['readlatency{quantile="0.5"}'] == 0.0  # answered in the turn it came
    assert set(s.labels.get("quantile") for s in families["updatelatency"].samples) >= \
        {"0.5", "0.9", "0.99"}
    assert "commit_count" in values  # ZooKeeper's counter name, without _total
    assert "process_open_fds" not in values


def _exposition(registry: Any) -> str:
    from prometheus_client.exposition import generate_latest

    return generate_latest(registry).decode()


# -- end to end: python -m zkpy ----------------------------------------------------------


def http_get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


@pytest.fixture(scope="module")
def server():
    admin_port, metrics_port = free_port(), free_port()
    srv = ZkpyServer(settings={
        "admin.enableServer": "true", "admin.serverAddress": "127.0.0.1",
        "admin.serverPort": admin_port,
        "metricsProvider.className": PROMETHEUS_PROVIDER,
        "metricsProvider.httpHost": "127.0.0.1", "metricsProvider.httpPort": metrics_port,
    })
    try:
        srv.start(timeout=30)
    except Exception as e:  # pragma: no cover - environment problem
        srv.cleanup()
        pytest.skip(f"cannot start python -m zkpy: {e}")
    srv.admin_url = f"http://127.0.0.1:{admin_port}/commands"
    srv.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
    yield srv
    srv.cleanup()


@pytest.fixture(scope="module")
def clients(server):
    kazoo_client = pytest.importorskip("kazoo.client")
    a = kazoo_client.KazooClient(server.connect_string)
    b = kazoo_client.KazooClient(server.connect_string)
    a.start(timeout=15)
    b.start(timeout=15)
    a.create("/app/one", b"1", makepath=True)
    a.create("/app/two", b"22")
    a.create("/app/eph", b"", ephemeral=True)
    a.get("/app/one", watch=lambda e: None)
    b.exists("/app/two", watch=lambda e: None)
    b.get_children("/app", watch=lambda e: None)
    yield a, b
    a.stop()
    b.stop()
    a.close()
    b.close()


def command(server: Any, name: str) -> dict[str, Any]:
    status, ctype, body = http_get(f"{server.admin_url}/{name}")
    assert status == 200 and ctype.startswith("application/json"), (status, ctype)
    return json.loads(body)


def test_listing_and_unknown_command(server) -> None:
    status, _ctype, body = http_get(server.admin_url)
    assert status == 200
    names = re.findall(r'<a href="/commands/([a-z_]+)">', body)
    assert names == sorted(names)
    assert {"monitor", "stats", "server_stats", "connections", "configuration", "environment",
            "dump", "watches", "watches_by_path", "watch_summary", "dirs", "is_read_only",
            "last_snapshot", "ruok", "stat_reset", "connection_stat_reset", "leader",
            "voting_view"} <= set(names)
    assert http_get(server.admin_url + "/")[2] == body
    assert command(server, "no_such_thing") == {"command": "no_such_thing",
                                                "error": "Unknown command: no_such_thing"}
    assert http_get(server.admin_url.replace("/commands", "/elsewhere"))[0] == 404


def test_aliases_answer_with_primary_names(server) -> None:
    for alias in ("srvr", "mntr", "cons", "conf", "envi", "wchs", "wchc", "wchp", "isro",
                  "ruok", "stat", "dirs", "lsnp"):
        out = command(server, alias)
        assert out["command"] == ALIASES[alias] and out["error"] is None, out


def test_values_match_state(server, clients) -> None:
    a, b = clients
    mntr = mntr_values(server.four_letter("mntr"))
    monitor = command(server, "monitor")
    # Same keys, same order, as mntr without zk_.
    assert [k for k in monitor if k not in ("command", "error")] == \
        [k[3:] for k in mntr]
    # /, /zookeeper, /zookeeper/config, /zookeeper/quota, the root alias and 4 znodes.
    assert monitor["znode_count"] == int(mntr["zk_znode_count"]) == 9
    assert monitor["ephemerals_count"] == 1
    assert monitor["watch_count"] == int(mntr["zk_watch_count"]) == 3
    assert monitor["global_sessions"] == 2 and monitor["server_state"] == "standalone"
    assert monitor["num_alive_connections"] >= 2

    srvr = command(server, "srvr")
    assert srvr["node_count"] == 9 and srvr["read_only"] is False
    assert srvr["server_stats"]["server_state"] == "standalone"
    assert srvr["server_stats"]["last_processed_zxid"] > 0
    assert srvr["version"].startswith("3.8.0")

    sid_a, sid_b = a.client_id[0], b.client_id[0]
    cons = command(server, "connections")
    assert {sid_a, sid_b} <= {c["session_id"] for c in cons["connections"]}
    assert all(c["remote_socket_address"].startswith("127.0.0.1:") for c in cons["connections"])
    assert cons["secure_connections"] == []
    stat = command(server, "stats")
    assert stat["node_count"] == 9 and len(stat["connections"]) >= 2

    assert command(server, "configuration")["client_port"] == server.port
    assert command(server, "configuration")["tick_time"] == 500
    assert command(server, "configuration")["data_dir"].endswith("version-2")

    summary = command(server, "watch_summary")
    wchs = server.four_letter("wchs")
    assert wchs == (f"{summary['num_connections']} connections watching {summary['num_paths']} "
                    f"paths\nTotal watches:{summary['num_total_watches']}\n")
    watches = command(server, "watches")["session_id_to_watched_paths"]
    assert watches[str(sid_a)] == ["/app/one"] and watches[str(sid_b)] == ["/app/two"]
    by_path = command(server, "watches_by_path")["path_to_session_ids"]
    assert by_path["/app/one"] == [sid_a]
    dump = command(server, "dump")
    assert dump["session_id_to_ephemeral_paths"] == {str(sid_a): ["/app/eph"]}
    assert command(server, "is_read_only")["read_only"] is False
    assert command(server, "dirs")["datadir_size"] > 0
    snap = command(server, "last_snapshot")
    assert re.fullmatch(r"[0-9a-f]+", snap["zxid"]) and snap["timestamp"] > 0
    env = command(server, "environment")
    assert env["zookeeper.version"] == srvr["version"]


def test_resets(server, clients) -> None:
    assert command(server, "crst")["command"] == "connection_stat_reset"
    assert all(c["packets_received"] <= 1 for c in command(server, "cons")["connections"])
    assert command(server, "srst")["command"] == "stat_reset"
    assert command(server, "srvr")["server_stats"]["packets_received"] <= 2


def test_prometheus_endpoint(server, clients) -> None:
    assert server.four_letter("ruok") == "imok"  # one packet each way, whatever ran before
    status, ctype, text = http_get(server.metrics_url)
    assert status == 200 and ctype.startswith("text/plain; version=0.0.4"), ctype
    values = metric_values(text)
    mntr = mntr_values(server.four_letter("mntr"))
    for name in ("znode_count", "watch_count", "ephemerals_count", "global_sessions",
                 "approximate_data_size"):
        assert values[name] == float(mntr[f"zk_{name}"]), name
    assert values["znode_count"] == 9
    assert values["num_alive_connections"] >= 2
    assert values["packets_received"] > 0 and values["packets_sent"] > 0
    assert values["open_file_descriptor_count"] > 0 and values["max_file_descriptor_count"] > 0
    assert values["uptime"] > 0
    assert "readlatency_count" in values and "updatelatency_sum" in values
    assert 'readlatency{quantile="0.99"}' in values
    assert "process_open_fds" in values  # exportJvmInfo defaults to true
    families = {f.name: f.type for f in parser.text_string_to_metric_families(text)}
    assert families["znode_count"] == "gauge" and families["fsynctime"] == "summary"
    # name[] filters, as simpleclient's MetricsServlet does.
    _s, _c, only = http_get(server.metrics_url + "?name[]=znode_count&name[]=watch_count")
    assert set(metric_values(only)) == {"znode_count", "watch_count"}
    assert http_get(server.metrics_url.replace("/metrics", "/other"))[0] == 404


def _refused(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def test_disabled_admin_server_and_default_metrics_do_not_bind() -> None:
    admin_port, metrics_port = free_port(), free_port()
    srv = ZkpyServer(settings={"admin.serverAddress": "127.0.0.1",
                               "admin.serverPort": admin_port,
                               "metricsProvider.httpPort": metrics_port})
    assert srv.settings["admin.enableServer"] == "false"
    try:
        srv.start(timeout=30)
        assert srv.four_letter("ruok") == "imok"
        assert _refused(admin_port) and _refused(metrics_port)
    finally:
        srv.cleanup()


def test_busy_admin_port_exits_4_as_zookeeper() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        srv = ZkpyServer(settings={"admin.enableServer": "true",
                                   "admin.serverAddress": "127.0.0.1", "admin.serverPort": port})
        try:
            with pytest.raises(ServerError):
                srv.start(timeout=30)
            assert srv.returncode == 4
            assert "Problem starting AdminServer" in srv.log_text()
        finally:
            srv.cleanup()
