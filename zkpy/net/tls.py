"""TLS on ``secureClientPort``, configured with ZooKeeper's ``ssl.*`` keys.

Key and trust stores are read in the formats ZooKeeper accepts: JKS (through
the kept ``pyjks`` library), PKCS12 and PEM; the type comes from
``ssl.keyStore.type`` / ``ssl.trustStore.type`` or, as in ZooKeeper, from the
file's extension. ``ssl.clientAuth`` is none, want or need (ZooKeeper's
default: need). A client certificate gives the connection the ``x509`` id
ZooKeeper derives from it: the subject's distinguished name, RFC 2253 style.
"""

from __future__ import annotations

import logging
from typing import Any

from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

log = logging.getLogger("zkpy.net")


class TLSConfigError(ValueError):
    pass


def _store_type(cfg: dict[str, str], prefix: str, location: str) -> str:
    explicit = cfg.get(f"{prefix}.type", "").strip().upper()
    if explicit:
        return explicit
    low = location.lower()
    if low.endswith(".jks"):
        return "JKS"
    if low.endswith((".p12", ".pfx")):
        return "PKCS12"
    if low.endswith((".pem", ".crt", ".key")):
        return "PEM"
    return "JKS"


def _load_store(cfg: dict[str, str], prefix: str) -> tuple[Any, list[Any], list[Any]]:
    """(private key or None, its certificate chain, trusted certificates)."""
    location = cfg.get(f"{prefix}.location")
    if not location:
        return None, [], []
    password = cfg.get(f"{prefix}.password", "")
    kind = _store_type(cfg, prefix, location)
    try:
        if kind == "JKS":
            return _load_jks(location, password)
        if kind == "PKCS12":
            return _load_pkcs12(location, password)
        if kind == "PEM":
            return _load_pem(location, password)
    except (OSError, ValueError, crypto.Error) as e:
        raise TLSConfigError(f"{prefix}.location: cannot load {kind} store {location}: {e}") from e
    raise TLSConfigError(f"{prefix}.type: unsupported store type {kind!r}")


def _load_jks(path: str, password: str) -> tuple[Any, list[Any], list[Any]]:
    import jks

    store = jks.KeyStore.load(path, password)
    key = None
    chain: list[Any] = []
    for entry in store.private_keys.values():
        if not entry.is_decrypted():
            entry.decrypt(password)
        key = crypto.load_privatekey(crypto.FILETYPE_ASN1, entry.pkey_pkcs8)
        chain = [crypto.load_certificate(crypto.FILETYPE_ASN1, der) for _, der in entry.cert_chain]
        break
    trusted = [crypto.load_certificate(crypto.FILETYPE_ASN1, c.cert) for c in store.certs.values()]
    return key, chain, trusted


def _load_pkcs12(path: str, password: str) -> tuple[Any, list[Any], list[Any]]:
    from cryptography.hazmat.primitives.serialization import pkcs12

    with open(path, "rb") as f:
        key, cert, extra = pkcs12.load_key_and_certificates(f.read(), password.encode() or None)
    okey = crypto.PKey.from_cryptography_key(key) if key is not None else None  # type: ignore[arg-type]
    chain = [crypto.X509.from_cryptography(c) for c in ([cert] if cert else []) + list(extra)]
    trusted = chain if okey is None else [crypto.X509.from_cryptography(c) for c in extra]
    return okey, chain, trusted


def _load_pem(path: str, password: str) -> tuple[Any, list[Any], list[Any]]:
    with open(path, "rb") as f:
        text = f.read()
    key = None
    if b"PRIVATE KEY" in text:
        key = crypto.load_privatekey(crypto.FILETYPE_PEM, text, password.encode() or None)
    certs = []
    for block in text.split(b"-----END CERTIFICATE-----")[:-1]:
        start = block.find(b"-----BEGIN CERTIFICATE-----")
        certs.append(crypto.load_certificate(crypto.FILETYPE_PEM,
                                             block[start:] + b"-----END CERTIFICATE-----"))
    return key, certs, certs


_PROTOCOL_OPTIONS = {
    "TLSv1": SSL.OP_NO_TLSv1, "TLSv1.1": SSL.OP_NO_TLSv1_1,
    "TLSv1.2": SSL.OP_NO_TLSv1_2, "TLSv1.3": getattr(SSL, "OP_NO_TLSv1_3", 0),
}


def _modern(setter: Any, legacy: Any, convert: Any) -> None:
    """Hand pyOpenSSL the cryptography object (it deprecates its own PKey/X509
    there since 24.3); older releases take only their own types."""
    try:
        setter(convert())
    except TypeError:
        setter(legacy)


def use_identity(ctx: Any, key: Any, chain: list[Any]) -> None:
    """Put a private key and its certificate chain on a context."""
    _modern(ctx.use_privatekey, key, key.to_cryptography_key)
    _modern(ctx.use_certificate, chain[0], chain[0].to_cryptography)
    for extra in chain[1:]:
        _modern(ctx.add_extra_chain_cert, extra, extra.to_cryptography)
    ctx.check_privatekey()


