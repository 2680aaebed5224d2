"""Publishing and history: publish or ask for approval, approve, send back, discard; every
version with its diff, any two compared, and one-click rollback."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from console.web import Ui, back, form
from console.workflow import Refused
from decisions.errors import ValidationFailed
from state.accounts import Account
from state.versions import MAX_VERSION, Version, unified_diff


async def publish(ui: Ui, request: Request, user: Account) -> Response:
    draft_id = request.path_params["draft"]
    comment = str((await form(request)).get("comment") or "")
    try:
        done = await ui.workflow.publish(user, draft_id, comment)
    except ValidationFailed as exc:
        raise Refused("the draft no longer validates: " + str(exc), 422) from None
    if isinstance(done, Version):
        return back(request, f"/history/{done.version}", f"Published v{done.version}.")
    return back(request, f"/drafts/{draft_id}", "Waiting for a second publisher's approval.")


async def approve(ui: Ui, request: Request, user: Account) -> Response:
    version = await ui.workflow.approve(user, request.path_params["draft"])
    return back(
        request, f"/history/{version.version}", f"Approved and published v{version.version}."
    )


async def send_back(ui: Ui, request: Request, user: Account) -> Response:
    await ui.workflow.send_back(user, request.path_params["draft"])
    return back(request, f"/drafts/{request.path_params['draft']}", "Back to draft.")


async def discard(ui: Ui, request: Request, user: Account) -> Response:
    await ui.workflow.discard(user, request.path_params["draft"])
    return back(request, "/drafts", "Draft discarded.")


async def history_page(ui: Ui, request: Request, user: Account) -> Response:
    versions = await ui.service.list_versions()
    return ui.render(
        request, "history.html", {"versions": versions, "note": request.query_params.get("note")}
    )


async def _version(ui: Ui, number: int) -> Version:
    found = await ui.service.get_version(number) if 1 <= number <= MAX_VERSION else None
    if found is None:
        raise Refused("no such version", 404)
    return found


async def version_page(ui: Ui, request: Request, user: Account) -> Response:
    version = await _version(ui, int(request.path_params["number"]))
    return ui.render(
        request,
        "version.html",
        {"version": version, "note": request.query_params.get("note")},
    )


async def compare_page(ui: Ui, request: Request, user: Account) -> Response:
    try:
        a, b = (int(request.query_params.get(k, "")) for k in ("a", "b"))
    except ValueError:
        raise Refused("choose two versions to compare", 400) from None
    old, new = await _version(ui, a), await _version(ui, b)
    diff = unified_diff(old.source, new.source, f"v{a}", f"v{b}")
    return ui.render(request, "compare.html", {"old": old, "new": new, "diff": diff})


async def rollback(ui: Ui, request: Request, user: Account) -> Response:
    reason = str((await form(request)).get("reason") or "")
    version = await ui.workflow.rollback(user, int(request.path_params["number"]), reason)
    return back(request, f"/history/{version.version}", f"Rolled back: v{version.version} is live.")
