"""The version zkpy reports: ZooKeeper's it speaks, then its own (``srvr``, ``envi``)."""

VERSION = "3.8.0-zkpy-0.1.0"
BUILD = f"{VERSION}, built on 2026-11-24 00:00 UTC"
