"""Put a thumbnail specialist into a served bundle (classification.thumbnail_specialist).

    python -m classification.attach_thumbnail_specialist --bundle models/fashion-lite0 \
        --specialist runs/cat-light2/fashion-lite0 --weight 1.0 --min-gate 0.5 --write

Copies what the specialist is served with (its manifest, weights, embedding head, neighbour vote and feature
heads; not its split or reports) into the bundle's `thumbnail_specialist/` folder and names it in the
bundle's manifest with how it is mixed in. The specialist must read the bundle's input size and taxonomy,
and have feature heads or a vote of its own (without them it reads thumbnails worse than the served
stack: docs/classifier-runs.md). `--remove` takes it out again. Without --write: what would be done.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from common.bundles import BundleError

from .bundle import MANIFEST, read_manifest
from .embedding_head import HEAD_FILE
from .feature_heads import HEADS_FILE
from .neighbour_vote import VOTE_FILE
from .thumbnail_specialist import FOLDER, MANIFEST_KEY, specialist_version

SERVED_FILES = (MANIFEST, HEAD_FILE, VOTE_FILE, HEADS_FILE)


def specialist_entry(bundle_manifest: dict, specialist_manifest: dict, weight: float, min_gate: float,
                     command: str) -> dict:
    """The served manifest's record of the specialist; refused when it cannot serve beside the bundle."""
    if specialist_manifest["taxonomy"] != bundle_manifest["taxonomy"]:
        raise BundleError("the specialist's taxonomy is not the bundle's: its tags could not be mixed")
    if specialist_manifest["model"]["input_size"] != bundle_manifest["model"]["input_size"]:
        raise BundleError("the specialist reads another input size than the bundle")
    if not (specialist_manifest.get("neighbour_vote") or specialist_manifest.get("feature_heads")):
        raise BundleError("the specialist has no vote or feature heads of its own (build them on its bundle first)")
    if not (bundle_manifest.get("feature_heads") or {}).get("kind_gate"):
        raise BundleError("the bundle has no kind gate to say which images are thumbnails")
    return {"folder": FOLDER, "weight": weight, "min_gate": min_gate,
            "version": specialist_version(specialist_manifest, weight, min_gate),
            "what": "whole images the kind gate reads as catalogue thumbnails (catalogue probability >= min_gate) "
                    "also read by a network trained on thumbnails alone, with its own vote and feature heads, "
                    "mixed in by weight x that probability (classification.thumbnail_specialist)",
            "specialist": {"version": specialist_manifest["version"],
                           "training": (specialist_manifest.get("training") or {}).get("command")},
            "command": command}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--specialist", type=Path, help="a bundle trained on thumbnails alone, with its own vote and heads")
    parser.add_argument("--weight", type=float, default=1.0)
    parser.add_argument("--min-gate", type=float, default=0.5)
    parser.add_argument("--remove", action="store_true", help="take the bundle's specialist out")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args(argv)
    manifest = read_manifest(args.bundle)
    target = args.bundle / FOLDER
    if args.remove:
        manifest.pop(MANIFEST_KEY, None)
        print(f"removing {target} and the manifest's {MANIFEST_KEY!r}")
        if args.write:
            shutil.rmtree(target, ignore_errors=True)
            (args.bundle / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        return
    if args.specialist is None:
        parser.error("--specialist is required (or --remove)")
    specialist_manifest = read_manifest(args.specialist)
    command = "python -m classification.attach_thumbnail_specialist " + " ".join(sys.argv[1:] if argv is None else argv)
    entry = specialist_entry(manifest, specialist_manifest, args.weight, args.min_gate, command)
    files = [specialist_manifest["weights"]["file"], *(name for name in SERVED_FILES if (args.specialist / name).is_file())]
    print(json.dumps({"copies": files, "into": str(target), MANIFEST_KEY: entry}, indent=2))
    if not args.write:
        return
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for name in files:
        shutil.copy2(args.specialist / name, target / name)
    manifest[MANIFEST_KEY] = entry
    (args.bundle / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
