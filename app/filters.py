"""The catalogue filters of GET /v1/items, parsed once for every place that filters items: the item
listing, similarity searches and the catalogue page."""
from __future__ import annotations

import dataclasses
import difflib
import functools
from pathlib import Path
from typing import Mapping

from .errors import ApiError

TASK_FILTERS = ("gender", "masterCategory", "subCategory", "articleType", "usage", "season")
KINDS = ("product", "garment")
# Which of an image's analyses items come from: its current one (the newest: what the service now says
# about the image) or every analysis kept (earlier model bundles' too, for comparing them).
ANALYSES = ("current", "all")


@functools.lru_cache(maxsize=4)
def serving_labels(bundle: Path) -> dict[str, list[str]]:
    """The labels of each task of the classifier bundle, read from its manifest (no model load)."""
    from classification.bundle import read_manifest

    return read_manifest(bundle)["taxonomy"]["labels"]


def known_labels(bundle: Path) -> dict[str, list[str]] | None:
    """serving_labels, or None while the bundle cannot be read (stored items stay listable, unchecked)."""
    try:
        return serving_labels(bundle)
    except (OSError, ValueError, KeyError):
        return None


def canonical_labels(filters: dict[str, str], labels: Mapping[str, list[str]]) -> dict[str, str]:
    """Each task filter spelt as the classifier spells the label (any case is taken: `tshirts` is
    Tshirts). A label it does not know would match nothing and read as "no such items": unknown_label
    instead, with the nearest labels it does know."""
    canonical = {}
    for task, value in filters.items():
        known = labels.get(task, [])
        by_case = {label.casefold(): label for label in known}
        if value.casefold() in by_case:
            canonical[task] = by_case[value.casefold()]
            continue
        nearest = [by_case[m] for m in difflib.get_close_matches(value.casefold(), list(by_case), n=3, cutoff=0.6)]
        hint = f"; did you mean {' or '.join(repr(n) for n in nearest)}?" if nearest else ""
        raise ApiError("unknown_label", f"{task} {value!r} is not a label of the serving classifier{hint} "
                       "(GET /v1/taxonomy lists them)", task=task, label=value, did_you_mean=nearest)
    return canonical


@dataclasses.dataclass(frozen=True)
class ItemFilters:
    filters: dict  # API task name -> label
    colour: str | None = None
    min_confidence: float | None = None
    kind: str | None = None
    labelled: bool | None = None  # True: items a person labelled; False: those nobody has (a review queue)
    analyses: str = "current"  # "all": items of every analysis an image keeps, not only its current one
    # Items whose tag is less sure than this: with labelled=false, what a person should look at first.
    max_confidence: float | None = None

    @classmethod
    def parse(cls, args: Mapping[str, str], labels: Mapping[str, list[str]] | None = None) -> "ItemFilters":
        """The query's filters; task filters checked against `labels` (the serving classifier's) when given."""
        filters = {name: args[name] for name in TASK_FILTERS if args.get(name)}
        if labels is not None:
            filters = canonical_labels(filters, labels)
        min_confidence, max_confidence = (_confidence(args, name) for name in ("min_confidence", "max_confidence"))
        if None not in (min_confidence, max_confidence) and max_confidence <= min_confidence:
            raise ApiError("invalid_request", "max_confidence must be above min_confidence")
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
                   None if labelled is None else labelled == "true", analyses, max_confidence)

    @property
    def active(self) -> bool:
        return bool(self.filters or self.colour or self.min_confidence is not None or self.kind
                    or self.labelled is not None or self.analyses != "current" or self.max_confidence is not None)

    def conditions(self) -> list:
        from .store import item_conditions

        return item_conditions(self.filters, self.colour, self.min_confidence, self.kind, self.labelled,
                               self.analyses, self.max_confidence)

    def as_query(self) -> dict:
        """Back to query parameters (links that keep the filters)."""
        out = dict(self.filters)
        if self.colour:
            out["colour"] = self.colour
        if self.min_confidence is not None:
            out["min_confidence"] = f"{self.min_confidence:g}"
        if self.max_confidence is not None:
            out["max_confidence"] = f"{self.max_confidence:g}"
        if self.kind:
            out["kind"] = self.kind
        if self.labelled is not None:
            out["labelled"] = "true" if self.labelled else "false"
        if self.analyses != "current":
            out["analyses"] = self.analyses
        return out


def _confidence(args: Mapping[str, str], name: str) -> float | None:
    """A confidence bound of the query (min_confidence: at least; max_confidence: under), or None."""
    if not args.get(name):
        return None
    try:
        value = float(args[name])
    except ValueError:
        raise ApiError("invalid_request", f"{name} must be a number")
    if not 0 <= value <= 1:
        raise ApiError("invalid_request", f"{name} must be between 0 and 1")
    return value
