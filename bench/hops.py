"""Where a replicated write's latency goes, hop by hop, zkpy against ZooKeeper.

    python -m bench.hops                                  # zkpy,zookeeper
    python -m bench.hops --servers zkpy@main,zkpy --rounds 5

Starts a 3-server ensemble of each kind (``bench.targets``: zkbench's
zoo.cfg, forceSync as shipped) and sends setData of ``--value-size`` bytes
to one znode through a follower, one at a time (``bench.wire``). Meanwhile a
child process captures the loopback's TCP segments with a raw packet socket:
the kernel's timestamp of the sending copy of each segment, no process
slowed (strace and perf trace slow the processes they watch, and made the
thread hops of a write look several times their size). Each write's time
between its request leaving the client and its reply leaving the follower
is cut where its quorum packets leave their senders:

    follower  request -> REQUEST     the follower forwards it
    leader    REQUEST -> PROPOSAL    prep, propose (the first PROPOSAL out)
    follower  PROPOSAL -> ACK        log, fsync, ACK (the client's follower
    other     PROPOSAL -> ACK        and the other one)
    leader    ACK -> COMMIT          the first ACK in, the COMMIT to the follower
    follower  COMMIT -> reply        apply, reply

Kinds alternate A-B-A-B (``--rounds``) after each is warmed until its
sequential p50 is steady (zkbench's rule: the JVM compiles its hot paths
first). Reported per hop: the median over rounds of each round's p50 and
p90, and per pair the round-by-round ratios of the p50s (min, median, max).
A quorum packet is matched to its write by its zxid; a write whose
packets do not all show (a segment that carries two quorum packets, a
capture cut inside it) is left out and counted.

Needs the right to open a raw socket (root, or CAP_NET_RAW); the capture
reads the kernel's copy of every loopback segment, so run it on a quiet
machine. Timing figures for the README still come from ``bench.zkbench``;
this says where one kind's time goes against the other's.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import stats, wire
from bench.measure import ROOT, fmt, ratio_pairs, warm_up
from bench.targets import RevisionCheckout, Target, parse_kinds, server_settings

# Zab's QuorumPacket types (Leader.java); a quorum packet is a jute record
# with no length in front: its first int is its type.
REQUEST, PROPOSAL, ACK, COMMIT = 1, 2, 3, 4
_QUORUM_NAMES = {REQUEST: "REQUEST", PROPOSAL: "PROPOSAL", ACK: "ACK", COMMIT: "COMMIT"}

# (name, short name, from, to): what starts and what ends each hop, as ``hops``
# keys them (the short name is for the line printed after each round).
HOPS = (
    ("follower: request -> REQUEST", "fwd", "req", ("REQUEST", "F1")),
    ("leader: REQUEST -> PROPOSAL", "propose", ("REQUEST", "F1"), "proposal"),
    ("follower: PROPOSAL -> ACK", "ack", ("PROPOSAL", "F1"), ("ACK", "F1")),
    ("other follower: PROPOSAL -> ACK", "ack2", ("PROPOSAL", "F2"), ("ACK", "F2")),
    ("leader: first ACK -> COMMIT", "commit", "first ack", ("COMMIT", "F1")),
    ("follower: COMMIT -> reply", "reply", ("COMMIT", "F1"), "reply"),
    ("total: request -> reply", "total", "req", "reply"),
)

_ETH_P_ALL = 0x0003
_SO_TIMESTAMPNS = 35
_PACKET_OUTGOING = 4
_HEAD_BYTES = 16  # enough of a payload for a quorum packet's type and zxid


@dataclass(frozen=True)
class Segment:
    """One TCP segment with a payload, as it left its sender."""

    ts: float  # seconds (the kernel's timestamp)
    sport: int
    dport: int
    size: int  # payload bytes
    head: bytes  # the payload's first bytes


def parse_frame(frame: bytes, ts: float) -> Segment | None:
    """A loopback frame (Ethernet header, IPv4, TCP) as a Segment; None for
    anything else or a segment with no payload."""
    if len(frame) < 14 + 20 + 20 or frame[12:14] != b"\x08\x00":
        return None
    ip = frame[14:]
    if ip[0] >> 4 != 4 or ip[9] != socket.IPPROTO_TCP:
        return None
    ihl = (ip[0] & 15) * 4
    (total,) = struct.unpack_from(">H", ip, 2)
    tcp = ip[ihl:]
    if len(tcp) < 20:
        return None
    sport, dport = struct.unpack_from(">HH", tcp, 0)
    doff = (tcp[12] >> 4) * 4
    size = total - ihl - doff
    if size <= 0:
        return None
    return Segment(ts, sport, dport, size, bytes(tcp[doff:doff + _HEAD_BYTES]))


def capture(seconds: float, out: Path) -> int:
    """Segments leaving on ``lo`` for ``seconds``, as JSON lines in ``out``."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
    sock.bind(("lo", 0))
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 20)
    sock.settimeout(0.2)
    count = 0
    end = time.monotonic() + seconds
    with out.open("w") as f:
        while time.monotonic() < end:
            try:
                frame, ancillary, _, addr = sock.recvmsg(128, 64)
            except TimeoutError:
                continue
            if addr[2] != _PACKET_OUTGOING:  # lo shows each segment twice
                continue
            ts = time.time()  # (only if the kernel gave no timestamp)
            for _, kind, data in ancillary:
                if kind == _SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", data[:16])
                    ts = sec + nsec / 1e9
            seg = parse_frame(frame, ts)
            if seg is not None:
                f.write(json.dumps([seg.ts, seg.sport, seg.dport, seg.size, seg.head.hex()]) + "\n")
                count += 1
    return count


