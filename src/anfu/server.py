"""Serves the three zones (and the background worker) in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Generator

import uvicorn

from anfu.api import admin, merchant, mobile
from anfu.bootstrap import Platform
from anfu.config import split_addr
from anfu.notify.worker import Worker

log = logging.getLogger("anfu.server")


class _Server(uvicorn.Server):
    """One of three servers on one loop: the process handles signals once, for all."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _server(app: object, addr: str) -> uvicorn.Server:
    host, port = split_addr(addr)
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False,  # type: ignore[arg-type]
                            loop="uvloop", http="httptools", lifespan="off",
                            backlog=4096, timeout_keep_alive=30)
    return _Server(config)


async def serve(platform: Platform, *, admin_token: str | None = None) -> None:
    settings = platform.settings
    servers = [
        _server(mobile.create_app(platform), settings.mobile_addr),
        _server(merchant.create_app(platform), settings.merchant_addr),
        _server(admin.create_app(platform, admin_token), settings.admin_addr),
    ]
    worker = Worker(platform) if settings.run_worker else None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    if worker is not None:
        tasks.append(asyncio.create_task(worker.run()))
    await stop.wait()
    log.info("shutting down")
    for server in servers:
        server.should_exit = True
    if worker is not None:
        worker.stop()
    await asyncio.gather(*tasks, return_exceptions=True)
