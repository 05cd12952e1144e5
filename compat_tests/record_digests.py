"""Record Apache ZooKeeper's tree digests, for tests/test_digest.py.

Run ``python compat_tests/record_digests.py`` (from the project root) to
regenerate ``tests/data/reference_digests.json``. It starts a fresh
standalone Apache ZooKeeper 3.8 (``zookeeper.digest.enabled`` at its default,
true), runs ``digest_workload.run``, and keeps:

* ``entries``: every transaction log entry ZooKeeper wrote, base64 (TxnHeader,
  body and, where ZooKeeper put one, the TxnDigest: the tree digest its
  PrepRequestProcessor computed for the state after that txn);
* ``hash``: the ``hash`` four-letter word's output (the tree digest at every
  128th zxid, as ZooKeeper's own tree computed it);
* ``mntr_digest_mismatches``: ZooKeeper's own count (it checks every txn);
* ``snapshot``: the snapshot ZooKeeper writes when it starts again on that
  data directory (its tree loaded from the log), base64, named by zxid: its
  trailer is the tree digest computed by ZooKeeper's DataTree.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from compat_tests import digest_workload  # noqa: E402
from zkpy.storage.formats import files_by_zxid  # noqa: E402
from zkpy.storage.txnlog import read_log  # noqa: E402
from zkpy.testing.launchers import ApacheZooKeeperServer  # noqa: E402

OUT = ROOT / "tests" / "data" / "reference_digests.json"


def _mntr_value(text: str, key: str) -> int:
    for line in text.splitlines():
        k, _, v = line.partition("\t")
        if k == key:
            return int(v)
    raise KeyError(key)


def record() -> dict:
    srv = ApacheZooKeeperServer(extended_types=True, log_level="info")
    try:
        srv.start(timeout=60)
        digest_workload.run(srv.address)
        hash_text = srv.four_letter("hash")
        mismatches = _mntr_value(srv.four_letter("mntr"), "zk_digest_mismatches_count")
        srv.stop()
        vdir = str(srv.data_dir / "version-2")
        entries = [e.data for _, path in files_by_zxid(vdir, "log") for e in read_log(path)]
        before = {p for _, p in files_by_zxid(vdir, "snapshot")}
        srv.start(timeout=60)  # loads the log and writes a snapshot of what it loaded
        srv.stop()
        snaps = [(z, p) for z, p in files_by_zxid(vdir, "snapshot") if p not in before]
        assert snaps, "ZooKeeper wrote no snapshot at start-up"
        zxid, path = snaps[-1]
        log_text = srv.log_text()
        assert "Digests are not matching" not in log_text, "ZooKeeper disagrees with itself"
        return {
            "source": "Apache ZooKeeper 3.8 (compat_tests/record_digests.py)",
            "entries": [base64.b64encode(e).decode() for e in entries],
            "hash": hash_text,
            "mntr_digest_mismatches": mismatches,
            "snapshot": {"zxid": zxid, "data": base64.b64encode(Path(path).read_bytes()).decode()},
        }
    finally:
        srv.kill()
        srv.cleanup()


def main() -> int:
    facts = record()
    OUT.write_text(json.dumps(facts, indent=1) + "\n")
    print(f"wrote {OUT}: {len(facts['entries'])} log entries, snapshot 0x{facts['snapshot']['zxid']:x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
