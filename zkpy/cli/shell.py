"""``zkpy shell [host:port] [command ...]``: a small zkCli on Kazoo.

Contract
--------
* Connects with Kazoo to ``host:port`` (default 127.0.0.1:2181, or a whole
  connect string) and runs zkCli's everyday commands: ``ls [-w] path``,
  ``get [-w] [-s] path``, ``set path data [version]``, ``create [-e] [-s] path
  [data]``, ``delete [-v version] path``, ``deleteall path``,
  ``stat [-w] path``, ``watch path``, ``tree [path]``, ``getAcl``/``acl path``,
  ``setAcl path scheme:id:perms[,...]``, ``addauth scheme auth``, ``sync path``,
  ``help``, ``quit``.  Arguments are split as a shell does (quotes keep blanks).
* Output follows zkCli where zkCli has a format (``stat``'s ``cZxid = 0x..``
  lines, ``getAcl``'s ``'world,'anyone`` / ``: cdrwa``, ``WATCHER::`` lines
  for watch events, which arrive on Kazoo's thread and print when they come).
* Interactive on a terminal (readline history and a prompt); otherwise it reads
  commands from stdin, one a line, without a prompt, so it can be scripted and
  tested.  With a command on the command line it runs that one and exits.
* Exit status: 0 when every command succeeded, 1 when one failed (the error
  is printed and the shell goes on), 2 when it cannot connect.
"""

from __future__ import annotations

import argparse
import cmd
import shlex
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

_PERMS = "rwcda"  # READ WRITE CREATE DELETE ADMIN, as ZooDefs.Perms' bits 1, 2, 4, 8, 16
_print_lock = threading.Lock()


def say(*lines: str) -> None:
    with _print_lock:
        for line in lines:
            sys.stdout.write(line + "\n")
        sys.stdout.flush()


def perms_text(perms: int) -> str:
    """zkCli's order: c, d, r, w, a."""
    return "".join(ch for ch, bit in (("c", 4), ("d", 8), ("r", 1), ("w", 2), ("a", 16))
                   if perms & bit)


def perms_value(text: str) -> int:
    value = 0
    for ch in text.lower():
        index = _PERMS.find(ch)
        if index < 0:
            raise ValueError(f"unknown permission {ch!r} (use c, d, r, w, a)")
        value |= 1 << index
    return value


def parse_acl(spec: str) -> list[Any]:
    """``scheme:id:perms[,scheme:id:perms...]``; the id may hold colons (digest, ip)."""
    from kazoo.security import ACL, Id

    acls = []
    for item in spec.split(","):
        scheme, _, rest = item.partition(":")
        ident, _, perms = rest.rpartition(":")
        if not scheme or not perms:
            raise ValueError(f"{item!r} is not scheme:id:perms")
        acls.append(ACL(perms_value(perms), Id(scheme, ident)))
    return acls


def _java_date(ms: int) -> str:
    return time.strftime("%a %b %d %H:%M:%S %Z %Y", time.localtime(ms / 1000))


def stat_lines(st: Any) -> list[str]:
    return [f"cZxid = {st.czxid:#x}", f"ctime = {_java_date(st.ctime)}",
            f"mZxid = {st.mzxid:#x}", f"mtime = {_java_date(st.mtime)}",
            f"pZxid = {st.pzxid:#x}", f"cversion = {st.cversion}",
            f"dataVersion = {st.version}", f"aclVersion = {st.aversion}",
            f"ephemeralOwner = {st.ephemeralOwner:#x}", f"dataLength = {st.dataLength}",
            f"numChildren = {st.numChildren}"]


def event_line(event: Any) -> str:
    kind = {"CREATED": "NodeCreated", "DELETED": "NodeDeleted", "CHANGED": "NodeDataChanged",
            "CHILD": "NodeChildrenChanged"}.get(event.type, str(event.type))
    state = "SyncConnected" if event.state == "CONNECTED" else str(event.state)
    return f"WATCHER:: WatchedEvent state:{state} type:{kind} path:{event.path}"


def _watcher(event: Any) -> None:
    say(event_line(event))


