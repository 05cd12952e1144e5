"""Worker process for the multi-process tests.

``python -m recipes.tests._worker KIND HOSTS PATH COUNTER ROUNDS``: take the
lock (KIND = fair | naive | kazoo | write) ROUNDS times and increment the
counter znode with an unprotected read-modify-write; also create an
ephemeral "inside" marker to detect two holders at once.  Exit status 0 on
success, 3 if another holder was seen.
"""

import sys
import time

from kazoo.client import KazooClient
from kazoo.exceptions import NodeExistsError


def main(argv):
    kind, hosts, path, counter, rounds = argv[:5]
    c = KazooClient(hosts, timeout=10)
    c.start(timeout=15)
    try:
        if kind == "kazoo":
            lock = c.Lock(path, "kazoo")
        else:
            from recipes import FairLock, NaiveLock, ReadWriteLock

            lock = {"fair": lambda: FairLock(c, path, "fair"),
                    "naive": lambda: NaiveLock(c, path + "/naive", "naive"),
                    "write": lambda: ReadWriteLock(c, path, "w").write_lock}[kind]()
        marker = counter + "-inside"
        for _ in range(int(rounds)):
            with lock:
                try:
                    c.create(marker, ephemeral=True)
                except NodeExistsError:
                    return 3
                v = int(c.get(counter)[0])
                time.sleep(0.002)
                c.set(counter, str(v + 1).encode())
                c.delete(marker)
        return 0
    finally:
        c.stop()
        c.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
