"""The official OrderCloud JavaScript SDK behaves the same against the gateway as against the
upstream: the same journey, run once directly against a sandbox and once through the gateway in
front of an identical sandbox, must return the same results and errors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from gateway.app import create_app
from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID
from gateway.serving import serve_in_thread as running
from gateway.settings import Settings

SDK_DIR = Path(__file__).parent / "sdk"
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("node") is None or shutil.which("npm") is None,
        reason="node and npm are needed to run the official JavaScript SDK",
    ),
]


@pytest.fixture(scope="module")
def sdk() -> Path:
    if not (SDK_DIR / "node_modules" / "ordercloud-javascript-sdk").exists():
        subprocess.run(
            ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=SDK_DIR,
            check=True,
            timeout=300,
        )
    return SDK_DIR / "journey.js"


def journey(script: Path, base_url: str) -> dict:
    result = subprocess.run(
        ["node", str(script), base_url, CLIENT_ID, "joe", "joe-pass"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_sdk_journey_is_identical_through_the_gateway(sdk, tmp_path):
    with running(create_sandbox()) as direct:
        expected = journey(sdk, direct)
    with running(create_sandbox()) as upstream:
        settings = Settings(upstream_url=upstream, tracking=False, store=tmp_path / "gw.db")
        with running(create_app(settings), lifespan="on") as gateway:
            actual = journey(sdk, gateway)
    assert actual == expected
    # The journey really exercised the SDK's success and error paths.
    assert expected["missing"]["error"]["errorCode"] == "NotFound"
    assert expected["badLogin"]["error"]["status"] == 400
    assert expected["submit"][:2] == ["Open", True]
    assert expected["cart"] == [["p-001", 2]]
