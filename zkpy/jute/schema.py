"""Every jute record zkpy speaks, declared once.

Names, field names and field order follow Apache ZooKeeper's ``zookeeper.jute``
(modules ``org.apache.zookeeper.data``, ``.proto``, ``.txn``), so that a reader
can hold this file beside that one. Encoders and decoders are generated from
these declarations by ``zkpy.jute.codec``; nothing here is hand-serialized.

The records of the quorum port (``org.apache.zookeeper.server.quorum``) are
here too; what their fields hold per packet type is ``zkpy.zab.messages``'.

``python -m zkpy.jute.stubs`` writes the classes built from these declarations
out as source, in ``records.py`` (what the accelerator compiles), and
``schema.pyi`` (how mypy sees them); at the end of this module each name is
bound to its class in ``records.py``, in both modes. A test fails when either
file is stale, and so does importing this module when ``records.py`` does not
match a declaration.
"""

from __future__ import annotations

from zkpy.jute import codec
from zkpy.jute.codec import BOOL, BUFFER, INT, LONG, USTRING, Record, Vector, record

# -- org.apache.zookeeper.data ------------------------------------------------

Id = record("Id", [("scheme", USTRING), ("id", USTRING)])
ACL = record("ACL", [("perms", INT), ("id", Id)])
Stat = record("Stat", [
    ("czxid", LONG), ("mzxid", LONG), ("ctime", LONG), ("mtime", LONG),
    ("version", INT), ("cversion", INT), ("aversion", INT),
    ("ephemeralOwner", LONG), ("dataLength", INT), ("numChildren", INT),
    ("pzxid", LONG),
])
StatPersisted = record("StatPersisted", [
    ("czxid", LONG), ("mzxid", LONG), ("ctime", LONG), ("mtime", LONG),
    ("version", INT), ("cversion", INT), ("aversion", INT),
    ("ephemeralOwner", LONG), ("pzxid", LONG),
])
ClientInfo = record("ClientInfo", [("authScheme", USTRING), ("user", USTRING)])

# -- org.apache.zookeeper.proto ------------------------------------------------

# The trailing readOnly flag is absent from pre-3.4 clients' handshakes; the
# decoder for it lives in zkpy.jute.protocol, which knows to tolerate its absence.
ConnectRequest = record("ConnectRequest", [
    ("protocolVersion", INT), ("lastZxidSeen", LONG), ("timeOut", INT),
    ("sessionId", LONG), ("passwd", BUFFER), ("readOnly", BOOL),
])
ConnectResponse = record("ConnectResponse", [
    ("protocolVersion", INT), ("timeOut", INT), ("sessionId", LONG),
    ("passwd", BUFFER), ("readOnly", BOOL),
])
SetWatches = record("SetWatches", [
    ("relativeZxid", LONG), ("dataWatches", Vector(USTRING)),
    ("existWatches", Vector(USTRING)), ("childWatches", Vector(USTRING)),
])
SetWatches2 = record("SetWatches2", [
    ("relativeZxid", LONG), ("dataWatches", Vector(USTRING)),
    ("existWatches", Vector(USTRING)), ("childWatches", Vector(USTRING)),
    ("persistentWatches", Vector(USTRING)),
    ("persistentRecursiveWatches", Vector(USTRING)),
])
RequestHeader = record("RequestHeader", [("xid", INT), ("type", INT)])
MultiHeader = record("MultiHeader", [("type", INT), ("done", BOOL), ("err", INT)])
AuthPacket = record("AuthPacket", [("type", INT), ("scheme", USTRING), ("auth", BUFFER)])
ReplyHeader = record("ReplyHeader", [("xid", INT), ("zxid", LONG), ("err", INT)])

