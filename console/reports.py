"""The overview (what is live, and how often each rule matched in the last 24 hours), the
experiments page (per variant numbers, a chart and a significance statement; ending one with a
winner makes a draft), and the audit log."""

from __future__ import annotations

import time
from itertools import groupby
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from console import document
from console.chart import Bar, conversion_chart
from console.significance import compare
from console.web import Ui, back, form
from console.workflow import Refused
from decisions.compile import Compiled
from state.accounts import Account

DAY = 24 * 3600


def rule_rows(compiled: Compiled, counts: dict[tuple[str, str], int]) -> list[dict[str, Any]]:
    """Every table with its rules described in words, and each rule's recent match count."""
    out = []
    for table in compiled.document.tables:
        rules = []
        for r, rule in enumerate(table.rules):
            rule_id = rule.id or f"rule-{r + 1}"
            rules.append(
                {
                    "id": rule_id,
                    "enabled": rule.enabled,
                    "who": document.when_words(rule.when),
                    "unless": document.when_words(rule.unless) if rule.unless else "",
                    "schedule": document.schedule_words(rule.when),
                    "then": document.then_words(rule),
                    "split": document.split_words(rule),
                    "matched": counts.get((table.id, rule_id), 0),
                }
            )
        out.append({"table": table, "rules": rules})
    return out


async def overview(ui: Ui, request: Request, user: Account) -> Response:
    live = ui.service.live
    version = await ui.service.get_version(live.version) if live else None
    counts = await ui.exposures.matched_since(time.time() - DAY)
    pending = [d for d in await ui.state.drafts.list() if d.state == "pending"]
    return ui.render(
        request,
        "overview.html",
        {
            "version": version,
            "tables": rule_rows(live, counts) if live else [],
            "segments": live.document.segments if live else {},
            "pending": pending,
            "file_errors": [str(e) for e in ui.service.last_errors],
        },
    )


def experiment_groups(rows: list[dict[str, Any]], min_visitors: int) -> list[dict[str, Any]]:
    """Per (table, rule): its variants with rates and a verdict against the baseline (control,
    else the first variant), plus the chart."""
    groups = []
    for (table, rule), members in groupby(rows, key=lambda r: (r["table_id"], r["rule_id"])):
        variants = list(members)
        if len(variants) < 2 and variants[0]["variant"] == "default":
            continue  # a rule without a split is not an experiment
        variants.sort(key=lambda v: (v["variant"] != "control", v["variant"]))
        base = variants[0]
        shown = []
        for v in variants:
            visitors = v["visitors"]
            shown.append(
                v
                | {
                    "revenue_per_visitor": v["revenue"] / visitors if visitors else 0.0,
                    "verdict": None
                    if v is base
                    else compare(
                        base["converted"], base["visitors"], v["converted"], visitors, min_visitors
                    ),
                }
            )
        bars = [
            Bar(v["variant"], v["converted"], v["visitors"], v["revenue_per_visitor"])
            for v in shown
        ]
        groups.append(
            {
                "table": table,
                "rule": rule,
                "baseline": base["variant"],
                "variants": shown,
                "chart": conversion_chart(bars),
            }
        )
    return groups


async def experiments(ui: Ui, request: Request, user: Account) -> Response:
    groups = experiment_groups(await ui.exposures.report(), ui.config.min_visitors)
    live = ui.service.live
    running = {
        (t.id, r.id or f"rule-{i + 1}")
        for t in (live.document.tables if live else [])
        for i, r in enumerate(t.rules)
        if r.split
    }
    for group in groups:
        group["running"] = (group["table"], group["rule"]) in running
    return ui.render(
        request,
        "experiments.html",
        {"groups": groups, "min_visitors": ui.config.min_visitors},
    )


async def end_experiment(ui: Ui, request: Request, user: Account) -> Response:
    """A draft of the live document with the rule's split removed: the winning variant's
    actions for everyone, or, when control wins, the rule switched off."""
    submitted = await form(request)
    table_id, rule_id, winner = (str(submitted.get(k) or "") for k in ("table", "rule", "winner"))
    data = document.load(await ui.workflow.live_source())
    for table in data["tables"]:
        if table.get("id") != table_id:
            continue
        for index, rule in enumerate(table.get("rules") or []):
            if document.rule_id(rule, index) == rule_id and winner in (rule.get("split") or {}):
                rule.pop("split")
                if winner == "control":
                    rule["enabled"] = False
                draft = await ui.workflow.create(
                    user,
                    f"End experiment {table_id}/{rule_id}: {winner} wins",
                    document.dump(data),
                )
                return back(request, f"/drafts/{draft.id}", "Review and publish to end it.")
    raise Refused("that experiment is not running in the live version", 404)


async def audit(ui: Ui, request: Request, user: Account) -> Response:
    entries = await ui.state.audit.recent(500)
    return ui.render(request, "audit.html", {"entries": entries})
