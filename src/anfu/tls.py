"""TLS for the three listeners (book 4.3): server contexts, the merchant zone's client
certificates, and the peer certificate handed to the app in the ASGI scope.

* Every listener speaks TLS 1.3 and, for older clients, TLS 1.2 with ECDHE + AEAD suites
  only; nothing older (no SSLv3, TLS 1.0 or 1.1), no compression, no renegotiation.
* The merchant zone may ask for a client certificate issued by our CA
  (``ANFU_MERCHANT_MTLS=optional|required``). The TLS layer always asks with CERT_OPTIONAL:
  a client that sends none still completes the handshake, and the app answers a problem
  that says why (``client_certificate_required``) instead of a bare handshake alert. A
  certificate that does not chain to our CA is refused by the handshake itself.
* The connection's certificates reach the app as ``scope["extensions"]["tls"]`` per the ASGI
  TLS extension (https://asgi.readthedocs.io/en/latest/specs/tls.html).

The server certificate comes from the platform CA (``anfu.pki.service.
ensure_server_certificate``); this module only needs its shape (:class:`Credentials`).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    import uvicorn

    from anfu.bootstrap import Platform

log = logging.getLogger("anfu.tls")

# TLS 1.2 only: forward-secret key exchange and AEAD ciphers (Mozilla "intermediate" minus
# DHE). TLS 1.3 suites are not set here: OpenSSL's defaults are all AEAD.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL"
TLS_VERSIONS = {"TLSv1.2": 0x0303, "TLSv1.3": 0x0304}
CLIENT_CERT_MODES = ("off", "optional", "required")
ZONES = ("mobile", "merchant", "admin")
_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)
# RFC 4514 short names for the attributes a platform certificate carries.
_RDN_NAMES = {"commonName": "CN", "organizationName": "O", "organizationalUnitName": "OU",
              "countryName": "C", "localityName": "L", "stateOrProvinceName": "ST",
              "serialNumber": "SERIALNUMBER"}


class Credentials(Protocol):
    """What ``anfu.pki.service.ensure_server_certificate`` returns."""

    @property
    def cert_chain_pem(self) -> Path: ...      # the server certificate, then its CA chain

    @property
    def key_pem(self) -> Path: ...             # its private key, encrypted PKCS#8

    @property
    def key_password(self) -> bytes: ...

    @property
    def client_ca_pem(self) -> Path: ...       # our CA certificates: trust for client certs


def server_context(creds: Credentials, *, client_certificates: str = "off") -> ssl.SSLContext:
    """A server context: TLS 1.3 preferred, 1.2 minimum, modern suites. With
    ``client_certificates`` "optional" or "required" it asks for a client certificate from
    our CA; both use CERT_OPTIONAL, the app enforces "required" (see the module doc)."""
    if client_certificates not in CLIENT_CERT_MODES:
        raise ValueError(f"client_certificates must be one of {CLIENT_CERT_MODES}")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= (ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
                    | ssl.OP_NO_RENEGOTIATION | ssl.OP_SINGLE_ECDH_USE)
    ctx.set_alpn_protocols(["http/1.1"])
    load_credentials(ctx, creds)
    if client_certificates != "off":
        ctx.load_verify_locations(cafile=str(creds.client_ca_pem))
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def load_credentials(ctx: ssl.SSLContext, creds: Credentials) -> None:
    """(Re)load the certificate and key; new handshakes use them, open connections keep
    theirs. This is how a renewed server certificate goes live without a restart."""
    ctx.load_cert_chain(str(creds.cert_chain_pem), str(creds.key_pem),
                        password=creds.key_password)


def pem_certificates(data: bytes | str) -> list[str]:
    """The PEM certificates in a bundle, in order."""
    raw = data.encode() if isinstance(data, str) else data
    return [m.group(0).decode("ascii") + "\n" for m in _PEM_CERT.finditer(raw)]


def cipher_ids(ctx: ssl.SSLContext) -> dict[str, int]:
    """OpenSSL cipher name → the 16-bit IANA cipher suite id (what the ASGI spec wants)."""
    return {c["name"]: c["id"] & 0xFFFF for c in ctx.get_ciphers()}


def _rfc4514(subject: Any) -> str | None:
    """The subject of ``SSLObject.getpeercert()`` as an RFC 4514 string, most specific RDN
    first."""
    if not subject:
        return None
    rdns = []
    for rdn in reversed(subject):
        parts = []
        for name, value in rdn:
            escaped = re.sub(r'([,+"\\<>;=])', r"\\\1", str(value))
            parts.append(f"{_RDN_NAMES.get(name, name)}={escaped}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def tls_extension(ssl_object: ssl.SSLObject, *, server_cert: str | None,
                  ciphers: dict[str, int]) -> dict[str, Any]:
    """``scope["extensions"]["tls"]`` for one connection (ASGI TLS extension 0.2).

    ``client_cert_chain`` holds the client's own certificate (PEM) only: Python 3.11's ssl
    module does not expose the intermediates a client sent; they are our CA's anyway."""
    der = ssl_object.getpeercert(binary_form=True)
    info = ssl_object.getpeercert() if der else None
    cipher = ssl_object.cipher()
    return {
        "server_cert": server_cert,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": _rfc4514(info.get("subject")) if info else None,
        "client_cert_error": None,  # an unverifiable certificate fails the handshake
        "tls_version": TLS_VERSIONS.get(ssl_object.version() or ""),
        "cipher_suite": ciphers.get(cipher[0]) if cipher else None,
    }


class TlsHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the ASGI TLS extension in every request's scope.
    The extension is computed once per connection (after the handshake, when uvicorn
    calls ``connection_made``)."""

    server_cert: str | None = None
    ciphers: dict[str, int] = {}
    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            self._tls = tls_extension(ssl_object, server_cert=self.server_cert,
                                      ciphers=self.ciphers)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            extensions: dict[str, Any] = {"tls": self._tls}
            self.scope["extensions"] = extensions


_EXTRA = "anfu.tls"


def serving_tls(platform: Platform) -> ZoneTls | None:
    """The TLS setup this process serves with, or None (plain HTTP)."""
    found = platform.extras.get(_EXTRA)
    return found if isinstance(found, ZoneTls) else None


class ZoneTls:
    """The TLS setup of one platform process: one server context per zone (the merchant
    zone's may ask for client certificates) built from the platform's server credentials."""

    def __init__(self, creds: Credentials, *, merchant_client_certificates: str = "off"
                 ) -> None:
        self.creds = creds
        self.contexts: dict[str, ssl.SSLContext] = {zone: server_context(
            creds, client_certificates=merchant_client_certificates if zone == "merchant"
            else "off") for zone in ZONES}
        self._stamp = self._files_stamp()
        chain = pem_certificates(Path(creds.cert_chain_pem).read_bytes())
        self.protocol: type[TlsHttpToolsProtocol] = type(
            "AnfuTlsProtocol", (TlsHttpToolsProtocol,),
            {"server_cert": chain[0] if chain else None,
             "ciphers": cipher_ids(self.contexts["mobile"])})

    @classmethod
    def for_platform(cls, platform: Platform) -> ZoneTls:
        """The process's TLS setup, made once and kept in ``platform.extras`` (the pins
        route reads the server certificate from it)."""
        from anfu.pki.service import ensure_server_certificate

        found = serving_tls(platform)
        if found is None:
            found = cls(ensure_server_certificate(platform),
                        merchant_client_certificates=platform.settings.merchant_mtls)
            platform.extras[_EXTRA] = found
        return found

    def uvicorn_options(self, zone: str) -> dict[str, Any]:
        """Keyword arguments for ``uvicorn.Config``: uvicorn hands ``config.ssl`` to
        ``loop.create_server`` also when it serves pre-bound sockets (``--workers N``)."""
        ctx = self.contexts[zone]

        def factory(_config: uvicorn.Config, _default: Callable[[], ssl.SSLContext]
                    ) -> ssl.SSLContext:
            return ctx

        return {"http": self.protocol, "ssl_context_factory": factory}

    def _files_stamp(self) -> tuple[int, ...]:
        paths = (self.creds.cert_chain_pem, self.creds.key_pem, self.creds.client_ca_pem)
        return tuple(Path(p).stat().st_mtime_ns for p in paths)

    def reload(self, creds: Credentials) -> bool:
        """Take renewed credentials into every context (new handshakes only). True when
        something changed."""
        self.creds = creds
        stamp = self._files_stamp()
        if stamp == self._stamp:
            return False
        for zone, ctx in self.contexts.items():
            load_credentials(ctx, creds)
            if zone == "merchant" and ctx.verify_mode != ssl.CERT_NONE:
                ctx.load_verify_locations(cafile=str(creds.client_ca_pem))
        chain = pem_certificates(Path(creds.cert_chain_pem).read_bytes())
        self.protocol.server_cert = chain[0] if chain else None
        self._stamp = stamp
        log.info("server certificate reloaded")
        return True


async def keep_fresh(platform: Platform, zone_tls: ZoneTls, *, renew: bool,
                     every_s: float = 3600.0) -> None:
    """Runs beside the servers: every ``every_s`` the process that owns renewal (process 0)
    asks the CA for a fresh server certificate (reissued when a third of its life is
    left); every process reloads the files when they changed. Cancelled at shutdown."""
    from anfu.pki.service import ensure_server_certificate

    while True:
        await asyncio.sleep(every_s)
        try:
            creds: Credentials = zone_tls.creds
            if renew:
                creds = await asyncio.to_thread(ensure_server_certificate, platform)
            zone_tls.reload(creds)
        except Exception:  # keep serving with the current certificate; retry later
            log.exception("server certificate renewal failed")