GetDataRequest = record("GetDataRequest", [("path", USTRING), ("watch", BOOL)])
SetDataRequest = record("SetDataRequest", [("path", USTRING), ("data", BUFFER), ("version", INT)])
ReconfigRequest = record("ReconfigRequest", [
    ("joiningServers", USTRING), ("leavingServers", USTRING),
    ("newMembers", USTRING), ("curConfigId", LONG),
])
SetDataResponse = record("SetDataResponse", [("stat", Stat)])
GetSASLRequest = record("GetSASLRequest", [("token", BUFFER)])
SetSASLRequest = record("SetSASLRequest", [("token", BUFFER)])
SetSASLResponse = record("SetSASLResponse", [("token", BUFFER)])
CreateRequest = record("CreateRequest", [
    ("path", USTRING), ("data", BUFFER), ("acl", Vector(ACL)), ("flags", INT),
])
CreateTTLRequest = record("CreateTTLRequest", [
    ("path", USTRING), ("data", BUFFER), ("acl", Vector(ACL)), ("flags", INT), ("ttl", LONG),
])
DeleteRequest = record("DeleteRequest", [("path", USTRING), ("version", INT)])
GetChildrenRequest = record("GetChildrenRequest", [("path", USTRING), ("watch", BOOL)])
GetAllChildrenNumberRequest = record("GetAllChildrenNumberRequest", [("path", USTRING)])
GetChildren2Request = record("GetChildren2Request", [("path", USTRING), ("watch", BOOL)])
CheckVersionRequest = record("CheckVersionRequest", [("path", USTRING), ("version", INT)])
GetMaxChildrenRequest = record("GetMaxChildrenRequest", [("path", USTRING)])
GetMaxChildrenResponse = record("GetMaxChildrenResponse", [("max", INT)])
SetMaxChildrenRequest = record("SetMaxChildrenRequest", [("path", USTRING), ("max", INT)])
SyncRequest = record("SyncRequest", [("path", USTRING)])
SyncResponse = record("SyncResponse", [("path", USTRING)])
GetACLRequest = record("GetACLRequest", [("path", USTRING)])
SetACLRequest = record("SetACLRequest", [("path", USTRING), ("acl", Vector(ACL)), ("version", INT)])
SetACLResponse = record("SetACLResponse", [("stat", Stat)])
AddWatchRequest = record("AddWatchRequest", [("path", USTRING), ("mode", INT)])
WatcherEvent = record("WatcherEvent", [("type", INT), ("state", INT), ("path", USTRING)])
ErrorResponse = record("ErrorResponse", [("err", INT)])
CreateResponse = record("CreateResponse", [("path", USTRING)])
Create2Response = record("Create2Response", [("path", USTRING), ("stat", Stat)])
ExistsRequest = record("ExistsRequest", [("path", USTRING), ("watch", BOOL)])
ExistsResponse = record("ExistsResponse", [("stat", Stat)])
GetDataResponse = record("GetDataResponse", [("data", BUFFER), ("stat", Stat)])
GetChildrenResponse = record("GetChildrenResponse", [("children", Vector(USTRING))])
GetAllChildrenNumberResponse = record("GetAllChildrenNumberResponse", [("totalNumber", INT)])
GetChildren2Response = record("GetChildren2Response", [("children", Vector(USTRING)), ("stat", Stat)])
GetACLResponse = record("GetACLResponse", [("acl", Vector(ACL)), ("stat", Stat)])
CheckWatchesRequest = record("CheckWatchesRequest", [("path", USTRING), ("type", INT)])
RemoveWatchesRequest = record("RemoveWatchesRequest", [("path", USTRING), ("type", INT)])
GetEphemeralsRequest = record("GetEphemeralsRequest", [("prefixPath", USTRING)])
GetEphemeralsResponse = record("GetEphemeralsResponse", [("ephemerals", Vector(USTRING))])
WhoAmIResponse = record("WhoAmIResponse", [("clientInfo", Vector(ClientInfo))])

# -- org.apache.zookeeper.txn ----------------------------------------------------

