"""Service discovery.

Each running instance of a service registers an ephemeral znode
``<base_path>/<service name>/<instance id>`` holding a JSON description
(address, port, payload, ...).  Clients list or watch the instances of a
service.  The layout and the JSON field names are those of Curator's
``ServiceDiscovery`` with its ``JsonInstanceSerializer`` (``name``, ``id``,
``address``, ``port``, ``sslPort``, ``payload``, ``registrationTimeUTC``,
``serviceType``, ``uriSpec``, ``enabled``), so Curator clients can read
our registrations and we theirs (payloads are plain JSON here; Curator
adds Jackson type information to its payloads, which we keep as-is).
Kazoo has no discovery recipe.

Registrations are re-created after the registering session is lost.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from kazoo.client import KazooClient
from kazoo.exceptions import NoNodeError

from ._common import Deadline, create_ephemeral_owned, delete_quietly, join, retry_call
from ._watch import ChildrenWatcher, EphemeralKeeper

__all__ = ["ServiceInstance", "ServiceDiscovery", "ServiceCache"]


@dataclass
class ServiceInstance:
    name: str
    address: str
    port: int | None = None
    payload: Any = None
    id: str = field(default_factory=lambda: str(uuid.uuid4()))
    ssl_port: int | None = None
    registration_time_utc: int = field(default_factory=lambda: int(time.time() * 1000))
    service_type: str = "DYNAMIC"
    uri_spec: Any = None
    enabled: bool = True

    def to_json(self) -> bytes:
        return json.dumps({
            "name": self.name,
            "id": self.id,
            "address": self.address,
            "port": self.port,
            "sslPort": self.ssl_port,
            "payload": self.payload,
            "registrationTimeUTC": self.registration_time_utc,
            "serviceType": self.service_type,
            "uriSpec": self.uri_spec,
            "enabled": self.enabled,
        }).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> ServiceInstance:
        d = json.loads(data.decode("utf-8"))
        return cls(
            name=d["name"],
            id=d["id"],
            address=d.get("address"),
            port=d.get("port"),
            ssl_port=d.get("sslPort"),
            payload=d.get("payload"),
            registration_time_utc=d.get("registrationTimeUTC") or 0,
            service_type=d.get("serviceType", "DYNAMIC"),
            uri_spec=d.get("uriSpec"),
            enabled=d.get("enabled", True) if d.get("enabled") is not None else True,
        )


def _decode_all(snapshot: dict[str, bytes]) -> list[ServiceInstance]:
    out = []
    for data in snapshot.values():
        try:
            out.append(ServiceInstance.from_json(data))
        except (ValueError, KeyError, UnicodeDecodeError):
            continue
    return sorted(out, key=lambda i: i.id)


class ServiceCache:
    """Live view of one service's instances (see :meth:`ServiceDiscovery.watch`)."""

    def __init__(self, client, path, callback=None):
        self._instances: list[ServiceInstance] = []
        self._callback = callback
        self._watcher = ChildrenWatcher(client, path, self._update)

    def _update(self, snapshot):
        self._instances = _decode_all(snapshot)
        if self._callback is not None:
            self._callback(list(self._instances))

    def instances(self) -> list[ServiceInstance]:
        return list(self._instances)

    def wait_first(self, timeout: float | None = None) -> bool:
        return self._watcher.wait_first(timeout)

    def stop(self) -> None:
        self._watcher.stop()


class ServiceDiscovery:
    """Register, list and watch service instances under *base_path*."""

    def __init__(self, client: KazooClient, base_path: str = "/services"):
        self.client = client
        self.base_path = base_path.rstrip("/")
        self._keeper = EphemeralKeeper(client)
        self._registered: dict[str, ServiceInstance] = {}

    def _path(self, name: str, instance_id: str | None = None) -> str:
        p = join(self.base_path, name)
        return join(p, instance_id) if instance_id is not None else p

    def register(self, instance: ServiceInstance, timeout: float | None = None) -> None:
        path = self._path(instance.name, instance.id)
        data = instance.to_json()
        if not create_ephemeral_owned(self.client, path, data, deadline=Deadline(timeout)):
            raise RuntimeError("instance %s/%s is registered by someone else"
                               % (instance.name, instance.id))
        self._registered[path] = instance
        self._keeper.add(path, data)

    def update(self, instance: ServiceInstance) -> None:
        path = self._path(instance.name, instance.id)
        data = instance.to_json()
        retry_call(self.client, self.client.set, path, data)
        self._registered[path] = instance
        self._keeper.add(path, data)

    def unregister(self, instance: ServiceInstance) -> None:
        path = self._path(instance.name, instance.id)
        self._keeper.discard(path)
        self._registered.pop(path, None)
        delete_quietly(self.client, path)

    def names(self) -> list[str]:
        try:
            return sorted(retry_call(self.client, self.client.get_children, self.base_path))
        except NoNodeError:
            return []

    def instances(self, name: str) -> list[ServiceInstance]:
        try:
            ids = retry_call(self.client, self.client.get_children, self._path(name))
        except NoNodeError:
            return []
        snap = {}
        for i in ids:
            try:
                snap[i], _ = retry_call(self.client, self.client.get, self._path(name, i))
            except NoNodeError:
                continue
        return _decode_all(snap)

    def watch(self, name: str, callback=None) -> ServiceCache:
        """A :class:`ServiceCache` that follows the instances of *name*;
        ``callback(instances)`` is called on every change."""
        return ServiceCache(self.client, self._path(name), callback)

    def close(self) -> None:
        for path in list(self._registered):
            self._keeper.discard(path)
            delete_quietly(self.client, path)
        self._registered.clear()
        self._keeper.close()
