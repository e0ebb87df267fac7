"""The ceiling: the least a durable, authenticated payment request can cost on this stack.

A bare FastAPI app, served like the platform (uvicorn, uvloop, httptools, one process, the
platform's own ``uvicorn.Config`` from ``anfu.server``). Each ``POST`` verifies one Ed25519
signature (pyca/cryptography, public key parsed once at start) over the request body and
inserts one row into SQLite (WAL, ``synchronous=FULL``), answering only after the commit:

- ``POST /serial``: one transaction (BEGIN IMMEDIATE, INSERT, COMMIT = one fsync) per
  request, on the event loop: the literal "one transaction per request";
- ``POST /batched``: the same INSERT, handed to one writer thread that commits whatever
  arrived within 1 ms (up to 256 rows, the platform's defaults) in one transaction, each
  row its own statement: group commit, the way the platform writes.

Run: ``python bench/ceiling_app.py --port 8100 --db /tmp/c.db --public-key key.pem``."""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import queue
import sqlite3
import threading
import time
from pathlib import Path

import uvloop
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from fastapi import FastAPI, Request
from starlette.responses import Response

from anfu.server import _server, listen  # the platform's own uvicorn settings

MAX_BATCH = 256
WAIT_S = 0.001
INSERT = "INSERT INTO payments (payload, created_at) VALUES (?, ?)"
OK = b'{"ok":true}'
JSON = "application/json"
Pending = tuple[bytes, float, asyncio.Future[None], asyncio.AbstractEventLoop]


def open_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS payments (id INTEGER PRIMARY KEY,"
                 " payload BLOB NOT NULL, created_at REAL NOT NULL)")
    return conn


class GroupCommitter:
    """One writer thread: gather, one transaction, one fsync, then answer every caller."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._queue: queue.SimpleQueue[Pending] = queue.SimpleQueue()
        threading.Thread(target=self._run, name="ceiling-writer", daemon=True).start()

    def insert(self, payload: bytes) -> asyncio.Future[None]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.put((payload, time.time(), future, loop))
        return future

    def _gather(self) -> list[Pending]:
        batch = [self._queue.get()]
        deadline = time.monotonic() + WAIT_S
        while len(batch) < MAX_BATCH:
            remaining = deadline - time.monotonic()
            try:
                batch.append(self._queue.get_nowait() if remaining <= 0
                             else self._queue.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while True:
            batch = self._gather()
            self._conn.execute("BEGIN IMMEDIATE")
            for payload, created_at, _future, _loop in batch:
                self._conn.execute(INSERT, (payload, created_at))
            self._conn.execute("COMMIT")
            for _payload, _created, future, loop in batch:
                loop.call_soon_threadsafe(future.set_result, None)


def create_app(db_path: Path, public_key_pem: bytes) -> FastAPI:
    key = load_pem_public_key(public_key_pem)
    if not isinstance(key, Ed25519PublicKey):
        raise SystemExit("the ceiling needs an Ed25519 public key")
    conn = open_db(db_path)
    committer = GroupCommitter(open_db(db_path))
    app = FastAPI(title="anfu bench ceiling", docs_url=None, redoc_url=None)

    def verified(request: Request, body: bytes) -> Response | None:
        try:
            key.verify(base64.b64decode(request.headers.get("x-signature", "")), body)
        except (InvalidSignature, binascii.Error):
            return Response(b'{"error":"bad signature"}', 401, media_type=JSON)
        return None

    @app.get("/healthz")
    async def healthz() -> Response:
        return Response(OK, media_type=JSON)

    @app.post("/serial")
    async def serial(request: Request) -> Response:
        body = await request.body()
        if (refused := verified(request, body)) is not None:
            return refused
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(INSERT, (body, time.time()))
        conn.execute("COMMIT")
        return Response(OK, media_type=JSON)

    @app.post("/batched")
    async def batched(request: Request) -> Response:
        body = await request.body()
        if (refused := verified(request, body)) is not None:
            return refused
        await committer.insert(body)
        return Response(OK, media_type=JSON)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--public-key", type=Path, required=True)
    args = parser.parse_args()
    app = create_app(args.db, args.public_key.read_bytes())
    # Served exactly as the platform serves each zone: same config, pre-bound socket, uvloop.
    sock = listen(f"127.0.0.1:{args.port}")
    uvloop.run(_server(app).serve(sockets=[sock]))


if __name__ == "__main__":
    main()
