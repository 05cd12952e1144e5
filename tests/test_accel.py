"""The optional mypyc accelerator (zkpy/accel.py): the modules a run uses are the ones
ZKPY_ACCEL asks for, compiled modules are used only when every source is the one that
was compiled, and the pure-Python modules stay importable beside a build."""

from __future__ import annotations

import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import zkpy
from zkpy import accel

ROOT = Path(zkpy.__file__).resolve().parents[1]
EXT = importlib.machinery.EXTENSION_SUFFIXES[0]  # the name Python tries first


def _run(code: str, mode: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, ZKPY_ACCEL=mode, PYTHONPATH=str(cwd))
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_every_module_of_the_tree_server_and_zab_packages_is_compiled() -> None:
    """A new module there is on the request path: compile it too (add it to
    accel.MODULES), or say here why not."""
    on_path = sorted(f"zkpy.{p.parent.name}.{p.stem}" for d in ("tree", "server", "zab")
                     for p in (ROOT / "zkpy" / d).glob("*.py") if p.stem != "__init__")
    assert [m for m in on_path if m not in accel.MODULES] == []


def test_this_run_uses_what_zkpy_accel_asks_for() -> None:
    mode = os.environ.get(accel.ENV, "auto") or "auto"
    compiled = accel.compiled_modules()
    if mode == "require":
        assert compiled == list(accel.MODULES)
    elif mode == "off":
        assert compiled == []
    else:  # auto: all or nothing, and all exactly when a fresh build is present
        assert compiled == (list(accel.MODULES) if accel.check_build() is None else [])


def test_off_serves_every_listed_module_from_its_source() -> None:
    out = _run("from zkpy import accel\n"
               "import importlib\n"
               "for m in accel.MODULES: print(importlib.import_module(m).__file__)\n"
               "print(accel.describe())", "off")
    assert out.returncode == 0, out.stderr
    *files, line = out.stdout.splitlines()
    assert [Path(f).suffix for f in files] == [".py"] * len(accel.MODULES)
    assert line == "accelerator: off, pure Python (ZKPY_ACCEL=off)"


def test_require_without_a_build_refuses_to_import(tmp_path: Path) -> None:
    pkg = tmp_path / "zkpy"
    pkg.mkdir()
    for name in ("__init__.py", "accel.py"):
        shutil.copy(ROOT / "zkpy" / name, pkg / name)
    out = _run("import zkpy", "require", cwd=tmp_path)
    assert out.returncode != 0
    assert "ZKPY_ACCEL=require but the compiled modules cannot be used: not built" in out.stderr
    assert _run("import zkpy, zkpy.accel as a; print(a._decision)", "auto",
                cwd=tmp_path).stdout.strip() == "(False, 'not built (python -m zkpy.build_accel builds it)')"


def _fake_build(root: Path) -> None:
    for module in accel.MODULES:
        src = accel.source_path(module, root)
        src.parent.mkdir(parents=True, exist_ok=True)
        src.write_text(f"# {module}\n")
    accel.write_manifest(accel.MODULES, root)
    for module in accel.MODULES:
        src = accel.source_path(module, root)
        src.with_name(src.stem + EXT).write_bytes(b"")


def test_a_build_is_used_only_while_every_source_is_the_one_compiled(tmp_path: Path) -> None:
    assert accel.check_build(tmp_path) == "not built (python -m zkpy.build_accel builds it)"
    _fake_build(tmp_path)
    assert accel.check_build(tmp_path) is None
    prep = accel.source_path("zkpy.server.prep", tmp_path)
    prep.write_text(prep.read_text() + "# edited after the build\n")
    assert accel.check_build(tmp_path) == (
        "zkpy.server.prep changed since it was compiled (rebuild: python -m zkpy.build_accel)")
    _fake_build(tmp_path)
    accel.source_path("zkpy.zab.peer", tmp_path).with_name("peer" + EXT).unlink()
    assert accel.check_build(tmp_path) == (
        "zkpy.zab.peer has no extension file (rebuild: python -m zkpy.build_accel)")
    (tmp_path / accel.MANIFEST.name).write_text("{")
    assert (accel.check_build(tmp_path) or "").startswith("unreadable _accel.json")


def test_the_decision_for_each_mode() -> None:
    assert accel.decide("off", None) == (False, "ZKPY_ACCEL=off")
    assert accel.decide("auto", None) == (True, "built and fresh")
    assert accel.decide("require", None) == (True, "built and fresh")
    assert accel.decide("auto", "not built") == (False, "not built")
    with pytest.raises(accel.AccelError, match="require but the compiled modules cannot be "
                                               "used: stale"):
        accel.decide("require", "stale")
    with pytest.raises(accel.AccelError, match="expected one of auto, off, require"):
        accel.decide("on", None)


def test_the_pure_finder_finds_sources_and_nothing_else() -> None:
    import zkpy.server

    finder = accel.PureFinder(accel.MODULES)
    spec = finder.find_spec("zkpy.server.core", list(zkpy.server.__path__))
    assert spec is not None and spec.origin == str(ROOT / "zkpy" / "server" / "core.py")
    assert type(spec.loader).__name__ == "SourceFileLoader"
    assert finder.find_spec("zkpy.net.member", [str(ROOT / "zkpy" / "net")]) is None
    assert finder.find_spec("zkpy.server.core", None) is None
