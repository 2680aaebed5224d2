"""The published JSON Schema and the `tables` / `experiments` CLI commands."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import pytest

from decisions.commands import register
from decisions.models import json_schema
from gateway.cli import main
from gateway.compose import open_store
from gateway.settings import Settings

ROOT = Path(__file__).parent.parent
EXAMPLE = ROOT / "examples" / "decisions.yaml"


def cli(*argv: str) -> int:
    """The real `ocgateway` command line, settings from the (test's) environment."""
    return main(list(argv))


def test_committed_schema_is_the_generated_one() -> None:
    assert (ROOT / "decisions" / "schema.json").read_text() == json_schema(), (
        "regenerate: python -c 'from decisions.models import json_schema; "
        'open("decisions/schema.json", "w").write(json_schema())\''
    )


def test_tables_schema_prints_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("tables", "schema") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json_schema()) and "Rule" in printed["$defs"]


def test_tables_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("tables", "validate", str(EXAMPLE)) == 0
    assert capsys.readouterr().out.startswith("ok: 3 table(s), 6 rule(s)")
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        EXAMPLE.read_text().replace("applies_to: me/promotions", "applies_to: me/orders")
    )
    assert cli("tables", "validate", str(bad)) == 1
    err = capsys.readouterr().err
    line = EXAMPLE.read_text().splitlines().index("    applies_to: me/promotions") + 1
    assert f"{bad}:{line}: table audience-promotions, field applies_to: Input should be" in err
    assert cli("tables", "validate", str(tmp_path / "missing.yaml")) == 2


def test_tables_explain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OCGW_STORE", str(tmp_path / "gw.db"))
    code = cli(
        "tables",
        "explain",
        "--tables",
        str(EXAMPLE),
        "--visitor",
        "acme-bo",
        "--segments",
        "repeat-customer",
        "--header",
        "CF-IPCountry: GB",
        "/v1/me/products?page=1",
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["segments"] == ["newcomer", "repeat-customer"] and result["segments_given"] == [
        "repeat-customer"
    ]
    assert result["query"] == "page=1&categoryID=mens-watches&sortBy=!xp.popularity"


def test_experiments_report(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OCGW_STORE", str(tmp_path / "gw.db"))
    assert cli("experiments", "report") == 0
    assert capsys.readouterr().out.split() == [
        "table",
        "rule",
        "variant",
        "exposures",
        "visitors",
        "converted",
        "rate",
        "orders",
        "revenue",
    ]
    assert cli("experiments", "report", "--json") == 0
    assert json.loads(capsys.readouterr().out) == []


def test_tables_explain_uses_the_newest_stored_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def publish() -> None:
        state = await open_store(Settings(store=tmp_path / "gw.db"))
        await state.versions.add(EXAMPLE.read_text().replace("p-007", "p-008"), "admin")
        await state.close()

    asyncio.run(publish())
    monkeypatch.setenv("OCGW_STORE", str(tmp_path / "gw.db"))
    monkeypatch.setenv("OCGW_DECISIONS", str(EXAMPLE))
    assert cli("tables", "explain", "--visitor", "anon-o9", "/v1/me/products") == 0
    result = json.loads(capsys.readouterr().out)
    assert result["version"] == 1 and result["pin"] == ["p-001", "p-008", "p-013", "p-021"]
    assert cli("tables", "explain", "/v1/me/orders") == 1


def test_handlers_accept_the_settings_the_gateway_cli_loaded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser(prog="ocgateway")
    register(parser.add_subparsers(dest="command", required=True), open_store)
    settings = Settings(store=tmp_path / "gw.db", decisions=EXAMPLE)
    args = parser.parse_args(["tables", "explain", "--visitor", "anon-1", "/v1/me/promotions"])
    assert args.func(args, settings) == 0
    assert "rule=welcome-offers" in json.loads(capsys.readouterr().out)["x_decision"]
    args = parser.parse_args(["experiments", "report", "--json"])
    assert args.func(args, settings) == 0 and (tmp_path / "gw.db").exists()
