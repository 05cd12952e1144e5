"""Tests for zkpy.config, the zoo.cfg reader."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zkpy.config import (
    ALL_FOUR_LETTER_WORDS,
    ConfigError,
    ServerAddress,
    ServerConfig,
    default_config,
    load_config,
    parse_config_text,
    parse_jvm_flags,
    parse_properties_text,
    parse_server_address,
    system_properties,
)


@pytest.fixture
def data_dir(tmp_path: Path) -> str:
    return str(tmp_path / "data")


def cfg(data_dir: str, body: str = "", props: dict[str, str] | None = None) -> ServerConfig:
    return parse_config_text(f"dataDir={data_dir}\n{body}", props or {})


def error_of(text: str, props: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, props or {})
    return str(info.value)


def quorum(data_dir: str, myid: str | None, servers: str, extra: str = "") -> ServerConfig:
    os.makedirs(data_dir, exist_ok=True)
    if myid is not None:
        Path(data_dir, "myid").write_text(myid)
    return cfg(data_dir, servers + extra)


THREE = "server.1=h1:2888:3888\nserver.2=h2:2888:3888\nserver.3=h3:2888:3888\n"


# --- defaults ---------------------------------------------------------------

def test_defaults(data_dir: str) -> None:
    c = cfg(data_dir)
    assert c.source == "zoo.cfg"
    assert c.tick_time == 3000
    assert c.data_dir == data_dir and c.data_log_dir == data_dir
    assert c.client_port is None and c.client_port_address == "0.0.0.0"
    assert c.secure_client_port is None and c.secure_client_port_address == "0.0.0.0"
    assert c.client_port_listen_backlog == -1
    assert c.max_client_cnxns == 60
    assert (c.min_session_timeout, c.max_session_timeout) == (6000, 60000)
    assert c.four_letter_words == frozenset({"srvr"})
    assert c.jute_maxbuffer == 0xFFFFF
    assert c.extended_types_enabled is False
    assert c.global_outstanding_limit == 1000
    assert c.snap_count == 100000
    assert c.pre_alloc_size == 65536
    assert c.force_sync is True
    assert c.autopurge_snap_retain_count == 3 and c.autopurge_purge_interval == 0
    assert (c.init_limit, c.sync_limit) == (10, 5)
    assert c.servers == {} and c.my_id is None and c.peer_type == "participant"
    assert c.standalone_enabled is True and c.reconfig_enabled is False
    assert c.local_sessions_enabled is False and c.local_sessions_upgrading_enabled is False
    assert c.admin_enable_server is True
    assert (c.admin_server_address, c.admin_server_port) == ("0.0.0.0", 8080)
    assert c.metrics_provider_class == "org.apache.zookeeper.metrics.impl.DefaultMetricsProvider"
    assert c.metrics_provider_http_port == 7000
    assert c.auth_providers == {} and c.ssl == {} and c.server_cnxn_factory is None
    assert c.dynamic_config_file is None
    assert c.readonly_mode_enabled is False and c.skip_acl is False
    assert c.super_digest is None and c.jaas_config_path is None
    assert c.properties == {} and c.quorum_settings == {}
    assert c.is_standalone


def test_default_config(tmp_path: Path) -> None:
    c = default_config(str(tmp_path))
    assert (c.client_port_address, c.client_port) == ("127.0.0.1", 2181)
    assert c.tick_time == 2000 and c.data_dir == str(tmp_path)
    assert (c.min_session_timeout, c.max_session_timeout) == (4000, 40000)
    assert c.four_letter_words == ALL_FOUR_LETTER_WORDS
    assert c.is_standalone


def test_default_config_still_honours_properties(tmp_path: Path) -> None:
    c = default_config(str(tmp_path), {"zookeeper.extendedTypesEnabled": "true"})
    assert c.extended_types_enabled


def test_session_timeouts_follow_tick_time(data_dir: str) -> None:
    c = cfg(data_dir, "tickTime=100\nminSessionTimeout=-1\n")
    assert (c.min_session_timeout, c.max_session_timeout) == (200, 2000)
    c = cfg(data_dir, "minSessionTimeout=10\nmaxSessionTimeout=20\n")
    assert (c.min_session_timeout, c.max_session_timeout) == (10, 20)


# --- file syntax ------------------------------------------------------------

def test_properties_syntax() -> None:
    text = ("# comment\n! also comment\n\n  a = 1  \nb:2\nc 3\nd=x=y\n"
            "e=\nf\n  g = one \\\n     two\nh=tab\\tu\\u0041\\\\\ni\\ key=v\nj=\\\n")
    entries = parse_properties_text(text)
    assert [(k, v) for k, v, _ in entries] == [
        ("a", "1"), ("b", "2"), ("c", "3"), ("d", "x=y"), ("e", ""), ("f", ""),
        ("g", "one two"), ("h", "tab\tuA\\"), ("i key", "v"), ("j", "")]
    assert [n for _, _, n in entries] == [4, 5, 6, 7, 8, 9, 10, 12, 13, 14]


def test_comment_line_does_not_continue() -> None:
    assert parse_properties_text("# x \\\na=1\n") == [("a", "1", 2)]


def test_crlf_and_cr_line_endings() -> None:
    assert parse_properties_text("a=1\r\nb=2\rc=3") == [("a", "1", 1), ("b", "2", 2), ("c", "3", 3)]


def test_malformed_unicode_escape_names_line_and_key() -> None:
    with pytest.raises(ConfigError, match=r"^zoo.cfg:2: k: malformed"):
        parse_properties_text("a=1\nk=\\u12\n")


def test_empty_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"^zoo.cfg:1: missing key"):
        parse_properties_text("=value\n")


def test_duplicate_keys_last_wins(data_dir: str) -> None:
    assert cfg(data_dir, "tickTime=1\ntickTime=7\n").tick_time == 7


def test_colon_separator_and_spaces(data_dir: str) -> None:
    c = parse_config_text(f"  dataDir : {data_dir}  \n tickTime:   42\n", {})
    assert (c.data_dir, c.tick_time) == (data_dir, 42)


def test_duplicate_key_error_reports_last_line(data_dir: str) -> None:
    assert error_of(f"dataDir={data_dir}\ntickTime=1\ntickTime=x\n").startswith("zoo.cfg:3: tickTime:")


# --- validation errors name key and line ------------------------------------

@pytest.mark.parametrize("line, key, fragment", [
    ("tickTime=abc", "tickTime", "'abc' is not an integer"),
    ("tickTime=0", "tickTime", "at least 1"),
    ("tickTime=-5", "tickTime", "at least 1"),
    ("tickTime=99999999999", "tickTime", "out of range"),
    ("tickTime= 1_000", "tickTime", "not an integer"),
    ("clientPort=70000", "clientPort", "at most 65535"),
    ("clientPort=-1", "clientPort", "at least 0"),
    ("clientPort=x", "clientPort", "not an integer"),
    ("secureClientPort=65536", "secureClientPort", "at most 65535"),
    ("maxClientCnxns=-1", "maxClientCnxns", "at least 0"),
    ("minSessionTimeout=-2", "minSessionTimeout", "at least -1"),
    ("maxSessionTimeout=soon", "maxSessionTimeout", "not an integer"),
    ("initLimit=ten", "initLimit", "not an integer"),
    ("syncLimit=5.0", "syncLimit", "not an integer"),
    ("autopurge.snapRetainCount=x", "autopurge.snapRetainCount", "not an integer"),
    ("autopurge.purgeInterval=1h", "autopurge.purgeInterval", "not an integer"),
    ("clientPortListenBacklog=big", "clientPortListenBacklog", "not an integer"),
    ("standaloneEnabled=maybe", "standaloneEnabled", "not a boolean"),
    ("reconfigEnabled=1", "reconfigEnabled", "not a boolean"),
    ("localSessionsEnabled=on", "localSessionsEnabled", "not a boolean"),
    ("localSessionsUpgradingEnabled=", "localSessionsUpgradingEnabled", "not a boolean"),
    ("peerType=leader", "peerType", "unrecognised peer type"),
    ("electionAlg=1", "electionAlg", "only 3"),
    ("metricsProvider.httpPort=x", "metricsProvider.httpPort", "not an integer"),
    ("metricsProvider.httpPort=70000", "metricsProvider.httpPort", "at most 65535"),
    ("snapCount=lots", "snapCount", "not an integer"),
    ("globalOutstandingLimit=0", "globalOutstandingLimit", "at least 1"),
    ("preAllocSize=0", "preAllocSize", "at least 1"),
    ("forceSync=sometimes", "forceSync", "not a boolean"),
    ("skipACL=maybe", "skipACL", "not a boolean"),
    ("extendedTypesEnabled=yes please", "extendedTypesEnabled", "not a boolean"),
    ("admin.enableServer=perhaps", "admin.enableServer", "not a boolean"),
    ("admin.serverPort=99999", "admin.serverPort", "at most 65535"),
    ("server.1=host:2888", "server.1", "does not have the form"),
    ("server.x=host:2888:3888", "server.x", "not a valid server id"),
    ("server.-1=host:2888:3888", "server.-1", "not a valid server id"),
    ("group.1=1:2:3", "group.1", "hierarchical"),
    ("weight.1=1", "weight.1", "hierarchical"),
])
def test_error_names_file_line_and_key(data_dir: str, line: str, key: str, fragment: str) -> None:
    message = error_of(f"# header\ndataDir={data_dir}\n{line}\n")
    assert message.startswith(f"zoo.cfg:3: {key}: ")
    assert fragment in message


def test_error_uses_source_name(data_dir: str) -> None:
    with pytest.raises(ConfigError, match=r"^conf/zk\.cfg:2: tickTime: 'abc' is not an integer$"):
        parse_config_text(f"dataDir={data_dir}\ntickTime=abc\n", {}, source_name="conf/zk.cfg")


def test_data_dir_required() -> None:
    assert error_of("tickTime=2000\n") == "zoo.cfg: dataDir: dataDir is not set"
    assert "dataDir is not set" in error_of("dataDir=\n")


def test_min_session_timeout_larger_than_max(data_dir: str) -> None:
    message = error_of(f"dataDir={data_dir}\nminSessionTimeout=5000\nmaxSessionTimeout=4000\n")
    assert message.startswith("zoo.cfg:2: minSessionTimeout: ")
    # Derived defaults are checked too: max = 20 * 3000.
    assert "minSessionTimeout" in error_of(f"dataDir={data_dir}\nminSessionTimeout=60001\n")


def test_address_without_port(data_dir: str) -> None:
    assert error_of(f"dataDir={data_dir}\nclientPortAddress=1.2.3.4\n").startswith(
        "zoo.cfg:2: clientPortAddress: ")
    assert error_of(f"dataDir={data_dir}\nsecureClientPortAddress=::1\n").startswith(
        "zoo.cfg:2: secureClientPortAddress: ")


def test_property_errors_name_the_property(data_dir: str) -> None:
    assert error_of(f"dataDir={data_dir}\n", {"jute.maxbuffer": "big"}) == (
        "-Djute.maxbuffer: 'big' is not an integer")
    assert error_of(f"dataDir={data_dir}\n", {"jute.maxbuffer": "0"}).startswith("-Djute.maxbuffer:")
    assert error_of(f"dataDir={data_dir}\n", {"readonlymode.enabled": "y"}).startswith(
        "-Dreadonlymode.enabled: ")
    assert error_of(f"dataDir={data_dir}\n", {"zookeeper.skipACL": "si"}).startswith(
        "-Dzookeeper.skipACL: ")


def test_clamped_values(data_dir: str) -> None:
    c = cfg(data_dir, "autopurge.snapRetainCount=1\nsnapCount=1\n")
    assert c.autopurge_snap_retain_count == 3 and c.snap_count == 2


# --- values -----------------------------------------------------------------

def test_full_standalone_file(data_dir: str) -> None:
    c = cfg(data_dir, """
