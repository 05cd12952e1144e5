"""``zkpy backup`` and ``zkpy restore``: online through the AdminServer, or offline
on a data directory.

* ``zkpy backup [HOST:PORT] [-o FILE] [--auth 'digest user:password']`` asks a
  running server's AdminServer (default 127.0.0.1:8080) for ``snapshot`` and
  writes the stream to FILE (default ``snapshot.<last_zxid>`` in the current
  directory: the name ZooKeeper gives the file in its data directory).
* ``zkpy backup --data-dir DIR [-o FILE]`` makes the same consistent snapshot
  from a *stopped* server's data directory (zkpy's or Apache ZooKeeper's): its
  newest snapshot with the logged transactions after it replayed.
* ``zkpy restore FILE [HOST:PORT] [--auth ...]`` posts FILE to a running
  standalone server's ``restore`` command.
* ``zkpy restore FILE --data-dir DIR [--zxid ZXID]`` puts FILE into a fresh data
  directory as ``version-2/snapshot.<zxid>``; zkpy or Apache ZooKeeper 3.8
  started on DIR serves it.  The zxid comes from the file's name
  (``snapshot.<hex>``) unless given.
Exit status 0 on success, 1 when the server or the files refused, 2 for usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence

from zkpy.storage import backup as B
from zkpy.storage.formats import snapshot_name


def admin_url(target: str | None, command_url: str, command: str) -> str:
    target = target or "127.0.0.1:8080"
    if "://" not in target:
        target = "http://" + target
    return f"{target.rstrip('/')}/{command_url.strip('/')}/{command}"


def _parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=f"zkpy {command}", description=__doc__.split("\n\n")[0])
    if command == "restore":
        p.add_argument("file", help="a snapshot file (from zkpy backup, or ZooKeeper's)")
    p.add_argument("server", nargs="?", help="the AdminServer, host:port or a URL "
                   "(default 127.0.0.1:8080)")
    p.add_argument("--auth", help="the Authorization header: 'digest user:password' or 'ip' "
                   "(the ids need ALL on /)")
    p.add_argument("--command-url", default="/commands", help="admin.commandURL")
    p.add_argument("--data-dir", help="work offline on this data directory instead")
    if command == "backup":
        p.add_argument("--data-log-dir", help="its dataLogDir, if apart")
        p.add_argument("-o", "--output", help="file to write (default snapshot.<zxid>)")
    else:
        p.add_argument("--zxid", help="the snapshot's zxid (default: from the file name)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds (default 300)")
    return p


def _request(url: str, auth: str | None, body: bytes | None, timeout: float
             ) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if auth:
        req.add_header("Authorization", auth)
    if body is not None:
        req.add_header("Content-Type", "application/octet-stream")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def _refused(status: int, body: bytes) -> str:
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        error = None
    meaning = {401: "not authenticated (see --auth)", 403: "not authorized: the ids need "
               "ALL on /", 429: "rate limited (zookeeper.admin.rateLimiterIntervalInMS)",
               503: "disabled on the server", 500: "the server could not do it"}
    return f"HTTP {status}: {error or meaning.get(status, 'refused')}"


def backup(args: argparse.Namespace) -> int:
    if args.data_dir:
        blob, zxid = B.backup_from_data_dir(args.data_dir, args.data_log_dir)
    else:
        url = admin_url(args.server, args.command_url, "snapshot")
        status, headers, blob = _request(url, args.auth, None, args.timeout)
        if status != 200:
            print(f"zkpy backup: {url}: {_refused(status, blob)}", file=sys.stderr)
            return 1
        zxid = int(headers.get("last_zxid", "0x0"), 16)
        if int(headers.get("snapshot_size", len(blob))) != len(blob):
            print("zkpy backup: the stream was cut short", file=sys.stderr)
            return 1
    B.read_backup(blob)  # never leave a file that would not load
    out = args.output or snapshot_name(zxid)
    B.write_file(os.path.abspath(out), blob)
    print(f"Wrote {out}: {len(blob)} bytes, last zxid 0x{zxid:x}")
    return 0


def restore(args: argparse.Namespace) -> int:
    with open(args.file, "rb") as f:
        blob = f.read()
    if args.data_dir:
        zxid = int(args.zxid, 0) if args.zxid else B.zxid_from_name(args.file)
        if zxid is None:
            print("zkpy restore: the file is not named snapshot.<zxid>; give --zxid",
                  file=sys.stderr)
            return 2
        path = B.install_backup(args.data_dir, blob, zxid)
        print(f"Wrote {path}: start zkpy or ZooKeeper on {args.data_dir}")
        return 0
    url = admin_url(args.server, args.command_url, "restore")
    status, _, body = _request(url, args.auth, blob, args.timeout)
    if status != 200:
        print(f"zkpy restore: {url}: {_refused(status, body)}", file=sys.stderr)
        return 1
    print(f"Restored {args.file}: the server is at zxid 0x{json.loads(body)['last_zxid']:x}")
    return 0


def main(command: str, argv: Sequence[str]) -> int:
    args = _parser(command).parse_args(list(argv))
    try:
        return backup(args) if command == "backup" else restore(args)
    except (B.BackupError, OSError) as e:
        print(f"zkpy {command}: {e}", file=sys.stderr)
        return 1
