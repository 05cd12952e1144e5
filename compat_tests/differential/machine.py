"""The differential state machine: one operation sequence, two servers.

Each rule performs one operation on server A (zkpy, the system under test)
and then on server B (Apache ZooKeeper, the oracle), normalizes both
outcomes (``compare``) and raises ``Mismatch`` if they differ.  Each
hypothesis example works below its own root ``/d<N>`` with paths from a
small pool (plus the sequential names it created), so operations collide.

Per server ("side") an example has two Kazoo clients (``c0``, ``c1``) and one
raw-protocol client (``r``).  Watch events every client received are
compared, as lists, whenever ``check_events`` runs (a rule, and at the end of
every example): each client first syncs, so every event the server sent
before the sync reply has been delivered.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule
from kazoo.client import KazooClient
from kazoo.exceptions import KazooException
from kazoo.protocol.states import Callback, KazooState
from kazoo.security import make_acl, make_digest_acl

from compat_tests.differential.compare import ZxidOrder, diff, stat_view
from compat_tests.differential.rawclient import (
    RawClient,
    RawConnectionLoss,
    RawSessionExpired,
)
from zkpy.jute import schema as S
from zkpy.jute.codec import decode
from zkpy.jute.protocol import Err

MAX_BUFFER = 0xFFFFF  # jute.maxbuffer default on both servers

# Relative paths under each example's root; "" is the root itself.
POOL = ("a", "b", "a/x", "a/y", "b/x", "a/x/z", "c")

USERS = (("u1", "p1"), ("u2", "p2"), ("u1", "wrong"))

ACL_CHOICES = (
    "default",      # OPEN_ACL_UNSAFE
    "digest-u1",    # u1 all (+ world read, see kazoo_acl)
    "digest-u1+world-read",   # world read: a separate entry
    "world-read",
    "auth",         # auth scheme: every authenticated id of the caller
    "bad-digest",   # malformed digest id: InvalidACL
    "ip-local",     # ip 127.0.0.1, all
    "world+u2-read-admin",
)

KAZOO_MODES = ("persistent", "ephemeral", "sequential", "ephemeral_sequential")

# Raw create: (opcode, flags); flags 7 and -1 do not exist.
RAW_CREATE_OPS = (1, 15, 19, 21)
TTLS = (-1, 0, 1, 100000, 0xFFFFFFFFFF, 0x10000000000)

INVALID_PATHS = ("", "noslash", "/a/", "//", "/a//b", "/a/./b", "/a/../b", "/.", "/..",
                 "/a\x00b", "/a\x01b", "/a\u0000", "/a\ufffeb", "/a\ud7ffb", "/a\uf8ffb",
                 "/zookeeper/quota/x", "/zookeeper/config", "/zookeeper")

OPS = {"ops": 0, "examples": 0}  # counted across the whole run


class Mismatch(AssertionError):
    """The two servers answered differently."""


# Every ACL the generator creates lets anyone READ: the oracle (Debian's
# ZooKeeper 3.8.0, which carries the CVE-2024-23944 fix) drops watch events
# for nodes the watcher cannot read and zkpy does not; that difference is
# pinned by test_watch_events_respect_read_acl instead.  NOAUTH still comes
# from writes, deletes, creates and ACL changes.
WORLD_READ = make_acl("world", "anyone", read=True)


def kazoo_acl(choice: str) -> list[Any] | None:
    if choice == "default":
        return None
    if choice == "digest-u1":
        return [make_digest_acl("u1", "p1", all=True), WORLD_READ]
    if choice == "digest-u1+world-read":
        return [make_digest_acl("u1", "p1", read=True, write=True), WORLD_READ]
    if choice == "world-read":
        return [make_acl("world", "anyone", read=True)]
    if choice == "auth":
        return [make_acl("auth", "", all=True), WORLD_READ]
    if choice == "bad-digest":
        return [make_acl("digest", "no-colon-here", all=True)]
    if choice == "ip-local":
        return [make_acl("ip", "127.0.0.1", all=True)]
    if choice == "world+u2-read-admin":
        return [make_acl("world", "anyone", all=True),
                make_digest_acl("u2", "p2", read=True, admin=True)]
    raise ValueError(choice)


def acl_view(acls: Any) -> list[tuple[int, str, str]]:
    return [(a.perms, a.id.scheme, a.id.id) for a in acls]


# -- per-server state ----------------------------------------------------------


class KClient:
    """A Kazoo client slot (``c0``/``c1``) and the events its watchers saw."""

    def __init__(self, side: Side, slot: str) -> None:
        self.side = side
        self.slot = slot
        self.generation = 0
        self.events: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()
        self.client: KazooClient | None = None
        self.start()

    def data_watch(self, ev: Any) -> None:
        with self.lock:
            self.events.append(("data", ev.type, self.side.rel(ev.path)))

    def child_watch(self, ev: Any) -> None:
        with self.lock:
            self.events.append(("child", ev.type, self.side.rel(ev.path)))

    def start(self) -> None:
        self.generation += 1
        self.client = KazooClient(hosts=self.side.connect_string, timeout=20.0)
        self.client.start(timeout=20)
        self.side.labels[self.client.client_id[0]] = f"{self.slot}#{self.generation}"

    def stop(self) -> None:
        if self.client is not None:
            try:
                self.client.stop()
                self.client.close()
            finally:
                self.client = None
        with self.lock:
            self.events = []

    def drain(self) -> None:
        """Sync, then wait until every watch callback queued so far has run."""
        c = self.client
        assert c is not None
        self.wait_connected()
        c.sync("/")
        done = threading.Event()
        c.handler.dispatch_callback(Callback("marker", done.set, ()))
        if not done.wait(10):
            raise RuntimeError(f"{self.side.name}/{self.slot}: callback queue stuck")

    def wait_connected(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        c = self.client
        assert c is not None
        while not (c.state == KazooState.CONNECTED and c.client_id and c.client_id[0]):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.side.name}/{self.slot}: not reconnected")
            time.sleep(0.005)

    def take_events(self) -> list[tuple[Any, ...]]:
        with self.lock:
            ev, self.events = self.events, []
        return ev


class RawSlot:
    """The raw-protocol client slot ``r``."""

    def __init__(self, side: Side) -> None:
        self.side = side
        self.generation = 0
        self.events: list[tuple[Any, ...]] = []
        self.client: RawClient | None = None
        self.new_session()

    def new_session(self) -> None:
        if self.client is not None:
            self.events.extend(self._rel(self.client.events))
            self.client.close_socket()
        self.generation += 1
        self.client = RawClient(self.side.host, self.side.port, timeout_ms=30000)
        self.side.labels[self.client.session_id] = f"r#{self.generation}"

    def _rel(self, evs: list[tuple[int, str]]) -> list[tuple[Any, ...]]:
        return [(t, self.side.rel(p)) for t, p in evs]

    def ensure(self) -> str:
        """Reconnect after a connection loss: 'same' session, or 'new' if it was gone."""
        c = self.client
        assert c is not None
        if c.connected:
            c.keepalive()
            return "connected"
        self.events.extend(self._rel(c.events))
        c.events.clear()
        try:
            c._connect((c.session_id, c.passwd))
            return "same"
        except RawSessionExpired:
            self.new_session()
            return "new"

    def call(self, op: int, body: Any) -> tuple[int, bytes]:
        self.ensure()
        assert self.client is not None
        return self.client.call(op, body)

    def take_events(self) -> list[tuple[Any, ...]]:
        assert self.client is not None
        ev = self.events + self._rel(self.client.events)
        self.events = []
        self.client.events.clear()
        return ev

    def close(self) -> None:
        if self.client is not None:
            try:
                if self.client.connected:
                    self.client.close_session()
            except Exception:
                pass
            self.client.close_socket()


class _Slots(dict):
    def __init__(self, side: Side) -> None:
        super().__init__()
        self.side = side

    def __missing__(self, slot: str) -> KClient:
        k = self[slot] = KClient(self.side, slot)
        return k


class Side:
    """One server and the clients an example uses on it."""

    def __init__(self, name: str, host: str, port: int, root: str) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.connect_string = f"{host}:{port}"
        self.root = root
        self.labels: dict[int, str] = {}
        self.kc: _Slots = _Slots(self)
        self._raw: RawSlot | None = None

    @property
    def raw(self) -> RawSlot:
        # Clients are connected on first use: examples that never touch one
        # do not pay for its session.
        if self._raw is None:
            self._raw = RawSlot(self)
        return self._raw

    def open(self) -> None:
        pass

    def close(self) -> None:
        for k in self.kc.values():
            try:
                k.stop()
            except Exception:
                pass
        if self._raw is not None:
            self._raw.close()

    def path(self, rel: str) -> str:
        return self.root if rel == "" else f"{self.root}/{rel}"

    def rel(self, path: str | None) -> str | None:
        if path is None:
            return None
        if path == self.root:
            return "<root>"
        if path.startswith(self.root + "/"):
            return path[len(self.root) + 1:]
        return path

    def owner(self, sid: int) -> Any:
        if sid == 0:
            return 0
        label = self.labels.get(sid)
        if label is not None:
            return "session " + label
        return sid  # container/TTL encodings, or an unknown session (compared as is)

    def stat(self, s: Any) -> Any:
        return stat_view(s, self.owner)


# -- the machine -----------------------------------------------------------------


@dataclass
class Context:
    """What a machine needs: the two servers' addresses and a root counter."""

    a: tuple[str, int]  # system under test (zkpy)
    b: tuple[str, int]  # oracle (Apache ZooKeeper)
    a_name: str = "zkpy"
    b_name: str = "zookeeper"
    counter: list[int] = field(default_factory=lambda: [0])
    seed: str = ""


