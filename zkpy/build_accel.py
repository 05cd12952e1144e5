"""Build (or remove) the mypyc accelerator in place: ``python -m zkpy.build_accel``.

Compiles ``zkpy.accel.MODULES`` with mypyc (the ``mypyc`` extra: ``pip install
'zkpy[mypyc]'``) into extensions beside their sources, one shared library
``zkpy/_accel__mypyc.*.so`` plus a small one per module, and records what it compiled
in ``zkpy/_accel.json``. Needs a C compiler and Python's headers. ``--clean`` removes
all of it, leaving the pure-Python package. The C sources and objects go to
``build/`` at the top of the tree; none of this is committed (.gitignore).

``setup.py`` calls ``extensions()`` when ``ZKPY_MYPYC=1``, so that
``ZKPY_MYPYC=1 pip install --no-build-isolation [-e] .`` installs a compiled zkpy
(``--no-build-isolation``: mypyc comes from the installing environment).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import os
import sys
from pathlib import Path
from typing import Any

from zkpy import accel

GROUP = "zkpy._accel"  # the shared library: zkpy/_accel__mypyc.<suffix>


def _relative(path: Path) -> str:
    return os.path.relpath(path, accel.PACKAGE_DIR.parent)


def extensions(opt_level: str = "3") -> list[Any]:
    """The setuptools Extensions of the accelerator, paths relative to the tree's top
    (the current directory must be it); writes the manifest of the sources compiled."""
    from mypyc.build import mypycify

    accel.write_manifest(accel.MODULES)
    paths = [_relative(accel.source_path(m)) for m in accel.MODULES]
    exts = list(mypycify(paths, opt_level=opt_level, group_name=GROUP, multi_file=True))
    # multi_file with a dotted group name: mypyc writes the group's headers to
    # build/zkpy/ but the per-module C files that include them to build/.
    for ext in exts:
        ext.include_dirs.append(os.path.join("build", "zkpy"))
    return exts


def built_files() -> list[Path]:
    """Every extension file the accelerator put in the package, and its manifest."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    found = [p for p in accel.PACKAGE_DIR.rglob("*") if p.name.endswith(suffixes)]
    return found + ([accel.MANIFEST] if accel.MANIFEST.exists() else [])


def clean() -> list[Path]:
    removed = built_files()
    for path in removed:
        path.unlink()
    return removed


def build(jobs: int = 2, opt_level: str = "3") -> None:
    """Compile in place, from the tree's top (the package's parent directory)."""
    from setuptools import Distribution

    os.chdir(accel.PACKAGE_DIR.parent)
    clean()
    exts = extensions(opt_level)
    dist = Distribution({"name": "zkpy-accel", "ext_modules": exts,
                         "script_args": ["build_ext", "--inplace", f"-j{jobs}"]})
    dist.parse_command_line()
    dist.run_commands()
    problem = accel.check_build()
    if problem is not None:
        raise SystemExit(f"the build finished but cannot be used: {problem}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m zkpy.build_accel", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clean", action="store_true", help="remove the built accelerator")
    parser.add_argument("--check", action="store_true",
                        help="say whether a usable build is present (exit 1 if not)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="parallel C compiles")
    parser.add_argument("-O", "--opt-level", default="3", help="the C compiler's -O level")
    args = parser.parse_args(argv)
    if args.clean:
        for path in clean():
            print(f"removed {_relative(path)}")
        return 0
    if args.check:
        problem = accel.check_build()
        print(problem or f"built and fresh: {len(accel.MODULES)} modules")
        return 1 if problem else 0
    build(args.jobs, args.opt_level)
    print(f"compiled {len(accel.MODULES)} modules in place; ZKPY_ACCEL=off runs the "
          "pure Python without removing them")
    return 0


if __name__ == "__main__":
    sys.exit(main())
