"""Average the weights of classifier bundles of one trunk and label set (a "model soup").

    python -m classification.average_bundles --bundle models/fashion-lite0 --bundle runs/lite0-swa/fashion-lite0 \
        --out runs/soup/fashion-lite0

Two fine-tunings from the same starting point sit in one basin, so their mean is a model too
(Wortsman et al. 2022, "Model soups"); it often keeps what each gained, and costs nothing at
serving time. The soup takes the first bundle's input size and split; evaluate it as any bundle
(`python -m classification.evaluate --bundle OUT ... --update-manifest`) before serving it.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from . import runtime  # noqa: F401  (backend and import order)
from .bundle import load_bundle, write_bundle  # noqa: E402
from .weight_average import assign_weight_values, weight_values  # noqa: E402
from common.bundles import BundleError  # noqa: E402


def ingredient(folder: Path, manifest: dict, weight: float) -> dict:
    """One bundle of a soup as its manifest records it; its own training record comes along, so the
    soup's manifest says how all of it was made."""
    return {"bundle": str(folder), "version": manifest["version"], "weight": round(float(weight), 6),
            "training": manifest.get("training")}


def average_bundles(folders: Sequence[Path], out: Path, weights: Sequence[float] | None = None,
                    command: str | None = None) -> dict:
    weights = np.asarray(weights if weights is not None else [1.0] * len(folders), dtype=np.float64)
    if len(weights) != len(folders) or len(folders) < 2 or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("give two or more bundles and one non-negative weight per bundle")
    weights = weights / weights.sum()
    model, taxonomy, manifest = load_bundle(folders[0])
    total = [weights[0] * value for value in weight_values(model)]
    sources = [ingredient(folders[0], manifest, weights[0])]
    for folder, weight in zip(folders[1:], weights[1:]):
        other, other_taxonomy, other_manifest = load_bundle(folder)
        if not other_taxonomy.same_classes(taxonomy) or other_manifest["model"].get("trunk") != manifest["model"].get("trunk"):
            raise BundleError(f"{folder}: another trunk or label set than {folders[0]}; only one model's weights average")
        for sum_, value in zip(total, weight_values(other)):
            sum_ += weight * value
        sources.append(ingredient(folder, other_manifest, weight))
    assign_weight_values(model, total)
    training = {"command": command, "soup": sources,
                "what": "the weighted mean of every variable of the bundles above (batch-norm statistics included)"}
    written = write_bundle(out, model, taxonomy, manifest["model"], {"training": training},
                           dtype=manifest["weights"]["dtype"])
    split = Path(folders[0]) / "split.json"
    if split.is_file():
        (out / "split.json").write_bytes(split.read_bytes())
    return written


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, action="append", required=True, help="a bundle to average (twice or more)")
    parser.add_argument("--weight", type=float, action="append", help="one per --bundle, in order (default: equal)")
    parser.add_argument("--out", type=Path, required=True, help="the averaged bundle's folder")
    args = parser.parse_args(argv)
    command = "python -m classification.average_bundles " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    manifest = average_bundles(args.bundle, args.out, args.weight, command)
    print(f"wrote {args.out} ({manifest['name']}:{manifest['version']}) from "
          + ", ".join(f"{s['version']} x{s['weight']:.3f}" for s in manifest["training"]["soup"]))
    return manifest


if __name__ == "__main__":
    main()
