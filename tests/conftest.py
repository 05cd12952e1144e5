"""Says in pytest's header whether this run exercises the compiled modules or the
pure Python ones (ZKPY_ACCEL; see zkpy/accel.py)."""

from __future__ import annotations

from zkpy import accel


def pytest_report_header() -> str:
    return accel.describe()
