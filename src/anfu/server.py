"""Serves the three zones and the background worker: in one process, or in several
processes that share the listening sockets (``anfu run --workers N``) so that HTTP work
uses every core. All shared state (replay windows, idempotency records, timers, the outbox)
lives in the database, so any process may answer any request."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import uvicorn
import uvloop
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from anfu.api import admin, merchant, mobile
from anfu.bootstrap import Platform
from anfu.config import Settings, split_addr
from anfu.head_timeout import with_head_timeout
from anfu.operator_credential import OperatorCredential
from anfu.tls import ZoneTls, keep_fresh
from anfu.worker import Worker

log = logging.getLogger("anfu.server")


class _Server(uvicorn.Server):
    """One of three servers on one loop: the process handles signals once, for all."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _server(app: object, settings: Settings, **tls_options: Any) -> uvicorn.Server:
    options: dict[str, Any] = {**tls_options}  # anfu.tls: its protocol and TLS context
    options["http"] = with_head_timeout(options.get("http", HttpToolsProtocol),
                                        settings.header_timeout_s)
    proxies = settings.trusted_proxy_list
    # X-Forwarded-For is believed only from the proxies named in ANFU_TRUSTED_PROXIES:
    # uvicorn's default trusts 127.0.0.1, which lets any local process (or a request the
    # platform itself is tricked into making) pick the address that throttles and audit
    # events record.
    config = uvicorn.Config(app, log_config=None, access_log=False,  # type: ignore[arg-type]
                            lifespan="off", backlog=4096, timeout_keep_alive=30,
                            proxy_headers=bool(proxies),
                            forwarded_allow_ips=",".join(proxies) if proxies else "",
                            **options)
    return _Server(config)


def listen(addr: str) -> socket.socket:
    host, port = split_addr(addr)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(4096)
    sock.set_inheritable(True)
    return sock


@dataclass
class Listeners:
    mobile: socket.socket
    merchant: socket.socket
    admin: socket.socket | None  # only one process serves operators (and /metrics)

    @classmethod
    def bind(cls, settings: Settings) -> Listeners:
        return cls(listen(settings.mobile_addr), listen(settings.merchant_addr),
                   listen(settings.admin_addr))


async def serve(platform: Platform, listeners: Listeners, *,
                operator: OperatorCredential, run_worker: bool = True) -> None:
    # Every listener over TLS with the platform's server certificate
    settings = platform.settings
    zone_tls = ZoneTls.for_platform(platform) if settings.tls else None
    apps = [("mobile", mobile.create_app(platform), listeners.mobile),
            ("merchant", merchant.create_app(platform), listeners.merchant)]
    if listeners.admin is not None:
        apps.append(("admin", admin.create_app(platform, operator), listeners.admin))
    servers = [(_server(app, settings, **(zone_tls.uvicorn_options(zone) if zone_tls else {})),
                sock) for zone, app, sock in apps]
    worker = Worker(platform) if run_worker and platform.settings.run_worker else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(server.serve(sockets=[sock])) for server, sock in servers]
    if worker is not None:
        tasks.append(asyncio.create_task(worker.run()))
    renewal = asyncio.create_task(keep_fresh(platform, zone_tls, renew=run_worker)) \
        if zone_tls is not None else None  # renew and reload the server certificate
    await stop.wait()
    if renewal is not None:
        renewal.cancel()
    log.info("shutting down")
    for server, _ in servers:
        server.should_exit = True
    if worker is not None:
        worker.stop()
    await asyncio.gather(*tasks, return_exceptions=True)


def run(build: Callable[[], Platform], listeners: Listeners, *, workers: int,
        operator: OperatorCredential) -> int:
    """Serve until SIGINT/SIGTERM. With several workers, each is a forked process with its
    own platform (engines, writer thread); process 0 also runs the admin zone and the
    background worker. The parent only watches: if one process dies, all stop."""
    if workers <= 1:
        return _serve_here(build, listeners, operator, run_worker=True)
    children: list[int] = []
    for n in range(workers):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            mine = Listeners(listeners.mobile, listeners.merchant,
                             listeners.admin if n == 0 else None)
            code = 1
            try:
                code = _serve_here(build, mine, operator, run_worker=n == 0)
            finally:
                os._exit(code)
        children.append(pid)
    return _watch(children)


def _serve_here(build: Callable[[], Platform], listeners: Listeners,
                operator: OperatorCredential, *, run_worker: bool) -> int:
    platform = build()
    try:
        uvloop.run(serve(platform, listeners, operator=operator, run_worker=run_worker))
    finally:
        platform.close()
    return 0


def _watch(children: list[int]) -> int:
    def forward(sig: int, _frame: object) -> None:
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    alive = set(children)
    while alive:
        pid, code = os.wait()
        alive.discard(pid)
        if code != 0 and alive:
            log.error("worker process %d exited (%d); stopping the others", pid, code)
            status = 1
            forward(signal.SIGTERM, None)
    return status
