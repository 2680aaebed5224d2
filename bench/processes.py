"""The processes a benchmark starts (each in its own process group, all stopped at the end), and
the static upstream they run against."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import upstream as static_upstream  # noqa: E402

READY_TIMEOUT = 30.0
QUIET_BUSY = 0.15  # share of the machine's CPU time in use below which it counts as quiet
QUIET_TIMEOUT = 30.0


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies of the whole machine since boot; None off Linux."""
    try:
        fields = [int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def wait_quiet(window: float = 0.5) -> float:
    """Wait until the machine is mostly idle (at most QUIET_TIMEOUT s); the seconds waited.

    A gateway keeps working after its load stops (it delivers the events it recorded), and
    the next target measured would share the cores with that work."""
    start = time.monotonic()
    before = _cpu_times()
    while before is not None and time.monotonic() - start < QUIET_TIMEOUT:
        time.sleep(window)
        after = _cpu_times()
        assert after is not None
        busy, total = after[0] - before[0], after[1] - before[1]
        if total and busy / total < QUIET_BUSY:
            break
        before = after
    return time.monotonic() - start


class Skip(Exception):
    """A target could not be measured; the message says why."""


@dataclass
class Processes:
    """Every process the benchmark starts, each in its own process group, all stopped on exit."""

    logs: Path
    running: list[subprocess.Popen] = field(default_factory=list)

    def start(
        self, name: str, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise Skip(f"cannot start {command[0]}: {exc}") from None
        finally:
            log.close()
        self.running.append(process)
        return process

    def log_tail(self, name: str, lines: int = 8) -> str:
        """What the process printed last: the final line (usually the reason), then the tail."""
        path = self.logs / f"{name}.log"
        tail = (
            (path.read_text(errors="replace") if path.exists() else "")
            .strip()
            .splitlines()[-lines:]
        )
        if not tail:
            return "(it printed nothing)"
        return tail[-1] + "".join("\n    " + line for line in tail)

    def stop(self, process: subprocess.Popen) -> None:
        """SIGTERM the process group, SIGKILL it after 5 s."""
        for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            if process.poll() is not None:
                break
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                continue
        try:  # workers may outlive a master that exited on its own
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if process in self.running:
            self.running.remove(process)

    def stop_all(self) -> None:
        for process in reversed(list(self.running)):
            self.stop(process)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(
    processes: Processes,
    name: str,
    process: subprocess.Popen | None,
    url: str,
    headers: dict[str, str],
) -> bytes:
    """Poll `url` until it answers 200 and return the body; Skip if the process dies or hangs."""
    deadline = time.monotonic() + READY_TIMEOUT
    last = "no answer"
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise Skip(f"exited with status {process.returncode}: {processes.log_tail(name)}")
        try:
            status, body = fetch(url, headers)
            if status == 200:
                return body
            last = f"HTTP {status}: {body[:200]!r}"
        except (OSError, urllib.error.URLError) as exc:
            last = str(exc)
        time.sleep(0.1)
    raise Skip(
        f"not ready after {READY_TIMEOUT:.0f} s ({last}); it printed: {processes.log_tail(name)}"
    )


def start_upstream(
    processes: Processes, run: Path, token_jwk: dict[str, Any], force_python: bool
) -> tuple[str, str]:
    """Start the static upstream; return (base URL, what serves it)."""
    docs_root = run / "docs"
    docs_root.mkdir()
    static_upstream.write_documents(docs_root, static_upstream.documents(token_jwk))
    port = free_port()
    nginx = None if force_python else shutil.which("nginx")
    if nginx:
        config = run / "nginx.conf"
        config.write_text(static_upstream.nginx_config(docs_root, port))
        command = [nginx, "-p", str(run), "-e", str(run / "nginx-error.log"), "-c", str(config)]
        kind = "nginx (static files, 1 worker)"
    else:
        command = [
            sys.executable,
            str(BENCH / "upstream.py"),
            "--port",
            str(port),
            "--docs",
            str(docs_root),
        ]
        kind = "bench/upstream.py (uvloop + httptools responder)"
    process = processes.start("upstream", command)
    base = f"http://127.0.0.1:{port}"
    wait_ready(processes, "upstream", process, base + "/v1/me", {})
    return base, kind
