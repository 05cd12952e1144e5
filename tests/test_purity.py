"""The core stays pure: only the adapters, the entry point, storage and test helpers do I/O.

The pure core (``zkpy/jute``, ``tree``, ``auth``, ``server``, ``zab``, ``admin``) takes
time as ``now`` and gets randomness and the machine's facts through
``zkpy.server.host``: these tests read every module's source and fail on a socket or
reactor import, a clock read, a random source, or file system access there. Storage
(``zkpy/storage``: files by design) and ``zkpy/config.py`` (reads zoo.cfg) may touch
files but never the network or the reactor. And no module of ``zkpy`` takes part in an
import cycle, counting imports inside functions (but not those under TYPE_CHECKING).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "zkpy"
PURE = ("jute", "tree", "auth", "server", "zab", "admin")
NO_NETWORK = PURE + ("storage",)
NETWORK = ("twisted.internet", "socket", "ssl", "select", "selectors", "asyncio")
SIDE_EFFECT_MODULES = ("secrets", "subprocess", "threading", "tempfile", "shutil", "glob",
                       "getpass", "platform", "resource")
# Calls that read a clock, a random source or the file system.
IMPURE_CALLS = {
    "open", "time.time", "time.time_ns", "time.monotonic", "time.monotonic_ns",
    "time.perf_counter", "time.perf_counter_ns", "time.process_time", "time.sleep",
    "datetime.now", "datetime.utcnow", "datetime.today", "date.today",
    "datetime.datetime.now", "datetime.datetime.utcnow",
    "os.urandom", "os.getrandom", "os.walk", "os.listdir", "os.scandir", "os.stat",
    "os.lstat", "os.getcwd", "os.remove", "os.unlink", "os.rename", "os.replace",
    "os.makedirs", "os.mkdir", "os.fsync", "os.open", "os.getpid", "os.environ.get",
    "os.path.exists", "os.path.isdir", "os.path.isfile", "os.path.getsize",
    "os.path.abspath", "posixpath.abspath", "os.path.realpath", "os.path.expanduser", "Path.cwd", "Path.home",
    "random.random", "random.randrange", "random.randint", "random.choice", "random.shuffle",
    "random.sample", "random.randbytes", "random.getrandbits", "random.uniform",
}


def _module_of(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    name = ".".join(rel.parts)
    return name[: -len(".__init__")] if name.endswith(".__init__") else name


def _files(dirs: tuple[str, ...]) -> list[Path]:
    return [p for d in dirs for p in sorted((ROOT / d).rglob("*.py"))]


class _Imports(ast.NodeVisitor):
    """Runtime imports of a module: everything but what sits under ``if TYPE_CHECKING``."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        name = test.id if isinstance(test, ast.Name) else getattr(test, "attr", None)
        if name == "TYPE_CHECKING":
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        self.names.extend(a.name for a in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and node.level == 0:
            self.names.append(node.module)
            self.names.extend(f"{node.module}.{a.name}" for a in node.names)


def _imports(source: str) -> list[str]:
    v = _Imports()
    v.visit(ast.parse(source))
    return v.names


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _impure_calls(source: str) -> list[str]:
    return [name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Call)
            if (name := _dotted(node.func)) in IMPURE_CALLS]


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_checks_catch_what_they_look_for() -> None:
    assert _under("twisted.internet.task", NETWORK) and _under("socket", NETWORK)
    assert not _under("socketserver_like", NETWORK)
    assert "twisted.internet" in _imports("def f():\n    from twisted.internet import task")
    assert _imports("if TYPE_CHECKING:\n    import socket\n") == []
    assert _impure_calls("import time\nnow = time.monotonic()") == ["time.monotonic"]
    assert _impure_calls("def f():\n    return os.urandom(16)") == ["os.urandom"]
    assert _impure_calls("with open('x') as f: pass") == ["open"]
    assert _impure_calls("rng = random.Random(7)\nx = rng.random()") == []


def test_pure_core_has_no_network_clock_randomness_or_files() -> None:
    files = _files(PURE)
    names = {p.relative_to(ROOT).as_posix() for p in files}
    assert {"server/core.py", "server/connection.py", "tree/datatree.py", "zab/peer.py",
            "admin/fourletter.py"} <= names
    offenders = []
    for p in files:
        src = p.read_text()
        offenders += [(p.relative_to(ROOT).as_posix(), n) for n in _imports(src)
                      if _under(n, NETWORK + SIDE_EFFECT_MODULES)]
        offenders += [(p.relative_to(ROOT).as_posix(), c) for c in _impure_calls(src)]
    assert offenders == []


def test_storage_and_config_stay_off_the_network() -> None:
    files = _files(("storage",)) + [ROOT / "config.py"]
    offenders = [(p.name, n) for p in files for n in _imports(p.read_text())
                 if _under(n, NETWORK)]
    assert offenders == []


def test_the_adapters_are_where_the_reactor_lives() -> None:
    # Guards against the lists above excluding everything.
    assert any(_under(n, NETWORK) for n in _imports((ROOT / "net" / "clientport.py").read_text()))


def test_no_import_cycles() -> None:
    modules = {_module_of(p): p for p in sorted(ROOT.rglob("*.py"))}
    graph = {m: {n for n in _imports(p.read_text()) if n in modules and n != m}
             for m, p in modules.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n])
            elif n not in state:
                visit(n)
        path.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert cycles == []
