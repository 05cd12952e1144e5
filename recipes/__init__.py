"""Coordination recipes from the ZooKeeper paper on the stock Kazoo client.

See ``recipes/README.md`` for the index, the znode layouts and which of
them Kazoo's and Curator's recipes share.
"""

from ._common import CancelledError, RecipeError, SessionLostError
from .barrier import Barrier, DoubleBarrier
from .config import Config, ConfigPublisher, ConfigReader
from .discovery import ServiceCache, ServiceDiscovery, ServiceInstance
from .election import LeaderElection
from .locks import FairLock, NaiveLock, ReadLock, ReadWriteLock, WriteLock
from .membership import Group, GroupMember

__all__ = [
    "RecipeError",
    "SessionLostError",
    "CancelledError",
    "Barrier",
    "DoubleBarrier",
    "Config",
    "ConfigPublisher",
    "ConfigReader",
    "ServiceCache",
    "ServiceDiscovery",
    "ServiceInstance",
    "LeaderElection",
    "NaiveLock",
    "FairLock",
    "ReadLock",
    "WriteLock",
    "ReadWriteLock",
    "Group",
    "GroupMember",
]
