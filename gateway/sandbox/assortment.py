"""What a buyer can browse: their priced products, the category tree and the promotions."""

from __future__ import annotations

import json
from typing import Any

from . import catalog
from .catalog import BUYERS
from .errors import invalid, not_found


class Assortment:
    """The seeded catalog of one sandbox, indexed for the me/products and me/categories routes."""

    def __init__(self) -> None:
        rows = catalog.product_rows()
        self.products: dict[str, dict[str, dict[str, Any]]] = {
            buyer.id: {row["id"]: catalog.buyer_product(row, buyer) for row in rows}
            for buyer in BUYERS
        }
        # Products never change, so each is encoded once; the list route only joins bytes.
        self.product_json: dict[str, dict[str, bytes]] = {
            buyer: {pid: _encode(item) for pid, item in items.items()}
            for buyer, items in self.products.items()
        }
        self.categories = catalog.categories()
        self.category = {item["ID"]: item for item in self.categories}
        self.assigned = catalog.assignments(rows)
        self.promotions = catalog.promotions()
        self.promotion = {item["ID"]: item for item in self.promotions}
        self._children: dict[str | None, list[str]] = {}
        for item in self.categories:
            self._children.setdefault(item["ParentID"], []).append(item["ID"])

    def check_catalog(self, catalog_id: str | None) -> None:
        if catalog_id and catalog_id != catalog.CATALOG_ID:
            raise not_found("Catalog", catalog_id)

    def level(self, category_id: str) -> int:
        """1 for a top-level category, 2 for its children, and so on."""
        depth, parent = 1, self.category[category_id]["ParentID"]
        while parent is not None:
            depth, parent = depth + 1, self.category[parent]["ParentID"]
        return depth

    def products_in(self, category_id: str, depth: str | None) -> set[str]:
        """Products assigned to the category or, within `depth` levels (default all), below it."""
        if category_id not in self.category:
            raise not_found("Category", category_id)
        limit = _depth(depth, default=None)
        found: set[str] = set()
        frontier, level = [category_id], 1
        while frontier and (limit is None or level <= limit):
            for cid in frontier:
                found |= self.assigned[cid]
            frontier = [child for cid in frontier for child in self._children.get(cid, [])]
            level += 1
        return found

    def visible_categories(
        self, depth: str | None, parent_filter: str | None, product_id: str | None
    ) -> list[dict[str, Any]]:
        """Categories within `depth` (default 1) of the top, or of the parent being filtered on."""
        limit = _depth(depth, default=1)
        base = self.level(parent_filter) if parent_filter in self.category else 0
        items = self.categories
        if limit is not None:
            items = [item for item in items if self.level(item["ID"]) <= base + limit]
        if product_id:
            items = [item for item in items if product_id in self.assigned[item["ID"]]]
        return items


def _encode(item: dict[str, Any]) -> bytes:
    return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()


def _depth(value: str | None, default: int | None) -> int | None:
    """A `depth` parameter: a number of levels, or None for 'all'."""
    if value is None or value == "":
        return default
    if value.lower() == "all":
        return None
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise invalid(
        f"depth must be a number of at least 1 or 'all': {value}", data={"Parameter": "depth"}
    )
