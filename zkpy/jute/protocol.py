"""Constants of the ZooKeeper client protocol and the opcode -> record tables.

Values are Apache ZooKeeper 3.8's (``ZooDefs.OpCode``, ``KeeperException.Code``,
``Watcher.Event``, ``ZooDefs.Perms``, ``CreateMode``); names follow them so that
a log line or a test reads the same in both code bases.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from zkpy.jute import opcodes
from zkpy.jute import schema as S


class Op(IntEnum):
    notification = opcodes.OP_notification
    create = opcodes.OP_create
    delete = opcodes.OP_delete
    exists = opcodes.OP_exists
    getData = opcodes.OP_getData
    setData = opcodes.OP_setData
    getACL = opcodes.OP_getACL
    setACL = opcodes.OP_setACL
    getChildren = opcodes.OP_getChildren
    sync = opcodes.OP_sync
    ping = opcodes.OP_ping
    getChildren2 = opcodes.OP_getChildren2
    check = opcodes.OP_check
    multi = opcodes.OP_multi
    create2 = opcodes.OP_create2
    reconfig = opcodes.OP_reconfig
    checkWatches = opcodes.OP_checkWatches
    removeWatches = opcodes.OP_removeWatches
    createContainer = opcodes.OP_createContainer
    deleteContainer = opcodes.OP_deleteContainer
    createTTL = opcodes.OP_createTTL
    multiRead = opcodes.OP_multiRead
    auth = opcodes.OP_auth
    setWatches = opcodes.OP_setWatches
    sasl = opcodes.OP_sasl
    getEphemerals = opcodes.OP_getEphemerals
    getAllChildrenNumber = opcodes.OP_getAllChildrenNumber
    setWatches2 = opcodes.OP_setWatches2
    addWatch = opcodes.OP_addWatch
    whoAmI = opcodes.OP_whoAmI
    createSession = opcodes.OP_createSession
    closeSession = opcodes.OP_closeSession
    error = opcodes.OP_error


class Err(IntEnum):
    OK = 0
    SYSTEMERROR = -1
    RUNTIMEINCONSISTENCY = -2
    DATAINCONSISTENCY = -3
    CONNECTIONLOSS = -4
    MARSHALLINGERROR = -5
    UNIMPLEMENTED = -6
    OPERATIONTIMEOUT = -7
    BADARGUMENTS = -8
    UNKNOWNSESSION = -12
    NEWCONFIGNOQUORUM = -13
    RECONFIGINPROGRESS = -14
    APIERROR = -100
    NONODE = -101
    NOAUTH = -102
    BADVERSION = -103
    NOCHILDRENFOREPHEMERALS = -108
    NODEEXISTS = -110
    NOTEMPTY = -111
    SESSIONEXPIRED = -112
    INVALIDCALLBACK = -113
    INVALIDACL = -114
    AUTHFAILED = -115
    SESSIONMOVED = -118
    NOTREADONLY = -119
    EPHEMERALONLOCALSESSION = -120
    NOWATCHER = -121
    REQUESTTIMEOUT = -122
    RECONFIGDISABLED = -123
    SESSIONCLOSEDREQUIRESASLAUTH = -124
    QUOTAEXCEEDED = -125
    THROTTLEDOP = -127


class ZkError(Exception):
    """A request failed with a ZooKeeper error code (the KeeperException of the pure core)."""

    #: The reply body sent with the error (ZooKeeper sends one in a few corners).
    payload = b""

    def __init__(self, code: Err, path: str | None = None) -> None:
        super().__init__(f"{code.name}" + (f" for {path}" if path else ""))
        self.code = code
        self.path = path


class EventType(IntEnum):
    None_ = -1
    NodeCreated = 1
    NodeDeleted = 2
    NodeDataChanged = 3
    NodeChildrenChanged = 4
    DataWatchRemoved = 5
    ChildWatchRemoved = 6
    PersistentWatchRemoved = 7


class KeeperState(IntEnum):
    Disconnected = 0
    SyncConnected = 3
    AuthFailed = 4
    ConnectedReadOnly = 5
    SaslAuthenticated = 6
    Expired = -112
    Closed = 7


class Perms:
    # (Final: compiled code reads these as constants, not class attributes.)
    READ: Final = 1
    WRITE: Final = 2
    CREATE: Final = 4
    DELETE: Final = 8
    ADMIN: Final = 16
    ALL: Final = 31


class CreateMode:
    """Create flags and what each one means."""

    PERSISTENT = 0
    EPHEMERAL = 1
    PERSISTENT_SEQUENTIAL = 2
    EPHEMERAL_SEQUENTIAL = 3
    CONTAINER = 4
    PERSISTENT_WITH_TTL = 5
    PERSISTENT_SEQUENTIAL_WITH_TTL = 6

    EPHEMERAL_FLAGS = frozenset({1, 3})
    SEQUENTIAL_FLAGS = frozenset({2, 3, 6})
    TTL_FLAGS = frozenset({5, 6})
    ALL = frozenset(range(7))


class WatcherType(IntEnum):
    """The ``type`` of checkWatches/removeWatches requests."""

    Children = 1
    Data = 2
    Any = 3
    Persistent = 4
    PersistentRecursive = 5


class AddWatchMode(IntEnum):
    PERSISTENT = 0
    PERSISTENT_RECURSIVE = 1


# Special xids of the client protocol.
NOTIFICATION_XID = -1
PING_XID = -2
AUTH_XID = -4
SET_WATCHES_XID = -8

# EphemeralType's encodings of ephemeralOwner for the extended node types.
CONTAINER_EPHEMERAL_OWNER = -0x8000000000000000
TTL_EPHEMERAL_OWNER_MASK = -0x100000000000000  # 0xff00000000000000 as a signed long
MAX_TTL = 0x000000FFFFFFFFFF

# The request record of each opcode (client -> server).
REQUEST_RECORDS: dict[int, type] = {
    Op.create: S.CreateRequest,
    Op.create2: S.CreateRequest,
    Op.createContainer: S.CreateRequest,
    Op.createTTL: S.CreateTTLRequest,
    Op.delete: S.DeleteRequest,
    Op.deleteContainer: S.DeleteRequest,
    Op.exists: S.ExistsRequest,
    Op.getData: S.GetDataRequest,
    Op.setData: S.SetDataRequest,
    Op.getACL: S.GetACLRequest,
    Op.setACL: S.SetACLRequest,
    Op.getChildren: S.GetChildrenRequest,
    Op.getChildren2: S.GetChildren2Request,
    Op.sync: S.SyncRequest,
    Op.check: S.CheckVersionRequest,
    Op.checkWatches: S.CheckWatchesRequest,
    Op.removeWatches: S.RemoveWatchesRequest,
    Op.getEphemerals: S.GetEphemeralsRequest,
    Op.getAllChildrenNumber: S.GetAllChildrenNumberRequest,
    Op.addWatch: S.AddWatchRequest,
    Op.setWatches: S.SetWatches,
    Op.setWatches2: S.SetWatches2,
    Op.auth: S.AuthPacket,
    Op.reconfig: S.ReconfigRequest,
    Op.sasl: S.GetSASLRequest,
}

# Opcodes that change the tree (they go through prep -> commit -> apply).
WRITE_OPS = frozenset({
    Op.create, Op.create2, Op.createContainer, Op.createTTL, Op.delete,
    Op.deleteContainer, Op.setData, Op.setACL, Op.check, Op.multi,
    Op.createSession, Op.closeSession, Op.reconfig,
})

# Opcodes allowed inside a multi (write) and a multiRead.
MULTI_WRITE_OPS = frozenset({Op.create, Op.create2, Op.createContainer, Op.createTTL,
                             Op.delete, Op.setData, Op.check})
MULTI_READ_OPS = frozenset({Op.getChildren, Op.getData})
