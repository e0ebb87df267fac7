"""The notify-URL policy: which URLs a merchant may name and which addresses the platform
may connect to for them. Plain rules on parsed values; resolving names and opening sockets is
``notify/network.py``'s job.

A URL is read with the HTTP client's own parser (``httpx.URL``), the one that will send the
request, so what was checked is what is sent. Addresses are judged with ``ipaddress`` on the
addresses a name resolved to, never by matching strings."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import httpx

from anfu.errors import Unprocessable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 1024
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")

# IANA special-purpose registries (RFC 6890 and successors): never a merchant's server.
# Listed explicitly rather than trusting ``is_global`` alone, whose tables vary between
# Python releases (3.11 calls multicast global, for one).
_SPECIAL_NETS: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
    "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
    "2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20", "fc00::/7", "fe80::/10",
    "fec0::/10", "ff00::/8"))
# Cloud instance metadata and platform endpoints: refused even inside an allow-listed range.
METADATA_ADDRESSES: frozenset[IPAddress] = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "169.254.169.253", "fd00:ec2::254", "fd00:ec2::23",
    "100.100.100.200", "168.63.129.16", "192.0.0.192"))


class NotifyUrlInvalid(Unprocessable):
    code = "invalid_notify_url"
    title = "The notify URL is not valid"


class NotifyAddressForbidden(Unprocessable):
    code = "notify_url_forbidden_address"
    title = "The notify URL leads to an address the platform does not call"


class NotifyHostUnresolvable(Unprocessable):
    code = "notify_url_unresolvable"
    title = "The notify URL's host name does not resolve"


@dataclass(frozen=True, slots=True)
class NotifyTarget:
    """A notify URL as the HTTP client reads it."""

    url: str      # as given and stored
    scheme: str   # http | https
    host: str     # ASCII name or address literal (no brackets), lower case
    port: int     # explicit or the scheme's default
    target: str   # path and query exactly as sent on the request line (and signed)

    @property
    def literal(self) -> IPAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def _invalid(why: str) -> NotifyUrlInvalid:
    return NotifyUrlInvalid(f"notify_url {why}; give an absolute http(s) URL of at most"
                            f" {MAX_URL_LENGTH} ASCII characters, without user name or"
                            " password")


def parse_notify_url(url: str) -> NotifyTarget:
    """Parse ``url`` as the worker's HTTP client will, and refuse what it refuses or may
    read differently from other parsers. Raises ``NotifyUrlInvalid``."""
    if len(url) > MAX_URL_LENGTH:
        raise _invalid(f"is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(c <= " " or c == "\x7f" for c in url):
        raise _invalid("contains white space, control or non-ASCII characters"
                       " (percent-encode them; write host names in their xn-- form)")
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError) as exc:
        raise _invalid(f"cannot be parsed ({exc})") from exc
    if parsed.scheme not in _DEFAULT_PORTS or not url.lower().startswith(parsed.scheme + "://"):
        raise _invalid("must start with http:// or https://")
    authority = url[len(parsed.scheme) + 3:].split("/", 1)[0].split("?", 1)[0]
    if "@" in authority or parsed.userinfo:
        raise _invalid("must not carry a user name or password")
    host = parsed.host
    if not host:
        raise _invalid("has no host")
    port = _DEFAULT_PORTS[parsed.scheme] if parsed.port is None else parsed.port
    if not 1 <= port <= 65535:
        raise _invalid("has a port outside 1-65535")
    _check_host(host)
    return NotifyTarget(url=url, scheme=parsed.scheme, host=host, port=port,
                        target=parsed.raw_path.decode("ascii"))


def _check_host(host: str) -> None:
    if "%" in host:  # percent-encoded names, IPv6 zone ids (%25eth0)
        raise _invalid(f"has a host with a % in it ({host})")
    if ":" in host:  # an IPv6 literal (httpx has taken the brackets off)
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise _invalid(f"has an IPv6 address that is not plain ({host})") from exc
        return
    labels = host.removesuffix(".").split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        # Parsers read 2130706433, 0x7f.1, 0177.0.0.1 or 127.1 as IPv4 addresses, each its
        # own way: only the one spelling everyone reads alike is taken.
        try:
            ipaddress.IPv4Address(host)
        except ValueError as exc:
            raise _invalid(f"has a host that looks like an IPv4 address but is not written"
                           f" as four decimal numbers ({host})") from exc
        return
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise _invalid(f"has a host that is not a valid DNS name ({host})")


def unwrap(address: IPAddress) -> IPAddress:
    """The IPv4 address inside an IPv4-mapped IPv6 address (``::ffff:127.0.0.1``), which a
    dual-stack socket connects to as that IPv4 address; any other address unchanged."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_special(address: IPAddress) -> bool:
    """Loopback, private, link-local, multicast, unspecified, reserved, shared (CGNAT),
    benchmarking, documentation, or an IPv6 range that embeds IPv4 (6to4, Teredo, NAT64)."""
    address = unwrap(address)
    return (any(address in net for net in _SPECIAL_NETS if net.version == address.version)
            or address.is_private or address.is_loopback or address.is_link_local
            or address.is_multicast or address.is_unspecified or address.is_reserved
            or not address.is_global)


@dataclass(frozen=True, slots=True)
class Listener:
    """One of the platform's own listening sockets; ``address`` None is a wildcard bind
    (0.0.0.0 or ::), reachable on every local address."""

    address: IPAddress | None
    port: int


@dataclass(frozen=True)
class AddressPolicy:
    """Which ``(address, port)`` the worker may connect to for a notification.

    ``allow_nets`` (``ANFU_NOTIFY_ALLOW_NETS``) lets an operator open special ranges (an
    internal merchant network). The platform's own listeners, unspecified addresses and
    cloud metadata endpoints stay refused whatever the allow-list says. ``is_local`` tells
    whether an address belongs to this host (for wildcard listeners)."""

    allow_nets: tuple[IPNetwork, ...] = ()
    own_listeners: tuple[Listener, ...] = ()
    is_local: Callable[[IPAddress], bool] = lambda address: address.is_loopback

    def refusal(self, address: IPAddress, port: int) -> str | None:
        """Why ``address:port`` is refused (a short reason for logs), or None."""
        address = unwrap(address)
        if address.is_unspecified:
            return "unspecified address (reaches this host)"
        if address in METADATA_ADDRESSES:
            return "cloud metadata address"
        if self._own_listener(address, port):
            return "one of the platform's own listeners"
        if any(address in net for net in self.allow_nets if net.version == address.version):
            return None
        if is_special(address):
            return "not a public address"
        return None

    def _own_listener(self, address: IPAddress, port: int) -> bool:
        for listener in self.own_listeners:
            if listener.port != port:
                continue
            if listener.address is None:
                if self.is_local(address):
                    return True
            elif unwrap(listener.address) == address:
                return True
        return False

    def check(self, target: NotifyTarget, addresses: Iterable[IPAddress]) -> None:
        """Refuse the target if any of the addresses its host resolved to is refused: a
        name must not lead inside through any of its answers."""
        for address in addresses:
            if self.refusal(address, target.port) is not None:
                raise NotifyAddressForbidden(
                    f"notify_url host {target.host} leads to an address the platform does not"
                    " call (loopback, private, link-local, metadata, reserved or the"
                    " platform's own listeners); use a public address")
