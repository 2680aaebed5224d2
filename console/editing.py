"""Drafts and the editor: the list of drafts, a draft's tables and segments, the rule and segment
forms (generated from the models), and the whole document's source.

A save validates the whole document; errors that belong to the edited rule or segment are shown
beside their field, any others above the form. Nothing invalid is ever stored in a draft.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from console import document
from console.forms import FieldSpec, read_all, shown, specs
from console.web import Ui, back, form
from console.workflow import Refused
from decisions.errors import TableError, ValidationFailed
from decisions.loader import MAX_DOCUMENT_BYTES
from decisions.models import Rule, SegmentDef, Then, When
from state.accounts import Account
from state.drafts import DRAFT

RULE_FIELDS = specs(Rule, skip=("when", "unless", "then"))
SECTIONS: tuple[tuple[str, str, tuple[FieldSpec, ...]], ...] = (
    ("when", "Who and when: the rule applies when all of these hold", specs(When)),
    ("then", "What the shopper's list becomes", specs(Then)),
    ("unless", "Unless: skip the rule when all of these hold", specs(When)),
)
SEGMENT_FIELDS = specs(SegmentDef)
RULE_ORDER = ("id", "enabled", "priority", "when", "unless", "then", "split")


def _field_errors(
    errors: list[TableError], names: set[str], belongs: Any
) -> tuple[dict[str, list[str]], list[str]]:
    """Errors of the edited item by the form field they belong to, and the rest as text."""
    by_field: dict[str, list[str]] = {}
    general: list[str] = []
    for error in errors:
        if belongs(error):
            field = error.field or ""
            while field and field not in names:
                field = field.rpartition(".")[0]
            if field:
                by_field.setdefault(field, []).append(error.message)
                continue
            general.append(error.message)
        else:
            general.append(str(error))
    return by_field, general


async def _editable(ui: Ui, draft_id: str) -> Any:
    draft = await ui.workflow.draft(draft_id)
    if draft.state != DRAFT:
        raise Refused(f"this draft is {draft.state}; only drafts can be edited", 409)
    return draft


# drafts ------------------------------------------------------------------------------------


async def drafts_page(ui: Ui, request: Request, user: Account) -> Response:
    drafts = await ui.state.drafts.list()
    return ui.render(
        request, "drafts.html", {"drafts": drafts, "note": request.query_params.get("note")}
    )


async def create_draft(ui: Ui, request: Request, user: Account) -> Response:
    submitted = await form(request)
    draft = await ui.workflow.create(user, str(submitted.get("title") or ""))
    return back(request, f"/drafts/{draft.id}")


async def draft_page(ui: Ui, request: Request, user: Account) -> Response:
    draft = await ui.workflow.draft(request.path_params["draft"])
    compiled = await ui.compiled(draft.source)
    diff = await ui.workflow.diff_against_live(draft)
    tables = [
        {
            "index": t,
            "table": table,
            "rules": [
                {
                    "index": r,
                    "id": rule.id or f"rule-{r + 1}",
                    "rule": rule,
                    "who": document.when_words(rule.when),
                    "unless": document.when_words(rule.unless) if rule.unless else "",
                    "schedule": document.schedule_words(rule.when),
                    "then": document.then_words(rule),
                    "split": document.split_words(rule),
                }
                for r, rule in enumerate(table.rules)
            ],
        }
        for t, table in enumerate(compiled.document.tables)
    ]
    return ui.render(
        request,
        "draft.html",
        {
            "draft": draft,
            "tables": tables,
            "segments": compiled.document.segments,
            "changes": diff,
            "moved_on": draft.base_version != ui.service.version,
            "note": request.query_params.get("note"),
        },
    )


# rules -------------------------------------------------------------------------------------


def _rule_form(rule: dict[str, Any]) -> dict[str, Any]:
    return {
        "rule": {s.name: shown(s, rule.get(s.name)) for s in RULE_FIELDS},
        **{
            name: {s.name: shown(s, (rule.get(name) or {}).get(s.name)) for s in fields}
            for name, _, fields in SECTIONS
        },
    }


def _rule_from(submitted: Any, old: dict[str, Any]) -> dict[str, Any]:
    rule = read_all(RULE_FIELDS, submitted, "", old)
    for name, _, fields in SECTIONS:
        section = read_all(fields, submitted, f"{name}.", old.get(name) or {})
        if section:
            rule[name] = section
        else:
            rule.pop(name, None)
    ordered = {k: rule[k] for k in RULE_ORDER if k in rule}
    return ordered | {k: v for k, v in rule.items() if k not in ordered}


async def _pin_names(ui: Ui, rule: dict[str, Any]) -> dict[str, str] | None:
    pins = (rule.get("then") or {}).get("pin")
    if not pins or ui.storefront is None or not isinstance(pins, list):
        return None
    try:
        return await ui.storefront.names([str(p) for p in pins])
    except Exception:  # noqa: BLE001 - a lookup is a courtesy; the editor works without it
        return None


def _locate(data: dict[str, Any], request: Request) -> tuple[int, int | None]:
    t = int(request.path_params["table"])
    raw = request.path_params["rule"]
    if not 0 <= t < len(data["tables"]):
        raise Refused("no such table in this draft", 404)
    rules = data["tables"][t].get("rules") or []
    if raw == "new":
        return t, None
    if not raw.isdigit() or int(raw) >= len(rules):
        raise Refused("no such rule in this draft", 404)
    return t, int(raw)


async def _show_rule(
    ui: Ui,
    request: Request,
    draft: Any,
    data: dict[str, Any],
    where: tuple[int, int | None],
    rule: dict[str, Any],
    errors: tuple[dict[str, list[str]], list[str]] = ({}, []),
    status: int = 200,
) -> Response:
    t, r = where
    table = data["tables"][t]
    return ui.render(
        request,
        "rule.html",
        {
            "draft": draft,
            "table": table,
            "t": t,
            "r": "new" if r is None else r,
            "title": document.rule_id(rule, r if r is not None else len(table["rules"])),
            "values": _rule_form(rule),
            "rule_fields": RULE_FIELDS,
            "sections": SECTIONS,
            "errors": errors[0],
            "general": errors[1],
            "pins": await _pin_names(ui, rule),
            "segment_names": sorted(data.get("segments") or {}),
        },
        status,
    )


async def _shown_document(ui: Ui, source: str) -> dict[str, Any]:
    """The draft's data for showing a form, from its compiled (cached) models: no YAML parse
    per page view. Only the keys the document sets are included."""
    compiled = await ui.compiled(source)
    return compiled.document.model_dump(mode="python", by_alias=True, exclude_unset=True)


async def rule_page(ui: Ui, request: Request, user: Account) -> Response:
    draft = await _editable(ui, request.path_params["draft"])
    data = await _shown_document(ui, draft.source)
    data.setdefault("segments", {})
    t, r = _locate(data, request)
    rule = data["tables"][t]["rules"][r] if r is not None else {}
    return await _show_rule(ui, request, draft, data, (t, r), rule)


async def save_rule(ui: Ui, request: Request, user: Account) -> Response:
    draft = await _editable(ui, request.path_params["draft"])
    data = document.load(draft.source)
    t, r = _locate(data, request)
    rules = data["tables"][t]["rules"]
    rule = _rule_from(await form(request), rules[r] if r is not None else {})
    index = r if r is not None else len(rules)
    if r is None:
        rules.append(rule)
    else:
        rules[r] = rule
    table_id = str(data["tables"][t].get("id"))
    name = document.rule_id(rule, index)
    try:
        await ui.workflow.save(
            user, draft.id, document.dump(data), f"rule {name} of table {table_id}"
        )
    except ValidationFailed as exc:
        names = {s.name for s in RULE_FIELDS} | {n for n, _, _ in SECTIONS}
        names |= {f"{n}.{s.name}" for n, _, fields in SECTIONS for s in fields}
        errors = _field_errors(exc.errors, names, lambda e: e.table == table_id and e.rule == name)
        return await _show_rule(ui, request, draft, data, (t, r), rule, errors, 422)
    return back(request, f"/drafts/{draft.id}", f"Saved rule {name}.")


async def delete_rule(ui: Ui, request: Request, user: Account) -> Response:
    draft = await _editable(ui, request.path_params["draft"])
    data = document.load(draft.source)
    t, r = _locate(data, request)
    if r is None:
        raise Refused("no such rule", 404)
    removed = data["tables"][t]["rules"].pop(r)
    name = document.rule_id(removed, r)
    try:
        await ui.workflow.save(user, draft.id, document.dump(data), f"removed rule {name}")
    except ValidationFailed as exc:
        raise Refused("cannot remove it: " + "; ".join(str(e) for e in exc.errors[:3]), 422)
    return back(request, f"/drafts/{draft.id}", f"Removed rule {name}.")


# segments ----------------------------------------------------------------------------------


async def _show_segment(
    ui: Ui,
    request: Request,
    draft: Any,
    name: str,
    definition: dict[str, Any],
    errors: tuple[dict[str, list[str]], list[str]] = ({}, []),
    status: int = 200,
) -> Response:
    return ui.render(
        request,
        "segment.html",
        {
            "draft": draft,
            "name": name,
            "original": request.path_params["segment"],
            "fields": SEGMENT_FIELDS,
            "values": {s.name: shown(s, definition.get(s.name)) for s in SEGMENT_FIELDS},
            "errors": errors[0],
            "general": errors[1],
        },
        status,
    )


async def segment_page(ui: Ui, request: Request, user: Account) -> Response:
    draft = await _editable(ui, request.path_params["draft"])
    data = await _shown_document(ui, draft.source)
    data.setdefault("segments", {})
    name = request.path_params["segment"]
    if name != "new" and name not in data["segments"]:
        raise Refused("no such segment in this draft", 404)
    definition = data["segments"].get(name) or {} if name != "new" else {}
    return await _show_segment(ui, request, draft, "" if name == "new" else name, definition)


async def save_segment(ui: Ui, request: Request, user: Account) -> Response:
    draft = await _editable(ui, request.path_params["draft"])
    data = document.load(draft.source)
    original = request.path_params["segment"]
    submitted = await form(request)
    name = str(submitted.get("name") or "").strip()
    old = data["segments"].get(original) or {}
    definition = read_all(SEGMENT_FIELDS, submitted, "segment.", old)
    segments = {k: v for k, v in data["segments"].items() if k != original}
    if not name:
        return await _show_segment(
            ui, request, draft, name, definition, ({"name": ["give the segment a name"]}, []), 422
        )
    segments[name] = definition
    data["segments"] = segments
    try:
        await ui.workflow.save(user, draft.id, document.dump(data), f"segment {name}")
    except ValidationFailed as exc:
        names = {"name"} | {s.name for s in SEGMENT_FIELDS}
        by_field, general = _field_errors(exc.errors, names, lambda e: e.segment == name)
        keyed = {(k if k == "name" else f"segment.{k}"): v for k, v in by_field.items()}
        return await _show_segment(ui, request, draft, name, definition, (keyed, general), 422)
    return back(request, f"/drafts/{draft.id}", f"Saved segment {name}.")


async def delete_segment(ui: Ui, request: Request, user: Account) -> Response:
    draft = await _editable(ui, request.path_params["draft"])
    data = document.load(draft.source)
    name = request.path_params["segment"]
    if data["segments"].pop(name, None) is None:
        raise Refused("no such segment", 404)
    try:
        await ui.workflow.save(user, draft.id, document.dump(data), f"removed segment {name}")
    except ValidationFailed as exc:
        raise Refused("cannot remove it: " + "; ".join(str(e) for e in exc.errors[:3]), 422)
    return back(request, f"/drafts/{draft.id}", f"Removed segment {name}.")


# source ------------------------------------------------------------------------------------


def _lines(source: str, errors: list[TableError]) -> list[dict[str, Any]]:
    by_line: dict[int, list[str]] = {}
    for error in errors:
        if error.line:
            by_line.setdefault(error.line, []).append(str(error).split(": ", 1)[-1])
    return [
        {"number": n, "text": text, "errors": by_line.get(n, [])}
        for n, text in enumerate(source.splitlines(), 1)
    ]


async def source_page(ui: Ui, request: Request, user: Account) -> Response:
    draft = await ui.workflow.draft(request.path_params["draft"])
    return ui.render(
        request, "source.html", {"draft": draft, "source": draft.source, "errors": [], "lines": []}
    )


async def save_source(ui: Ui, request: Request, user: Account) -> Response:
    draft = await _editable(ui, request.path_params["draft"])
    source = str((await form(request)).get("source") or "").replace("\r\n", "\n")
    try:
        await ui.workflow.save(user, draft.id, source, "source edited")
    except ValidationFailed as exc:
        return ui.render(
            request,
            "source.html",
            {
                "draft": draft,
                "source": source,
                "errors": [str(e) for e in exc.errors],
                "lines": _lines(source, exc.errors),
            },
            422,
        )
    return back(request, f"/drafts/{draft.id}", "Saved the source.")


async def check(ui: Ui, request: Request, user: Account) -> Response:
    """As-you-type validation for the source editor: {source} -> {ok, errors: [{line, text}]}."""
    body = await request.body()
    if len(body) > MAX_DOCUMENT_BYTES + 1024:
        return JSONResponse({"ok": False, "errors": [{"text": "document too large"}]}, 413)
    try:
        source = str(orjson.loads(body).get("source") or "")
    except (orjson.JSONDecodeError, AttributeError):
        return JSONResponse({"error": 'send {"source": "…"}'}, status_code=400)
    try:
        await ui.service.check(source)
    except ValidationFailed as exc:
        errors = [{"line": e.line, "text": str(e)} for e in exc.errors]
        return JSONResponse({"ok": False, "errors": errors})
    return JSONResponse({"ok": True, "errors": []})
