"""The catalogue filters of GET /v1/items, parsed once for every place that filters items: the item
listing, similarity searches and the catalogue page."""
from __future__ import annotations

import dataclasses
from typing import Mapping

from .errors import ApiError

TASK_FILTERS = ("gender", "masterCategory", "subCategory", "articleType", "usage", "season")
KINDS = ("product", "garment")
# Which of an image's analyses items come from: its current one (the newest: what the service now says
# about the image) or every analysis kept (earlier model bundles' too, for comparing them).
ANALYSES = ("current", "all")


@dataclasses.dataclass(frozen=True)
class ItemFilters:
    filters: dict  # API task name -> label
    colour: str | None = None
    min_confidence: float | None = None
    kind: str | None = None
    labelled: bool | None = None  # True: items a person labelled; False: those nobody has (a review queue)
    analyses: str = "current"  # "all": items of every analysis an image keeps, not only its current one

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
        labelled = args.get("labelled") or None
        if labelled not in (None, "true", "false"):
            raise ApiError("invalid_request", "labelled must be true or false")
        analyses = args.get("analyses") or "current"
        if analyses not in ANALYSES:
            raise ApiError("invalid_request", "analyses must be current or all")
        return cls(filters, args.get("colour") or None, min_confidence, kind,
                   None if labelled is None else labelled == "true", analyses)

    @property
    def active(self) -> bool:
        return bool(self.filters or self.colour or self.min_confidence is not None or self.kind
                    or self.labelled is not None or self.analyses != "current")

    def conditions(self) -> list:
        from .store import item_conditions

        return item_conditions(self.filters, self.colour, self.min_confidence, self.kind, self.labelled,
                               self.analyses)

    def as_query(self) -> dict:
        """Back to query parameters (links that keep the filters)."""
        out = dict(self.filters)
        if self.colour:
            out["colour"] = self.colour
        if self.min_confidence is not None:
            out["min_confidence"] = f"{self.min_confidence:g}"
        if self.kind:
            out["kind"] = self.kind
        if self.labelled is not None:
            out["labelled"] = "true" if self.labelled else "false"
        if self.analyses != "current":
            out["analyses"] = self.analyses
        return out
