"""A packed training set: the records of every kind, their label sets, the taxonomy and the split,
with the images decoded once, shrunk and re-encoded into one blob per kind.

Why: training on another machine (a lent GPU) needs the data there, and the three sources are 210 MB
of small files plus Clothing Co-Parsing's .mat annotations (read and cut into crops on one core).
A pack of the training and validation parts is about 50 MB (WebP at 160 px, quality 80), decodes in seconds with threads,
and carries the real split, so a bundle trained from it is evaluated on the same held-out images
as one trained from the folders.

    python -m classification.packed_data --catalogue ../shared/datasets/fashion-product-images-small \
        --photos ../shared/datasets/clothing-dataset --street ../shared/datasets/clothing-co-parsing \
        --street-split models/ccp-maskrcnn-efflite0/split.json --out runs/pack

then `python -m classification.train --packed runs/pack ...` instead of the three folders. The held-out
parts (catalogue test, photo and street validation) are left out unless asked for (--parts): they are
scored where the full data is, with `classification.evaluate`.

Layout: `records.json.gz` (taxonomy, split, sources, and per kind the records in blob order) and
`images-<kind>.npz` (`data`: the encoded images end to end, `offsets`: where each starts and ends).
"""
from __future__ import annotations

import argparse
import dataclasses
import gzip
import io
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from .catalogue import read_catalogue
from .data import load_image
from .records import LabelledImage
from .sources import add_source_arguments, describe_sources, kind_split, read_sources
from .taxonomy import Taxonomy

RECORDS = "records.json.gz"
FORMAT_VERSION = 1


def blob_path(folder: Path, kind: str) -> Path:
    return Path(folder) / f"images-{kind}.npz"


def encode(image: np.ndarray, image_format: str, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, image_format, quality=quality)
    return buffer.getvalue()


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image.convert("RGB"), dtype=np.uint8)


def write_pack(out: Path, records: dict[str, list[LabelledImage]], split: dict, taxonomy: Taxonomy,
               sources: dict, parts: Sequence[str] = ("train", "val"), max_side: int = 192,
               image_format: str = "WEBP", quality: int = 85) -> dict:
    """Pack the records of `parts` of each kind; returns what records.json says (less the records)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kinds = {}
    for kind, kind_records in records.items():
        wanted = set().union(*(kind_split(split, kind).get(part, ()) for part in parts))
        chosen = [r for r in kind_records if r.id in wanted]
        # Catalogue thumbnails are kept whole (60x80); photos and crops shrunk to max_side.
        side = None if kind == "catalogue" else max_side

        def encoded(record, side=side):
            return encode(load_image(record, side), image_format, quality)

        with ThreadPoolExecutor(max_workers=4) as pool:
            blobs = list(tqdm(pool.map(encoded, chosen), total=len(chosen), desc=f"packing {kind}", leave=False))
        offsets = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        np.savez(blob_path(out, kind), data=np.frombuffer(b"".join(blobs), np.uint8), offsets=offsets)
        kinds[kind] = [{"id": r.id, "allowed": {t: list(v) for t, v in r.allowed.items()}, "label": r.source_label,
                        "group": r.group} for r in chosen]
    meta = {"format": FORMAT_VERSION, "taxonomy": taxonomy.to_dict(), "split": split, "sources": sources,
            "parts": list(parts), "max_side": max_side, "image_format": image_format, "quality": quality}
    with gzip.open(out / RECORDS, "wt", encoding="utf-8") as handle:
        json.dump({**meta, "records": kinds}, handle)
    return {**meta, "counts": {k: len(v) for k, v in kinds.items()},
            "bytes": {k: blob_path(out, k).stat().st_size for k in kinds}}


@dataclasses.dataclass
class Pack:
    folder: Path
    taxonomy: Taxonomy
    split: dict
    sources: dict
    records: dict[str, list[LabelledImage]]
    parts: list[str]
    max_side: int

    def images(self, kind: str, threads: int = 8) -> list[np.ndarray]:
        """The decoded images of one kind, in the order of `records[kind]`."""
        with np.load(blob_path(self.folder, kind)) as blob:
            data, offsets = blob["data"].tobytes(), blob["offsets"]
        chunks = [data[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
        if len(chunks) != len(self.records[kind]):
            raise ValueError(f"{blob_path(self.folder, kind)}: {len(chunks)} images for {len(self.records[kind])} records")
        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(tqdm(pool.map(decode, chunks), total=len(chunks), desc=f"decoding {kind}", leave=False))


def read_pack(folder: Path) -> Pack:
    folder = Path(folder)
    with gzip.open(folder / RECORDS, "rt", encoding="utf-8") as handle:
        meta = json.load(handle)
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"{folder}: pack format {meta.get('format')}, this code reads {FORMAT_VERSION}")
    records = {kind: [LabelledImage(r["id"], blob_path(folder, kind), kind,
                                    {t: tuple(v) for t, v in r["allowed"].items()}, r["label"], group=r["group"])
                      for r in rows]
               for kind, rows in meta["records"].items()}
    return Pack(folder, Taxonomy.from_dict(meta["taxonomy"]), meta["split"], meta["sources"], records, meta["parts"],
                meta["max_side"])


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(parser)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--parts", nargs="+", default=["train", "val"], choices=["train", "val", "test"])
    parser.add_argument("--max-side", type=int, default=192, help="photos and crops are kept at most this large")
    parser.add_argument("--format", dest="image_format", default="WEBP", choices=["WEBP", "JPEG"])
    parser.add_argument("--quality", type=int, default=85)
    args = parser.parse_args(argv)
    catalogue = read_catalogue(args.catalogue)
    taxonomy = Taxonomy.from_records(catalogue.records)
    records, split = read_sources(catalogue.records, taxonomy, args.photos, args.photo_label_map, args.street,
                                  args.street_label_map, args.street_split, seed=args.split_seed,
                                  street_train_margin=args.street_train_margin)
    sources = describe_sources(args, catalogue, len(catalogue.records))
    summary = write_pack(args.out, records, split, taxonomy, sources, args.parts, args.max_side, args.image_format,
                         args.quality)
    print(json.dumps({k: summary[k] for k in ("parts", "max_side", "image_format", "quality", "counts", "bytes")}))
    return summary


if __name__ == "__main__":
    main()