def load_segments(path: Path) -> list[Segment]:
    out = []
    for line in path.read_text().splitlines():
        ts, sport, dport, size, head = json.loads(line)
        out.append(Segment(ts, sport, dport, size, bytes.fromhex(head)))
    return out


def quorum_type(head: bytes) -> int | None:
    if len(head) < 12:
        return None
    (kind,) = struct.unpack_from(">i", head, 0)
    return kind if kind in _QUORUM_NAMES else None


def hops(segments: Iterable[Segment], client_port: int, min_request: int = 64
         ) -> tuple[dict[str, list[float]], int]:
    """Each write's hops in seconds ({hop: [one per write]}), and how many
    writes were left out. A write starts with a segment of at least
    ``min_request`` bytes to ``client_port`` and ends with the next segment
    from it; the leader's quorum port is the one PROPOSALs leave from, the
    client's follower the one REQUESTs come from. The write's zxid is that of
    the first PROPOSAL after its REQUEST, and its ACKs and COMMIT are the
    packets with that zxid, wherever they fall: the slower follower's ACK
    often leaves after the reply (the quorum did not need it)."""
    segs = sorted(segments, key=lambda s: s.ts)
    proposals = Counter(s.sport for s in segs if s.sport != client_port
                        and quorum_type(s.head) == PROPOSAL)
    out: dict[str, list[float]] = {name: [] for name, *_ in HOPS}
    if not proposals:
        return out, sum(1 for s in segs if s.dport == client_port and s.size >= min_request)
    leader = proposals.most_common(1)[0][0]
    requests = Counter(s.sport for s in segs if s.dport == leader
                       and quorum_type(s.head) == REQUEST)
    f1 = requests.most_common(1)[0][0] if requests else None
    # Every quorum packet to or from the leader, first seen: (kind, F1|F2, zxid) -> time;
    # the REQUESTs (which carry no zxid) and PROPOSALs in order besides.
    first: dict[tuple[str, str, int], float] = {}
    sent: list[tuple[float, int, int]] = []  # (time, kind, zxid) of REQUESTs and PROPOSALs
    for s in segs:
        kind = quorum_type(s.head) if leader in (s.sport, s.dport) else None
        if kind is None:
            continue
        (zxid,) = struct.unpack_from(">q", s.head, 4)
        peer = s.dport if s.sport == leader else s.sport
        first.setdefault((_QUORUM_NAMES[kind], "F1" if peer == f1 else "F2", zxid), s.ts)
        if kind == PROPOSAL or (kind == REQUEST and peer == f1):
            sent.append((s.ts, kind, zxid))
    writes: list[tuple[float, float]] = []
    start: float | None = None
    for s in segs:
        if s.dport == client_port and s.size >= min_request:
            start = s.ts
        elif s.sport == client_port and start is not None:
            writes.append((start, s.ts))
            start = None
    skipped = 0 if start is None else 1  # the capture ended inside one
    at = 0
    for req, reply in writes:
        seen: dict[object, float] = {"req": req, "reply": reply}
        while at < len(sent) and sent[at][0] < req:
            at += 1
        i = at
        while i < len(sent) and sent[i][0] < reply and sent[i][1] != REQUEST:
            i += 1  # (PROPOSALs of writes that are not this one's)
        if i < len(sent) and sent[i][0] < reply:
            seen[("REQUEST", "F1")] = sent[i][0]
            zxid = next((z for t, kind, z in sent[i:] if kind == PROPOSAL and t < reply), None)
            if zxid is not None:
                for key in (("PROPOSAL", "F1"), ("PROPOSAL", "F2"), ("ACK", "F1"),
                            ("ACK", "F2"), ("COMMIT", "F1")):
                    if (*key, zxid) in first:
                        seen[key] = first[(*key, zxid)]
        acks = [seen[k] for k in (("ACK", "F1"), ("ACK", "F2")) if k in seen]
        props = [seen[k] for k in (("PROPOSAL", "F1"), ("PROPOSAL", "F2")) if k in seen]
        if acks:
            seen["first ack"] = min(acks)
        if props:
            seen["proposal"] = min(props)
        if not all(a in seen and b in seen for _, _, a, b in HOPS):
            skipped += 1
            continue
        for name, _, a, b in HOPS:
            out[name].append(seen[b] - seen[a])
    return out, skipped


