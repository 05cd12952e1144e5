"""Compatibility tests and tools comparing zkpy with Apache ZooKeeper."""