def _err_name(code: int) -> str:
    try:
        return Err(code).name
    except ValueError:
        return str(code)


def outcome(fn, side: Side) -> Any:
    """Run ``fn(side)``; exceptions become ("error", name)."""
    try:
        return ("ok", fn(side))
    except KazooException as e:
        return ("error", type(e).__name__)
    except RawConnectionLoss:
        return ("error", "ConnectionLoss")
    except RawSessionExpired:
        return ("error", "SessionExpired(raw)")
    except (ValueError, TypeError) as e:  # kazoo's client-side validation
        return ("client-error", type(e).__name__)


path_ix = st.integers(min_value=0, max_value=40)
version_st = st.sampled_from([-1, 0, 1, 2, 3])
small_data = st.one_of(st.just(b""), st.binary(min_size=1, max_size=24))
client_st = st.sampled_from(["c0", "c1"])
kmode_st = st.sampled_from(KAZOO_MODES)
acl_st = st.sampled_from(ACL_CHOICES)


def make_machine(ctx: Context) -> type[RuleBasedStateMachine]:
    """A state machine class bound to ``ctx`` (servers are shared by examples)."""

    class DifferentialMachine(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            ctx.counter[0] += 1
            OPS["examples"] += 1
            self.root = f"/d{ctx.counter[0]}"
            self.order = ZxidOrder()
            self.trace: list[str] = []
            self.seq_paths: list[str] = []
            self.A = Side(ctx.a_name, *ctx.a, self.root)
            self.B = Side(ctx.b_name, *ctx.b, self.root)
            self.failed = False
            try:
                self.A.open()
                self.B.open()
            except BaseException:
                self.A.close()
                self.B.close()
                raise

        # -- plumbing -------------------------------------------------------

        def both(self, label: str, fn) -> tuple[Any, Any]:
            self.trace.append(label)
            OPS["ops"] += 1
            ra = outcome(fn, self.A)
            rb = outcome(fn, self.B)
            problems = diff(ra, rb, self.order)
            if problems:
                self.fail(label, ra, rb, problems)
            return ra, rb

        def fail(self, label: str, ra: Any, rb: Any, problems: list[str]) -> None:
            self.failed = True
            steps = "\n".join(f"  {i + 1:3d}. {t}" for i, t in enumerate(self.trace))
            raise Mismatch(
                f"{ctx.a_name} and {ctx.b_name} differ on: {label}\n"
                + "".join(f"  - {p}\n" for p in problems)
                + f"  {ctx.a_name}: {ra!r}"[:2000] + "\n"
                + f"  {ctx.b_name}: {rb!r}"[:2000] + "\n"
                + f"operations of this example (root {self.root}, paths relative to it):\n"
                + steps + "\n"
                + (f"seed: {ctx.seed}\n" if ctx.seed else "")
            )

        def pick(self, i: int) -> str:
            choices = POOL + tuple(self.seq_paths)
            return choices[i % len(choices)]

        def note_created(self, res: Any, rel_req: str) -> None:
            """Remember sequential names so later operations can hit them."""
            if res[0] == "ok":
                p = res[1] if isinstance(res[1], str) else None
                if isinstance(res[1], tuple) and res[1] and isinstance(res[1][0], str):
                    p = res[1][0]
                if p and p != rel_req and p not in self.seq_paths and p not in POOL:
                    self.seq_paths.append(p)

        @initialize()
        def make_root(self) -> None:
            self.both(f"c0.create({self.root!r})",
                      lambda s: s.stat(s.kc["c0"].client.create(s.root, b"root",
                                                                include_data=True)[1]))

        def teardown(self) -> None:
            try:
                if not self.failed:
                    self.check_events()
            finally:
                self.A.close()
                self.B.close()

        # -- Kazoo rules ----------------------------------------------------

        @rule(c=client_st, p=path_ix, data=small_data, mode=kmode_st, acl=acl_st,
              include_data=st.booleans())
        def create(self, c, p, data, mode, acl, include_data):
            rel = self.pick(p) + ("s" if "sequential" in mode else "")

            def op(s: Side):
                r = s.kc[c].client.create(s.path(rel), data, acl=kazoo_acl(acl),
                                          ephemeral="ephemeral" in mode,
                                          sequence="sequential" in mode,
                                          include_data=include_data)
                if include_data:
                    return (s.rel(r[0]), s.stat(r[1]))
                return s.rel(r)

            ra, _ = self.both(f"{c}.create({rel!r}, {data!r}, {mode}, acl={acl}, "
                              f"include_data={include_data})", op)
            self.note_created(ra, rel)

        @rule(c=client_st, p=path_ix, version=version_st)
        def delete(self, c, p, version):
            rel = self.pick(p)
            self.both(f"{c}.delete({rel!r}, version={version})",
                      lambda s: s.kc[c].client.delete(s.path(rel), version))

        @rule(c=client_st, p=path_ix, data=small_data, version=version_st)
        def set(self, c, p, data, version):
            rel = self.pick(p)
            self.both(f"{c}.set({rel!r}, {data!r}, version={version})",
                      lambda s: s.stat(s.kc[c].client.set(s.path(rel), data, version)))

        @rule(c=client_st, p=path_ix, watch=st.booleans())
        def get(self, c, p, watch):
            rel = self.pick(p)

            def op(s: Side):
                k = s.kc[c]
                data, stat = k.client.get(s.path(rel), watch=k.data_watch if watch else None)
                return (data, s.stat(stat))

            self.both(f"{c}.get({rel!r}, watch={watch})", op)

        @rule(c=client_st, p=path_ix, watch=st.booleans())
        def exists(self, c, p, watch):
            rel = self.pick(p)

            def op(s: Side):
                k = s.kc[c]
                return s.stat(k.client.exists(s.path(rel),
                                              watch=k.data_watch if watch else None))

            self.both(f"{c}.exists({rel!r}, watch={watch})", op)

        @rule(c=client_st, p=st.one_of(st.just(-1), path_ix), watch=st.booleans(),
              include_data=st.booleans())
        def get_children(self, c, p, watch, include_data):
            rel = "" if p < 0 else self.pick(p)

            def op(s: Side):
                k = s.kc[c]
                r = k.client.get_children(s.path(rel), watch=k.child_watch if watch else None,
                                          include_data=include_data)
                if include_data:
                    return (sorted(r[0]), s.stat(r[1]))
                return sorted(r)

            self.both(f"{c}.get_children({rel!r}, watch={watch}, "
                      f"include_data={include_data})", op)

        @rule(c=client_st, ops=st.lists(
            st.tuples(st.sampled_from(["create", "delete", "set_data", "check"]), path_ix,
                      version_st, small_data, kmode_st), min_size=1, max_size=4))
        def transaction(self, c, ops):
            resolved = []
            for kind, p, version, data, mode in ops:
                rel = self.pick(p)
                if kind == "create" and "sequential" in mode:
                    rel += "s"
                resolved.append((kind, rel, version, data, mode))

            def op(s: Side):
                t = s.kc[c].client.transaction()
                for kind, rel, version, data, mode in resolved:
                    if kind == "create":
                        t.create(s.path(rel), data, ephemeral="ephemeral" in mode,
                                 sequence="sequential" in mode)
                    elif kind == "delete":
                        t.delete(s.path(rel), version)
                    elif kind == "set_data":
                        t.set_data(s.path(rel), data, version)
                    else:
                        t.check(s.path(rel), version)
                out = []
                for r in t.commit():
                    if isinstance(r, Exception):
                        out.append(("error", type(r).__name__))
                    elif isinstance(r, str):
                        out.append(s.rel(r))
                    elif hasattr(r, "czxid"):
                        out.append(s.stat(r))
                    else:
                        out.append(r)
                return out

            desc = ", ".join(
                f"{k}({r!r}" + (f", {d!r}, {m}" if k == "create" else "")
                + (f", {d!r}" if k == "set_data" else "")
                + (f", v={v}" if k != "create" else "") + ")"
                for k, r, v, d, m in resolved)
            ra, _ = self.both(f"{c}.transaction([{desc}])", op)
            if ra[0] == "ok":
                for item in ra[1]:
                    if isinstance(item, str):
                        self.note_created(("ok", item), "")

        @rule(c=client_st, p=path_ix, acl=acl_st, version=version_st)
        def set_acls(self, c, p, acl, version):
            rel = self.pick(p)

            def op(s: Side):
                acls = kazoo_acl(acl) or [make_acl("world", "anyone", all=True)]
                return s.stat(s.kc[c].client.set_acls(s.path(rel), acls, version))

            self.both(f"{c}.set_acls({rel!r}, {acl}, version={version})", op)

        @rule(c=client_st, p=st.one_of(st.just(-1), path_ix))
        def get_acls(self, c, p):
            rel = "" if p < 0 else self.pick(p)

            def op(s: Side):
                acls, stat = s.kc[c].client.get_acls(s.path(rel))
                return (acl_view(acls), s.stat(stat))

            self.both(f"{c}.get_acls({rel!r})", op)

        @rule(c=client_st, user=st.sampled_from(USERS))
        def add_auth(self, c, user):
            self.both(f"{c}.add_auth('digest', '{user[0]}:{user[1]}')",
                      lambda s: s.kc[c].client.add_auth("digest", f"{user[0]}:{user[1]}"))

        @rule(c=client_st, p=path_ix, how=st.sampled_from(["set", "create"]),
              size=st.sampled_from(["limit", "limit+1", "1MiB"]))
        def big_data(self, c, p, how, size):
            """Data at and over jute.maxbuffer: the request frame is exactly the
            limit (accepted) or one byte more (connection dropped)."""
            rel = self.pick(p)

            def op(s: Side):
                k = s.kc[c]
                path = s.path(rel)
                pl = len(path.encode())
                if how == "set":
                    overhead = 4 + 4 + 4 + pl + 4 + 4  # xid type path data version
                else:  # xid type path data acl(world:anyone) flags
                    overhead = 4 + 4 + 4 + pl + 4 + 4 + (4 + 4 + 5 + 4 + 6) + 4
                n = {"limit": MAX_BUFFER - overhead, "limit+1": MAX_BUFFER - overhead + 1,
                     "1MiB": 1 << 20}[size]
                data = bytes([0x5A]) * n
                try:
                    if how == "set":
                        return s.stat(k.client.set(path, data))
                    return s.rel(k.client.create(path, data))
                finally:
                    k.wait_connected()

            self.both(f"{c}.{how}({rel!r}, <{size} data>)", op)

        @rule()
        def check_events(self):
            """Sync every client and compare the watch events each has seen."""
            def op(s: Side):
                seen = {}
                for slot, k in s.kc.items():
                    k.drain()
                    seen[slot] = k.take_events()
                if s._raw is not None:
                    s.raw.call(9, S.SyncRequest("/"))
                    seen["r"] = s.raw.take_events()
                return seen

            self.both("check watch events of c0, c1, r", op)

        @rule(c=client_st)
        def close_session(self, c):
            """client.stop(), then a new client (and session) in the same slot."""
            self._flush_events_of(c)

            def op(s: Side):
                k = s.kc[c]
                k.stop()
                k.start()
                return "restarted"

            self.both(f"{c}.stop(); {c} = new client", op)

        @rule(c=client_st)
        def expire_session(self, c):
            """A second connection with c's session id and password closes the
            session; c's Kazoo sees it expired and makes a new session."""
            self._flush_events_of(c)

            def op(s: Side):
                k = s.kc[c]
                sid, pw = k.client.client_id
                result = None
                for _ in range(20):
                    try:
                        r = RawClient(s.host, s.port, session=(sid, pw))
                    except RawSessionExpired:
                        result = "already expired"
                        break
                    except RawConnectionLoss:
                        continue
                    try:
                        result = _err_name(r.close_session())
                        break
                    except RawConnectionLoss:
                        continue  # Kazoo reconnected first and took the session back
                deadline = time.monotonic() + 20
                while not (k.client.client_id and k.client.client_id[0] not in (None, sid)
                           and k.client.state == KazooState.CONNECTED):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"{s.name}/{c}: no new session after expiry")
                    time.sleep(0.005)
                k.generation += 1
                s.labels[k.client.client_id[0]] = f"{c}#{k.generation}"
                with k.lock:
                    evs = [e for e in k.events]
                    k.events = []
                return (result, evs)

            self.both(f"expire session of {c} (close it from another connection)", op)

        def _flush_events_of(self, c: str) -> None:
            def op(s: Side):
                k = s.kc[c]
                k.drain()
                return k.take_events()

            self.both(f"check watch events of {c}", op)

        # -- raw-protocol rules -----------------------------------------------

        @rule(p=path_ix, seq=st.booleans(), opcode=st.sampled_from(RAW_CREATE_OPS),
              flags=st.sampled_from([0, 1, 2, 3, 4, 5, 6, 7, -1]), ttl=st.sampled_from(TTLS),
              data=st.one_of(st.none(), small_data), empty_acl=st.booleans())
        def raw_create(self, p, seq, opcode, flags, ttl, data, empty_acl):
            """create/create2/createContainer/createTTL with any flags, TTL, null data."""
            rel = self.pick(p) + ("s" if seq else "")
            if opcode == 21 and flags not in (5, 6) and ttl < 0:
                # Apache ZooKeeper 3.8 accepts this and then exits applying the txn
                # (EphemeralType.TTL.toEphemeralOwner(-1)); zkpy answers BADARGUMENTS.
                ttl = 1

            def op(s: Side):
                acl = [] if empty_acl else [S.ACL(31, S.Id("world", "anyone"))]
                if opcode == 21:
                    body = S.CreateTTLRequest(s.path(rel), data, acl, flags, ttl)
                else:
                    body = S.CreateRequest(s.path(rel), data, acl, flags)
                assert s.raw is not None
                err, payload = s.raw.call(opcode, body)
                if err:
                    return _err_name(err)
                if opcode == 1:
                    return s.rel(decode(S.CreateResponse, payload)[0].path)
                r = decode(S.Create2Response, payload)[0]
                return (s.rel(r.path), s.stat(r.stat))

            ra, _ = self.both(f"r.create(op={opcode}, {rel!r}, {data!r}, flags={flags}, "
                              f"ttl={ttl}, acl={'[]' if empty_acl else 'open'})", op)
            self.note_created(ra, rel)

        @rule(p=path_ix, data=st.one_of(st.none(), small_data), version=version_st)
        def raw_set(self, p, data, version):
            rel = self.pick(p)

            def op(s: Side):
                assert s.raw is not None
                err, payload = s.raw.call(5, S.SetDataRequest(s.path(rel), data, version))
                if err:
                    return _err_name(err)
                return s.stat(decode(S.SetDataResponse, payload)[0].stat)

            self.both(f"r.setData({rel!r}, {data!r}, version={version})", op)

        @rule(p=path_ix, watch=st.booleans())
        def raw_get(self, p, watch):
            rel = self.pick(p)

            def op(s: Side):
                assert s.raw is not None
                err, payload = s.raw.call(4, S.GetDataRequest(s.path(rel), watch))
                if err:
                    return _err_name(err)
                r = decode(S.GetDataResponse, payload)[0]
                return (r.data, s.stat(r.stat))

            self.both(f"r.getData({rel!r}, watch={watch})", op)

        @rule(p=st.one_of(st.just(-1), path_ix), nonexistent=st.booleans())
        def raw_get_ephemerals(self, p, nonexistent):
            rel = "" if p < 0 else self.pick(p)

            def op(s: Side):
                prefix = s.path(rel) + ("zz" if nonexistent else "")
                assert s.raw is not None
                err, payload = s.raw.call(103, S.GetEphemeralsRequest(prefix))
                if err:
                    return _err_name(err)
                return sorted(s.rel(x) for x in decode(S.GetEphemeralsResponse,
                                                       payload)[0].ephemerals)

            self.both(f"r.getEphemerals({rel!r}{' + zz' if nonexistent else ''})", op)

        @rule(p=st.one_of(st.just(-1), path_ix))
        def raw_all_children_number(self, p):
            rel = "" if p < 0 else self.pick(p)

            def op(s: Side):
                assert s.raw is not None
                err, payload = s.raw.call(104, S.GetAllChildrenNumberRequest(s.path(rel)))
                if err:
                    return _err_name(err)
                return decode(S.GetAllChildrenNumberResponse, payload)[0].totalNumber

            self.both(f"r.getAllChildrenNumber({rel!r})", op)

        @rule(p=st.one_of(st.just(-1), path_ix), mode=st.sampled_from([0, 1, 2]))
        def raw_add_watch(self, p, mode):
            """addWatch: 0 persistent, 1 persistent recursive, 2 invalid."""
            rel = "" if p < 0 else self.pick(p)

            def op(s: Side):
                assert s.raw is not None
                err, payload = s.raw.call(106, S.AddWatchRequest(s.path(rel), mode))
                return _err_name(err) if err else payload

            self.both(f"r.addWatch({rel!r}, mode={mode})", op)

        @rule(p=st.one_of(st.just(-1), path_ix), wtype=st.sampled_from([1, 2, 3, 4, 5]),
              remove=st.booleans())
        def raw_remove_or_check_watches(self, p, wtype, remove):
            rel = "" if p < 0 else self.pick(p)

            def op(s: Side):
                assert s.raw is not None
                if remove:
                    err, payload = s.raw.call(18, S.RemoveWatchesRequest(s.path(rel), wtype))
                else:
                    err, payload = s.raw.call(17, S.CheckWatchesRequest(s.path(rel), wtype))
                return _err_name(err) if err else payload

            name = "removeWatches" if remove else "checkWatches"
            self.both(f"r.{name}({rel!r}, type={wtype})", op)

        @rule(bad=st.sampled_from(INVALID_PATHS),
              opcode=st.sampled_from([1, 2, 3, 4, 5, 7, 8, 12, 13, 103, 104, 106]))
        def raw_invalid_path(self, bad, opcode):
            """Requests naming an invalid path (Kazoo refuses some client-side)."""
            def op(s: Side):
                records = {
                    1: S.CreateRequest(bad, b"x", [S.ACL(31, S.Id("world", "anyone"))], 0),
                    2: S.DeleteRequest(bad, -1),
                    3: S.ExistsRequest(bad, False),
                    4: S.GetDataRequest(bad, False),
                    5: S.SetDataRequest(bad, b"y", -1),
                    7: S.SetACLRequest(bad, [S.ACL(31, S.Id("world", "anyone"))], -1),
                    8: S.GetChildrenRequest(bad, False),
                    12: S.GetChildren2Request(bad, False),
                    # A standalone check that succeeds gets no reply from ZooKeeper
                    # 3.8 (NPE serializing it); see test_standalone_check_reply.
                    13: S.CheckVersionRequest(bad, 12345),
                    103: S.GetEphemeralsRequest(bad),
                    104: S.GetAllChildrenNumberRequest(bad),
                    106: S.AddWatchRequest(bad, 0),
                }
                assert s.raw is not None
                err, payload = s.raw.call(opcode, records[opcode])
                if err:
                    return _err_name(err)
                # success: compare the payload shape only (stats hold zxids)
                return ("ok", len(payload))

            self.both(f"r.op{opcode}({bad!r})", op)

        @rule()
        def raw_who_am_i(self):
            def op(s: Side):
                assert s.raw is not None
                err, payload = s.raw.call(107, None)
                if err:
                    return _err_name(err)
                # Sorted: ZooKeeper keeps a connection's ids in a hash set, so
                # its order is an artefact (the ip id usually comes last).
                return sorted((i.authScheme, i.user) for i in
                              decode(S.WhoAmIResponse, payload)[0].clientInfo)

            self.both("r.whoAmI()", op)

        @rule(scheme=st.sampled_from(["digest", "nosuchscheme"]),
              user=st.sampled_from(USERS))
        def raw_add_auth(self, scheme, user):
            def op(s: Side):
                assert s.raw is not None
                err, _ = s.raw.call(100, S.AuthPacket(0, scheme, f"{user[0]}:{user[1]}".encode()))
                closed = s.raw.client is not None and not s.raw.client.connected
                if not closed:
                    # a server that closes after AUTHFAILED may do so a moment later
                    try:
                        s.raw.client.ping()  # type: ignore[union-attr]
                    except RawConnectionLoss:
                        closed = True
                again = s.raw.ensure() if closed else "connected"
                return (_err_name(err), again)

            self.both(f"r.auth({scheme!r}, '{user[0]}:{user[1]}')", op)

        @rule(how=st.sampled_from(["close", "expire"]))
        def raw_session_end(self, how):
            """The raw client's session ends (its own closeSession, or another
            connection with its id and password closes it); it starts a new one."""
            def op(s: Side):
                raw = s.raw
                assert raw is not None and raw.client is not None
                raw.ensure()
                raw.client.call(9, S.SyncRequest("/"))
                evs = raw.take_events()
                if how == "close":
                    err = raw.client.close_session()
                else:
                    other = RawClient(s.host, s.port,
                                      session=(raw.client.session_id, raw.client.passwd))
                    err = other.close_session()
                    # the old connection was closed when the new one took the session
                    try:
                        raw.client.ping()
                        still = "old connection still open"
                    except RawConnectionLoss:
                        still = "old connection closed"
                    evs.append(still)
                raw.new_session()
                return (_err_name(err), evs)

            self.both(f"r.{how}Session()", op)

    DifferentialMachine.__name__ = DifferentialMachine.__qualname__ = "DifferentialMachine"
    return DifferentialMachine


def env_seed() -> int | None:
    v = os.environ.get("ZKPY_DIFF_SEED")
    return int(v, 0) if v else None

