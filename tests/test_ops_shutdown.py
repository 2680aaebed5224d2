"""Graceful shutdown: a rolling restart of two real `ocgateway serve` processes under load fails
no storefront call. The client side plays the load balancer: it sends only to backends whose
/readyz answered 200 at the last probe (every 50 ms) and never retries."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from gateway.serving import serve_in_thread as running
from tests.fake_upstream import FakeUpstream
from tests.servers import gateway_process

pytestmark = pytest.mark.e2e

DRAIN, TIMEOUT = 1.0, 10.0


class Balancer:
    """Round robin over the backends that are ready; a probe thread keeps the list current."""

    def __init__(self) -> None:
        self.backends: list[str] = []
        self.ready: list[str] = []
        self.stop = threading.Event()
        self._turn = itertools.count()
        self._probe = threading.Thread(target=self._run, daemon=True)
        self._probe.start()

    def _run(self) -> None:
        with httpx.Client(timeout=1) as http:
            while not self.stop.is_set():
                ready = []
                for backend in list(self.backends):
                    try:
                        if http.get(backend + "/readyz").status_code == 200:
                            ready.append(backend)
                    except httpx.HTTPError:
                        pass
                self.ready = ready
                time.sleep(0.05)

    def pick(self) -> str:
        ready = self.ready
        return ready[next(self._turn) % len(ready)]


def shopper(
    balancer: Balancer, results: list[tuple[str, int, bool]], stop: threading.Event
) -> None:
    clients: dict[str, httpx.Client] = {}  # keep-alive connections per backend, as a balancer
    try:
        while not stop.is_set():
            backend = balancer.pick()
            http = clients.setdefault(backend, httpx.Client(timeout=15))
            try:
                response = http.get(backend + "/v1/delay/100", headers={"X-Shop": "1"})
                ok = response.status_code == 200 and response.json()["raw_path"] == "/v1/delay/100"
                results.append((backend, response.status_code, ok))
            except httpx.HTTPError as exc:
                results.append((backend, 0, False))
                print("failed:", backend, repr(exc))
    finally:
        for http in clients.values():
            http.close()


def terminate(process: subprocess.Popen[bytes]) -> float:
    """SIGTERM the process group (the way an orchestrator stops it); seconds until it exited."""
    started = time.monotonic()
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(DRAIN + TIMEOUT + 5)
    return time.monotonic() - started


def test_a_rolling_restart_under_load_fails_no_call(tmp_path: Path):
    fake = FakeUpstream()
    with running(fake) as upstream, ExitStack() as stack:
        env = {
            "OCGW_UPSTREAM_URL": upstream,
            "OCGW_TRACKING": "false",
            "OCGW_DRAIN_SECONDS": str(DRAIN),
            "OCGW_SHUTDOWN_TIMEOUT": str(TIMEOUT),
        }

        def start(name: str) -> tuple[str, subprocess.Popen[bytes]]:
            return stack.enter_context(
                gateway_process({**env, "OCGW_STORE": str(tmp_path / f"{name}.db")})
            )

        balancer = Balancer()
        a, a_process = start("a")
        b, b_process = start("b")
        balancer.backends = [a, b]
        while len(balancer.ready) < 2:
            time.sleep(0.01)
        results: list[tuple[str, int, bool]] = []
        stop = threading.Event()
        shoppers = [
            threading.Thread(target=shopper, args=(balancer, results, stop)) for _ in range(6)
        ]
        for thread in shoppers:
            thread.start()
        time.sleep(1)

        # A call accepted just before the drain ends is still running when the server stops
        # accepting: it must complete with the upstream's answer.
        late: dict[str, object] = {}

        def late_call(backend: str) -> None:
            time.sleep(DRAIN - 0.3)
            response = httpx.get(backend + "/v1/delay/1500", timeout=15)
            late["status"], late["path"] = response.status_code, response.json()["raw_path"]

        caller = threading.Thread(target=late_call, args=(a,))
        caller.start()
        a_took = terminate(a_process)
        caller.join()

        c, _ = start("c")
        balancer.backends = [b, c]
        while c not in balancer.ready:
            time.sleep(0.01)
        time.sleep(0.5)
        b_took = terminate(b_process)
        balancer.backends = [c]
        time.sleep(0.5)
        stop.set()
        for thread in shoppers:
            thread.join()
        balancer.stop.set()

    failed = [r for r in results if not r[2]]
    assert not failed, failed
    served = {backend for backend, _, _ in results}
    assert served == {a, b, c}, "every backend took part"
    assert len(results) > 100
    assert late == {"status": 200, "path": "/v1/delay/1500"}
    assert DRAIN <= a_took < DRAIN + TIMEOUT and DRAIN <= b_took < DRAIN + TIMEOUT
    print({"calls": len(results), "a_exit_s": round(a_took, 2), "b_exit_s": round(b_took, 2)})
