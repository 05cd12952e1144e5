"""LeaderElection: one leader, succession, session state, Kazoo interop."""

from __future__ import annotations

import threading
import time

from recipes import LeaderElection

from .conftest import expire_session, wait_until


def test_one_leader_at_a_time_and_succession(make_client, path):
    leaders_now = []
    history = []
    overlap = []
    guard = threading.Lock()

    def contender(i):
        e = LeaderElection(make_client(), path, "c%d" % i)

        def lead():
            with guard:
                leaders_now.append(i)
                if len(leaders_now) > 1:
                    overlap.append(list(leaders_now))
            assert e.is_leader
            history.append(i)
            time.sleep(0.05)
            with guard:
                leaders_now.remove(i)

        e.run(lead)

    threads = [threading.Thread(target=contender, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(history) == list(range(6))
    assert not overlap


def test_contenders_and_leader(make_client, path):
    e1 = LeaderElection(make_client(), path, "one")
    e2 = LeaderElection(make_client(), path, "two")
    assert e1.campaign(timeout=5)
    t = threading.Thread(target=lambda: e2.campaign())
    t.start()
    assert wait_until(lambda: e2.lock.waiting)
    assert e2.contenders() == ["one", "two"]
    assert e2.leader() == "one"
    assert e1.is_leader and not e2.is_leader
    e1.resign()
    t.join(10)
    assert e2.is_leader and e1.leader() == "two"
    e2.resign()


def test_kazoo_election_interop(make_client, path):
    theirs = make_client().Election(path, "kazoo")
    ours = LeaderElection(make_client(), path, "ours")
    assert ours.campaign(timeout=5)
    ran = threading.Event()
    t = threading.Thread(target=lambda: theirs.run(ran.set))
    t.start()
    assert wait_until(lambda: len(theirs.contenders()) == 2)
    assert theirs.contenders() == ["ours", "kazoo"]
    assert not ran.wait(0.3)
    ours.resign()
    assert ran.wait(10)
    t.join(10)


def test_leader_learns_it_may_have_lost_leadership(make_client, proxy, path):
    """Disconnect (session survives): in doubt while disconnected, leader
    again once reconnected."""
    c = make_client(proxy.connect_string)
    e = LeaderElection(c, path, "p")
    events = []
    e.listeners.append(events.append)
    assert e.campaign(timeout=5)
    proxy.cut()
    assert wait_until(lambda: "in_doubt" in events)
    assert wait_until(lambda: c.connected)
    assert wait_until(lambda: events[-1] == "leader")
    assert e.is_leader and not e.in_doubt.is_set() and not e.lost.is_set()
    e.resign()
    assert events == ["leader", "in_doubt", "leader", "resigned"]


def test_leader_session_expiry_hands_over(make_client, server, path):
    a, b = make_client(), make_client()
    ea, eb = LeaderElection(a, path, "a"), LeaderElection(b, path, "b")
    events = []
    ea.listeners.append(events.append)
    assert ea.campaign(timeout=5)
    got = threading.Event()
    t = threading.Thread(target=lambda: eb.campaign() and got.set())
    t.start()
    assert wait_until(lambda: eb.lock.waiting)
    expire_session(a, server.connect_string)
    assert got.wait(10)
    assert ea.lost.is_set() and not ea.is_leader
    assert "lost" in events
    assert eb.leader() == "b"
    ea.resign()  # harmless after loss
    t.join()
