"""The core stays pure: only the adapter, the entry point and test helpers touch sockets or the reactor."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "zkpy"
ALLOWED = {"net", "testing", "cli"}  # directories (cli: the command-line tools)
ALLOWED_FILES = {"__main__.py"}
FORBIDDEN = ("twisted.internet", "socket")


def _imports(source: str) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{a.name}" for a in node.names)
    return names


def _forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


def _checked_files() -> list[Path]:
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ALLOWED or (len(rel.parts) == 1 and rel.name in ALLOWED_FILES):
            continue
        out.append(path)
    return out


def test_checker_catches_forbidden_imports() -> None:
    assert any(map(_forbidden, _imports("import socket")))
    assert any(map(_forbidden, _imports("from twisted.internet import reactor")))
    assert any(map(_forbidden, _imports("from twisted import internet")))
    assert any(map(_forbidden, _imports("def f():\n    import twisted.internet.task")))
    assert not any(map(_forbidden, _imports("import socketserver_like\nfrom twisted.python import log")))


def test_core_modules_import_no_sockets_or_reactor() -> None:
    files = _checked_files()
    names = {p.relative_to(ROOT).as_posix() for p in files}
    assert {"server/core.py", "server/connection.py", "tree/datatree.py", "jute/codec.py"} <= names
    offenders = [(p.relative_to(ROOT).as_posix(), n) for p in files
                 for n in _imports(p.read_text()) if _forbidden(n)]
    assert offenders == []


def test_adapter_is_where_the_reactor_lives() -> None:
    # guards against the exclusion list hiding everything
    assert any(_forbidden(n) for n in _imports((ROOT / "net" / "clientport.py").read_text()))
