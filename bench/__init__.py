"""Benchmarks for zkpy and any ZooKeeper-compatible server (see bench/README.md)."""
