"""Test helpers for zkpy: server launchers usable from tests and benchmarks.

Nothing in this package imports Twisted.
"""