class Shell(cmd.Cmd):
    """One Kazoo session; each ``do_x`` is a command, failures print and count."""

    intro = None

    def __init__(self, client: Any, interactive: bool) -> None:
        super().__init__()
        self.client = client
        self.interactive = interactive
        self.failures = 0
        self.prompt = f"[zkpy: {client.hosts}] " if interactive else ""
        if not interactive:
            self.use_rawinput = False

    # -- plumbing -------------------------------------------------------------
    def onecmd(self, line: str) -> bool:
        try:
            return bool(super().onecmd(line))
        except Exception as e:  # one failed command never ends the shell
            self.failures += 1
            paths = [w for w in line.split() if w.startswith("/")]
            say(describe_error(e, paths[0] if paths else ""))
            return False

    def emptyline(self) -> bool:
        return False

    def default(self, line: str) -> None:
        self.failures += 1
        say(f"unknown command: {line.split()[0]} (try help)")

    def do_EOF(self, arg: str) -> bool:
        if self.interactive:
            say("")
        return True

    def do_quit(self, arg: str) -> bool:
        """quit: leave the shell"""
        return True

    do_exit = do_quit

    # -- reads ----------------------------------------------------------------
    def do_ls(self, arg: str) -> None:
        """ls [-w] path: the children of path, sorted (-w: watch them)"""
        flags, (path,) = _args(arg, "w", 1)
        children = self.client.get_children(path, watch=_watcher if "w" in flags else None)
        say("[" + ", ".join(sorted(children)) + "]")

    def do_get(self, arg: str) -> None:
        """get [-w] [-s] path: the data of path (-s: and its stat; -w: watch it)"""
        flags, (path,) = _args(arg, "ws", 1)
        data, st = self.client.get(path, watch=_watcher if "w" in flags else None)
        say("null" if data is None else data.decode("utf-8", "replace"))
        if "s" in flags:
            say(*stat_lines(st))

    def do_stat(self, arg: str) -> None:
        """stat [-w] path: the stat of path (-w: watch it)"""
        flags, (path,) = _args(arg, "w", 1)
        st = self.client.exists(path, watch=_watcher if "w" in flags else None)
        if st is None:
            raise LookupError(f"Node does not exist: {path}")
        say(*stat_lines(st))

    def do_tree(self, arg: str) -> None:
        """tree [path]: path and everything below it, indented"""
        _, rest = _args(arg, "", 0, 1)
        root = rest[0] if rest else "/"
        if self.client.exists(root) is None:
            raise LookupError(f"Node does not exist: {root}")
        say(root)
        self._tree(root, 1)

    def _tree(self, path: str, depth: int) -> None:
        for child in sorted(self.client.get_children(path)):
            full = path.rstrip("/") + "/" + child
            say("  " * depth + child)
            self._tree(full, depth + 1)

    def do_getAcl(self, arg: str) -> None:  # noqa: N802 - zkCli's name
        """getAcl path (or acl path): the ACL of path"""
        _, (path,) = _args(arg, "", 1)
        acls, _ = self.client.get_acls(path)
        for acl in acls:
            say(f"'{acl.id.scheme},'{acl.id.id}", f": {perms_text(acl.perms)}")

    do_acl = do_getAcl

    def do_watch(self, arg: str) -> None:
        """watch path: one data watch (or an exists watch) and one child watch on path"""
        _, (path,) = _args(arg, "", 1)
        if self.client.exists(path, watch=_watcher) is not None:
            self.client.get_children(path, watch=_watcher)
        say(f"watching {path}")

    def do_sync(self, arg: str) -> None:
        """sync path: wait until this server has what the leader had"""
        _, (path,) = _args(arg, "", 1)
        self.client.sync(path)
        say(f"Sync is OK for {path}")

    # -- writes ---------------------------------------------------------------
    def do_create(self, arg: str) -> None:
        """create [-e] [-s] path [data]: a znode (-e ephemeral, -s sequential); prints
        the created path (Kazoo has no container or TTL create)"""
        flags, rest = _args(arg, "es", 1, 2)
        data = rest[1].encode() if len(rest) > 1 else b""
        created = self.client.create(rest[0], data, ephemeral="e" in flags,
                                     sequence="s" in flags)
        say(f"Created {created}")

    def do_set(self, arg: str) -> None:
        """set path data [version]: replace the data of path"""
        _, rest = _args(arg, "", 2, 3)
        version = int(rest[2]) if len(rest) > 2 else -1
        self.client.set(rest[0], rest[1].encode(), version=version)

    def do_delete(self, arg: str) -> None:
        """delete [-v version] path: delete a znode without children"""
        words = shlex.split(arg)
        version = -1
        if "-v" in words:
            at = words.index("-v")
            version = int(words[at + 1])
            del words[at:at + 2]
        _, (path,) = _args(shlex.join(words), "", 1)
        self.client.delete(path, version=version)

    def do_deleteall(self, arg: str) -> None:
        """deleteall path: delete path and everything below it"""
        _, (path,) = _args(arg, "", 1)
        self.client.delete(path, recursive=True)

    def do_setAcl(self, arg: str) -> None:  # noqa: N802 - zkCli's name
        """setAcl path scheme:id:perms[,...]: replace the ACL of path"""
        _, (path, spec) = _args(arg, "", 2)
        self.client.set_acls(path, parse_acl(spec))

    def do_addauth(self, arg: str) -> None:
        """addauth scheme auth: add credentials to this session (e.g. digest user:pass)"""
        _, (scheme, auth) = _args(arg, "", 2)
        self.client.add_auth(scheme, auth)


