"""Why a table document was rejected, in words a marketer can act on."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class TableError:
    """One problem, located by table, rule and field, and by file line when there is a file."""

    message: str
    table: str | None = None
    rule: str | None = None
    segment: str | None = None
    field: str | None = None
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file or '<document>'}:{self.line}" if self.line else (self.file or "")
        parts = [
            f"table {self.table}" if self.table else "",
            f"rule {self.rule}" if self.rule else "",
            f"segment {self.segment}" if self.segment else "",
            f"field {self.field}" if self.field else "",
        ]
        named = ", ".join(p for p in parts if p)
        return ": ".join(p for p in (where, named, self.message) if p)

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if v is not None}


class ValidationFailed(Exception):
    """A document that must not go live; the last good version keeps serving."""

    def __init__(self, errors: list[TableError]) -> None:
        super().__init__("; ".join(str(e) for e in errors[:5]))
        self.errors = errors
