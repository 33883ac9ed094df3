"""Label sets for the seven tasks and the category hierarchy, built from a catalogue's records."""
from __future__ import annotations

import dataclasses
import functools
from collections import Counter
from typing import Iterable, Mapping

CATEGORY_TASKS = ("gender", "masterCategory", "subCategory", "articleType")
STYLE_TASKS = ("baseColour", "season", "usage")
TASKS = CATEGORY_TASKS + STYLE_TASKS
# The three levels decoded jointly: the answer is always one of the observed paths.
HIERARCHY_LEVELS = ("masterCategory", "subCategory", "articleType")
# A path is a labelling slip when another path of its articleType holds this many times its records.
SLIP_RATIO = 10
# The two models the bundle serves; each is a named, versioned group of outputs of one network.
MODEL_GROUPS = {"category": CATEGORY_TASKS, "style": STYLE_TASKS}


@dataclasses.dataclass(frozen=True)
class Taxonomy:
    labels: Mapping[str, tuple[str, ...]]
    # Every (masterCategory, subCategory, articleType) triple seen in the data. Not a strict tree:
    # one articleType may sit under two parents (e.g. Socks under Apparel and Accessories).
    paths: tuple[tuple[str, str, str], ...]
    # How many records carry each path (aligned with `paths`); empty in taxonomies stored before they
    # were counted, which then have no slips.
    path_images: tuple[int, ...] = ()

    @classmethod
    def from_records(cls, records: Iterable[Mapping[str, str | None]]) -> "Taxonomy":
        records = list(records)
        labels = {
            task: tuple(sorted({r[task] for r in records if r.get(task)})) for task in TASKS
        }
        paths = Counter(
            tuple(r[level] for level in HIERARCHY_LEVELS)
            for r in records
            if all(r.get(level) for level in HIERARCHY_LEVELS)
        )
        return cls(labels=labels, paths=tuple(sorted(paths)), path_images=tuple(paths[p] for p in sorted(paths)))

    def index(self, task: str, label: str | None) -> int:
        """Class index of `label`, or -1 when it is missing or unknown to this taxonomy."""
        if not label:
            return -1
        try:
            return self._lookup[task][label]
        except KeyError:
            return -1

    @functools.cached_property
    def _lookup(self) -> dict[str, dict[str, int]]:
        return {t: {name: i for i, name in enumerate(names)} for t, names in self.labels.items()}

    def path_indices(self) -> list[tuple[int, int, int]]:
        return [
            tuple(self.index(level, name) for level, name in zip(HIERARCHY_LEVELS, path))
            for path in self.paths
        ]

    def num_classes(self, task: str) -> int:
        return len(self.labels[task])

    def same_classes(self, other: "Taxonomy") -> bool:
        """The same labels and paths, so the same network outputs (whether or not either was counted)."""
        return dict(self.labels) == dict(other.labels) and self.paths == other.paths

    @functools.cached_property
    def slips(self) -> dict[int, int]:
        """Path index -> the index of the path to show instead. A path of an articleType that another path of
        the same articleType outnumbers SLIP_RATIO times over is a labelling slip of the catalogue (Apparel /
        Topwear / Dresses: 2 rows, beside 431 under Apparel / Dress / Dresses): an image decoded to it is shown
        under its articleType's commonest path, whose parents the catalogue means."""
        if not self.path_images:
            return {}
        by_type: dict[str, list[int]] = {}
        for index, path in enumerate(self.paths):
            by_type.setdefault(path[2], []).append(index)
        slips = {}
        for indices in by_type.values():
            commonest = max(indices, key=lambda i: self.path_images[i])
            for index in indices:
                if self.path_images[commonest] >= SLIP_RATIO * max(self.path_images[index], 1):
                    slips[index] = commonest
        return slips

    def to_dict(self) -> dict:
        out = {"labels": {t: list(v) for t, v in self.labels.items()}, "paths": [list(p) for p in self.paths]}
        if self.path_images:
            out["path_images"] = list(self.path_images)
        return out

    @classmethod
    def from_dict(cls, data: Mapping) -> "Taxonomy":
        return cls(
            labels={t: tuple(v) for t, v in data["labels"].items()},
            paths=tuple(tuple(p) for p in data["paths"]),
            path_images=tuple(int(n) for n in data.get("path_images", ())),
        )
