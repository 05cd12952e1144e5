"""The machine zkpy runs on, as the core's ``Host`` (``zkpy.server.host``) sees it.

Real randomness (``os.urandom``), directory walks, the process's open file
descriptors and Python's equivalents of the ``java.*`` entries of ZooKeeper's
Environment.list.
"""

from __future__ import annotations

import getpass
import os
import platform
import sys
import tempfile
import time

from zkpy.storage.formats import VERSION_DIR


class SystemHost:
    #: The core times its own stages with this (a builtin: cheap on the hot path).
    monotonic_ns = staticmethod(time.monotonic_ns)

    def random_bytes(self, n: int) -> bytes:
        return os.urandom(n)

    def dir_size(self, path: str) -> int:
        """Bytes in the files under ``<path>/version-2`` (or ``path`` if that is absent)."""
        if not path:
            return 0
        versioned = os.path.join(os.path.abspath(path), VERSION_DIR)
        top = versioned if os.path.isdir(versioned) else path
        total = 0
        for root, _dirs, files in os.walk(top):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(root, name))
                except OSError:
                    pass
        return total

    def fd_counts(self) -> tuple[int, int] | None:
        """(open, max) file descriptors, as UnixOperatingSystemMXBean reports them."""
        for d in ("/proc/self/fd", "/dev/fd"):
            try:
                opened = len(os.listdir(d))
                break
            except OSError:
                continue
        else:
            return None
        try:
            import resource

            soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        except (ImportError, OSError, ValueError):
            return None
        return opened, (soft if soft != getattr(resource, "RLIM_INFINITY", -1) else 2**63 - 1)

    def environment(self) -> list[tuple[str, str]]:
        """Environment.list after zookeeper.version, with Python's equivalents."""
        try:
            user = getpass.getuser()
        except (KeyError, OSError):
            user = str(os.getuid())
        arch = platform.machine()
        arch = {"x86_64": "amd64", "AMD64": "amd64", "i686": "x86", "i386": "x86"}.get(arch,
                                                                                      arch)
        return [
            ("host.name", platform.node()),
            ("python.version", platform.python_version()),
            ("python.implementation", platform.python_implementation()),
            ("python.home", sys.prefix),
            ("python.path", os.pathsep.join(sys.path)),
            ("java.io.tmpdir", tempfile.gettempdir()),
            ("os.name", platform.system()),
            ("os.arch", arch),
            ("os.version", platform.release()),
            ("user.name", user),
            ("user.home", os.path.expanduser("~")),
            ("user.dir", os.getcwd()),
        ]
