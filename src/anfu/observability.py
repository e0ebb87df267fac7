"""Structured logs (JSON lines, secrets redacted by the logging setup itself) and Prometheus
metrics, served on the admin zone."""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

_SECRET = re.compile(
    r"(?i)(authorization|password|refresh_token|access_token|token|signature|secret|passphrase)"
    r"([\"']?\s*[:=]\s*[\"']?)([^\s\"',;]+)")


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}[REDACTED]", text)


# Paths and queries of URLs the platform calls (merchants' notify URLs) may carry the
# merchant's own secrets (``?key=…``): logs keep the scheme and host only.
_URL_TAIL = re.compile(r"\b(https?://[^/\s\"'?#]+)[/?#][^\s\"']*")


def origins_only(text: str) -> str:
    return _URL_TAIL.sub(r"\1", text)


class OriginsOnly(logging.Filter):
    """Shortens every URL in a log message to scheme://host[:port], before any handler
    formats it (httpx logs each request it makes with the full URL)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        shortened = origins_only(message)
        if shortened != message:
            record.msg, record.args = shortened, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": round(record.created, 3), "level": record.levelname.lower(),
            "logger": record.name, "msg": redact(record.getMessage()),
        }
        for key in ("event", "code", "zone", "merchant_id", "user_id", "trade_no", "path"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = redact(str(value))
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(entry).decode()


def setup_logging(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s"))
    handler.addFilter(OriginsOnly())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("anfu_http_requests_total", "HTTP requests",
                                ["zone", "status"], registry=self.registry)
        self.latency = Histogram("anfu_http_request_seconds", "HTTP request latency", ["zone"],
                                 registry=self.registry,
                                 buckets=(.001, .0025, .005, .01, .025, .05, .1, .25, 1, 5))
        self.batch_size = Histogram("anfu_write_batch_size", "jobs per group commit",
                                    registry=self.registry,
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.batch_seconds = Histogram("anfu_write_batch_seconds", "group commit duration",
                                       registry=self.registry)
        self.security = Counter("anfu_security_failures_total", "refused credentials",
                                ["zone", "code"], registry=self.registry)
        self.deliveries = Counter("anfu_notify_attempts_total", "notification attempts",
                                  ["outcome"], registry=self.registry)
        self.timers = Counter("anfu_timers_fired_total", "persisted timers fired",
                              ["kind", "result"], registry=self.registry)
        self.duty_failures = Counter("anfu_worker_duty_failures_total",
                                     "worker duty turns that raised", ["duty"],
                                     registry=self.registry)
        self.started = time.time()

    def observe_batch(self, size: int, seconds: float) -> None:
        self.batch_size.observe(size)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        if os.environ.get(MULTIPROCESS_ENV):  # several worker processes: add them all up
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return bytes(generate_latest(registry))
        return bytes(generate_latest(self.registry))


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

