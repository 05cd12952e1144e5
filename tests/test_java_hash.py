"""A closing session's ephemerals go in the order ZooKeeper's HashSet<String>
iterates them (the orders below were printed by OpenJDK 17 for a HashSet
filled in the order given, then cloned, as DataTree.getEphemerals does)."""

from __future__ import annotations

import pytest

from zkpy.tree.java_hash import hash_set_order, java_string_hash


def _java_order(paths: list[str]) -> list[str]:
    return hash_set_order(paths, paths.index)


def test_string_hash_is_javas() -> None:
    assert java_string_hash("/d15/b") == 1439434444
    assert java_string_hash("é") == 233
    assert java_string_hash("") == 0


@pytest.mark.parametrize("added,java", [
    (["/d15/cs0000000000", "/d15/b", "/d15/a/ys0000000003"],
     ["/d15/b", "/d15/cs0000000000", "/d15/a/ys0000000003"]),
    (["/e1", "/e2", "/e3", "/e10", "/x/y", "/é", "/app/lock-0000000001"],
     ["/e10", "/x/y", "/é", "/app/lock-0000000001", "/e1", "/e2", "/e3"]),
    ([f"/n{i}" for i in range(20)],  # past 12 entries: a table of 32
     "/n11 /n10 /n19 /n0 /n18 /n1 /n17 /n2 /n16 /n3 /n15 /n4 /n14 /n5 /n13 /n6 /n12 /n7 /n8 "
     "/n9".split()),
])
def test_paths_come_out_as_a_java_hash_set_iterates(added: list[str], java: list[str]) -> None:
    assert _java_order(added) == java
