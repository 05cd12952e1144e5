"""ACL checks and the built-in authentication schemes (world, auth, digest, ip).

The rules are Apache ZooKeeper's: an ACL entry grants its permission bits to
``world:anyone`` or to a connection holding a matching id of the same scheme;
the ``auth`` pseudo-scheme on create/setACL expands to every authenticated id
of the caller; a ``super`` id bypasses every check. Pure functions, no state:
the identities of a connection are a list of ``Id`` records it carries.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from zkpy.jute import schema as S
from zkpy.jute.protocol import Err, ZkError


def digest(user_password: str) -> str:
    """ZooKeeper's digest id for 'user:password': 'user:' + base64(sha1(user:password))."""
    user = user_password.split(":", 1)[0]
    sha = hashlib.sha1(user_password.encode("utf-8")).digest()
    return f"{user}:{base64.b64encode(sha).decode('ascii')}"


def _java_split_count(text: str, sep: str) -> int:
    """len(text.split(sep)) as Java counts it (trailing empty strings dropped)."""
    parts = text.split(sep)
    while parts and parts[-1] == "":
        parts.pop()
    return len(parts)


def _ip_network(expr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    addr, _, bits = expr.partition("/")
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    width = ip.max_prefixlen
    if bits:
        if not (bits.isascii() and bits.isdigit()) or int(bits) > width:
            return None
        prefix = int(bits)
    else:
        prefix = width
    return ipaddress.ip_network(f"{ip}/{prefix}", strict=False)


class AuthProviders:
    """The authentication schemes a server knows (ZooKeeper's ProviderRegistry).

    ``super_digest`` is the value of
    ``zookeeper.DigestAuthenticationProvider.superDigest``: a digest login that
    produces it also gets the ``super`` id.
    """

    # Schemes whose ids prove who the caller is (the "auth" ACL expands to these).
    AUTHENTICATED: ClassVar[frozenset[str]] = frozenset({"digest", "sasl", "x509"})

    def __init__(self, super_digest: str | None = None) -> None:
        self.super_digest = super_digest
        self.schemes = {"digest", "ip"}

    def authenticate(self, scheme: str, auth: bytes | None, remote_ip: str) -> list[Any]:
        """Ids granted by an auth packet; raises ZkError(AUTHFAILED) when refused."""
        if scheme == "digest":
            try:
                text = (auth or b"").decode("utf-8")
            except UnicodeDecodeError:
                raise ZkError(Err.AUTHFAILED) from None
            ident = digest(text)
            ids = [S.Id("digest", ident)]
            if self.super_digest is not None and ident == self.super_digest:
                ids.insert(0, S.Id("super", ""))
            return ids
        if scheme == "ip":
            return [S.Id("ip", remote_ip)]
        raise ZkError(Err.AUTHFAILED)

    def is_valid(self, scheme: str, ident: str) -> bool:
        if scheme == "digest":
            return _java_split_count(ident, ":") == 2
        if scheme == "ip":
            return _ip_network(ident) is not None
        return scheme in self.schemes and bool(ident)

    def matches(self, scheme: str | None, auth_id: str | None, acl_id: str | None) -> bool:
        if scheme == "ip":
            if auth_id is None or acl_id is None:  # (jute strings may be null)
                return False
            net = _ip_network(acl_id)
            try:
                return net is not None and ipaddress.ip_address(auth_id) in net
            except ValueError:
                return False
        return auth_id == acl_id

    def check(self, acl: Sequence[Any], perm: int, ids: Iterable[Any]) -> None:
        """Raise ZkError(NOAUTH) unless ``ids`` hold ``perm`` under ``acl``."""
        if not acl:
            return
        ids = list(ids)
        i: S.Id  # (typed: compiled, the records' fields are read directly)
        for i in ids:
            if i.scheme == "super":
                return
        a: S.ACL
        for a in acl:
            if a.perms & perm:
                aid: S.Id = a.id
                if aid.scheme == "world" and aid.id == "anyone":
                    return
                for i in ids:
                    if i.scheme == aid.scheme and self.matches(i.scheme, i.id, aid.id):
                        return
        raise ZkError(Err.NOAUTH)

    def fixup(self, path: str, ids: Iterable[Any], acl: Sequence[Any] | None) -> list[Any]:
        """Validate an ACL list from a request and expand the ``auth`` scheme."""
        unique: list[Any] = []
        if acl:
            for a in acl:
                if a not in unique:
                    unique.append(a)
        if not unique:
            raise ZkError(Err.INVALIDACL, path)
        out: list[Any] = []
        for a in unique:
            aid = a.id
            if aid is None or aid.scheme is None:
                raise ZkError(Err.INVALIDACL, path)
            if aid.scheme == "world" and aid.id == "anyone":
                out.append(a)
            elif aid.scheme == "auth":
                granted = [S.ACL(a.perms, i) for i in ids if i.scheme in self.AUTHENTICATED]
                if not granted:
                    raise ZkError(Err.INVALIDACL, path)
                out.extend(granted)
            elif aid.scheme in self.schemes and aid.id is not None and self.is_valid(aid.scheme, aid.id):
                out.append(a)
            else:
                raise ZkError(Err.INVALIDACL, path)
        return out


def mask_digests(acl: Sequence[Any]) -> list[Any]:
    """getACL without ADMIN: digest ids lose their hash ('user:x')."""
    out = []
    for a in acl:
        if a.id.scheme == "digest":
            user = a.id.id.split(":", 1)[0]
            out.append(S.ACL(a.perms, S.Id("digest", f"{user}:x")))
        else:
            out.append(a)
    return out
