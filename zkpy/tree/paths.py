"""ZooKeeper's path rules (PathUtils.validatePath).

A path starts with '/', has no empty, '.' or '..' component, does not end in
'/', and contains none of the characters ZooKeeper refuses: U+0000-U+001F,
U+007F-U+009F, U+D800-U+F8FF, U+FFF0-U+FFFF, and (because Java sees them as
surrogate pairs) anything above U+FFFF.
"""

from __future__ import annotations

import re

_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\uf8ff\ufff0-\uffff\U00010000-\U0010ffff]")


def path_error(path: str | None) -> str | None:
    """Why ``path`` is invalid, or None when it is a valid ZooKeeper path."""
    if path is None:
        return "Path cannot be null"
    if not path:
        return "Path length must be > 0"
    if path[0] != "/":
        return "Path must start with / character"
    if len(path) == 1:
        return None
    if path[-1] == "/":
        return "Path must not end with / character"
    bad = _BAD_CHARS.search(path)
    if bad is not None:
        return f"invalid character @{bad.start()}"
    for comp in path[1:].split("/"):
        if not comp:
            return "empty node name specified"
        if comp == "." or comp == "..":
            return "relative paths not allowed"
    return None


def is_valid(path: str | None) -> bool:
    return path_error(path) is None
