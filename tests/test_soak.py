"""A short bounded soak in CI (bench/soak.py): mixed storefront traffic through a real gateway
process with upstream 5xx and timeouts, the webhook down and the store paused; the gateway causes
no storefront error and loses no acknowledged event."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.e2e
def test_a_short_soak_has_no_gateway_errors_and_loses_no_event(tmp_path: Path) -> None:
    plot = tmp_path / "soak.svg"
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "soak.py"), "--duration", "20", "--plot", str(plot)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["gateway_caused_errors"] == 0, report["errors"]
    assert report["events_lost"] == 0, report
    assert report["injected_5xx_seen"] > 0 and report["tracked_acknowledged"] > 100
    assert run.returncode == 0
    assert plot.read_text().startswith("<svg")
