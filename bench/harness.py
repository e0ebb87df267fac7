"""Processes for the benchmark: the platform and the ceiling app as subprocesses on free
loopback ports, and wrk runs whose figures come back as one JSON line from the Lua
``done()`` hook."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WRK_HINT = ("wrk (the HTTP load generator) is not installed. On Debian/Ubuntu:\n"
            "    sudo apt-get install -y wrk\n"
            "or run `make bench`, which installs it. Then run this command again.")


def wrk_path() -> str | None:
    return shutil.which("wrk")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Service:
    """A server this benchmark started; only this handle ever stops it."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    urls: dict[str, str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self, tail: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:]

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.logs()}")
            try:
                if all(httpx.get(f"{u}/healthz", timeout=1).status_code == 200
                       for u in self.urls.values()):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer /healthz in {timeout:.0f} s:\n"
                           f"{self.logs()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def _spawn(name: str, args: list[str], env: dict[str, str], log_path: Path,
           urls: dict[str, str]) -> Service:
    with log_path.open("ab") as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=ROOT)
    service = Service(name, process, log_path, urls)
    try:
        service.wait_healthy()
    except BaseException:
        service.stop()
        raise
    return service


def platform_workers() -> int:
    """HTTP processes for the platform: ANFU_WORKERS, else one per core."""
    return int(os.environ.get("ANFU_WORKERS") or os.cpu_count() or 1)


def start_platform(home: Path, database_url: str) -> Service:
    """``anfu run --no-seed-demo`` on ANFU_HOME=home, three free loopback ports."""
    ports = {zone: free_port() for zone in ("mobile", "merchant", "admin")}
    env = {**os.environ, "ANFU_HOME": str(home), "ANFU_DATABASE_URL": database_url,
           "ANFU_LOG_LEVEL": "WARNING", "ANFU_WORKERS": str(platform_workers()),
           **{f"ANFU_{zone.upper()}_ADDR": f"127.0.0.1:{port}" for zone, port in ports.items()}}
    env.pop("ANFU_ADMIN_TOKEN", None)
    return _spawn("platform", [sys.executable, "-m", "anfu.cli", "run", "--no-seed-demo"],
                  env, home / "platform.log",
                  {zone: f"http://127.0.0.1:{port}" for zone, port in ports.items()})


def start_ceiling(folder: Path, public_key: Path) -> Service:
    port = free_port()
    return _spawn("ceiling", [sys.executable, str(BENCH / "ceiling_app.py"), "--port",
                              str(port), "--db", str(folder / "ceiling.db"),
                              "--public-key", str(public_key)],
                  dict(os.environ), folder / "ceiling.log",
                  {"ceiling": f"http://127.0.0.1:{port}"})


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time so far of a process and its live child processes (the
    platform's worker processes), all threads, from /proc."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat(int(entry.name))
        if fields is not None and (int(entry.name) == pid or int(fields[1]) == pid):
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_wrk(url: str, script: Path, script_args: list[str], *, seconds: float,
            connections: int, threads: int, server_pid: int | None = None) -> dict[str, Any]:
    """One wrk run; the figures of the script's BENCH-JSON line plus rates per second, and
    the CPU used by wrk and by the server (100 = one core busy all the time)."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError(WRK_HINT)
    args = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--latency", "--timeout", "10s", "-s", str(script), url, "--", *script_args]
    server_before = cpu_seconds(server_pid) if server_pid else 0.0
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120,
                          check=False)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    wrk_cpu = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("BENCH-JSON ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    figures: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH-JSON "))
    duration = figures["duration_us"] / 1e6
    errors = sum(figures[k] for k in ("status_errors", "connect_errors", "read_errors",
                                      "write_errors", "timeouts"))
    figures["ok"] = figures["requests"] - figures["status_errors"]
    figures["errors"] = errors
    figures["rps"] = figures["ok"] / duration if duration else 0.0
    figures["wrk_cpu_pct"] = round(100 * wrk_cpu / wall, 1)
    if server_pid:
        figures["server_cpu_pct"] = round(
            100 * (cpu_seconds(server_pid) - server_before) / wall, 1)
    figures["wrk_output"] = done.stdout.replace(lines[-1], "").strip()
    return figures
