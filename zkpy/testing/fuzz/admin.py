"""The AdminServer's fuzz target: paths, query strings, the Authorization header
and the restore body, through the same functions the HTTP site calls.

An input: byte 0 picks what the rest is,

    0  a GET's path and query (``CommandResource.render_GET`` on a standalone
       server in memory): a JSON answer (or the listing, or 404), never an
       exception and never a server that stops serving
    1  an ``Authorization`` header for snapshot/restore
       (``zkpy.storage.backup.authorize``): None or (status, message)
    2  a restore body (``zkpy.storage.backup.read_backup``): a tree and
       sessions a server serves from, or ``BackupError``

The real HTTP server (twisted.web's parser, the snapshot and restore
commands end to end) is fuzzed over sockets by ``zkpy.testing.fuzz.live``.
"""

from __future__ import annotations

import json

from twisted.web.http import parse_qs

from zkpy.net.adminserver import COMMANDS, AdminContext, CommandResource
from zkpy.server.core import CoreSettings
from zkpy.storage import backup as B
from zkpy.storage.recovery import StartState
from zkpy.testing.fuzz.client import ContractViolation, probe
from zkpy.testing.fuzz.files import serve_from
from zkpy.testing.fuzz.mutate import Mutator
from zkpy.testing.fuzz.seeds import T0, mutated_snapshot, sample
from zkpy.testing.standalone import standalone


class _Request:
    """What CommandResource reads of a twisted.web request, and what it sets."""

    def __init__(self, path: bytes, query: bytes) -> None:
        self.path = path
        self.args = parse_qs(query, 1)  # as twisted.web.http.Request does
        self.code = 200
        self.headers: dict[bytes, bytes] = {}

    def setResponseCode(self, code: int) -> None:
        self.code = code

    def setHeader(self, name: bytes, value: bytes) -> None:
        self.headers[name] = value


class AdminTarget:
    def __init__(self) -> None:
        self.core = standalone(CoreSettings(), T0).core
        self.site = CommandResource(AdminContext(self.core, {}, "tickTime=2000", lambda: T0))
        self.runs = 0

    def run(self, data: bytes) -> None:
        kind = data[0] % 3 if data else 0
        rest = data[1:]
        self.runs += 1
        if kind == 0:
            self._get(rest)
        elif kind == 1:
            self._authorize(rest)
        else:
            self._restore(rest)

    def _get(self, raw: bytes) -> None:
        path, _, query = raw.partition(b"?")
        request = _Request(path, query)
        body = self.site.render_GET(request)
        if request.headers.get(b"Content-Type") == b"application/json":
            answer = json.loads(body)
            if "error" not in answer or "command" not in answer:
                raise ContractViolation(f"a command answer without command/error: {answer}")
            if answer["error"] == "Exception writing command response to JSON":
                raise ContractViolation(f"command {path!r} failed on the server")
        elif request.code not in (200, 404):
            raise ContractViolation(f"HTTP {request.code} for {raw!r}")
        probe(self.core, T0, 30000 + self.runs % 1000)

    def _authorize(self, raw: bytes) -> None:
        header = raw.decode("utf-8", "replace")
        root = B.acl_of_root(self.core.tree)
        answer = B.authorize(header, "127.0.0.1", self.core.auth, root)
        if answer is not None and answer[0] not in (401, 403):
            raise ContractViolation(f"authorize answered {answer}")

    def _restore(self, body: bytes) -> None:
        try:
            tree, sessions = B.read_backup(body)
        except B.BackupError as e:
            if not str(e):
                raise ContractViolation("BackupError without a message") from e
            return
        serve_from(StartState(tree, sessions, 0, None))


def seeds() -> list[bytes]:
    names = [name for cmd in COMMANDS for name in cmd.names]
    gets = [b"\x00/commands/" + n.encode() for n in names]
    return gets + [b"\x00/commands", b"\x00/", b"\x00/commands/stmk?traceMask=12",
                   b"\x01digest super:secret", b"\x01ip 127.0.0.1", b"\x01",
                   b"\x02" + sample().snapshot]


def generate(mut: Mutator) -> bytes:
    rng = mut.rng
    kind = rng.randrange(3)
    if kind == 0:
        cmd = rng.choice(COMMANDS).names
        path = "/commands/" + rng.choice(cmd)
        query = rng.choice(("", "traceMask=" + str(mut.int64()), "streaming=false",
                            "a=%ff%fe&b=", "traceMask=1e3", "x=" + "y" * 50))
        raw = (path + "?" + query).encode("utf-8", "surrogatepass")
        return b"\x00" + (mut.mutate(raw) if rng.random() < 0.4 else raw)
    if kind == 1:
        header = rng.choice(("digest super:secret", "digest a:b:c", "ip", "ip 127.0.0.1",
                             "x509 CN=x", "sasl fuzz", "digest", "", "  "))
        return b"\x01" + mut.mutate(header.encode())
    return b"\x02" + mutated_snapshot(mut)


