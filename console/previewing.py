"""Preview as a shopper: what the live version or a draft does to one storefront call for saved
test shoppers or a known visitor, side by side: the segments found, every rule's verdict, the
rewritten query and the list OrderCloud returns for it. Also saving test shoppers."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import Response

from console.preview import moment, shopper_headers, shopper_profile
from console.web import Ui, back, form
from console.workflow import Refused
from decisions.compile import Compiled
from state.accounts import Account
from state.shoppers import SavedShopper

DEFAULT_CALL = "me/products?pageSize=8"
DEVICES = ("desktop", "mobile", "tablet", "bot")


def storefront_url(call: str) -> str:
    """`me/products?…`, `/v1/me/products?…` or a full URL -> `/v1/me/products?…`."""
    call = call.strip()
    if "://" in call:
        call = call.split("://", 1)[1].partition("/")[2]
    call = call.lstrip("/")
    return "/" + (call if call.startswith("v1/") else "v1/" + call)


async def _column(
    ui: Ui,
    label: str,
    url: str,
    compiled: Compiled | None,
    now: float,
    shopper: SavedShopper | None = None,
    visitor: str | None = None,
) -> dict[str, Any]:
    if shopper is not None:
        explained = await ui.service.explain(
            None,
            url,
            shopper.segments,
            shopper_headers(shopper),
            now,
            compiled=compiled,
            profile=shopper_profile(shopper, now),
        )
    else:
        explained = await ui.service.explain(visitor, url, (), {}, now, compiled=compiled)
    column: dict[str, Any] = {"label": label, "shopper": shopper, "explained": explained}
    if "error" in explained or ui.storefront is None:
        return column
    try:
        column["products"] = await ui.storefront.list(
            explained["route"], explained["query"], explained["pin"]
        )
    except Exception as exc:  # noqa: BLE001 - shown to the marketer, the rest of the page stands
        column["products_error"] = f"the upstream did not answer the preview call: {exc}"
    return column


async def preview_page(ui: Ui, request: Request, user: Account) -> Response:
    params = request.query_params
    shoppers = await ui.state.shoppers.list()
    drafts = [d for d in await ui.state.drafts.list() if d.state in ("draft", "pending")]
    call = params.get("call") or DEFAULT_CALL
    target = params.get("target") or "live"
    chosen = [s for s in shoppers if s.name in params.getlist("shopper")]
    visitor = (params.get("visitor") or "").strip()[:200]
    columns: list[dict[str, Any]] = []
    problem = ""
    if chosen or visitor:
        compiled: Compiled | None = None
        if target != "live":
            draft = await ui.workflow.draft(target)
            compiled = await ui.compiled(draft.source)
        try:
            day = params.get("day") or None
            hour = int(params["hour"]) if params.get("hour") else None
            base = moment(day, hour)
        except ValueError:
            raise Refused("the preview date must be YYYY-MM-DD and the hour 0-23", 400) from None
        url = storefront_url(call)
        tasks = [
            _column(
                ui,
                s.name,
                url,
                compiled,
                moment(day, s.hour if hour is None else hour) if s.hour is not None else base,
                shopper=s,
            )
            for s in chosen
        ]
        if visitor:
            tasks.append(_column(ui, visitor, url, compiled, base, visitor=visitor))
        columns = list(await asyncio.gather(*tasks))
        problem = next((c["explained"]["error"] for c in columns if "error" in c["explained"]), "")
    return ui.render(
        request,
        "preview.html",
        {
            "shoppers": shoppers,
            "drafts": drafts,
            "call": call,
            "target": target,
            "picked": [s.name for s in chosen],
            "visitor": visitor,
            "day": params.get("day") or "",
            "hour": params.get("hour") or "",
            "columns": columns,
            "problem": problem,
            "devices": DEVICES,
            "preview_ready": ui.storefront is not None,
            "note": params.get("note"),
        },
    )


def _list(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.replace("\n", ",").split(",") if p.strip())


async def save_shopper(ui: Ui, request: Request, user: Account) -> Response:
    submitted = await form(request)
    name = str(submitted.get("name") or "").strip()[:60]
    if not name:
        raise Refused("give the test shopper a name", 422)
    try:
        hour_text = str(submitted.get("hour") or "").strip()
        shopper = SavedShopper(
            name=name,
            anonymous=submitted.get("anonymous") == "on",
            buyer=str(submitted.get("buyer") or "").strip() or None,
            orders=int(submitted.get("orders") or 0),
            spent=float(submitted.get("spent") or 0),
            viewed_categories=_list(str(submitted.get("viewed_categories") or "")),
            cart_products=_list(str(submitted.get("cart_products") or "")),
            segments=_list(str(submitted.get("segments") or "")),
            device=str(submitted.get("device") or "desktop")
            if submitted.get("device") in DEVICES
            else "desktop",
            country=str(submitted.get("country") or "").strip().upper()[:2] or None,
            language=str(submitted.get("language") or "").strip() or None,
            hour=int(hour_text) if hour_text else None,
            note=str(submitted.get("note") or "")[:200],
        )
    except ValueError:
        raise Refused("orders, spend and hour must be numbers", 422) from None
    if shopper.hour is not None and not 0 <= shopper.hour <= 23:
        raise Refused("the hour must be 0-23 (UTC)", 422)
    await ui.state.shoppers.put(shopper)
    await ui.workflow.audit(user.username, "test shopper saved", f"shopper {name}")
    return back(request, f"/preview?shopper={quote(name)}", f"Saved test shopper {name}.")


async def delete_shopper(ui: Ui, request: Request, user: Account) -> Response:
    name = request.path_params["name"]
    if not await ui.state.shoppers.remove(name):
        raise Refused("no such test shopper", 404)
    await ui.workflow.audit(user.username, "test shopper removed", f"shopper {name}")
    return back(request, "/preview", f"Removed test shopper {name}.")
