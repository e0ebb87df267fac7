"""Processes for the benchmark: the platform and the ceiling app as subprocesses on free
loopback ports, and wrk runs whose figures come back as one JSON line from the Lua
``done()`` hook."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from anfu.config import Settings

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
    admin_headers: dict[str, str] = field(default_factory=dict)  # the operator token

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
           urls: dict[str, str], admin_headers: dict[str, str] | None = None) -> Service:
    with log_path.open("ab") as log:
        process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT,
                                   cwd=ROOT)
    service = Service(name, process, log_path, urls, admin_headers or {})
    try:
        service.wait_healthy()
    except BaseException:
        service.stop()
        raise
    return service


def argon2_defaults() -> dict[str, int]:
    """The platform's default Argon2id cost (OWASP: m=19456 KiB, t=2, p=1), never the test
    suite's cheap one that an ``ANFU_ARGON2_*`` variable in the environment may carry."""
    return {name: int(Settings.model_fields[name].default)
            for name in ("argon2_memory_kib", "argon2_time_cost", "argon2_parallelism")}


def platform_env() -> dict[str, str]:
    """Settings every benchmarked platform runs with, whatever the caller's environment."""
    return {f"ANFU_{name.upper()}": str(value) for name, value in argon2_defaults().items()}


def platform_workers() -> int:
    """HTTP processes for the platform: ANFU_WORKERS, else one per core."""
    return int(os.environ.get("ANFU_WORKERS") or os.cpu_count() or 1)


def start_platform(home: Path, database_url: str,
                   extra_env: dict[str, str] | None = None) -> Service:
    """``anfu run --no-seed-demo`` on ANFU_HOME=home, three free loopback ports, the
    platform's default Argon2id cost; ``extra_env`` adds or overrides settings."""
    ports = {zone: free_port() for zone in ("mobile", "merchant", "admin")}
    env = {**os.environ, "ANFU_HOME": str(home), "ANFU_DATABASE_URL": database_url,
           "ANFU_LOG_LEVEL": "WARNING", "ANFU_WORKERS": str(platform_workers()),
           **platform_env(), **(extra_env or {}),
           **{f"ANFU_{zone.upper()}_ADDR": f"127.0.0.1:{port}" for zone, port in ports.items()}}
    env["ANFU_ADMIN_TOKEN"] = token = "bench_op_" + secrets.token_urlsafe(24)
    return _spawn("platform", [sys.executable, "-m", "anfu.cli", "run", "--no-seed-demo"],
                  env, home / "platform.log",
                  {zone: f"http://127.0.0.1:{port}" for zone, port in ports.items()},
                  {"Authorization": f"Bearer {token}"})


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


def _run_measured(args: list[str], timeout: float) -> tuple[int, str, str, float]:
    """Run a command; (exit code, stdout, stderr, CPU seconds of that process alone).

    ``os.wait4`` gives the CPU of this one child, so two wrk runs in parallel (the login
    flood beside the pay load) each report their own."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(args, stdout=out, stderr=err, text=True)
        killer = threading.Timer(timeout, process.kill)
        killer.start()
        try:
            _pid, status, usage = os.wait4(process.pid, 0)
        finally:
            killer.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return process.returncode, out.read(), err.read(), usage.ru_utime + usage.ru_stime


def loop_schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) so far, summed over the main
    threads of ``pid``'s child processes (the platform's HTTP workers: their event loops),
    from /proc/<pid>/task/<pid>/schedstat."""
    on_cpu = waiting = 0.0
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return 0.0, 0.0
    for child in children or [str(pid)]:
        try:
            fields = Path(f"/proc/{child}/task/{child}/schedstat").read_text().split()
        except OSError:
            continue
        on_cpu += int(fields[0]) / 1e9
        waiting += int(fields[1]) / 1e9
    return on_cpu, waiting


def run_wrk(url: str, script: Path, script_args: list[str], *, seconds: float,
            connections: int, threads: int, server_pid: int | None = None,
            timeout_s: int = 10) -> dict[str, Any]:
    """One wrk run; the figures of the script's BENCH-JSON line plus rates per second, and
    the CPU used by wrk and by the server (100 = one core busy all the time).

    A script that judges answers itself (login.lua: 401 step_up_required is the right
    answer) reports ``expected`` and ``unexpected``; those then replace wrk's count of
    non-2xx answers. ``timeout_s``: wrk counts a request unanswered that long as a
    timeout (and leaves it out of the latencies)."""
    wrk = wrk_path()
    if wrk is None:
        raise RuntimeError(WRK_HINT)
    args = [wrk, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s",
            "--latency", "--timeout", f"{timeout_s}s", "-s", str(script), url, "--", *script_args]
    server_before = cpu_seconds(server_pid) if server_pid else 0.0
    loops_before = loop_schedstat(server_pid) if server_pid else (0.0, 0.0)
    started = time.perf_counter()
    code, stdout, stderr, wrk_cpu = _run_measured(args, seconds + 120)
    wall = time.perf_counter() - started
    lines = [ln for ln in stdout.splitlines() if ln.startswith("BENCH-JSON ")]
    if code != 0 or not lines:
        raise RuntimeError(f"wrk failed ({code}):\n{stdout}\n{stderr}")
    figures: dict[str, Any] = json.loads(lines[-1].removeprefix("BENCH-JSON "))
    duration = figures["duration_us"] / 1e6
    if "expected" in figures:
        figures["non_2xx"] = figures["status_errors"]
        figures["status_errors"] = figures["unexpected"]
    errors = sum(figures[k] for k in ("status_errors", "connect_errors", "read_errors",
                                      "write_errors", "timeouts"))
    figures["ok"] = figures.get("expected", figures["requests"] - figures["status_errors"])
    figures["errors"] = errors
    figures["rps"] = figures["ok"] / duration if duration else 0.0
    figures["wall_s"] = round(wall, 2)
    figures["connections"] = connections
    figures["wrk_cpu_pct"] = round(100 * wrk_cpu / wall, 1)
    if server_pid:
        server_cpu = cpu_seconds(server_pid) - server_before
        figures["server_cpu_pct"] = round(100 * server_cpu / wall, 1)
        # CPU per answered request, all server processes and threads (µs).
        figures["server_cpu_us_per_req"] = (round(1e6 * server_cpu / figures["ok"], 1)
                                            if figures["ok"] else None)
        # The event loops: how long they ran, and how long they were ready to run but
        # waited for a CPU (the scheduler's run queue), per second of the run.
        loops_after = loop_schedstat(server_pid)
        ran, waited = (loops_after[0] - loops_before[0], loops_after[1] - loops_before[1])
        figures["loops_on_cpu_pct"] = round(100 * ran / wall, 1)
        figures["loops_waiting_pct"] = round(100 * waited / wall, 1)
    figures["wrk_output"] = stdout.replace(lines[-1], "").strip()
    return figures