TxnDigest = record("TxnDigest", [("version", INT), ("treeDigest", LONG)])
TxnHeader = record("TxnHeader", [
    ("clientId", LONG), ("cxid", INT), ("zxid", LONG), ("time", LONG), ("type", INT),
])
CreateTxnV0 = record("CreateTxnV0", [
    ("path", USTRING), ("data", BUFFER), ("acl", Vector(ACL)), ("ephemeral", BOOL),
])
CreateTxn = record("CreateTxn", [
    ("path", USTRING), ("data", BUFFER), ("acl", Vector(ACL)), ("ephemeral", BOOL),
    ("parentCVersion", INT),
])
CreateTTLTxn = record("CreateTTLTxn", [
    ("path", USTRING), ("data", BUFFER), ("acl", Vector(ACL)), ("parentCVersion", INT),
    ("ttl", LONG),
])
CreateContainerTxn = record("CreateContainerTxn", [
    ("path", USTRING), ("data", BUFFER), ("acl", Vector(ACL)), ("parentCVersion", INT),
])
DeleteTxn = record("DeleteTxn", [("path", USTRING)])
SetDataTxn = record("SetDataTxn", [("path", USTRING), ("data", BUFFER), ("version", INT)])
CheckVersionTxn = record("CheckVersionTxn", [("path", USTRING), ("version", INT)])
SetACLTxn = record("SetACLTxn", [("path", USTRING), ("acl", Vector(ACL)), ("version", INT)])
SetMaxChildrenTxn = record("SetMaxChildrenTxn", [("path", USTRING), ("max", INT)])
CreateSessionTxn = record("CreateSessionTxn", [("timeOut", INT)])
CloseSessionTxn = record("CloseSessionTxn", [("paths2Delete", Vector(USTRING))])
ErrorTxn = record("ErrorTxn", [("err", INT)])
Txn = record("Txn", [("type", INT), ("data", BUFFER)])
MultiTxn = record("MultiTxn", [("txns", Vector(Txn))])

# -- org.apache.zookeeper.server.persistence, and on-disk layouts -----------------

FileHeader = record("FileHeader", [("magic", INT), ("version", INT), ("dbid", LONG)])
# DataNode.serialize's layout in a snapshot (a Record in Java, not in zookeeper.jute).
DataNodeRecord = record("DataNodeRecord", [("data", BUFFER), ("acl", LONG), ("stat", StatPersisted)])
ZxidDigest = record("ZxidDigest", [("zxid", LONG), ("digestVersion", INT), ("digest", LONG)])

# -- org.apache.zookeeper.server.quorum -------------------------------------------

QuorumPacket = record("QuorumPacket", [
    ("type", INT), ("zxid", LONG), ("data", BUFFER), ("authinfo", Vector(Id)),
])
LearnerInfo = record("LearnerInfo", [
    ("serverid", LONG), ("protocolVersion", INT), ("configVersion", LONG),
])

# -- the classes ------------------------------------------------------------------

#: The classes built above from the declarations, by name.
DECLARED: dict[str, type[Record]] = {
    name: value for name, value in list(globals().items())
    if isinstance(value, type) and issubclass(value, Record) and value is not Record}


def _adopt() -> None:
    """Bind each name to its class in ``zkpy.jute.records``: the same source as
    the class built here, written out (``python -m zkpy.jute.stubs``) so that the
    accelerator can compile it. Compiled or not, everything then uses one set of
    classes. A declaration changed without writing the file again stops here
    (unless ``zkpy.jute.stubs`` is reading the declarations to write it)."""
    if not codec.ADOPT_RECORDS:
        return
    from zkpy.jute import records

    for name, built in DECLARED.items():
        written = getattr(records, name, None)
        if written is None or _shape(written) != _shape(built):
            raise ImportError(f"zkpy/jute/records.py does not match the declaration of {name}: "
                              "run python -m zkpy.jute.stubs")
        globals()[name] = written


def _shape(cls: type[Record]) -> list[tuple[str, str]]:
    return [(n, codec.field_source(t)) for n, t in cls.FIELDS]


_adopt()
