"""The `ocgateway` command: bad configuration stops it with one line naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.servers import ROOT


@pytest.mark.parametrize(
    "name, value",
    [
        ("OCGW_UPSTREAM_URL", "not a url"),
        ("OCGW_MAX_BODY_BYTES", "-5"),
        ("OCGW_CDP_ORDER_MODE", "sometimes"),
        ("OCGW_PERSONALIZE_TIMEOUT_MS", "soon"),
    ],
)
def test_bad_setting_fails_at_start_with_one_line_naming_it(name, value):
    result = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", "1"],
        env={**os.environ, name: value},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ocgateway: {name}:"), result.stderr
