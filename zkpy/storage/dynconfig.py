"""The dynamic config file, as ZooKeeper 3.5+ keeps it beside zoo.cfg.

With ``reconfigEnabled=true`` the membership lives in
``<zoo.cfg>.dynamic.<version in hex>`` (only ``server.N`` lines; the name
carries the version), and zoo.cfg names it with ``dynamicConfigFile=``
instead of holding ``server.N`` lines itself (the original is kept once as
``<zoo.cfg>.bak``). Each newly active membership gets a new file, so a
restarted server comes back with the membership it last saw. Files are
replaced atomically (written aside, synced, renamed).
"""

from __future__ import annotations

import re

from zkpy.storage.fs import LOCAL, FileSystem, write_atomically
from zkpy.zab.membership import QuorumConfig

_SUFFIX = re.compile(r"\.dynamic\.([0-9a-fA-F]+)$")
_MEMBERSHIP_LINE = re.compile(r"\s*(server\.[0-9]+|dynamicConfigFile)\s*[=:]")


def version_of(path: str | None) -> int:
    """The version a dynamic config file's name carries (0 when it has none)."""
    if not path:
        return 0
    match = _SUFFIX.search(path)
    return int(match.group(1), 16) if match else 0


def write_dynamic_config(static_path: str, config: QuorumConfig,
                         fs: FileSystem = LOCAL) -> str:
    """Write the membership's file and point zoo.cfg at it; returns the file's path.
    Each file is replaced atomically and durably (its directory synced too)."""
    dynamic = f"{static_path}.dynamic.{config.version:x}"
    write_atomically(fs, dynamic, [config.dynamic_file_text().encode("utf-8")])
    lines = fs.read(static_path).decode("utf-8").splitlines()
    backup = static_path + ".bak"
    if not fs.exists(backup):
        write_atomically(fs, backup, ["".join(line + "\n" for line in lines).encode("utf-8")])
    kept = [line for line in lines if not _MEMBERSHIP_LINE.match(line)]
    kept.append(f"dynamicConfigFile={dynamic}")
    write_atomically(fs, static_path, ["".join(line + "\n" for line in kept).encode("utf-8")])
    return dynamic
