"""Product fields read from configurable paths into an OrderCloud product (mostly its `xp`).

Every marketplace shapes `xp` its own way, so which value becomes Send's `itemImage` (or a CDP
order item extension) is configuration, not code. The default follows the shapes Sitecore's
OrderCloud + Send integration material uses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

DEFAULT = (
    "itemImage=xp.Images.0.url,itemUrl=xp.url,itemCategory=xp.category,"
    "itemManufacturer=xp.manufacturer,itemSupplier=xp.supplier"
)


def read_path(value: Any, path: str) -> Any:
    """The value at a dotted path (`xp.Images.0.url`); None when any step is missing.

    A numeric step indexes a list. Keys match exactly first, then case-insensitively, because
    OrderCloud matches property names case-insensitively and `xp` authors are not consistent.
    """
    current = value
    for step in path.split("."):
        if isinstance(current, list):
            if not step.isdigit() or int(step) >= len(current):
                return None
            current = current[int(step)]
        elif isinstance(current, dict):
            if step in current:
                current = current[step]
                continue
            folded = step.casefold()
            current = next((v for k, v in current.items() if k.casefold() == folded), None)
        else:
            return None
        if current is None:
            return None
    return current


@dataclass(frozen=True, slots=True)
class ProductFields:
    """(field name, path into the product) pairs, in the order they were configured."""

    pairs: tuple[tuple[str, str], ...]

    @classmethod
    def parse(cls, text: str) -> ProductFields:
        """`name=path,name=path`, or a JSON object of name to path; raise ValueError if bad."""
        text = text.strip()
        if text.startswith("{"):
            mapping = json.loads(text)
            if not all(isinstance(v, str) for v in mapping.values()):
                raise ValueError("every path must be a string")
            pairs = [(str(k).strip(), v.strip()) for k, v in mapping.items()]
        else:
            pairs = []
            for part in filter(None, (p.strip() for p in text.split(","))):
                name, sep, path = part.partition("=")
                pairs.append((name.strip(), path.strip()))
                if not sep:
                    raise ValueError(f"expected name=path, got {part!r}")
        for name, path in pairs:
            if not name or not path or any(not step for step in path.split(".")):
                raise ValueError(f"bad field mapping {name!r}={path!r}")
        return cls(tuple(pairs))

    def values(self, product: dict[str, Any]) -> dict[str, Any]:
        """The configured fields that have a value in `product`."""
        found = {name: read_path(product, path) for name, path in self.pairs}
        return {name: value for name, value in found.items() if value is not None}


DEFAULT_FIELDS = ProductFields.parse(DEFAULT)
