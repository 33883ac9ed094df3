"""Reader for the Kaggle "Fashion Product Images" layout: `styles.csv` + `images/<id>.jpg`.

Copes with both CSV dialects: standard quoting, and Kaggle's own file where commas inside
`productDisplayName` are not quoted (the extra fields are joined back into the name).
"""
from __future__ import annotations

import csv
import dataclasses
import logging
from pathlib import Path

import numpy as np

from .taxonomy import TASKS

log = logging.getLogger(__name__)

COLUMNS = ("id", "gender", "masterCategory", "subCategory", "articleType", "baseColour", "season",
           "year", "usage", "productDisplayName")
# Values the catalogue uses for "unknown"; such a task is left out of that row's loss and metrics.
MISSING_VALUES = {"", "NA", "N/A", "nan", "None"}


@dataclasses.dataclass
class CatalogueRecord:
    id: str
    image_path: Path
    labels: dict[str, str | None]
    name: str = ""

    def __getitem__(self, task: str) -> str | None:
        return self.labels.get(task)

    def get(self, task: str, default=None):
        return self.labels.get(task, default)


@dataclasses.dataclass
class Catalogue:
    root: Path
    records: list[CatalogueRecord]
    missing_images: list[str]
    malformed_rows: list[int]


def _clean(value: str | None) -> str | None:
    value = (value or "").strip()
    return None if value in MISSING_VALUES else value


def read_catalogue(root: str | Path) -> Catalogue:
    """Read `root/styles.csv`; rows whose image file is absent are reported, not returned."""
    root = Path(root)
    records, missing, malformed = [], [], []
    with open(root / "styles.csv", newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = [h.strip() for h in next(reader)]
        if header[: len(COLUMNS) - 1] != list(COLUMNS[:-1]):
            raise ValueError(f"{root / 'styles.csv'}: unexpected header {header}")
        for line_no, row in enumerate(reader, start=2):
            if not row or not any(row):
                continue
            if len(row) < len(COLUMNS) - 1:
                malformed.append(line_no)
                continue
            # Kaggle's file: unquoted commas in the last column split it into several fields.
            fields = row[: len(COLUMNS) - 1] + [",".join(row[len(COLUMNS) - 1:])]
            values = dict(zip(COLUMNS, fields))
            item_id = values["id"].strip()
            image_path = root / "images" / f"{item_id}.jpg"
            if not image_path.is_file():
                missing.append(item_id)
                continue
            labels = {task: _clean(values[task]) for task in TASKS}
            records.append(CatalogueRecord(item_id, image_path, labels, values["productDisplayName"].strip()))
    if missing:
        log.warning("%s: %d rows have no image and were skipped", root, len(missing))
    return Catalogue(root, records, missing, malformed)


def split_ids(records: list[CatalogueRecord], seed: int = 1234, val_fraction: float = 0.1,
              test_fraction: float = 0.1, stratify_by: str = "articleType") -> dict[str, list[str]]:
    """Reproducible train/val/test split, stratified by `stratify_by` where a class has enough items.

    A class with n items gives round(n * fraction) to validation and test; classes too small for that
    stay entirely in training (the model should still see them).
    """
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[str]] = {}
    for record in records:
        by_class.setdefault(record.get(stratify_by) or "", []).append(record.id)
    split = {"train": [], "val": [], "test": []}
    for name in sorted(by_class):
        ids = sorted(by_class[name])
        rng.shuffle(ids)
        n_test = int(round(len(ids) * test_fraction))
        n_val = int(round(len(ids) * val_fraction))
        split["test"] += ids[:n_test]
        split["val"] += ids[n_test:n_test + n_val]
        split["train"] += ids[n_test + n_val:]
    return {k: sorted(v, key=lambda s: (len(s), s)) for k, v in split.items()}
