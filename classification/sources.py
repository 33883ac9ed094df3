"""Every labelled source of a training run, read into records by kind with the split of each kind.

- catalogue rows: an 80/10/10 train/val/test split stratified by articleType;
- phone photos (optional): split by sender;
- street-photo garment crops (optional): split by photo (the detector's split when given).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from .catalogue import split_ids
from .label_map import LabelMap
from .photo_datasets import (STREET_CROP_MARGIN, cut_street_crop, read_labelled_photos, read_street_instances,
                             split_by_group, split_street_crops)
from .records import from_catalogue
from .taxonomy import Taxonomy

HELD_OUT_PART = {"catalogue": "test", "photo": "val", "street": "val"}
LABEL_MAPS = Path(__file__).parent / "label_maps"


def add_source_arguments(parser: argparse.ArgumentParser, catalogue_required: bool = True) -> None:
    """The options naming the three sources and their label maps (train and packed_data take the same)."""
    parser.add_argument("--catalogue", "--data", dest="catalogue", type=Path, required=catalogue_required,
                        help="catalogue folder in the Kaggle layout (styles.csv + images/)")
    parser.add_argument("--photos", type=Path, help="labelled phone photos (images.csv + images/)")
    parser.add_argument("--photo-label-map", type=Path, default=LABEL_MAPS / "clothing-dataset.json")
    parser.add_argument("--street", type=Path, help="Clothing Co-Parsing folder (garment crops)")
    parser.add_argument("--street-label-map", type=Path, default=LABEL_MAPS / "clothing-co-parsing.json")
    parser.add_argument("--street-split", type=Path, help="the detector's photo split (train/val photo ids)")
    parser.add_argument("--split-seed", type=int, default=1234,
                        help="the seed of the train/val/test split (kept apart from --seed, the training order: a run "
                             "continuing a bundle must keep that bundle's held-out images out of training)")
    parser.add_argument("--street-train-margin", type=float, default=STREET_CROP_MARGIN,
                        help="context around the TRAINING street crops, a fraction of the box on every side; "
                             "held-out crops keep %(default)s, as the pipeline crops detections")


def read_sources(catalogue_records, taxonomy: Taxonomy, photos: Path | None = None,
                 photo_label_map: Path | None = None, street: Path | None = None,
                 street_label_map: Path | None = None, street_split: Path | None = None,
                 seed: int = 1234, street_train_margin: float = STREET_CROP_MARGIN) -> tuple[dict, dict]:
    """All records by kind, and the split of each kind's record ids (the catalogue's parts at the
    top level, each other kind's under its name). Street crops of the training photos are cut with
    `street_train_margin` of context (a wider one lets augmentation vary the framing); held-out crops
    always with the pipeline's."""
    split = split_ids(catalogue_records, seed=seed)
    records = {"catalogue": from_catalogue(catalogue_records)}
    if photos:
        records["photo"] = read_labelled_photos(photos, LabelMap.load(photo_label_map), taxonomy)
        split["photo"] = split_by_group(records["photo"], seed=seed)
    if street:
        instances = read_street_instances(street, LabelMap.load(street_label_map), taxonomy)
        records["street"] = [cut_street_crop(i) for i in instances]
        split["street"] = split_street_crops(records["street"], street_split, seed=seed)
        if street_train_margin != STREET_CROP_MARGIN:  # the same instances, the training ones cut wider
            train = set(split["street"]["train"])
            records["street"] = [cut_street_crop(i, street_train_margin if i.record.id in train else STREET_CROP_MARGIN)
                                 for i in instances]
    return records, split


def describe_sources(args, catalogue, rows_used: int) -> dict:
    """What a manifest (or a pack) says of where the records came from; `args` carries the CLI's
    source options (train and packed_data share them)."""
    def path(value):
        return str(value) if value else None

    return {"catalogue": str(args.catalogue), "rows_used": rows_used,
            "rows_missing_image": len(catalogue.missing_images),
            "photos": path(args.photos), "photo_label_map": path(args.photos and args.photo_label_map),
            "street": path(args.street), "street_label_map": path(args.street and args.street_label_map),
            "street_split": path(args.street_split),
            "street_train_margin": args.street_train_margin}


def held_out_leaks(split: dict, earlier: dict) -> dict[str, int]:
    """For each kind, how many record ids an earlier run held out (a bundle's split.json) that `split`
    trains on: a run continuing that bundle must find none, or its held-out figures would flatter it."""
    leaks = {}
    for kind, part in HELD_OUT_PART.items():
        try:
            held_out = set(kind_split(earlier, kind)[part])
            train = set(kind_split(split, kind)["train"])
        except KeyError:  # a kind one of the two runs did not use
            continue
        if leaked := held_out & train:
            leaks[kind] = len(leaked)
    return leaks


def kind_split(split: dict, kind: str) -> dict:
    """The parts (train/val[/test]) of one kind's record ids."""
    return {k: v for k, v in split.items() if k in ("train", "val", "test")} if kind == "catalogue" else split[kind]
