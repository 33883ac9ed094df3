"""The catalogue filters of GET /v1/items, parsed once for every place that filters items: the item
listing, similarity searches and the catalogue page."""
from __future__ import annotations

import dataclasses
from typing import Mapping

from .errors import ApiError

TASK_FILTERS = ("gender", "masterCategory", "subCategory", "articleType", "usage", "season")
KINDS = ("product", "garment")


@dataclasses.dataclass(frozen=True)
class ItemFilters:
    filters: dict  # API task name -> label
    colour: str | None = None
    min_confidence: float | None = None
    kind: str | None = None

    @classmethod
    def parse(cls, args: Mapping[str, str]) -> "ItemFilters":
        filters = {name: args[name] for name in TASK_FILTERS if args.get(name)}
        try:
            min_confidence = float(args["min_confidence"]) if args.get("min_confidence") else None
        except ValueError:
            raise ApiError("invalid_request", "min_confidence must be a number")
        if min_confidence is not None and not 0 <= min_confidence <= 1:
            raise ApiError("invalid_request", "min_confidence must be between 0 and 1")
        kind = args.get("kind") or None
        if kind not in (None, *KINDS):
            raise ApiError("invalid_request", "kind must be product or garment")
        return cls(filters, args.get("colour") or None, min_confidence, kind)

    @property
    def active(self) -> bool:
        return bool(self.filters or self.colour or self.min_confidence is not None or self.kind)

    def conditions(self) -> list:
        from .store import item_conditions

        return item_conditions(self.filters, self.colour, self.min_confidence, self.kind)

    def as_query(self) -> dict:
        """Back to query parameters (links that keep the filters)."""
        out = dict(self.filters)
        if self.colour:
            out["colour"] = self.colour
        if self.min_confidence is not None:
            out["min_confidence"] = f"{self.min_confidence:g}"
        if self.kind:
            out["kind"] = self.kind
        return out
