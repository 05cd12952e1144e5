"""``bench.profile``'s reading of py-spy's folded stacks (the sampling itself needs
py-spy and ptrace rights, so it is run by hand; see bench/README.md)."""

from __future__ import annotations

from bench.profile import busy_loop_samples, parse_raw, self_top, tree

_LOOP = ("_run_module_as_main (<frozen runpy>:198);<module> (zkpy/__main__.py:283);"
         "ReactorBase.mainLoop (twisted/internet/base.py:697);"
         "EPollReactor.doPoll (twisted/internet/epollreactor.py:244);"
         "Connection.doRead (twisted/internet/tcp.py:248)")
RAW = "\n".join([
    # two busy stacks through zkpy's quorum links, one through the client port
    f"{_LOOP};_QuorumProtocol.dataReceived (zkpy/net/peerlinks.py:371);"
    "split_packet (zkpy/zab/messages.py:281) 30",
    f"{_LOOP};_QuorumProtocol.dataReceived (zkpy/net/peerlinks.py:380);"
    "Driver.step (zkpy/zab/driver.py:145) 50",
    f"{_LOOP};ClientProtocol.dataReceived (/work/main/zkpy/net/clientport.py:200) 15",
    # the reactor on its own, then idle: waiting in epoll_wait
    "_run_module_as_main (<frozen runpy>:198);ReactorBase.mainLoop (twisted/internet/base.py:697);"
    "ReactorBase.runUntilCurrent (twisted/internet/base.py:990) 5",
    "_run_module_as_main (<frozen runpy>:198);ReactorBase.mainLoop (twisted/internet/base.py:697);"
    "EPollReactor.doPoll (twisted/internet/epollreactor.py:227) 400",
    # another thread: the log writer, busy and waiting
    "Thread._bootstrap (threading.py:1002);LogThread._run (zkpy/net/disk.py:75);"
    "OsFile.sync (zkpy/storage/fs.py:118) 70",
    "not a sample line",
])


def test_the_event_loops_busy_samples_start_at_zkpys_first_frame() -> None:
    samples = parse_raw(RAW.splitlines())
    assert len(samples) == 6 and sum(n for _, n in samples) == 570
    busy = busy_loop_samples(samples)
    assert sum(n for _, n in busy) == 100  # idle epoll_wait and the other thread left out
    assert busy[0][0] == ["_QuorumProtocol.dataReceived (peerlinks.py)",
                          "split_packet (messages.py)"]
    assert busy[2][0] == ["ClientProtocol.dataReceived (clientport.py)"]
    assert busy[3][0] == ["(the reactor) ReactorBase.runUntilCurrent (base.py)"]


def test_the_tree_orders_by_share_and_cuts_at_depth_and_share() -> None:
    busy = busy_loop_samples(parse_raw(RAW.splitlines()))
    assert tree(busy, depth=2, min_share=10) == [
        " 80.0% _QuorumProtocol.dataReceived (peerlinks.py)",
        "   50.0% Driver.step (driver.py)",
        "   30.0% split_packet (messages.py)",
        " 15.0% ClientProtocol.dataReceived (clientport.py)",
    ]
    assert tree(busy, depth=1, min_share=0) == [
        " 80.0% _QuorumProtocol.dataReceived (peerlinks.py)",
        " 15.0% ClientProtocol.dataReceived (clientport.py)",
        "  5.0% (the reactor) ReactorBase.runUntilCurrent (base.py)",
    ]
    assert self_top(busy, 2) == [("Driver.step (driver.py)", 50),
                                 ("split_packet (messages.py)", 30)]
