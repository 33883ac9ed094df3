"""Store how many catalogue rows carry each category path in a bundle's manifest (`taxonomy.path_images`),
for bundles written before taxonomies were counted (training counts them now).

The counts decide which paths are the catalogue's labelling slips (Taxonomy.slips: Apparel / Topwear /
Dresses, 2 rows beside 431 under Apparel / Dress), which the served tags show under their articleType's
commonest path. The catalogue must be the one the bundle was trained on: its labels and paths must be the
bundle's, or nothing is written. The weights, and so the bundle's version, are untouched; the category tags'
version gains "+paths-<digest>".

    python -m classification.count_paths --bundle models/fashion-lite0 \
        --catalogue ../shared/datasets/fashion-product-images-small
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

from .catalogue import read_catalogue
from .taxonomy import Taxonomy


def count_paths(bundle: Path, catalogue: Path) -> Taxonomy:
    manifest_file = bundle / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    stored = Taxonomy.from_dict(manifest["taxonomy"])
    counted = Taxonomy.from_records(read_catalogue(catalogue).records)
    if not counted.same_classes(stored):
        raise SystemExit(f"{catalogue}: its labels or category paths differ from {bundle}'s; not the catalogue "
                         "the bundle was trained on")
    manifest["taxonomy"] = counted.to_dict()
    manifest_file.write_text(json.dumps(manifest, indent=2) + "\n")
    return counted


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--catalogue", type=Path, required=True, help="the catalogue folder the bundle was trained on")
    args = parser.parse_args(argv)
    taxonomy = count_paths(args.bundle, args.catalogue)
    for slip, shown in sorted(taxonomy.slips.items()):
        print(f"{' / '.join(taxonomy.paths[slip])} ({taxonomy.path_images[slip]}) -> "
              f"{' / '.join(taxonomy.paths[shown])} ({taxonomy.path_images[shown]})")
    print(f"{len(taxonomy.slips)} slip paths of {len(taxonomy.paths)}; counts written to {args.bundle / 'manifest.json'}")


if __name__ == "__main__":
    main()
