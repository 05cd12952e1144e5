"""Ready-znode configuration: readers never act on a half-written config."""

from __future__ import annotations

import threading

from recipes import ConfigPublisher, ConfigReader

from .conftest import expire_session, wait_until

KEYS = ["k%02d" % i for i in range(8)]


def _config(gen):
    return {k: b"%d" % gen for k in KEYS}


def _consistent(cfg):
    return set(cfg.values) == set(KEYS) and set(cfg.values.values()) == {b"%d" % cfg.generation}


def test_publish_and_read(make_client, path):
    pub = ConfigPublisher(make_client(), path)
    reader = ConfigReader(make_client(), path)
    assert reader.read(timeout=0.2) is None  # nothing published yet
    assert pub.publish(_config(1)) == 1
    cfg = reader.read(timeout=5)
    assert cfg.generation == 1 and _consistent(cfg)
    assert pub.publish({"only": "x"}) == 2  # keys removed too
    cfg = reader.read(timeout=5)
    assert cfg.values == {"only": b"x"} and cfg.generation == 2


def test_read_discards_what_it_read_when_ready_goes_away(make_client, path):
    """Deterministic interleaving: in the middle of the reader's read, the
    publisher takes ready down and rewrites one key.  The reader must throw
    the mix away and return the next complete configuration."""
    pub = ConfigPublisher(make_client(), path)
    pub.publish(_config(1))
    rc = make_client()
    reader = ConfigReader(rc, path)
    real_get = rc.get
    fired = []

    def get(p, *a, **kw):
        result = real_get(p, *a, **kw)
        if p.endswith("/k03") and not fired:
            fired.append(1)
            # the publisher starts while we are half-way through the keys
            t = threading.Thread(target=pub.publish, args=(_config(2),))
            t.start()
            t.join()
        return result

    rc.get = get
    cfg = reader.read(timeout=10)
    assert fired and reader.discarded >= 1
    assert cfg.generation == 2 and _consistent(cfg)


def test_concurrent_publisher_and_readers(make_client, path):
    pub = ConfigPublisher(make_client(), path)
    pub.publish(_config(1))
    seen = []
    bad = []

    def on_change(cfg):
        seen.append(cfg.generation)
        if not _consistent(cfg):
            bad.append(cfg)

    followers = [ConfigReader(make_client(), path, on_change=on_change).start() for _ in range(3)]
    stop = threading.Event()
    polled = []

    def poller():
        r = ConfigReader(make_client(), path)
        while not stop.is_set():
            cfg = r.read(timeout=5)
            if cfg is not None:
                polled.append(cfg)
                if not _consistent(cfg):
                    bad.append(cfg)

    pollers = [threading.Thread(target=poller) for _ in range(2)]
    for t in pollers:
        t.start()
    last = 1
    for gen in range(2, 30):
        last = pub.publish(_config(gen))
    for f in followers:
        assert f.wait_for(last, timeout=10) is not None
    stop.set()
    for t in pollers:
        t.join(10)
    for f in followers:
        f.stop()
    assert not bad
    assert polled
    assert max(seen) == last


def test_reader_follows_across_session_expiry(make_client, server, path):
    pub = ConfigPublisher(make_client(), path)
    pub.publish(_config(1))
    rc = make_client()
    follower = ConfigReader(rc, path).start()
    try:
        assert follower.wait_for(1, timeout=5)
        expire_session(rc, server.connect_string)
        pub.publish(_config(2))
        assert follower.wait_for(2, timeout=10) is not None
        assert _consistent(follower.current)
    finally:
        follower.stop()


def test_publish_survives_connection_loss(make_client, proxy, path):
    c = make_client(proxy.connect_string)
    pub = ConfigPublisher(c, path)
    pub.publish(_config(1))
    proxy.arm(path_contains=path + "/ready")  # the create of "ready" loses its reply
    assert pub.publish(_config(2)) == 2
    assert proxy.triggered.is_set()
    cfg = ConfigReader(make_client(), path).read(timeout=5)
    assert cfg.generation == 2 and _consistent(cfg)
    assert wait_until(lambda: c.connected)
