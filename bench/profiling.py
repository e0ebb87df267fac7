"""Sample a running server with py-spy and say where its time goes.

``record`` writes a flame graph (SVG) and the raw collapsed stacks of the same process;
``summarise`` reads the stacks: the share of samples per thread, per area of code (by the
innermost frame's file), and the heaviest frames of anfu's own code (inclusive). Shares are
of the busy samples: those whose innermost frame is a wait (a lock, epoll) are counted
apart as idle."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

PY_SPY_HINT = "py-spy is not installed: `pip install py-spy` (PyPI) to profile the pay path."
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")

DRIVER = "database driver (sqlite3 / psycopg: execute, round trips, commit, fsync)"
# (area, substring of the innermost frame's file or function) - first match wins.
AREAS: list[tuple[str, str]] = [
    (DRIVER, ":DefaultDialect.do_"),
    (DRIVER, "anfu/db/raw.py:Raw."),
    (DRIVER, "psycopg/"),
    ("SQLAlchemy (statement building, caching, results)", "sqlalchemy/"),
    ("SQLAlchemy (statement building, caching, results)", "<sqlalchemy generated"),
    ("uvicorn + httptools (HTTP parsing, transport)", "uvicorn/"),
    ("Starlette + FastAPI (routing, dependencies, responses)", "starlette/"),
    ("Starlette + FastAPI (routing, dependencies, responses)", "fastapi/"),
    ("pydantic", "pydantic"),
    ("asyncio event loop", "asyncio/"),
    ("threads, queues and futures", "concurrent/futures"),
    ("threads, queues and futures", "threading.py"),
    ("threads, queues and futures", "queue.py"),
    ("Prometheus metrics", "prometheus_client"),
    ("Argon2id password hashing (argon2-cffi)", "argon2/"),
    ("signatures and hashes (cryptography, hmac)", "cryptography/"),
    ("orjson / json", "json"),
    ("anfu's own code", "anfu/"),
]


# Innermost frames that mean "waiting", though py-spy sampled the thread as active.
IDLE = ("Condition.wait (", "EpollSelector.select (", "SimpleQueue.get (", "Event.wait (")


def available() -> bool:
    return shutil.which("py-spy") is not None


RATE = 200  # samples per second


def record(pid: int, seconds: int, out: Path, *, fmt: str = "flamegraph",
           gil: bool = False) -> str:
    """py-spy record of ``pid`` and its child processes (the platform's forked HTTP
    workers) for ``seconds``; returns py-spy's closing line. With ``gil``, only the thread
    holding the GIL is sampled: where the CPU of Python goes."""
    args = ["py-spy", "record", "--pid", str(pid), "-d", str(seconds), "--threads",
            "--subprocesses", "--nonblocking", "-r", str(RATE), "-f", fmt, "-o", str(out),
            *(["--gil"] if gil else [])]
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"py-spy failed ({done.returncode}): {done.stderr.strip()}")
    lines = (done.stdout + done.stderr).strip().splitlines()
    return lines[-1] if lines else ""


def _split(frame: str) -> tuple[str, str]:
    m = _FRAME.match(frame)
    if m is None:
        return frame, ""
    return m["func"], m["file"]


def _area(func: str, file: str) -> str:
    key = f"{file}:{func}"
    for area, needle in AREAS:
        if needle in key:
            return area
    return "other: " + (file.rsplit("/", 1)[-1] or func)


def _is_anfu(file: str) -> bool:
    return file.startswith("anfu/") or "/anfu/" in file


def _short(func: str, file: str) -> str:
    path = file.split("site-packages/")[-1].split("/src/")[-1]
    return f"{func} ({path})"


def summarise(raw: Path, top: int = 12, seconds: float | None = None) -> dict[str, Any]:
    """Shares from collapsed stacks; with ``seconds`` (for a ``--gil`` recording) also the
    share of the time some thread held the GIL."""
    threads: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    own: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = idle = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = next((f for f in frames if f.startswith("thread (")), "thread (?)")
        frames = [f for f in frames if not f.startswith(("thread (", "process "))]
        if not frames:
            continue
        if frames[-1].startswith(IDLE):
            idle += count
            continue
        total += count
        threads[_thread_name(thread)] += count
        func, file = _split(frames[-1])
        areas[_area(func, file)] += count
        leaves[_short(func, file)] += count
        seen = set()
        for frame in frames:
            func, file = _split(frame)
            if not _is_anfu(file) or "anfu/cli/" in file:
                continue
            if (name := _short(func, file)) not in seen:
                seen.add(name)
                own[name] += count

    def shares(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(k, round(100 * v / total, 1)) for k, v in counter.most_common(n)]

    held = round(100 * (total + idle) / (RATE * seconds), 1) if seconds else None
    return {"samples": total, "idle_samples": idle, "gil_held_pct": held,
            "threads": shares(threads, 6),
            "areas": shares(areas, 14), "anfu_inclusive": shares(own, 2 * top),
            "self": shares(leaves, top)}


_THREADS = {"MainThread": "MainThread: event loop (HTTP, routing, handlers)",
            "anfu-writer": "anfu-writer: the writer (group commit)",
            "AnyIO worker thread": "AnyIO worker threads (sync FastAPI dependencies)"}


def _thread_name(thread: str) -> str:
    name = thread.partition("): ")[2] or thread
    if name.startswith("anfu-argon2"):
        return "anfu-argon2 threads: the password hashing pool"
    return _THREADS.get(name, name)


def render(summary: dict[str, Any], title: str) -> str:
    out = [title, f"py-spy samples: {summary['samples']} busy (+{summary['idle_samples']}"
           " waiting, left out); shares are of the busy samples"]
    if summary.get("gil_held_pct") is not None:
        out.append(f"the GIL was held {summary['gil_held_pct']}% of the time (samples /"
                   " rate x duration, summed over the platform's processes, each with its"
                   " own GIL; 100% per process = bound by one core of Python)")
    for title, key in (("by thread", "threads"), ("by area (innermost frame)", "areas"),
                       ("anfu frames, inclusive", "anfu_inclusive"),
                       ("innermost frames (self)", "self")):
        out.append(f"  {title}:")
        out.extend(f"    {share:5.1f}%  {name}" for name, share in summary[key])
    return "\n".join(out)