def _percentiles(us: list[float]) -> dict[str, float | None]:
    """p50, p90 and count of ascending microseconds."""
    return {"p50_us": stats.percentile(us, 50), "p90_us": stats.percentile(us, 90),
            "n": len(us)}


def summarise(per_hop: dict[str, list[float]]) -> dict[str, dict[str, float | None]]:
    """p50 and p90 of each hop, in microseconds."""
    return {name: _percentiles(sorted(v * 1e6 for v in vals)) for name, vals in per_hop.items()}


# -- the run ---------------------------------------------------------------------------


def _writes(conn: wire.Conn, path: str, data: bytes, until: float) -> list[float]:
    """setData one at a time until ``until`` (monotonic); each one's latency (us)."""
    req = wire.set_(path, data)
    lat = []
    clock = time.perf_counter_ns
    while time.monotonic() < until:
        t0 = clock()
        err = conn.call(req)
        lat.append((clock() - t0) / 1000.0)
        if err:
            raise wire.ProtocolError("setData %s: error %d" % (path, err))
    return sorted(lat)


def _round(conn: wire.Conn, client_port: int, path: str, data: bytes, seconds: float,
           workdir: Path) -> dict:
    """One measured window: the capture in a child process while the writes run."""
    out = workdir / "capture.jsonl"
    child = subprocess.Popen([sys.executable, "-m", "bench.hops", "--capture", str(seconds),
                              str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.3)  # the socket is open before the first write
    try:
        lat = _writes(conn, path, data, time.monotonic() + seconds - 0.6)
    except BaseException:
        # (The caller may measure again: its capture must not share this file
        # with a capture still running.)
        child.kill()
        child.communicate()
        out.unlink(missing_ok=True)
        raise
    _, err = child.communicate(timeout=seconds + 30)
    if child.returncode:
        raise RuntimeError("the capture failed (it needs CAP_NET_RAW): %s" % err.strip()[-500:])
    per_hop, skipped = hops(load_segments(out), client_port)
    out.unlink()
    res = summarise(per_hop)
    res["client"] = _percentiles(lat)
    res["skipped"] = skipped
    return res


def report(rounds: list[dict], labels: Sequence[str], ratios: str | None) -> None:
    names = [name for name, *_ in HOPS] + ["client: send -> reply read"]
    keys = [name for name, *_ in HOPS] + ["client"]
    med = {lab: {k: {q: stats.median(r[k][q] for r in rounds if r["server"] == lab)
                     for q in ("p50_us", "p90_us")} for k in keys} for lab in labels}
    print("\n== sequential setData through a follower, per hop: microseconds, median over "
          "rounds of each round's p50 (p90) ==")
    width = max(len(n) for n in names)
    print("%-*s %s" % (width, "hop", "".join("%22s" % lab for lab in labels)))
    for name, key in zip(names, keys, strict=True):
        print("%-*s %s" % (width, name, "".join(
            "%14s (%s)" % (fmt(med[lab][key]["p50_us"], ",.0f", 6),
                           fmt(med[lab][key]["p90_us"], ",.0f", 5)) for lab in labels)))
    for lab in labels:
        mine = [r for r in rounds if r["server"] == lab]
        print("%s: %d writes timed by hop, %d left out" % (
            lab, sum(r["total: request -> reply"]["n"] for r in mine),
            sum(r["skipped"] for r in mine)))
    for a, b in ratio_pairs(labels, ratios):
        print("\n%s/%s, round-by-round p50 ratios:" % (a, b))
        for name, key in zip(names, keys, strict=True):
            sp = stats.spread(stats.pairwise_ratios(
                [r[key]["p50_us"] for r in rounds if r["server"] == a],
                [r[key]["p50_us"] for r in rounds if r["server"] == b]))
            print("  %-*s %s" % (width, name, sp.text() if sp else "-"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.hops", description=__doc__.split("\n")[0])
    p.add_argument("--servers", default="zkpy,zookeeper", help="kinds, as bench.zkbench's")
    p.add_argument("--rounds", type=int, default=3, help="A-B rounds (default 3)")
    p.add_argument("--seconds", type=float, default=4.0, help="seconds per measured window")
    p.add_argument("--value-size", type=int, default=1024)
    p.add_argument("--warmup-window", type=float, default=3.0, help="seconds per warm-up window")
    p.add_argument("--warmup-min", type=float, default=10.0)
    p.add_argument("--warmup-max", type=float, default=120.0)
    p.add_argument("--steady-windows", type=int, default=3)
    p.add_argument("--steady-tolerance", type=float, default=0.05)
    p.add_argument("--ratios", default=None, help="pairs to compare, as bench.zkbench's")
    p.add_argument("--timeout", type=float, default=60.0)
    p.add_argument("--capture", nargs=2, metavar=("SECONDS", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.capture:
        capture(float(args.capture[0]), Path(args.capture[1]))
        return 0
    kinds = parse_kinds(args.servers)
    checkouts: list[RevisionCheckout] = []
    targets: list[Target] = []
    conns: dict[str, tuple[wire.Conn, int, Path]] = {}
    data = wire.value(args.value_size)
    path = ROOT + "/hops"
    rounds: list[dict] = []
    failed = False
    try:
        for k in kinds:
            source = None
            if k.rev:
                checkouts.append(RevisionCheckout(k.rev, compiled=k.accel == "require"))
                source = checkouts[-1].dir
            t = Target(k, 3, server_settings(force_sync=True), source_root=source)
            targets.append(t)
            t.start()
            i = t.follower_index()
            if i is None:
                raise RuntimeError("%s: no member reports Mode: follower" % t.label)
            conn = wire.Conn.open(t.addrs[i], args.timeout, session_timeout_ms=40000)
            for node in (ROOT, path):
                err = conn.call(wire.create(node, b""))
                if err not in (0, wire.ERR_NODEEXISTS):
                    raise wire.ProtocolError("create %s: error %d" % (node, err))
            conns[t.label] = (conn, t.addrs[i][1], Path(t.workdir))
            print("%s: 3 servers, writing through member %d" % (t.label, i + 1), flush=True)

        def keep_others(label: str) -> None:  # the idle sessions must not expire
            for t in targets:
                if t.label != label:
                    try:
                        conns[t.label][0].ping()
                    except ConnectionError as exc:
                        # Expired all the same: a cycle of another kind outlasted
                        # the session timeout (ZooKeeper 3.8.0's stall, see again()).
                        again(t, "idle session", exc)

        def again(t: Target, what: str, exc: Exception) -> wire.Conn:
            """A server closed the session's connection (ZooKeeper 3.8.0 now and
            then: a setData unanswered for the session timeout, see bench/README):
            say so, and open a new session on the same member to go on."""
            print("  [%s] %s: %s; a new session, measured again" % (t.label, what, exc),
                  flush=True)
            conn, port, workdir = conns[t.label]
            conn.close()
            addr = next(a for a in t.addrs if a[1] == port)
            conn = wire.Conn.open(addr, args.timeout, session_timeout_ms=40000)
            conns[t.label] = (conn, port, workdir)
            return conn

        for t in targets:

            def cycle(t: Target = t) -> dict[str, dict]:
                keep_others(t.label)
                end = time.monotonic() + args.warmup_window
                try:
                    lat = _writes(conns[t.label][0], path, data, end)
                except ConnectionError as exc:
                    # (The stall may have outlasted the window: a whole one again.)
                    conn = again(t, "warm-up", exc)
                    lat = _writes(conn, path, data, time.monotonic() + args.warmup_window)
                return {"setData": {"p50_us": stats.percentile(lat, 50)}}

            warm_up(t.label + " sequential", cycle, args, lambda s: print(s, flush=True),
                    ("p50_us",))
        for rnd in range(1, args.rounds + 1):
            for t in targets:
                keep_others(t.label)
                conn, port, workdir = conns[t.label]
                try:
                    res = _round(conn, port, path, data, args.seconds, workdir)
                except ConnectionError as exc:
                    conn = again(t, "round %d" % rnd, exc)
                    res = _round(conn, port, path, data, args.seconds, workdir)
                res.update(server=t.label, round=rnd)
                rounds.append(res)
                print("  [%s] round %d: %s; client p50 %.0f us" % (
                    t.label, rnd, ", ".join("%s %.0f" % (short, res[name]["p50_us"])
                                            for name, short, _, _ in HOPS if res[name]["n"]),
                    res["client"]["p50_us"]), flush=True)
    except Exception:
        failed = True
        raise
    finally:
        for c, _, _ in conns.values():
            c.close()
        for t in targets:
            problems = t.log_problems()
            if problems:
                print("  [%s] %d suspicious line(s) in the server logs, e.g.: %s"
                      % (t.label, len(problems), problems[0]), flush=True)
            if failed:
                print("  [%s] logs kept in %s; tail:" % (t.label, t.workdir), flush=True)
                for ln in t.log_tails(10).splitlines():
                    print("    | " + ln, flush=True)
            t.cleanup(failed=failed)
        for co in checkouts:
            co.cleanup()
    report(rounds, [t.label for t in targets], args.ratios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
