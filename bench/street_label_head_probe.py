"""Probe: the street crops' source-label head fitted on features read at the garment size.

    nice -n 5 .venv/bin/python bench/street_label_head_probe.py

The served bundle's source-label head of the street labels (classification.feature_heads) was fitted on the
pooled features of the training crops read at the images' input size (160x120), while the pipeline reads
garments at the garment size (192x144). This fits the same head again, in the same way
(classification.fit_feature_heads.fit_label_head: the same grid, chosen on the validation crops, with the same
cross-half estimate of what holds on crops that chose nothing), on features read at the garment size, and
scores the held-out street crops read at the garment size three ways: without a source-label head, with the
served one, with the refitted one (the bundle's neighbour vote, task heads and kind gate as served in every
case). Nothing is written to the bundle. Writes bench/results/street-label-head-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow)
import numpy as np  # noqa: E402

from bench.results import write_report  # noqa: E402
from classification.build_neighbour_vote import scores  # noqa: E402
from classification.data import load_images  # noqa: E402
from classification.feature_heads import FeatureHeads, load_heads  # noqa: E402
from classification.fit_feature_heads import fit_label_head  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.train_embedding_head import add_data_arguments, read_records  # noqa: E402
from classification.taxonomy import Taxonomy  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
KIND = "street"


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, required=False)
    parser.add_argument("--halvings", type=int, default=5)
    parser.set_defaults(bundle=ROOT / "models" / "fashion-lite0", catalogue=DATASETS / "fashion-product-images-small",
                        street=DATASETS / "clothing-co-parsing")
    args = parser.parse_args(argv)
    started = time.time()
    classifier = Classifier(args.bundle, feature_heads=False)  # the network and its neighbour vote, no heads
    # the served heads, read from the bundle as the Classifier reads them (its networks are loaded once, above)
    served = load_heads(args.bundle, (classifier.manifest.get("feature_heads") or {}).get("version"))
    if served is None or not any(head.kind == KIND for head in served.label_heads):
        raise SystemExit(f"{args.bundle} has no {KIND} source-label head to compare with")
    split = json.loads((args.bundle / "split.json").read_text())
    records, _ = read_records(args, Taxonomy.from_dict(classifier.manifest["taxonomy"]), split)
    features, base = {}, {}
    for part in ("train", "val"):
        key = (KIND, part)
        # training crops shrunk as the head's training read them; held-out crops as the evaluate CLI reads them
        images = load_images(records[key], args.max_side if part == "train" else None, desc=f"decoding {KIND}/{part}")
        features[key], probs = classifier.embedding_inputs(images, garments=[True] * len(images))
        base[key] = FeatureHeads(served.heads, served.gate).mix(classifier.voted(features[key], probs), features[key])
    val = (KIND, "val")
    refit, report = fit_label_head(KIND, classifier, records, features, base, served.gate, args.halvings)
    as_served = FeatureHeads((), served.gate, tuple(h for h in served.label_heads if h.kind == KIND))
    figures = {"without a source-label head": scores(classifier, val, records[val], base[val]),
               "the served head (fitted at the input size)": scores(classifier, val, records[val],
                                                                    as_served.mix(base[val], features[val]))}
    if refit is not None:
        figures["the head refitted at the garment size"] = scores(
            classifier, val, records[val], FeatureHeads((), served.gate, (refit,)).mix(base[val], features[val]))
    result = {"bundle": str(args.bundle), "version": classifier.manifest["version"],
              "garment_input_size": list(classifier.garment_input_size), "crops": {k[1]: len(v) for k, v in features.items()},
              "served_head_weight": as_served.label_heads[0].weight,
              "held_out_street_crops_at_the_garment_size": figures,
              "refit": {k: v for k, v in report.items() if k != "candidates"}, "candidates": report["candidates"],
              "seconds": round(time.time() - started, 1)}
    write_report("street-label-head", result)
    for name, figure in figures.items():
        print(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in figure.items()))
    print(f"refit: C {report['C']}, weight {report['weight']}; cross-half {report['cross_half'].get('before')} -> "
          f"{report['cross_half'].get('after')}")
    return result


if __name__ == "__main__":
    main()
