"""A static, fast, OrderCloud-like upstream for the proxy benchmark.

The sandbox computes every answer and would be the bottleneck, so the benchmark serves fixed bytes:
nginx when it is installed (`nginx_config`), otherwise the tiny keep-alive HTTP/1.1 responder below
(asyncio + uvloop + httptools). Both serve the same files written by `write_documents`.

Run the Python responder alone: `python bench/upstream.py --port 8999 --docs DIR`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from email.utils import formatdate
from pathlib import Path
from typing import Any

PRODUCT_COUNT = 20
BUYER_ID = "acme"
USER_ID = "jane"


def product(number: int) -> dict[str, Any]:
    """One BuyerProduct shaped like OrderCloud's (a subset of its fields), about 0.6 KB of JSON."""
    product_id = f"prod-{number:03d}"
    price = round(9.5 + number * 1.25, 2)
    return {
        "PriceSchedule": {
            "OwnerID": "seller",
            "ID": f"ps-{product_id}",
            "ApplyTax": True,
            "ApplyShipping": True,
            "MinQuantity": 1,
            "MaxQuantity": None,
            "PriceBreaks": [{"Quantity": 1, "Price": price, "SalePrice": None}],
            "Currency": "USD",
            "IsOnSale": False,
            "xp": None,
        },
        "ID": product_id,
        "ParentID": None,
        "IsParent": False,
        "IsBundle": False,
        "Name": f"Trail Shoe {number}",
        "Description": "A light trail running shoe.",
        "QuantityMultiplier": 1,
        "ShipWeight": 1.1,
        "Active": True,
        "SpecCount": 0,
        "VariantCount": 0,
        "Inventory": {"Enabled": True, "QuantityAvailable": 40 + number},
        "DefaultSupplierID": None,
        "Returnable": True,
        "DateCreated": "2026-01-05T10:00:00+00:00",
        "xp": {"brand": "Northwind", "color": ["red", "blue"][number % 2]},
    }


def product_list(products: list[dict[str, Any]]) -> dict[str, Any]:
    """A ListPageWithFacets of the given products (first page of 20)."""
    return {
        "Meta": {
            "Facets": [],
            "Page": 1,
            "PageSize": 20,
            "TotalCount": len(products),
            "TotalPages": 1,
            "ItemRange": [1, len(products)],
            "NextPageKey": None,
        },
        "Items": products,
    }


def me_user() -> dict[str, Any]:
    """The registered buyer user the benchmark token belongs to."""
    return {
        "Buyer": {"ID": BUYER_ID, "DefaultCatalogID": BUYER_ID},
        "Supplier": None,
        "Seller": None,
        "ID": USER_ID,
        "CompanyID": BUYER_ID,
        "Username": "jane@example.com",
        "FirstName": "Jane",
        "LastName": "Doe",
        "Email": "jane@example.com",
        "Phone": None,
        "TermsAccepted": None,
        "Active": True,
        "xp": None,
        "AvailableRoles": ["Shopper", "MeAdmin"],
        "Locale": {"ID": "en-us", "OwnerID": "seller", "Currency": "USD", "Language": "en-US"},
        "DateCreated": "2026-01-05T10:00:00+00:00",
        "LastActive": None,
        "PasswordLastSetDate": None,
    }


def documents(public_jwk: dict[str, Any]) -> dict[str, bytes]:
    """Every path the upstream answers, mapped to its fixed JSON body."""
    products = [product(n) for n in range(1, PRODUCT_COUNT + 1)]
    docs = {
        "/v1/me": me_user(),
        "/v1/me/products": product_list(products),
        f"/oauth/certs/{public_jwk['kid']}": public_jwk,
    }
    docs.update({f"/v1/me/products/{item['ID']}": item for item in products})
    return {path: json.dumps(body, separators=(",", ":")).encode() for path, body in docs.items()}


def write_documents(root: Path, docs: dict[str, bytes]) -> None:
    """Write each body to `root` + path + `.json`, readable by nginx's unprivileged workers."""
    for path, body in docs.items():
        target = root / (path.lstrip("/") + ".json")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
    for entry in [root, *root.rglob("*")]:
        entry.chmod(0o755 if entry.is_dir() else 0o644)


def read_documents(root: Path) -> dict[str, bytes]:
    """The inverse of `write_documents`."""
    return {
        "/" + str(file.relative_to(root).with_suffix("")): file.read_bytes()
        for file in root.rglob("*.json")
    }


def nginx_config(root: Path, port: int) -> str:
    """A self-contained nginx config (no root paths outside `root`) serving the documents."""
    run = root.parent
    return f"""
daemon off;
worker_processes 1;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {run}/nginx-body;
    proxy_temp_path {run}/nginx-proxy;
    fastcgi_temp_path {run}/nginx-fastcgi;
    uwsgi_temp_path {run}/nginx-uwsgi;
    scgi_temp_path {run}/nginx-scgi;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    sendfile on;
    tcp_nodelay on;
    open_file_cache max=100 inactive=600s;
    types {{ }}
    default_type application/json;
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        root {root};
        location / {{ try_files $uri.json =404; }}
    }}
}}
"""


class _Responder(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection answering from prebuilt responses."""

    def __init__(self, responses: dict[str, bytes], not_found: bytes) -> None:
        import httptools

        self._responses = responses
        self._not_found = not_found
        self._parser = httptools.HttpRequestParser(self)
        self._url = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except Exception:  # noqa: BLE001 - a malformed request just closes the connection
            if self._transport is not None:
                self._transport.close()

    def on_message_begin(self) -> None:
        self._url = b""

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_message_complete(self) -> None:
        path = self._url.split(b"?", 1)[0].decode("latin-1")
        assert self._transport is not None
        self._transport.write(self._responses.get(path, self._not_found))
        if not self._parser.should_keep_alive():
            self._transport.close()


def _response(status: str, body: bytes) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nServer: bench-upstream\r\nDate: {formatdate(usegmt=True)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def serve(port: int, docs: dict[str, bytes], host: str = "127.0.0.1") -> None:
    """Serve `docs` forever on host:port (GET only; the method is not checked)."""
    responses = {path: _response("200 OK", body) for path, body in docs.items()}
    not_found = _response(
        "404 Not Found", b'{"Errors":[{"ErrorCode":"NotFound","Message":"Not found","Data":null}]}'
    )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: _Responder(responses, not_found), host, port, backlog=4096, reuse_address=True
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--docs", type=Path, required=True, help="folder written by write_documents"
    )
    args = parser.parse_args()
    try:
        from uvloop import run
    except ImportError:
        from asyncio import run
    try:
        run(serve(args.port, read_documents(args.docs)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
