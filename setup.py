"""Everything but the optional accelerator is declared in setup.cfg.

``ZKPY_MYPYC=1 pip install --no-build-isolation [-e] .`` also compiles the hot modules of
the pure core with mypyc (see zkpy/build_accel.py); without it the package is pure
Python.
"""

import os
import sys

from setuptools import setup

ext_modules = []
if os.environ.get("ZKPY_MYPYC", "") not in ("", "0"):
    # This tree's zkpy, not one an editable install elsewhere would import.
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from zkpy.build_accel import extensions

    ext_modules = extensions()

setup(ext_modules=ext_modules)