def _args(arg: str, allowed: str, least: int, most: int | None = None
          ) -> tuple[set[str], list[str]]:
    """Split a command's arguments into single-letter flags and positional words."""
    flags: set[str] = set()
    rest: list[str] = []
    for word in shlex.split(arg):
        if word.startswith("-") and len(word) > 1 and not rest and set(word[1:]) <= set(allowed):
            flags |= set(word[1:])
        else:
            rest.append(word)
    most = least if most is None else most
    if not least <= len(rest) <= most:
        raise TypeError(f"wrong arguments: {arg!r}")
    return flags, rest


def describe_error(e: Exception, path: str = "") -> str:
    """zkCli's wording for the usual failures."""
    from kazoo import exceptions as ke

    table: dict[type, Callable[[], str]] = {
        ke.NoNodeError: lambda: f"Node does not exist{': ' + path if path else ''}",
        ke.NodeExistsError: lambda: f"Node already exists{': ' + path if path else ''}",
        ke.NotEmptyError: lambda: "Node not empty",
        ke.BadVersionError: lambda: "version No is not valid",
        ke.NoAuthError: lambda: "Insufficient permission",
        ke.InvalidACLError: lambda: "Invalid ACL",
    }
    for kind, text in table.items():
        if isinstance(e, kind):
            return text()
    if isinstance(e, TypeError) and str(e).startswith("wrong arguments"):
        return f"{e} (see help)"
    if isinstance(e, LookupError):
        return str(e)
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__


def connect_string(target: str | None) -> str:
    if not target:
        return "127.0.0.1:2181"
    return ",".join(h if ":" in h.rsplit("]", 1)[-1] else f"{h}:2181" for h in target.split(","))


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="zkpy shell", description=__doc__.split("\n\n")[0],
                                epilog="Commands: ls get set create delete deleteall stat "
                                "watch tree getAcl setAcl addauth sync help quit")
    p.add_argument("server", nargs="?", help="host:port or a connect string "
                   "(default 127.0.0.1:2181)")
    p.add_argument("command", nargs=argparse.REMAINDER, help="one command to run, then exit")
    p.add_argument("--timeout", type=float, default=10.0, help="connect timeout in seconds")
    args = p.parse_args(list(argv))
    from kazoo.client import KazooClient

    client = KazooClient(hosts=connect_string(args.server), timeout=args.timeout)
    try:
        client.start(timeout=args.timeout)
    except Exception as e:
        print(f"zkpy shell: cannot connect to {client.hosts}: {e}", file=sys.stderr)
        client.close()
        return 2
    shell = Shell(client, interactive=not args.command and sys.stdin.isatty())
    try:
        if args.command:
            shell.onecmd(shlex.join(args.command))
        else:
            shell.cmdloop()
    except KeyboardInterrupt:
        say("")
    finally:
        client.stop()
        client.close()
    return 1 if shell.failures else 0
