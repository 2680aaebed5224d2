"""Kill -9 the gateway under load: after a restart, every event whose response the shopper got
is delivered at least once, always under the same event id."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID
from gateway.serving import serve_in_thread as running
from tests.fake_sitecore import FakeSitecore
from tests.servers import gateway_process, wait_for

pytestmark = pytest.mark.e2e


def shopper(gateway: str, stop: threading.Event, done: list[str], lock: threading.Lock) -> None:
    with httpx.Client(base_url=gateway, timeout=5) as http:
        token = http.post(
            "/oauth/token", data={"grant_type": "client_credentials", "client_id": CLIENT_ID}
        ).json()["access_token"]
        for n in range(500):
            if stop.is_set():
                return
            try:
                response = http.post(
                    "/v1/cart/lineitems",
                    headers={"Authorization": f"Bearer {token}"},
                    json={"ProductID": f"p-{n % 60 + 1:03d}", "Quantity": 1},
                )
            except httpx.HTTPError:
                return  # the gateway was killed mid-call: that response never completed
            if response.status_code == 201:
                with lock:
                    done.append(response.json()["ID"])


def test_sigkill_under_load_loses_no_acknowledged_event(tmp_path: Path):
    sitecore = FakeSitecore()
    with running(sitecore) as sink, running(create_sandbox()) as sandbox:
        env = {
            "OCGW_UPSTREAM_URL": sandbox,
            "OCGW_STORE": str(tmp_path / "gw.db"),
            "OCGW_WEBHOOK_URL": f"{sink}/hook",
            "OCGW_LOG_LEVEL": "warning",
        }
        done: list[str] = []
        lock = threading.Lock()
        stop = threading.Event()
        with gateway_process(env) as (gateway, process):
            threads = [
                threading.Thread(target=shopper, args=(gateway, stop, done, lock)) for _ in range(8)
            ]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 20
            while len(done) < 150 and time.monotonic() < deadline:
                time.sleep(0.01)
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            stop.set()
            for thread in threads:
                thread.join(10)
        acknowledged = set(done)
        assert len(acknowledged) >= 150

        with gateway_process(env):

            def delivered() -> dict[str, set[str]]:
                ids: dict[str, set[str]] = {}
                for event in sitecore.json("/hook"):
                    line = (event.get("payload") or {}).get("lineitem") or {}
                    if line.get("ID"):
                        ids.setdefault(line["ID"], set()).add(event["id"])
                return ids

            wait_for(lambda: acknowledged <= set(delivered()), timeout=60)
            seen = delivered()

    missing = acknowledged - set(seen)
    assert not missing, f"{len(missing)} acknowledged events never delivered"
    assert all(len(event_ids) == 1 for event_ids in seen.values()), "a redelivery changed its id"
    print(
        json.dumps(
            {
                "acknowledged": len(acknowledged),
                "delivered": len(seen),
                "deliveries": len(sitecore.json("/hook")),
            }
        )
    )
