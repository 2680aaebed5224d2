"""SIGKILL under load: every event whose record() returned is delivered after a restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

WORKER = r"""
import asyncio, sys, time
from dataclasses import replace
from pathlib import Path
import httpx
from gateway import compose
from gateway.settings import Settings
from tests.fakes_destinations import make_call, answer

class Upstream:
    async def get_json(self, path, token, timeout=None):
        return 404, None

async def main(mode, store, events):
    settings = Settings(store=Path(store), events_file=Path(events))
    state = await compose.open_store(settings)
    service = compose.tracker(settings, state, httpx.AsyncClient(), Upstream(), None)
    # Events the killed process held for hydration go as recorded once their hold passes.
    service.config = replace(service.config, hydrate_timeout=0.5, hold_grace=0.5)
    await service.start()
    if mode == "drain":
        while True:
            stats = await service.outbox.stats()
            if not service._background and all(s["pending"] == 0 for s in stats.values()):
                break
            await asyncio.sleep(0.02)
        await service.stop(5)
        print("drained", flush=True)
        return
    async def shopper(n):
        for i in range(100000):
            product = f"p{n}-{i}"
            call = make_call("GET", f"/v1/me/products/{product}")
            await service.record(call, 200, answer({"ID": product}))
            sys.stdout.write(product + "\n")
            sys.stdout.flush()
    await asyncio.gather(*(shopper(n) for n in range(20)))

asyncio.run(main(*sys.argv[1:]))
"""


def worker(mode: str, tmp: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, mode, str(tmp / "t.db"), str(tmp / "events.jsonl")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


@pytest.mark.e2e
def test_sigkill_loses_no_acknowledged_event(tmp_path: Path) -> None:
    proc = worker("record", tmp_path)
    acked: list[str] = []
    assert proc.stdout is not None
    deadline = time.monotonic() + 20
    while len(acked) < 2000 and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        acked.append(line.strip())
    proc.send_signal(signal.SIGKILL)
    acked.extend(x.strip() for x in proc.stdout.read().splitlines() if x.strip())
    proc.wait(5)
    assert len(acked) >= 2000, "worker did not get going"

    drain = worker("drain", tmp_path)
    out, _ = drain.communicate(timeout=120)  # a bound, generous for a loaded CI machine
    assert "drained" in out

    seen: dict[str, set[str]] = {}
    for line in (tmp_path / "events.jsonl").read_text().splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue  # the line being written when the process was killed
        seen.setdefault(event["data"]["product"]["ID"], set()).add(event["id"])
    missing = [p for p in acked if p not in seen]
    assert missing == []
    assert all(len(ids) == 1 for ids in seen.values())  # redelivery reuses the event id