def load_store(cfg: dict[str, str], prefix: str) -> tuple[Any, list[Any], list[Any]]:
    """(private key or None, its certificate chain, trusted certificates) of the
    store ``<prefix>.location`` names (``ssl.keyStore``, ``ssl.quorum.trustStore``...)."""
    return _load_store(cfg, prefix)


def configure_context(ctx: Any, cfg: dict[str, str], prefix: str) -> None:
    """``<prefix>.protocol`` / ``enabledProtocols`` / ``ciphersuites`` on a context."""
    ctx.set_options(SSL.OP_NO_SSLv2 | SSL.OP_NO_SSLv3)
    enabled = cfg.get(f"{prefix}.enabledProtocols") or cfg.get(f"{prefix}.protocol") or ""
    wanted = {p.strip() for p in enabled.split(",") if p.strip()}
    if wanted:
        if not wanted & set(_PROTOCOL_OPTIONS):
            raise TLSConfigError(f"{prefix}.enabledProtocols: no known protocol in {enabled!r}")
        # ssl.protocol names the newest; ZooKeeper enables it and the ones it lists.
        if f"{prefix}.enabledProtocols" not in cfg and "TLSv1.3" in wanted:
            wanted.add("TLSv1.2")
        for name, opt in _PROTOCOL_OPTIONS.items():
            if name not in wanted:
                ctx.set_options(opt)
    ciphers = cfg.get(f"{prefix}.ciphersuites")
    if ciphers:
        try:
            ctx.set_cipher_list(ciphers.replace(",", ":").encode())
        except SSL.Error as e:
            raise TLSConfigError(f"{prefix}.ciphersuites: {e}") from e


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """Twisted's server connection creator built from zoo.cfg's ssl.* settings.

    (The IOpenSSLServerConnectionCreator interface, which TLSMemoryBIOFactory
    takes as it is; a bare ``getContext`` object earns a LegacyContextFactoryWarning.)
    """

    def __init__(self, cfg: dict[str, str]) -> None:
        key, chain, _ = _load_store(cfg, "ssl.keyStore")
        if key is None or not chain:
            raise TLSConfigError("ssl.keyStore.location: secureClientPort needs a key store "
                                 "holding a private key and its certificate")
        _, _, trusted = _load_store(cfg, "ssl.trustStore")
        ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
        configure_context(ctx, cfg, "ssl")
        use_identity(ctx, key, chain)
        store = ctx.get_cert_store()
        for cert in trusted:
            store.add_cert(cert)  # type: ignore[union-attr]
        auth = cfg.get("ssl.clientAuth", "need").strip().lower()
        if auth not in ("none", "want", "need"):
            raise TLSConfigError(f"ssl.clientAuth: {auth!r} is not none, want or need")
        mode = {"none": SSL.VERIFY_NONE, "want": SSL.VERIFY_PEER,
                "need": SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT}[auth]
        ctx.set_verify(mode, lambda conn, cert, errno, depth, ok: bool(ok))
        self.ctx = ctx
        self.client_auth = auth

    def getContext(self) -> Any:
        return self.ctx

    def serverConnectionForTLS(self, tls_protocol: Any) -> Any:
        return SSL.Connection(self.ctx, None)


# The keywords X500Principal.getName() (RFC 2253) writes; other types become dotted OIDs.
_RFC2253_KEYWORDS = {
    "2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O",
    "2.5.4.11": "OU", "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC",
    "0.9.2342.19200300.100.1.1": "UID",
}
_STRING_CODECS = {12: "utf-8", 19: "ascii", 20: "latin-1", 22: "ascii", 26: "ascii",
                  28: "utf-32-be", 30: "utf-16-be"}


def _der_value(attr: Any) -> bytes:
    tag = int(getattr(attr._type, "value", 12))
    body = attr.value.encode(_STRING_CODECS.get(tag, "utf-8"))
    n = len(body)
    if n < 0x80:
        length = bytes([n])
    else:
        raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(raw)]) + raw
    return bytes([tag]) + length + body


def _escape_rfc2253(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def x509_id(cert: Any) -> str | None:
    """ZooKeeper's x509 id for a peer certificate: X500Principal.getName() of the subject.

    RFC 2253: RDNs most specific first, only CN, C, L, ST, O, OU, STREET, DC and UID
    by keyword; any other attribute (emailAddress, ...) as its dotted OID with the
    value's DER encoding in hex ("1.2.840.113549.1.9.1=#16...").
    """
    if cert is None:
        return None
    name = cert.to_cryptography().subject
    rdns = []
    for rdn in reversed(name.rdns):
        parts = []
        for attr in rdn:
            oid = attr.oid.dotted_string
            keyword = _RFC2253_KEYWORDS.get(oid)
            if keyword is not None and isinstance(attr.value, str):
                parts.append(f"{keyword}={_escape_rfc2253(attr.value)}")
            else:
                parts.append(f"{oid}=#{_der_value(attr).hex()}")
        rdns.append("+".join(parts))
    return ",".join(rdns)
