"""How often the served category lands on a slip path, and two ways of handling it.

    nice -n 15 .venv/bin/python bench/taxonomy_slips.py [--bundle models/fashion-lite0]

A slip path is one the catalogue used for an articleType a handful of times beside a path holding ten
times as many rows (Taxonomy.slips: Apparel / Topwear / Dresses, 2 rows, beside 431 under Apparel /
Dress). The joint decoder scores every path by its levels' log-probabilities, so a dress photo whose
subCategory probability leans to Topwear lands on Apparel / Topwear / Dresses. Three decodings of the
same served probabilities (mirror view, neighbour vote, feature heads) on the held-out images of the
three kinds, scored as `classification.evaluate` scores them:

- as scored: every path, shown as chosen (what served before the bundle's paths were counted);
- pruned: slip paths left out of the decoder (measured, not kept);
- shown (served): chosen as scored, a slip shown under its articleType's commonest path.

The bundle's manifest must hold its path counts (`python -m classification.count_paths`). About 6 min on
the 2 cores. Writes bench/results/taxonomy-slips-<time>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow, the backend first)

from bench.results import write_report  # noqa: E402
from classification.data import load_images  # noqa: E402
from classification.decoding import HierarchyDecoder  # noqa: E402
from classification.evaluate import allowed_set_scores, decoded_indices, held_out_records, true_indices  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.taxonomy import HIERARCHY_LEVELS, Taxonomy  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"


def decoders(taxonomy: Taxonomy) -> dict[str, HierarchyDecoder]:
    slips = {taxonomy.paths[index] for index in taxonomy.slips}
    return {"as scored": HierarchyDecoder(dataclasses.replace(taxonomy, path_images=())),
            "pruned": HierarchyDecoder(Taxonomy(labels=taxonomy.labels,
                                                paths=tuple(p for p in taxonomy.paths if p not in slips))),
            "shown (served)": HierarchyDecoder(taxonomy)}


def path_of(described: dict) -> tuple[str, str, str]:
    return tuple(described[level]["label"] for level in HIERARCHY_LEVELS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    args = parser.parse_args()
    classifier = Classifier(args.bundle)
    taxonomy = classifier.taxonomy
    if not taxonomy.slips:
        raise SystemExit(f"{args.bundle}: no slip paths (are its paths counted? python -m classification.count_paths)")
    slips = {taxonomy.paths[index]: taxonomy.paths[shown] for index, shown in taxonomy.slips.items()}
    records = held_out_records(args.bundle, DATASETS / "fashion-product-images-small", DATASETS / "clothing-dataset",
                               DATASETS / "clothing-co-parsing")
    report = {"bundle": classifier.versions, "slips": [{"path": list(p), "shown_as": list(s)} for p, s in slips.items()],
              "kinds": {}}
    for kind, kind_records in records.items():
        probs = classifier.predict_proba(load_images(kind_records, desc=kind))
        rows = {}
        for name, decoder in decoders(taxonomy).items():
            classifier.decoder = decoder
            described = classifier.describe(probs)
            on_slips = Counter(path_of(d) for d in described if path_of(d) in slips)
            row = {"images": len(kind_records), "decoded_to_a_slip_path": sum(on_slips.values()),
                   "commonest_slips": [[*path, count] for path, count in on_slips.most_common(5)]}
            if kind == "catalogue":
                for task in HIERARCHY_LEVELS:
                    true, pred = true_indices(kind_records, classifier, task), decoded_indices(classifier, described, task)
                    row[task] = round(float((true == pred)[true != -1].mean()), 4)
            else:
                scores, _, _ = allowed_set_scores([r.allowed for r in kind_records],
                                                  [r.source_label for r in kind_records], described)
                row.update({key: round(value, 4) for key, value in scores.items() if isinstance(value, float)})
            rows[name] = row
            print(kind, name, row, flush=True)
        report["kinds"][kind] = rows
    write_report("taxonomy-slips", report)


if __name__ == "__main__":
    main()
