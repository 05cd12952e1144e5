"""Differential testing of zkpy against Apache ZooKeeper (the oracle).

``rawclient``  a tiny synchronous ZooKeeper client on a plain socket, for the
               requests Kazoo 2.11 cannot send (addWatch, removeWatches,
               getEphemerals, getAllChildrenNumber, TTL/container creates,
               invalid paths, null data);
``compare``    turning replies into comparable values (zxids by order, times
               by relation, session ids by owner);
``machine``    the hypothesis state machine driving both servers;
``proxy``      a TCP proxy that corrupts one reply field (to prove the
               comparison notices).
"""
