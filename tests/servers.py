"""Real servers on loopback ports for end-to-end tests, run in threads or subprocesses."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import httpx

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gateway_process(
    env: dict[str, str], workers: int = 1, output: Path | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Run `ocgateway serve` as a real process; yield (base URL, process). Its output goes to
    `output` when given: a pipe nobody reads fills up and stalls a gateway that logs a lot. It
    stops at SIGTERM without draining unless `env` asks for a drain."""
    port = free_port()
    full_env = {**os.environ, "OCGW_DRAIN_SECONDS": "0", **env}
    sink = output.open("ab") if output is not None else subprocess.PIPE
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=full_env,
        cwd=ROOT,
        stdout=sink,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    if output is not None:
        sink.close()  # type: ignore[union-attr]
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_until_up(base + "/healthz", process)
        except RuntimeError as exc:
            if output is None:
                raise
            raise RuntimeError(f"{exc}: {output.read_text(errors='replace')[-4000:]}") from None
        yield base, process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 15)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait()


def wait_until_up(url: str, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            output = process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"process exited early ({process.returncode}): {output}")
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


def wait_for(check: Callable[[], T], timeout: float = 15.0) -> T:
    """Poll `check` until it returns something truthy or `timeout` passes; return its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.05)
