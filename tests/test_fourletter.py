"""Four-letter words: formats against Apache ZooKeeper 3.8.0's recorded answers,
values against zkpy's own state.

Most tests drive a ``ServerCore`` directly (no sockets); the last ones start
``python -m zkpy`` and talk to it over TCP.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path
from typing import Any

import pytest

from zkpy.admin import fourletter, monitor
from zkpy.config import ALL_FOUR_LETTER_WORDS
from zkpy.jute import schema as S
from zkpy.jute.protocol import Op
from zkpy.net.host import SystemHost
from zkpy.server.core import CoreSettings, ServerCore
from zkpy.testing.standalone import standalone
from zkpy.version import BUILD

REF = json.loads((Path(__file__).parent / "data" / "reference_behaviour.json").read_text())
OUT = REF["f_four_letter_words"]["outputs"]
T0 = 1_795_509_000_000
OPEN_ACL = [S.ACL(31, S.Id("world", "anyone"))]
EPHEMERAL = 1


class Client:
    """One connection to the core; ``out`` collects what the server wrote."""

    def __init__(self, core: ServerCore, port: int, now: int = T0) -> None:
        self.core = core
        self.out: list[bytes] = []
        self.closed = False
        self.conn = core.connect("127.0.0.1", port, self.out.append, self._close, now)
        self.xid = 0

    def _close(self) -> None:
        self.closed = True

    def send(self, body: bytes, now: int = T0) -> None:
        self.conn.receive(struct.pack(">i", len(body)) + body, now)
        self.core.flush()

    def session(self, timeout: int = 10000, now: int = T0) -> Client:
        self.send(S.ConnectRequest(0, 0, timeout, 0, bytes(16), False).encode(), now)
        assert self.conn.session_id
        return self

    def request(self, op: int, rec: Any = None, now: int = T0) -> None:
        self.xid += 1
        body = S.RequestHeader(self.xid, op).encode() + (rec.encode() if rec else b"")
        self.send(body, now)

    def create(self, path: str, data: bytes = b"", flags: int = 0, now: int = T0) -> None:
        self.request(Op.create, S.CreateRequest(path, data, OPEN_ACL, flags), now)


def make_core(tmp_path: Path | None = None, **kw: Any) -> ServerCore:
    kw.setdefault("four_letter_words", ALL_FOUR_LETTER_WORDS)
    if tmp_path is not None:
        kw.setdefault("data_dir", str(tmp_path / "data"))
    return standalone(CoreSettings(**kw), T0, host=SystemHost()).core


_ports = iter(range(40000, 60000))


def word(core: ServerCore, cmd: str, now: int = T0, extra: bytes = b"") -> str:
    c = Client(core, next(_ports), now)
    c.conn.receive(cmd.encode() + extra, now)
    core.flush()
    assert c.closed
    return b"".join(c.out).decode()


def keys(text: str, sep: str) -> list[str]:
    return [line.split(sep)[0] for line in text.splitlines()]


def kv(text: str, sep: str) -> dict[str, str]:
    return dict(line.split(sep, 1) for line in text.splitlines() if sep in line)


# -- srvr / stat -----------------------------------------------------------------


def test_srvr_matches_reference_shape_and_counts_nodes() -> None:
    core = make_core()
    out = word(core, "srvr")
    assert keys(out, ":") == keys(OUT["srvr"], ":")
    assert out.endswith("\n") and out.count("\n") == OUT["srvr"].count("\n")
    assert out.startswith(f"Zookeeper version: {BUILD}\n")
    # A fresh tree: ZooKeeper counts 5 (the root is also mapped under "").
    fresh = REF["e_initial_tree"]["srvr_before_any_session"]
    assert kv(out, ": ")["Node count"] == kv(fresh, ": ")["Node count"] == "5"
    assert kv(out, ": ")["Mode"] == "standalone"
    assert kv(out, ": ")["Zxid"] == "0x0"
    assert kv(out, ": ")["Latency min/avg/max"] == "0/0.0/0"
    a = Client(core, 1000).session()
    for p in ("/a", "/b", "/c"):
        a.create(p)
    after = kv(word(core, "srvr"), ": ")
    assert after["Node count"] == "8"
    assert after["Zxid"] == "0x4"
    assert after["Connections"] == "2"  # the session's and srvr's own


def test_srvr_counts_the_command_as_received_and_then_sent() -> None:
    core = make_core()
    first = kv(word(core, "srvr"), ": ")
    second = kv(word(core, "srvr"), ": ")
    assert (first["Received"], first["Sent"]) == ("1", "0")
    assert (second["Received"], second["Sent"]) == ("2", "1")


def test_stat_lists_clients_briefly() -> None:
    core = make_core()
    a = Client(core, 39230).session()
    a.create("/x")
    out = word(core, "stat")
    ref_lines = OUT["stat"].splitlines()
    lines = out.splitlines()
    assert lines[0] == f"Zookeeper version: {BUILD}"
    assert lines[1] == ref_lines[1] == "Clients:"
    brief = re.compile(r"^ /127\.0\.0\.1:\d+\[[01]\]\(queued=\d+,recved=\d+,sent=\d+\)$")
    assert all(brief.match(x) for x in ref_lines[2:4])
    assert lines[2] == f" /127.0.0.1:39230[1](queued=0,recved={a.conn.packets_received},"\
                       f"sent={a.conn.packets_sent})"
    assert re.match(r"^ /127\.0\.0\.1:\d+\[0\]\(queued=0,recved=1,sent=0\)$", lines[3])
    assert lines[4] == ref_lines[4] == ""
    assert keys("\n".join(lines[5:]), ":") == keys("\n".join(ref_lines[5:]), ":")


# -- cons / crst -----------------------------------------------------------------------

_FULL = re.compile(
    r"^ /127\.0\.0\.1:(\d+)\[1\]\(queued=(\d+),recved=(\d+),sent=(\d+),sid=0x([0-9a-f]+),"
    r"lop=([A-Z]+),est=(\d+),to=(\d+),lcxid=0x([0-9a-f]+),lzxid=0x([0-9a-f]+),lresp=(\d+),"
    r"llat=(\d+),minlat=(\d+),avglat=(\d+),maxlat=(\d+)\)$")


def test_cons_full_form_for_sessions() -> None:
    ref = OUT["cons"].splitlines()
    assert _FULL.match(ref[0]) and ref[2:] == [""] and OUT["cons"].endswith(")\n\n")
    core = make_core()
    a = Client(core, 39230).session(timeout=10000)
    a.create("/x", now=T0 + 5)
    a.request(Op.getChildren, S.GetChildrenRequest("/", False), now=T0 + 7)
    out = word(core, "cons", now=T0 + 9)
    lines = out.split("\n")
    m = _FULL.match(lines[0])
    assert m, lines[0]
    port, queued, recved, sent, sid, lop, est, to, lcxid, lzxid = m.groups()[:10]
    assert port == "39230" and queued == "0"
    assert int(recved) == a.conn.packets_received == 3
    assert int(sid, 16) == a.conn.session_id & (2**64 - 1)
    assert lop == "GETC" and est == str(T0) and to == "10000"
    assert lcxid == "2" and lzxid == "2"
    assert re.match(r"^ /127\.0\.0\.1:\d+\[0\]\(queued=0,recved=1,sent=0\)$", lines[1])
    assert lines[2:] == ["", ""]


def test_crst_resets_connection_stats() -> None:
    core = make_core()
    a = Client(core, 39230).session()
    a.create("/x")
    assert word(core, "crst") == OUT["crst"] == "Connection stats reset.\n"
    assert (a.conn.packets_received, a.conn.packets_sent, a.conn.last_op) == (0, 0, "NA")
    line = word(core, "cons").splitlines()[0]
    assert "recved=0,sent=0" in line and "lop=NA" in line and "lcxid" not in line
    assert "lzxid=0xffffffffffffffff" in line  # Long.toHexString(-1)


def test_srst_resets_server_stats() -> None:
    core = make_core()
    a = Client(core, 1).session()
    a.create("/x")
    assert core.stats.packets_received > 0
    assert word(core, "srst") == OUT["srst"]
    got = kv(word(core, "srvr"), ": ")
    assert (got["Received"], got["Sent"]) == ("1", "1")


# -- watches ---------------------------------------------------------------------------


def test_watch_words_list_data_watches_by_session_and_path() -> None:
    core = make_core()
    assert word(core, "wchs") == "0 connections watching 0 paths\nTotal watches:0\n"
    assert word(core, "wchc") == "\n" and word(core, "wchp") == "\n"
    a = Client(core, 1).session()
    a.create("/b")
    a.create("/seq")
    a.request(Op.getData, S.GetDataRequest("/b", True))
    a.request(Op.getChildren, S.GetChildrenRequest("/seq", True))  # a child watch
    sid = f"0x{a.conn.session_id & (2**64 - 1):x}"
    # As 3.8.0 answered in the reference: only the data watch on /b is listed.
    assert word(core, "wchs") == OUT["wchs"]
    assert word(core, "wchc") == OUT["wchc"].replace("0x100000f33310000", sid)
    assert word(core, "wchp") == OUT["wchp"].replace("0x100000f33310000", sid)
    b = Client(core, 2).session()
    b.request(Op.exists, S.ExistsRequest("/b", True))
    b.request(Op.exists, S.ExistsRequest("/nope", True))
    assert word(core, "wchs") == "2 connections watching 2 paths\nTotal watches:3\n"
    wchp = word(core, "wchp")
    sid_b = f"0x{b.conn.session_id & (2**64 - 1):x}"
    assert f"/b\n\t{sid}\n\t{sid_b}\n" in wchp and f"/nope\n\t{sid_b}\n" in wchp
    assert f"{sid_b}\n\t/b\n\t/nope\n" in word(core, "wchc")
    assert kv(word(core, "mntr"), "\t")["zk_watch_count"] == "4"  # both tables


# -- dump ------------------------------------------------------------------------------

_DATE = r"[A-Z][a-z]{2} [A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d \S+ \d{4}"


def _dump_shape(text: str) -> list[str]:
    shapes = [(r"^\d+ expire at " + _DATE + ":$", "<bucket>"),
              (r"^\t0x[0-9a-f]+$", "<sid>"), (r"^0x[0-9a-f]+:$", "<owner>"),
              (r"^\t/\S+$", "<path>"), (r"^\tip: /[\d.]+:\d+ sessionId: 0x[0-9a-f]+$", "<cnxn>"),
              (r"^(Session Sets|Connections Sets) \(\d+\)/\(\d+\):$", "<sets>"),
              (r"^Sessions with Ephemerals \(\d+\):$", "<eph>")]
    out = []
    for line in text.splitlines():
        for rx, name in shapes:
            if re.match(rx, line):
                out.append(name)
                break
        else:
            out.append(line)
    return out


def test_dump_sessions_ephemerals_connections() -> None:
    core = make_core(tick_time=500)
    a = Client(core, 39230).session(timeout=10000)
    a.create("/seq")
    a.create("/seq/e-1", flags=EPHEMERAL)
    a.create("/seq/e-2", flags=EPHEMERAL)
    out = word(core, "dump")
    assert set(_dump_shape(out)) <= set(_dump_shape(OUT["dump"]))
    sid = f"0x{a.conn.session_id & (2**64 - 1):x}"
    lines = out.splitlines()
    assert lines[:2] == ["SessionTracker dump:", "Session Sets (1)/(1):"]
    assert re.match(r"^1 expire at " + _DATE + ":$", lines[2]) and lines[3] == f"\t{sid}"
    assert lines[4:9] == ["ephemeral nodes dump:", "Sessions with Ephemerals (1):",
                          f"{sid}:", "\t/seq/e-1", "\t/seq/e-2"]
    assert lines[9] == "Connections dump:"
    assert lines[10].startswith("Connections Sets (") and lines[10].endswith(")/(2):")
    assert f"\tip: /127.0.0.1:39230 sessionId: {sid}" in lines
    assert sum(1 for x in lines if x.endswith("sessionId: 0x0")) == 1
    assert kv(word(core, "mntr"), "\t")["zk_ephemerals_count"] == "2"


def test_java_date_format() -> None:
    assert re.match("^" + _DATE + "$", monitor.java_date(T0))


# -- mntr ------------------------------------------------------------------------------


def _reference_mntr_keys() -> list[str]:
    # The per-namespace summaries (zk_*_b_read_per_namespace ...) are named after the
    # reference run's top-level znodes; zkpy does not keep them.
    return [k for k in keys(OUT["mntr"], "\t") if not k.endswith("_per_namespace")]


def test_mntr_keys_order_and_real_values(tmp_path: Path) -> None:
    core = make_core(tmp_path)
    a = Client(core, 1).session()
    a.create("/seq", b"12345")
    a.create("/seq/e", b"", flags=EPHEMERAL)
    out = word(core, "mntr", now=T0 + 5258)
    assert [k for k in keys(out, "\t") if not k.endswith("_per_namespace")] == \
        _reference_mntr_keys()
    # The per-namespace summaries come last, named after the top-level znode written.
    assert keys(out, "\t")[-5:] == [f"zk_{s}_seq_write_per_namespace"
                                     for s in ("avg", "min", "max", "cnt", "sum")]
    assert all(line.count("\t") == 1 for line in out.splitlines())
    v = kv(out, "\t")
    assert v["zk_version"] == BUILD and v["zk_server_state"] == "standalone"
    assert v["zk_znode_count"] == "7" and v["zk_ephemerals_count"] == "1"
    assert v["zk_num_alive_connections"] == "2" and v["zk_global_sessions"] == "1"
    assert v["zk_outstanding_requests"] == "0" and v["zk_local_sessions"] == "0"
    # "/" + "/zookeeper" + "/zookeeper/quota" + "/zookeeper/config" = 44, then ours.
    assert v["zk_approximate_data_size"] == str(44 + len("/seq") + 5 + len("/seq/e"))
    assert v["zk_uptime"] == "5258"
    assert int(v["zk_open_file_descriptor_count"]) > 0
    assert int(v["zk_max_file_descriptor_count"]) >= int(v["zk_open_file_descriptor_count"])
    assert int(v["zk_packets_received"]) == core.stats.packets_received
    assert v["zk_connection_drop_probability"] == "0.0"
    assert v["zk_avg_fsynctime"] == "0.0" and v["zk_p999_readlatency"] == "0"
    # Two writes under /seq: the path's length plus the data's, as DataTree.updateWriteStat.
    assert (v["zk_cnt_seq_write_per_namespace"], v["zk_sum_seq_write_per_namespace"]) == \
        ("2", str(len("/seq") + 5 + len("/seq/e")))
    assert v["zk_cnt_updatelatency"] == "3"  # createSession and the two creates
    lat = core.stats.latency
    assert v["zk_min_latency"] == str(int(lat.min)) and v["zk_max_latency"] == str(int(lat.max))


def test_latency_average_is_rounded_like_zookeeper() -> None:
    assert monitor.avg4(0, 0) == 0.0
    assert monitor.avg4(1, 3) == 0.3333
    assert monitor.avg4(11, 8) == 1.375
    assert monitor.avg4(1, 8) == 0.125
    assert monitor.avg4(5, 80000) == 0.0001  # 0.0000625 rounds half up
    assert monitor.java_double(1.1319) == "1.1319"
    assert monitor.java_double(16.0) == "16.0"
    assert monitor.java_double(0.0001) == "1.0E-4"
    assert monitor.java_double(12345678.0) == "1.2345678E7"
    core = make_core()
    for ms in (0, 2, 7):
        core.stats.latency.add(ms)
    assert kv(word(core, "srvr"), ": ")["Latency min/avg/max"] == "0/3.0/7"
    assert kv(word(core, "mntr"), "\t")["zk_avg_latency"] == "3.0"


# -- conf / dirs / envi -------------------------------------------------------------------


def test_conf_keys_and_values(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "version-2").mkdir(parents=True)
    (data / "version-2" / "log.1").write_bytes(b"x" * 1000)
    core = make_core(tmp_path, client_port=50577, tick_time=500, max_client_cnxns=0,
                     min_session_timeout=1000, max_session_timeout=60000,
                     config_lines=[("clientPortListenBacklog", "50")])
    out = word(core, "conf")
    assert keys(out, "=") == keys(OUT["conf"], "=")
    v = kv(out, "=")
    assert v["clientPort"] == "50577" and v["secureClientPort"] == "-1"
    assert v["dataDir"] == v["dataLogDir"] == str(data / "version-2")
    assert v["dataDirSize"] == v["dataLogSize"] == "1000"
    assert (v["tickTime"], v["maxClientCnxns"]) == ("500", "0")
    assert (v["minSessionTimeout"], v["maxSessionTimeout"]) == ("1000", "60000")
    assert v["clientPortListenBacklog"] == "50" and v["serverId"] == "0"
    assert word(core, "dirs") == "datadir_size: 1000\nlogdir_size: 1000\n"
    assert keys(word(core, "dirs"), ":") == keys(OUT["dirs"], ":")


def test_envi() -> None:
    out = word(make_core(), "envi")
    lines = out.splitlines()
    assert lines[0] == "Environment:" == OUT["envi"].splitlines()[0]
    v = kv(out, "=")
    assert lines[1] == f"zookeeper.version={BUILD}"
    assert re.match(r"^zookeeper\.version=3\.8\.0-zkpy-", lines[1])
    assert lines[2].startswith("host.name=")
    assert "python.version" in v
    ours = [k for k in keys(out, "=") if k.startswith(("os.name", "os.arch", "os.version", "user."))]
    ref = [k for k in keys(OUT["envi"], "=")
           if k.startswith(("os.name", "os.arch", "os.version", "user."))]
    assert ours == ref


# -- small words, whitelist ---------------------------------------------------------------


def test_small_words() -> None:
    core = make_core()
    assert word(core, "ruok") == OUT["ruok"] == "imok"
    assert word(core, "isro") == OUT["isro"] == "rw"
    assert word(core, "gtmk") == OUT["gtmk"] == "306"
    assert word(core, "stmk", extra=struct.pack(">q", 42)) == "42"
    assert word(core, "gtmk") == "42"
    assert word(core, "stmk") == ""  # no mask bytes: ZooKeeper closes without an answer
    assert word(core, "hash") == ""


def test_whitelist_refusal() -> None:
    core = make_core(four_letter_words=frozenset({"srvr", "ruok"}))
    assert word(core, "ruok") == "imok"
    assert word(core, "dump") == "dump is not executed because it is not in the whitelist.\n"
    assert word(core, "mntr") == "mntr is not executed because it is not in the whitelist.\n"


def test_every_known_word_answers() -> None:
    core = make_core()
    Client(core, 1).session().create("/x")
    assert fourletter.COMMANDS == ALL_FOUR_LETTER_WORDS
    for w in sorted(fourletter.COMMANDS):
        word(core, w)


# -- end to end over TCP --------------------------------------------------------------------


@pytest.fixture(scope="module")
def zkpy_server():
    from zkpy.testing.launchers import ZkpyServer

    srv = ZkpyServer(settings={"4lw.commands.whitelist": "ruok,mntr,stat,envi"})
    try:
        srv.start(timeout=30)
    except Exception as e:  # pragma: no cover - environment problem
        srv.cleanup()
        pytest.skip(f"cannot start python -m zkpy: {e}")
    yield srv
    srv.cleanup()


def test_end_to_end_over_tcp(zkpy_server) -> None:
    srv = zkpy_server
    assert srv.four_letter("ruok") == "imok"
    srvr = srv.four_letter("srvr")  # always allowed, as in ZooKeeper
    assert keys(srvr, ":") == keys(OUT["srvr"], ":")
    assert srvr.startswith(f"Zookeeper version: {BUILD}\n")
    mntr = srv.four_letter("mntr")
    assert keys(mntr, "\t") == _reference_mntr_keys()
    v = kv(mntr, "\t")
    assert v["zk_server_state"] == "standalone" and v["zk_znode_count"] == "5"
    assert int(v["zk_num_alive_connections"]) >= 1
    assert int(v["zk_open_file_descriptor_count"]) > 0
    assert srv.four_letter("dump") == "dump is not executed because it is not in the whitelist.\n"
    assert srv.four_letter("conf") == "conf is not executed because it is not in the whitelist.\n"


def test_kazoo_server_version(zkpy_server) -> None:
    kazoo_client = pytest.importorskip("kazoo.client")
    client = kazoo_client.KazooClient(zkpy_server.connect_string)
    client.start(timeout=10)
    try:
        assert client.server_version() == (3, 8, 0)  # parsed from envi
        assert client.command(b"ruok") == "imok"
    finally:
        client.stop()
        client.close()
