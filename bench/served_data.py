"""The command-line options of the probes that read the served classifier's cached features: the data options
of classification.train_embedding_head, defaulting to the served bundle, the three datasets beside the project
and the feature cache the neighbour vote's builder fills (`runs/knn`)."""
from __future__ import annotations

import argparse
from pathlib import Path

from classification.train_embedding_head import add_data_arguments

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"


def add_served_data_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser, required=False)  # every path has a default here
    parser.set_defaults(bundle=ROOT / "models" / "fashion-lite0", catalogue=DATASETS / "fashion-product-images-small",
                        photos=DATASETS / "clothing-dataset", street=DATASETS / "clothing-co-parsing",
                        run_dir=ROOT / "runs" / "knn")
