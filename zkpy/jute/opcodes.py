"""The client protocol's opcodes (ZooKeeper's ``ZooDefs.OpCode``) as plain constants.

``zkpy.jute.protocol.Op`` is built from these. The hot paths read them here
rather than as ``Op`` members: on Python 3.11 reading an enum member goes
through ``EnumType.__getattr__``'s hook (86 ns against 21 ns for a plain
attribute), and mypyc compiles a ``Final`` literal read from another module
into the number itself. A request's type is an int from the wire anyway.
"""

from __future__ import annotations

from typing import Final

OP_notification: Final = 0
OP_create: Final = 1
OP_delete: Final = 2
OP_exists: Final = 3
OP_getData: Final = 4
OP_setData: Final = 5
OP_getACL: Final = 6
OP_setACL: Final = 7
OP_getChildren: Final = 8
OP_sync: Final = 9
OP_ping: Final = 11
OP_getChildren2: Final = 12
OP_check: Final = 13
OP_multi: Final = 14
OP_create2: Final = 15
OP_reconfig: Final = 16
OP_checkWatches: Final = 17
OP_removeWatches: Final = 18
OP_createContainer: Final = 19
OP_deleteContainer: Final = 20
OP_createTTL: Final = 21
OP_multiRead: Final = 22
OP_auth: Final = 100
OP_setWatches: Final = 101
OP_sasl: Final = 102
OP_getEphemerals: Final = 103
OP_getAllChildrenNumber: Final = 104
OP_setWatches2: Final = 105
OP_addWatch: Final = 106
OP_whoAmI: Final = 107
OP_createSession: Final = -10
OP_closeSession: Final = -11
OP_error: Final = -1
