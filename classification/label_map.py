"""A label map: a file that says which taxonomy labels each of a dataset's own labels allows.

    {"description": "...", "ignore": ["Not sure"],
     "labels": {"Pants": {"masterCategory": ["Apparel"], "articleType": ["Trousers", "Jeans", ...]}}}

Any task may be listed (gender, usage, ...). subCategory, when not listed, follows from the
taxonomy's paths through the allowed masterCategories and articleTypes, so the three hierarchy
levels a label allows are always consistent. Labels under "ignore" are skipped; a label that is
neither mapped nor ignored is an error, so a new label in a user's data is never silently dropped.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Mapping

from .taxonomy import HIERARCHY_LEVELS, TASKS, Taxonomy


class LabelMapError(ValueError):
    pass


class UnresolvableLabel(LabelMapError):
    """A mapped label allows nothing the taxonomy knows (e.g. a small taxonomy without bags):
    readers skip its images and say how many."""


@dataclasses.dataclass(frozen=True)
class LabelMap:
    labels: Mapping[str, Mapping[str, tuple[str, ...]]]
    ignore: frozenset[str]
    source: str = ""

    @classmethod
    def load(cls, path: str | Path) -> "LabelMap":
        data = json.loads(Path(path).read_text())
        labels = {}
        for name, tasks in data.get("labels", {}).items():
            unknown = set(tasks) - set(TASKS)
            if unknown:
                raise LabelMapError(f"{path}: label {name!r} names unknown tasks {sorted(unknown)}")
            labels[name] = {task: tuple(values) for task, values in tasks.items()}
        return cls(labels, frozenset(data.get("ignore", ())), str(path))

    def allowed(self, label: str, taxonomy: Taxonomy) -> dict[str, tuple[str, ...]] | None:
        """Task -> allowed labels for a source label, resolved against `taxonomy`; None if ignored."""
        if label in self.ignore:
            return None
        if label not in self.labels:
            raise LabelMapError(f"{self.source}: label {label!r} is neither mapped nor ignored")
        entry = self.labels[label]
        out = {}
        for task, values in entry.items():
            known = tuple(v for v in values if taxonomy.index(task, v) >= 0)
            if not known:
                raise UnresolvableLabel(f"{self.source}: label {label!r}: none of {list(values)} is a {task} "
                                    "the taxonomy knows")
            out[task] = known
        if "articleType" in out:
            masters = set(out.get("masterCategory", taxonomy.labels["masterCategory"]))
            subs = set(out.get("subCategory", taxonomy.labels["subCategory"]))
            paths = [p for p in taxonomy.paths if p[0] in masters and p[1] in subs and p[2] in out["articleType"]]
            if not paths:
                raise UnresolvableLabel(f"{self.source}: label {label!r} allows no path of the taxonomy")
            for i, level in enumerate(HIERARCHY_LEVELS):
                out[level] = tuple(sorted({p[i] for p in paths}))
        return out
