"""`ocgateway demo`: a scripted shopper journey through the gateway, printed as it happens.

Starts the local OrderCloud sandbox and the gateway on free loopback ports (no credentials, no
network), then plays an anonymous browse → search → view → add to cart → login → transfer →
submit journey, compares what a repeat customer and a newcomer are shown for the same storefront
calls, and prints the tracking events the gateway delivered. It prints the admin UI's address and
a publisher's sign-in; run from a terminal, it then keeps serving until Ctrl-C so the UI can be
tried (preview as jane and joe, edit, publish).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
import tempfile
import time
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx

from console.passwords import hash_password
from gateway import compose
from gateway.app import create_app
from gateway.sandbox import create_app as create_sandbox
from gateway.sandbox.catalog import CLIENT_ID
from gateway.serving import serve_in_thread
from gateway.settings import Settings
from state.accounts import PUBLISHER, Account
from state.shoppers import SavedShopper

DEMO_TABLES = files("decisions").joinpath("demo.yaml")


def _say(text: str = "") -> None:
    print(text, flush=True)


class Shopper:
    """A storefront talking to the gateway the way the OrderCloud SDK does."""

    def __init__(self, client: httpx.Client, name: str) -> None:
        self.client = client
        self.name = name
        self.token: str | None = None

    def call(self, method: str, path: str, note: str = "", **kwargs: Any) -> httpx.Response:
        headers = {"Content-Type": "application/json", "User-Agent": "ocgateway-demo"}
        if self.token and not path.startswith("/oauth"):
            headers["Authorization"] = f"Bearer {self.token}"
        response = self.client.request(method, path, headers=headers, **kwargs)
        shown = path.split("anonUserToken=")[0] + (
            "anonUserToken=…" if "anonUserToken=" in path else ""
        )
        line = f"  {method:<6} {shown:<52} {response.status_code}"
        _say(f"{line}  {note}" if note else line)
        decision = response.headers.get("x-decision")
        if decision:
            _say(f"{'':9}X-Decision: {decision}")
        response.raise_for_status()
        return response

    def token_grant(self, form: dict[str, str], note: str) -> dict[str, Any]:
        answer = self.call("POST", "/oauth/token", note, data=form).json()
        self.token = answer["access_token"]
        return answer


def _ids(response: httpx.Response) -> str:
    return ", ".join(item["ID"] for item in response.json()["Items"])


def _journey(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=10) as client:
        _say("\n1. An anonymous shopper browses, searches, views and fills a cart")
        guest = Shopper(client, "guest")
        anon = guest.token_grant(
            {"grant_type": "client_credentials", "client_id": CLIENT_ID, "scope": "Shopper"},
            "anonymous token",
        )
        products = guest.call("GET", "/v1/me/products?pageSize=4", "newcomer's home page")
        _say(f"{'':9}shown: {_ids(products)}")
        found = guest.call("GET", "/v1/me/products?search=chronograph&pageSize=3", "search")
        _say(f"{'':9}found: {_ids(found)}")
        guest.call("GET", "/v1/me/products/p-007", "product page")
        line = guest.call(
            "POST", "/v1/cart/lineitems", "add to cart", json={"ProductID": "p-007", "Quantity": 1}
        ).json()
        guest.call(
            "PATCH", f"/v1/cart/lineitems/{line['ID']}", "quantity 1 → 2", json={"Quantity": 2}
        )
        guest.call(
            "POST", "/v1/cart/lineitems", "add another", json={"ProductID": "p-013", "Quantity": 1}
        )

        _say("\n2. She logs in as jane (a repeat customer); the gateway stitches her guest journey")
        jane = Shopper(client, "jane")
        jane.token_grant(
            {
                "grant_type": "password",
                "client_id": CLIENT_ID,
                "username": "jane",
                "password": "jane-pass",
                "scope": "Shopper",
            },
            "password login",
        )
        jane.call("PUT", f"/v1/me/orders?anonUserToken={anon['access_token']}", "transfer the cart")
        order = jane.call("POST", "/v1/cart/submit", "submit").json()
        _say(f"{'':9}order {order['ID']}: {order['LineItemCount']} lines, total {order['Total']}")

        _say("\n3. Same storefront calls, two shoppers: jane (repeat customer) and joe (newcomer)")
        joe = Shopper(client, "joe")
        joe.token_grant(
            {
                "grant_type": "password",
                "client_id": CLIENT_ID,
                "username": "joe",
                "password": "joe-pass",
                "scope": "Shopper",
            },
            "joe logs in",
        )
        for shopper in (jane, joe):
            _say(f"   {shopper.name}:")
            listed = shopper.call("GET", "/v1/me/products?pageSize=4", "products")
            _say(f"{'':9}shown: {_ids(listed)}")
            promos = shopper.call("GET", "/v1/me/promotions", "promotions")
            _say(f"{'':9}shown: {_ids(promos)}")


def _summary(event: dict[str, Any]) -> str:
    data = event.get("data") or {}
    if "lineitem" in data:
        line = data["lineitem"] or {}
        return f"{line.get('ProductID')} × {line.get('Quantity')}"
    if "order" in data:
        order = data["order"] or {}
        lines = data.get("lineitems") or []
        products = data.get("products") or {}
        return (
            f"order {order.get('ID')} total {order.get('Total')}: {len(lines)} line items, "
            f"{len(products)} products and the user hydrated"
        )
    if "product" in data:
        return str((data["product"] or {}).get("ID"))
    if "search" in data:
        return f"search {data['search']!r}"
    if "table" in data:
        return f"{data['table']}/{data['rule']} variant {data['variant']}"
    if event.get("previous_visitor"):
        return f"stitched from {event['previous_visitor']}"
    if "history" in data:
        history = data["history"]
        return f"logged in; {history['orders']} past orders, {history['spent']} spent"
    return ""


def _events(path: Path, wait: float = 5.0) -> list[dict[str, Any]]:
    """The delivered events, once the submit and the decision exposures have landed."""
    deadline = time.monotonic() + wait
    seen: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if path.exists():
            seen = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            types = {event.get("type") for event in seen}
            if {"orders.submitted", "decisions.exposed"} <= types:
                break
        time.sleep(0.05)
    return seen


def run() -> int:
    with tempfile.TemporaryDirectory(prefix="ocgateway-demo-") as tmp:
        events_file = Path(tmp) / "events.jsonl"
        tables = Path(tmp) / "tables.yaml"
        tables.write_text(DEMO_TABLES.read_text())
        with serve_in_thread(create_sandbox()) as sandbox:
            settings = Settings(
                upstream_url=sandbox,  # type: ignore[arg-type]
                store=Path(tmp) / "ocgateway.db",
                events_file=events_file,
                decisions=tables,
                preview_username="joe",
                preview_password="joe-pass",
                preview_client_id=CLIENT_ID,
            )
            password = secrets.token_urlsafe(9)
            asyncio.run(_marketers(settings, password))
            with serve_in_thread(create_app(settings), lifespan="on") as gateway:
                _say("ocgateway demo")
                _say(f"  OrderCloud sandbox  {sandbox}")
                _say(f"  gateway             {gateway}   (the storefront's baseApiUrl)")
                _say(f"  decision tables     {DEMO_TABLES}")
                _say(
                    f"  admin UI            {gateway}/admin/   sign in as {DEMO_USER} / {password}"
                )
                _journey(gateway)
                events = _events(events_file)
                _events_report(events)
                if sys.stdin.isatty():
                    _say(f"\nThe admin UI stays up at {gateway}/admin/: sign in as {DEMO_USER}")
                    _say(f"with {password}, preview as jane and joe, edit, publish. Ctrl-C stops.")
                    _wait()
    return 0


DEMO_USER = "marketer"


async def _marketers(settings: Settings, password: str) -> None:
    """A publisher account and the two test shoppers, in the demo's temporary store."""
    state = await compose.open_store(settings)
    try:
        await state.console.accounts.put(
            Account(DEMO_USER, PUBLISHER, hash_password(password), time.time())
        )
        await state.console.shoppers.put(
            SavedShopper("jane", orders=3, spent=640.0, buyer="acme", note="repeat customer")
        )
        await state.console.shoppers.put(SavedShopper("joe", buyer="acme", note="newcomer"))
    finally:
        await state.close()


def _wait() -> None:
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _say("")


def _events_report(events: list[dict[str, Any]]) -> None:
    _say(f"\n4. Events the gateway delivered (JSON lines destination), {len(events)} in all")
    for event in events:
        browser = (event.get("browser_id") or "")[:8]
        _say(
            f"  {event['type']:<22} {event.get('visitor') or '-':<28} bid {browser:<8}  "
            f"{_summary(event)}"
        )
    _say("\nNo browser beacon was involved: every event came from the OrderCloud calls above.")
