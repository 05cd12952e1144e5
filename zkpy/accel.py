"""The optional mypyc accelerator: which modules it compiles, and whether they are in use.

``python -m zkpy.build_accel`` (or ``ZKPY_MYPYC=1 pip install --no-build-isolation .``)
compiles the hot modules of the pure core, listed in ``MODULES``, into C extensions
beside their sources, and writes ``zkpy/_accel.json``: the SHA-256 of every source it
compiled. The ``.py`` files stay, and stay the fallback: importing ``zkpy`` runs
``install()``, which lets Python load the extensions only when the environment variable
``ZKPY_ACCEL`` allows it and every listed source is the one that was compiled;
otherwise a meta-path finder serves the listed modules from their ``.py`` files. It is
all or nothing: compiled modules call one another's compiled code directly, so one
stale or missing module turns the whole set back to Python.

``ZKPY_ACCEL``:
  ``auto`` (the default)  the extensions when built and fresh, else Python;
  ``off``                 Python, even when built (what the pure test runs use);
  ``require``             the extensions, or importing ``zkpy`` fails saying why
                          (the compiled test run uses it, so it cannot pass on Python).

``describe()`` is the line the server logs at start-up and pytest prints in its header.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

#: The modules the accelerator compiles: the jute records (``zkpy.jute.records``, the
#: declarations written out as source by ``zkpy.jute.stubs``: the codec builds its
#: classes at import time, which mypyc cannot compile) and request decoding, the data
#: tree, the snapshot reader and writer (a restart's load of 1M znodes: 2.9 s of CPU
#: compiled, 4.1 s in Python), the server core's request pipeline and Zab.
MODULES: tuple[str, ...] = (
    "zkpy.jute.base", "zkpy.jute.records", "zkpy.jute.requests",
    "zkpy.tree.datatree", "zkpy.tree.digest", "zkpy.tree.java_hash", "zkpy.tree.paths", "zkpy.tree.quota",
    "zkpy.tree.watches",
    "zkpy.storage.formats", "zkpy.storage.snapshot",
    "zkpy.auth.acl",
    "zkpy.server.admission", "zkpy.server.authentication", "zkpy.server.connection",
    "zkpy.server.core", "zkpy.server.host", "zkpy.server.linear_reads",
    "zkpy.server.local_sessions", "zkpy.server.metrics",
    "zkpy.server.modes", "zkpy.server.pipeline_metrics", "zkpy.server.prep",
    "zkpy.server.quota_check", "zkpy.server.quorum_metrics",
    "zkpy.server.readonly", "zkpy.server.reads", "zkpy.server.replica",
    "zkpy.server.replies", "zkpy.server.routing", "zkpy.server.sessions",
    "zkpy.server.stats",
    "zkpy.zab.driver", "zkpy.zab.election", "zkpy.zab.events", "zkpy.zab.following",
    "zkpy.zab.history", "zkpy.zab.leading", "zkpy.zab.membership", "zkpy.zab.messages",
    "zkpy.zab.peer", "zkpy.zab.readindex", "zkpy.zab.wire",
)

ENV = "ZKPY_ACCEL"
MODES = ("auto", "off", "require")
PACKAGE_DIR = Path(__file__).resolve().parent
MANIFEST = PACKAGE_DIR / "_accel.json"

# What install() decided: (compiled modules allowed, why).
_decision: tuple[bool, str] = (False, "zkpy.accel.install() has not run")


class AccelError(ImportError):
    """ZKPY_ACCEL=require, but the compiled modules cannot be used."""


def source_path(module: str, root: Path = PACKAGE_DIR) -> Path:
    """The .py file of a listed module under the package directory ``root``."""
    return root.joinpath(*module.split(".")[1:]).with_suffix(".py")


def extension_paths(module: str, root: Path = PACKAGE_DIR) -> list[Path]:
    """The built extension files of ``module`` that Python would load before its .py."""
    base = source_path(module, root).with_suffix("")
    return [p for s in importlib.machinery.EXTENSION_SUFFIXES
            if (p := base.with_name(base.name + s)).exists()]


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_manifest(modules: Sequence[str], root: Path = PACKAGE_DIR) -> dict[str, str]:
    """Record the sources being compiled (the build calls it before compiling)."""
    digests = {m: source_digest(source_path(m, root)) for m in modules}
    (root / MANIFEST.name).write_text(json.dumps({"modules": digests}, indent=1) + "\n")
    return digests


def check_build(root: Path = PACKAGE_DIR) -> str | None:
    """None when every listed module has a built extension of its current source, or
    the reason the compiled set cannot be used."""
    try:
        built = json.loads((root / MANIFEST.name).read_text())["modules"]
    except FileNotFoundError:
        return "not built (python -m zkpy.build_accel builds it)"
    except (ValueError, KeyError, TypeError) as exc:
        return f"unreadable {MANIFEST.name}: {exc!r}"
    for module in MODULES:
        if module not in built:
            return f"{module} was not compiled (rebuild: python -m zkpy.build_accel)"
        if not extension_paths(module, root):
            return f"{module} has no extension file (rebuild: python -m zkpy.build_accel)"
        if built[module] != source_digest(source_path(module, root)):
            return f"{module} changed since it was compiled (rebuild: python -m zkpy.build_accel)"
    return None


def decide(mode: str, build_problem: str | None) -> tuple[bool, str]:
    """(use the compiled modules?, why) for a ZKPY_ACCEL value and check_build()'s answer."""
    if mode not in MODES:
        raise AccelError(f"{ENV}={mode!r}: expected one of {', '.join(MODES)}")
    if mode == "off":
        return False, f"{ENV}=off"
    if build_problem is None:
        return True, "built and fresh"
    if mode == "require":
        raise AccelError(f"{ENV}=require but the compiled modules cannot be used: {build_problem}")
    return False, build_problem


class PureFinder(importlib.abc.MetaPathFinder):
    """Serves the listed modules from their .py files, ahead of any built extension."""

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = frozenset(modules)

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in self.modules or not path:
            return None
        for entry in path:
            candidate = Path(entry) / (fullname.rpartition(".")[2] + ".py")
            if candidate.is_file():
                return importlib.util.spec_from_file_location(fullname, candidate)
        return None


def install() -> tuple[bool, str]:
    """Called once by ``zkpy/__init__``: lets the extensions load, or puts the finder
    that keeps the listed modules Python in front of the import system."""
    global _decision
    mode = os.environ.get(ENV, "auto").strip().lower() or "auto"
    _decision = decide(mode, None if mode == "off" else check_build())
    if not _decision[0] and not any(isinstance(f, PureFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, PureFinder(MODULES))
    return _decision


def is_compiled(module: ModuleType) -> bool:
    return (getattr(module, "__file__", None) or "").endswith(
        tuple(importlib.machinery.EXTENSION_SUFFIXES))


def compiled_modules() -> list[str]:
    """The listed modules that are loaded from extensions (importing them all first)."""
    mods = [importlib.import_module(m) for m in MODULES]
    return [m.__name__ for m in mods if is_compiled(m)]


def describe() -> str:
    """One line: which modules run compiled, and why."""
    compiled = compiled_modules()
    if not compiled:
        return f"accelerator: off, pure Python ({_decision[1]})"
    if len(compiled) == len(MODULES):
        return f"accelerator: mypyc, {len(compiled)} of {len(MODULES)} hot modules compiled"
    pure = sorted(set(MODULES) - set(compiled))
    return f"accelerator: PARTIAL, {len(compiled)} compiled, Python: {', '.join(pure)}"
