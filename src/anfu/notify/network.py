"""Where the notify-URL policy (``notify/urls.py``) meets the network: resolving names,
telling this host's own addresses, and an HTTP client that connects only where the policy
allows.

The client is pinned: its connection backend resolves the URL's host once, refuses the
connection if any answer is refused, and connects to one of exactly those addresses. The
request itself still names the original host (``Host`` header, TLS SNI and certificate
check), so a DNS answer that changes between the check and the connect (rebinding) has
nothing to win: there is no second lookup."""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterable

import anyio
import httpcore
import httpx

from anfu.config import Settings, split_addr
from anfu.notify.urls import (
    AddressPolicy,
    IPAddress,
    IPNetwork,
    Listener,
    NotifyHostUnresolvable,
    parse_notify_url,
)

Resolver = Callable[[str, int], Awaitable[list[IPAddress]]]


class AddressRefused(Exception):
    """The worker did not connect: the host leads to an address the policy refuses."""


class HostUnresolvable(Exception):
    """The host name did not resolve (or not in time)."""


async def resolve_host(host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to (an address literal is its own answer)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        answers = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise HostUnresolvable(f"{host}: {exc}") from exc
    found: list[IPAddress] = []
    for *_, sockaddr in answers:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in found:
            found.append(address)
    if not found:
        raise HostUnresolvable(f"{host}: no address")
    return found


def is_local_address(address: IPAddress) -> bool:
    """Whether ``address`` is one of this host's: loopback, or one a socket can bind to
    (an address of a local interface). A wildcard listener is reachable on every one."""
    if address.is_loopback:
        return True
    family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


def _listeners(addrs: Iterable[str]) -> tuple[Listener, ...]:
    found: list[Listener] = []
    for addr in addrs:
        host, port = split_addr(addr)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:  # a name: every address it has (unresolved: treat as wildcard)
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError:
                found.append(Listener(None, port))
                continue
            found.extend(Listener(ipaddress.ip_address(str(i[4][0]).split("%", 1)[0]), port)
                         for i in infos)
            continue
        found.append(Listener(None if address.is_unspecified else address, port))
    return tuple(found)


@functools.lru_cache(maxsize=8)
def _policy(allow: tuple[IPNetwork, ...], addrs: tuple[str, ...]) -> AddressPolicy:
    return AddressPolicy(allow_nets=allow, own_listeners=_listeners(addrs),
                         is_local=is_local_address)


def address_policy(settings: Settings) -> AddressPolicy:
    """The policy of these settings: ``ANFU_NOTIFY_ALLOW_NETS`` and the three listeners."""
    return _policy(settings.notify_allow_networks,
                   (settings.mobile_addr, settings.merchant_addr, settings.admin_addr))


async def vet_notify_url(url: str | None, policy: AddressPolicy, *, timeout_s: float,
                         resolve: Resolver = resolve_host) -> str | None:
    """Check a notify URL at registration: parsed as the worker will, its host resolved,
    every answer allowed. Raises ``NotifyUrlInvalid``, ``NotifyHostUnresolvable`` or
    ``NotifyAddressForbidden`` (all 422); the worker checks again when it connects."""
    if url is None:
        return None
    target = parse_notify_url(url)
    try:
        with anyio.fail_after(timeout_s):
            addresses = await resolve(target.host, target.port)
    except (HostUnresolvable, TimeoutError) as exc:
        raise NotifyHostUnresolvable(
            f"notify_url host {target.host} does not resolve; check the name") from exc
    policy.check(target, addresses)
    return url


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, with the policy between name and socket."""

    def __init__(self, policy: AddressPolicy, resolve: Resolver = resolve_host) -> None:
        self._policy = policy
        self._resolve = resolve
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                addresses = await self._resolve(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host} timed out") from exc
        for address in addresses:
            reason = self._policy.refusal(address, port)
            if reason is not None:
                raise AddressRefused(f"{host} resolves to {address}: {reason}")
        failure: Exception | None = None
        for address in addresses:  # the checked answers, and nothing else
            try:
                return await self._inner.connect_tcp(str(address), port, timeout=timeout,
                                                     local_address=local_address,
                                                     socket_options=socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        assert failure is not None
        raise failure

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION]
                                  | None = None) -> httpcore.AsyncNetworkStream:
        raise AddressRefused("notifications never go to a Unix socket")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """``httpx.AsyncHTTPTransport`` whose connection pool uses ``PinnedBackend``. httpx
    takes no network backend of its own, so the pool it built is replaced by an identical
    one that has it (HTTP/1.1, no retries: a retry is the outbox's decision)."""

    def __init__(self, policy: AddressPolicy, *, resolve: Resolver = resolve_host,
                 verify: bool | ssl.SSLContext = True,
                 limits: httpx.Limits = httpx.Limits(max_connections=64,
                                                     max_keepalive_connections=16)) -> None:
        super().__init__(verify=verify, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry, http1=True, http2=False, retries=0,
            network_backend=PinnedBackend(policy, resolve))


def pinned_client(policy: AddressPolicy, *, timeout_s: float,
                  resolve: Resolver = resolve_host,
                  verify: bool | ssl.SSLContext = True) -> httpx.AsyncClient:
    """The worker's client: pinned connections, no redirects, no proxies or ``.netrc``
    from the environment (a proxy would move the connection out of the policy's sight)."""
    return httpx.AsyncClient(transport=PinnedTransport(policy, resolve=resolve, verify=verify),
                             timeout=timeout_s, follow_redirects=False, trust_env=False)
