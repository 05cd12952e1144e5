"""Group membership and service discovery."""

from __future__ import annotations

from recipes import Group, GroupMember, ServiceDiscovery, ServiceInstance

from .conftest import expire_session, wait_until


def test_join_leave_and_watch(make_client, path):
    seen = []
    watcher = Group(make_client(), path).watch(seen.append)
    try:
        members = [GroupMember(make_client(), path, "m%d" % i) for i in range(3)]
        for m in members:
            m.join()
        assert wait_until(lambda: seen and seen[-1] == ["m0", "m1", "m2"])
        members[1].leave()
        assert wait_until(lambda: seen[-1] == ["m0", "m2"])
        assert Group(make_client(), path).members() == ["m0", "m2"]
    finally:
        watcher.stop()


def test_member_disappears_with_its_session(make_client, path):
    c = make_client()
    GroupMember(c, path, "gone", rejoin=False).join()
    g = Group(make_client(), path)
    assert g.members() == ["gone"]
    c.stop()
    assert wait_until(lambda: g.members() == [])


def test_rejoin_after_session_expiry(make_client, server, path):
    c = make_client()
    m = GroupMember(c, path, "phoenix")
    m.join()
    g = Group(make_client(), path)
    expire_session(c, server.connect_string)
    assert wait_until(lambda: g.members() == ["phoenix"])
    assert m._keeper.rejoined == 1


def test_kazoo_party_interop(make_client, path):
    a, b = make_client(), make_client()
    party = a.Party(path, "kazoo")
    party.join()
    GroupMember(b, path, "ours").join()
    assert Group(b, path).members() == ["kazoo", "ours"]
    assert sorted(party) == ["kazoo", "ours"]
    assert len(party) == 2


def test_lost_create_reply_on_join(make_client, proxy, path):
    c = make_client(proxy.connect_string)
    m = GroupMember(c, path, "p")
    proxy.arm(path_contains=path)
    m.join(timeout=15)
    assert proxy.triggered.is_set()
    assert Group(make_client(), path).members() == ["p"]


def test_discovery_register_query_watch(make_client, path):
    sd = ServiceDiscovery(make_client(), path)
    seen = []
    cache = ServiceDiscovery(make_client(), path).watch("api", lambda insts: seen.append(insts))
    try:
        instances = [ServiceInstance("api", "10.0.0.%d" % i, 8000 + i, payload={"zone": i})
                     for i in range(3)]
        for inst in instances:
            sd.register(inst)
        other = ServiceInstance("db", "10.0.1.1", 5432)
        sd.register(other)
        assert sd.names() == ["api", "db"]
        got = sd.instances("api")
        assert {i.id: (i.address, i.port, i.payload) for i in got} == {
            i.id: ("10.0.0.%d" % n, 8000 + n, {"zone": n}) for n, i in enumerate(instances)}
        assert {i.id for i in got} == {i.id for i in instances}
        assert wait_until(lambda: len(cache.instances()) == 3)
        sd.unregister(instances[0])
        assert wait_until(lambda: {i.id for i in cache.instances()}
                          == {instances[1].id, instances[2].id})
        instances[1].payload = {"zone": "moved"}
        sd.update(instances[1])
        assert wait_until(lambda: any(i.payload == {"zone": "moved"} for i in cache.instances()))
        assert seen  # callback called
    finally:
        cache.stop()
        sd.close()


def test_discovery_curator_json_fields(zk, path):
    sd = ServiceDiscovery(zk, path)
    inst = ServiceInstance("svc", "127.0.0.1", 1234, payload="x", ssl_port=443)
    sd.register(inst)
    import json

    data = json.loads(zk.get("%s/svc/%s" % (path, inst.id))[0])
    assert set(data) == {"name", "id", "address", "port", "sslPort", "payload",
                         "registrationTimeUTC", "serviceType", "uriSpec", "enabled"}
    assert data["serviceType"] == "DYNAMIC" and data["sslPort"] == 443
    # an entry written by someone else in Curator's format is read back
    zk.create("%s/svc/foreign" % path, json.dumps({
        "name": "svc", "id": "foreign", "address": "10.1.1.1", "port": 80, "sslPort": None,
        "payload": None, "registrationTimeUTC": 1, "serviceType": "STATIC",
        "uriSpec": None}).encode())
    assert {i.id for i in sd.instances("svc")} == {inst.id, "foreign"}
    sd.close()


def test_discovery_reregisters_after_expiry(make_client, server, path):
    c = make_client()
    sd = ServiceDiscovery(c, path)
    inst = ServiceInstance("api", "10.0.0.1", 80)
    sd.register(inst)
    reader = ServiceDiscovery(make_client(), path)
    expire_session(c, server.connect_string)
    assert wait_until(lambda: [i.id for i in reader.instances("api")] == [inst.id])


def test_discovery_lost_create_reply(make_client, proxy, path):
    c = make_client(proxy.connect_string)
    sd = ServiceDiscovery(c, path)
    inst = ServiceInstance("api", "10.0.0.9", 9)
    proxy.arm(path_contains=inst.id)
    sd.register(inst, timeout=15)
    assert proxy.triggered.is_set()
    assert [i.id for i in ServiceDiscovery(make_client(), path).instances("api")] == [inst.id]