tickTime=2000
dataLogDir=/var/log/zk
clientPort=2181
clientPortAddress=127.0.0.1
secureClientPort=2281
maxClientCnxns=0
autopurge.snapRetainCount=5
autopurge.purgeInterval=24
localSessionsEnabled=TRUE
localSessionsUpgradingEnabled=Yes
reconfigEnabled=true
admin.enableServer=false
admin.serverAddress=127.0.0.1
admin.serverPort=0
metricsProvider.className=org.apache.zookeeper.metrics.prometheus.PrometheusMetricsProvider
metricsProvider.httpPort=7001
metricsProvider.exportJvmInfo=true
authProvider.1=org.apache.zookeeper.server.auth.SASLAuthenticationProvider
authProvider.sasl=x.Y
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
ssl.keyStore.location=/k.jks
ssl.keyStore.password=secret
ssl.quorum.protocol=TLSv1.3
forceSync=no
skipACL=yes
snapCount=5000
preAllocSize=1024
globalOutstandingLimit=10
syncEnabled=true
quorumListenOnAllIPs=true
""")
    assert c.data_log_dir == "/var/log/zk"
    assert (c.client_port, c.client_port_address, c.secure_client_port) == (2181, "127.0.0.1", 2281)
    assert c.max_client_cnxns == 0
    assert (c.autopurge_snap_retain_count, c.autopurge_purge_interval) == (5, 24)
    assert c.local_sessions_enabled and c.local_sessions_upgrading_enabled and c.reconfig_enabled
    assert c.admin_enable_server is False
    assert (c.admin_server_address, c.admin_server_port) == ("127.0.0.1", 0)
    assert c.metrics_provider_class.endswith("PrometheusMetricsProvider")
    assert c.metrics_provider_http_port == 7001
    assert c.metrics_provider_config["exportJvmInfo"] == "true"
    assert c.auth_providers == {
        "1": "org.apache.zookeeper.server.auth.SASLAuthenticationProvider", "sasl": "x.Y"}
    assert c.server_cnxn_factory == "org.apache.zookeeper.server.NettyServerCnxnFactory"
    assert c.ssl == {"ssl.keyStore.location": "/k.jks", "ssl.keyStore.password": "secret",
                     "ssl.quorum.protocol": "TLSv1.3"}
    assert c.force_sync is False and c.skip_acl is True
    assert (c.snap_count, c.pre_alloc_size, c.global_outstanding_limit) == (5000, 1024, 10)
    assert c.quorum_settings == {"syncEnabled": "true", "quorumListenOnAllIPs": "true"}
    # Keys QuorumPeerConfig handles itself never become properties.
    assert "zookeeper.syncEnabled" not in c.properties
    assert "zookeeper.tickTime" not in c.properties


def test_client_port_zero_means_unset(data_dir: str) -> None:
    assert cfg(data_dir, "clientPort=0\n").client_port is None


@pytest.mark.parametrize("text, expected", [
    ("true", True), ("TRUE", True), ("yes", True), ("Yes", True),
    ("false", False), ("False", False), ("no", False), ("NO", False),
])
def test_booleans(data_dir: str, text: str, expected: bool) -> None:
    assert cfg(data_dir, f"reconfigEnabled={text}\n").reconfig_enabled is expected
    assert cfg(data_dir, f"forceSync={text}\n").force_sync is expected


def test_jute_maxbuffer_accepts_java_decode_forms(data_dir: str) -> None:
    assert cfg(data_dir, props={"jute.maxbuffer": "4194304"}).jute_maxbuffer == 4194304
    assert cfg(data_dir, props={"jute.maxbuffer": "0x400000"}).jute_maxbuffer == 0x400000
    assert cfg(data_dir, props={"jute.maxbuffer": "#10"}).jute_maxbuffer == 16


def test_jute_maxbuffer_in_zoo_cfg_is_not_the_jvm_property(data_dir: str) -> None:
    # As in ZooKeeper: the file key becomes zookeeper.jute.maxbuffer, which is not read.
    c = cfg(data_dir, "jute.maxbuffer=10\n")
    assert c.jute_maxbuffer == 0xFFFFF
    assert c.properties["zookeeper.jute.maxbuffer"] == "10"


def test_property_only_settings(data_dir: str) -> None:
    c = cfg(data_dir, props={
        "readonlymode.enabled": "true",
        "zookeeper.DigestAuthenticationProvider.superDigest": "super:abc=",
        "java.security.auth.login.config": "/etc/jaas.conf",
        "zookeeper.extendedTypesEnabled": "true",
    })
    assert c.readonly_mode_enabled and c.extended_types_enabled
    assert c.super_digest == "super:abc="
    assert c.jaas_config_path == "/etc/jaas.conf"
    assert c.four_letter_words == frozenset({"srvr", "isro"})


# --- unknown keys and -D precedence ----------------------------------------

def test_unknown_key_becomes_zookeeper_property(data_dir: str) -> None:
    c = cfg(data_dir, "extendedTypesEnabled=true\nsomething.custom=42\n", {"other": "1"})
    assert c.extended_types_enabled is True and c.quorum_watermarks is True
    assert cfg(data_dir, "quorumWatermarks=false\n").quorum_watermarks is False
    assert c.properties == {"zookeeper.extendedTypesEnabled": "true",
                            "zookeeper.something.custom": "42", "other": "1"}


def test_file_beats_dash_d(data_dir: str) -> None:
    c = cfg(data_dir, "snapCount=10\n", {"zookeeper.snapCount": "20", "zookeeper.x": "1"})
    assert c.snap_count == 10
    assert c.properties["zookeeper.snapCount"] == "10"
    assert c.properties["zookeeper.x"] == "1"


def test_dash_d_used_when_file_is_silent(data_dir: str) -> None:
    c = cfg(data_dir, props={"zookeeper.snapCount": "20", "zookeeper.forceSync": "no",
                             "zookeeper.admin.serverPort": "9090"})
    assert (c.snap_count, c.force_sync, c.admin_server_port) == (20, False, 9090)


def test_dash_d_ssl_and_auth_providers(data_dir: str) -> None:
    c = cfg(data_dir, "ssl.trustStore.type=PEM\n",
            {"zookeeper.ssl.trustStore.type": "JKS", "zookeeper.ssl.protocol": "TLSv1.2",
             "zookeeper.authProvider.x509": "X509"})
    assert c.ssl == {"ssl.trustStore.type": "PEM", "ssl.protocol": "TLSv1.2"}
    assert c.auth_providers == {"x509": "X509"}


def test_parse_jvm_flags() -> None:
    flags = parse_jvm_flags(
        "-Xmx512m -cp a:b -Dzookeeper.snapCount=5 -Dflag -Da.b=x=y "
        "'-Djava.security.auth.login.config=/my dir/jaas.conf' -D -XX:+UseG1GC")
    assert flags == {"zookeeper.snapCount": "5", "flag": "", "a.b": "x=y",
                     "java.security.auth.login.config": "/my dir/jaas.conf"}
    assert parse_jvm_flags("") == {}


def test_parse_jvm_flags_bad_quoting_names_variable() -> None:
    with pytest.raises(ConfigError, match="^SERVER_JVMFLAGS: "):
        parse_jvm_flags("-Da='x", "SERVER_JVMFLAGS")


def test_system_properties_precedence() -> None:
    env = {
        "JAVA_TOOL_OPTIONS": "-Da=tool -Db=tool -Dc=tool -Dd=tool",
        "JVMFLAGS": "-Db=jvm -Dc=jvm -Dd=jvm",
        "SERVER_JVMFLAGS": "-Dc=server -Dd=server",
        "CLIENT_JVMFLAGS": "-De=client",
    }
    merged = system_properties(env, {"d": "cli"})
    assert merged == {"a": "tool", "b": "jvm", "c": "server", "d": "cli"}
    assert system_properties({}, {}) == {}


def test_env_property_reaches_config_but_file_wins(data_dir: str) -> None:
    props = system_properties({"SERVER_JVMFLAGS": "-Dzookeeper.snapCount=7 -Dzookeeper.forceSync=no"},
                              {"zookeeper.forceSync": "yes"})
    c = cfg(data_dir, "snapCount=8\n", props)
    assert (c.snap_count, c.force_sync) == (8, True)


# --- four letter words ------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("stat, ruok , conf", {"stat", "ruok", "conf", "srvr"}),
    ("  ", {"srvr"}),
    (",,mntr,", {"mntr", "srvr"}),
    ("*", ALL_FOUR_LETTER_WORDS),
    ("ruok, * ", ALL_FOUR_LETTER_WORDS),
    ("srvr", {"srvr"}),
])
def test_four_letter_word_whitelist(data_dir: str, value: str, expected: set[str]) -> None:
    assert cfg(data_dir, f"4lw.commands.whitelist={value}\n").four_letter_words == expected


def test_whitelist_from_dash_d_and_file_wins(data_dir: str) -> None:
    prop = {"zookeeper.4lw.commands.whitelist": "ruok"}
    assert cfg(data_dir, props=prop).four_letter_words == {"ruok", "srvr"}
    c = cfg(data_dir, "4lw.commands.whitelist=stat\n", prop)
    assert c.four_letter_words == {"stat", "srvr"}


# --- servers ----------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("h:2888:3888", ServerAddress("h", 2888, 3888)),
    ("h:2888:3888:participant", ServerAddress("h", 2888, 3888, "participant")),
    ("h:2888:3888:OBSERVER", ServerAddress("h", 2888, 3888, "observer")),
    ("h:2888:3888;2181", ServerAddress("h", 2888, 3888, "participant", "0.0.0.0", 2181)),
    ("h:2888:3888:observer;10.0.0.1:2181",
     ServerAddress("h", 2888, 3888, "observer", "10.0.0.1", 2181)),
    ("[::1]:2888:3888;[fe80::1]:2181", ServerAddress("::1", 2888, 3888, "participant", "fe80::1", 2181)),
    ("h:2888:3888;", ServerAddress("h", 2888, 3888)),
])
def test_parse_server_address(value: str, expected: ServerAddress) -> None:
    assert parse_server_address(value) == expected


@pytest.mark.parametrize("value", [
    "h", "h:1", "h:1:2:observer:x", ":1:2", "h:x:2", "h:1:0", "h:1:70000", "h:1:2:leader",
    "h:1:2;a:b:c", "h:1:2;2181;x", "h:1:2;port", "[::1:1:2", "h:1:2|i:1:2",
    # found by fuzzing the dynamic config file: hosts that no resolver takes and
    # that the membership's text (split into lines by a peer) does not carry whole
    "lo\x1ecal:1:2", "h\x85:1:2", "h ost:1:2", "h:1:2;a\x00:3", "[\u2028]:1:2",
])
def test_parse_server_address_rejects(value: str) -> None:
    with pytest.raises(ValueError):
        parse_server_address(value)


def test_server_address_round_trip() -> None:
    for text in ("h:1:2:participant", "h:1:2:observer;0.0.0.0:3", "[::1]:1:2:participant;[::]:3"):
        assert parse_server_address(text).to_config_value() == text


def test_quorum_config(data_dir: str) -> None:
    c = quorum(data_dir, "2\n", THREE + "server.4=h4:2888:3888:observer\n")
    assert c.my_id == 2
    assert sorted(c.servers) == [1, 2, 3, 4]
    assert c.servers[4].role == "observer"
    assert not c.is_standalone
    assert c.peer_type == "participant"


def test_observer_role_from_servers_list_wins(data_dir: str) -> None:
    c = quorum(data_dir, "4", THREE + "server.4=h4:2888:3888:observer\n")
    assert c.peer_type == "observer"


def test_client_port_from_own_server_line(data_dir: str) -> None:
    c = quorum(data_dir, "1", "server.1=h1:2888:3888;127.0.0.1:2191\n"
               "server.2=h2:2888:3888;2192\nserver.3=h3:2888:3888\n")
    assert (c.client_port_address, c.client_port) == ("127.0.0.1", 2191)


def test_client_port_conflict_with_own_server_line(data_dir: str) -> None:
    os.makedirs(data_dir)
    Path(data_dir, "myid").write_text("1")
    message = error_of(f"dataDir={data_dir}\nclientPort=2181\nserver.1=h1:1:2;2182\nserver.2=h2:1:2\n")
    assert message.startswith("zoo.cfg:3: server.1: ")


def test_myid_missing(data_dir: str) -> None:
    with pytest.raises(ConfigError, match=r"myid: file is missing"):
        quorum(data_dir, None, THREE)


@pytest.mark.parametrize("content", ["abc", "", "-1", "1.5"])
def test_myid_not_an_integer(data_dir: str, content: str) -> None:
    with pytest.raises(ConfigError, match=r"myid: .* is not a server id"):
        quorum(data_dir, content, THREE)


def test_myid_not_in_servers(data_dir: str) -> None:
    with pytest.raises(ConfigError, match=r"myid: 9 has no matching server.9"):
        quorum(data_dir, "9", THREE)


def test_myid_too_large_for_extended_types(data_dir: str) -> None:
    servers = "server.255=h:1:2\nserver.2=h:1:2\nextendedTypesEnabled=true\n"
    with pytest.raises(ConfigError, match="myid: must be at most 254"):
        quorum(data_dir, "255", servers)


def test_myid_ignored_without_servers(data_dir: str) -> None:
    os.makedirs(data_dir)
    Path(data_dir, "myid").write_text("garbage")
    assert cfg(data_dir).my_id is None


def test_single_server_is_standalone_and_needs_no_myid(data_dir: str) -> None:
    c = quorum(data_dir, None, "server.1=h1:2888:3888\n")
    assert c.is_standalone and c.my_id is None and c.servers[1].host == "h1"


def test_single_server_without_standalone_is_a_quorum(data_dir: str) -> None:
    c = quorum(data_dir, "1", "server.1=h1:2888:3888\nstandaloneEnabled=false\n")
    assert not c.is_standalone and c.my_id == 1


def test_standalone_disabled_needs_a_participant(data_dir: str) -> None:
    assert error_of(f"dataDir={data_dir}\nstandaloneEnabled=false\n").startswith(
        "zoo.cfg:2: standaloneEnabled: ")


def test_observers_need_participants(data_dir: str) -> None:
    assert error_of(f"dataDir={data_dir}\nserver.1=h:1:2:observer\n").startswith("zoo.cfg:2: server.1:")
    assert "server.2" in error_of(f"dataDir={data_dir}\nserver.1=h:1:2\nserver.2=h:1:2:observer\n")


@pytest.mark.parametrize("key", ["initLimit", "syncLimit"])
def test_limits_must_be_positive_with_servers(data_dir: str, key: str) -> None:
    assert cfg(data_dir, f"{key}=0\n").is_standalone  # ignored without servers
    with pytest.raises(ConfigError, match=rf"^zoo.cfg:\d+: {key}: must be greater than 0"):
        quorum(data_dir, "1", THREE, f"{key}=0\n")


def test_dynamic_config_file(tmp_path: Path, data_dir: str) -> None:
    dynamic = tmp_path / "zoo.cfg.dynamic.100000000"
    dynamic.write_text(THREE)
    os.makedirs(data_dir)
    Path(data_dir, "myid").write_text("3")
    c = cfg(data_dir, f"dynamicConfigFile={dynamic}\n")
    assert c.dynamic_config_file == str(dynamic)
    assert sorted(c.servers) == [1, 2, 3] and c.my_id == 3


def test_dynamic_config_file_errors(tmp_path: Path, data_dir: str) -> None:
    dynamic = tmp_path / "dyn"
    dynamic.write_text("server.1=h:1:2\ntickTime=5\n")
    assert error_of(f"dataDir={data_dir}\ndynamicConfigFile={dynamic}\n") == (
        f"{dynamic}:2: tickTime: unrecognised parameter in a dynamic config file")
    message = error_of(f"dataDir={data_dir}\ndynamicConfigFile={dynamic}\nserver.1=h:1:2\n")
    assert message.startswith("zoo.cfg:3: server.1: must be in the separate dynamic config file")
    missing = tmp_path / "missing"
    assert error_of(f"dataDir={data_dir}\ndynamicConfigFile={missing}\n").startswith(
        "zoo.cfg:2: dynamicConfigFile: cannot read")


# --- files and paths --------------------------------------------------------

def test_load_config_from_file(tmp_path: Path, data_dir: str) -> None:
    path = tmp_path / "zoo.cfg"
    path.write_text(f"tickTime=2000\ndataDir={data_dir}\nclientPort=2181\n")
    c = load_config(str(path), {})
    assert (c.source, c.tick_time, c.client_port) == (str(path), 2000, 2181)


def test_load_config_errors_name_path(tmp_path: Path, data_dir: str) -> None:
    path = tmp_path / "bad.cfg"
    path.write_text(f"dataDir={data_dir}\nclientPort=http\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: clientPort: 'http' is not an integer$"):
        load_config(str(path), {})
    with pytest.raises(ConfigError, match="cannot read configuration file"):
        load_config(str(tmp_path / "absent.cfg"), {})


def test_load_config_without_path_needs_data_dir() -> None:
    with pytest.raises(ConfigError, match="dataDir is not set"):
        load_config(None, {})


def test_load_config_latin1_fallback(tmp_path: Path, data_dir: str) -> None:
    path = tmp_path / "zoo.cfg"
    path.write_bytes(f"dataDir={data_dir}\nx=caf\xe9\n".encode("latin-1"))
    assert load_config(str(path), {}).properties["zookeeper.x"] == "caf\u00e9"


def test_relative_data_dir_resolves_against_cwd(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    (conf_dir / "zoo.cfg").write_text("dataDir=data\ndataLogDir=../logs\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    c = load_config(str(conf_dir / "zoo.cfg"), {})
    assert c.data_dir == str(work / "data")
    assert c.data_log_dir == str(tmp_path / "logs")


# --- ServerConfig -----------------------------------------------------------

def test_server_config_is_frozen(data_dir: str) -> None:
    c = cfg(data_dir)
    with pytest.raises(AttributeError):
        c.tick_time = 1  # type: ignore[misc]


def test_as_properties(data_dir: str) -> None:
    c = cfg(data_dir, "clientPort=2181\nssl.keyStore.password=pw\nssl.keyStore.location=/k\n"
            "authProvider.1=A\nserver.1=h:1:2\n4lw.commands.whitelist=stat,ruok\n")
    pairs = c.as_properties()
    found = dict(pairs)
    assert len(found) == len(pairs)
    assert found["clientPort"] == "2181"
    assert found["dataDir"] == data_dir
    assert found["tickTime"] == "3000"
    assert found["standaloneEnabled"] == "true"
    assert found["forceSync"] == "yes"
    assert found["4lw.commands.whitelist"] == "ruok,srvr,stat"
    assert found["server.1"] == "h:1:2:participant"
    assert found["authProvider.1"] == "A"
    assert found["ssl.keyStore.location"] == "/k"
    assert "ssl.keyStore.password" not in found
    assert "secureClientPort" not in found  # unset values are omitted
    assert all(isinstance(v, str) for _, v in pairs)


def test_read_only_mode_and_local_sessions_reach_the_core(data_dir: str) -> None:
    from zkpy.__main__ import settings_from

    servers = "server.1=127.0.0.1:2888:3888\nserver.2=127.0.0.1:2889:3889\n"
    plain = settings_from(quorum(data_dir, "1", servers))
    assert not plain.readonly_mode and not plain.local_sessions
    s = settings_from(cfg(data_dir, servers + "localSessionsEnabled=true\n",
                          {"readonlymode.enabled": "true"}))
    assert s.readonly_mode and s.local_sessions and "isro" in s.four_letter_words


def test_the_netty_factory_and_its_handshake_limit_reach_the_client_port(data_dir: str) -> None:
    """zoo.cfg's serverCnxnFactory and netty.server.outstandingHandshake.limit become
    zookeeper.* properties, as QuorumPeerConfig makes of keys it does not know; the
    -D form works the same."""
    from zkpy.__main__ import settings_from

    s = settings_from(cfg(data_dir, "serverCnxnFactory=org.apache.zookeeper.server."
                          "NettyServerCnxnFactory\nnetty.server.outstandingHandshake.limit=7\n"))
    assert s.netty and s.outstanding_handshake_limit == 7
    s = settings_from(cfg(data_dir, "", {"zookeeper.netty.server.outstandingHandshake.limit": "3"}))
    assert not s.netty and s.outstanding_handshake_limit == 3
    assert settings_from(cfg(data_dir)).outstanding_handshake_limit == -1
    assert "outstandingHandshake.limit" in error_of(
        f"dataDir={data_dir}\nnetty.server.outstandingHandshake.limit=lots\n")
