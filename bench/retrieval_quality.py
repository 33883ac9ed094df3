"""Retrieval quality of the similarity search's embeddings: precision@10 of "more like this".

    nice -n 15 .venv/bin/python bench/retrieval_quality.py [--catalogue-queries 2000] [--photos all]

- Catalogue: the classifier bundle's held-out test split of fashion-product-images-small (its
  split.json, the 3,997 thumbnails it never trained on) is the gallery; `--catalogue-queries` of them,
  drawn at random (seed 1234), are the queries, each searched against the rest of the gallery. A
  neighbour counts when it has the query's articleType (and, separately, its baseColour; queries
  without a colour are left out of that figure).
- Phone photos: the clothing-dataset photos of the validation senders (split.json's photo.val: senders
  the classifier never saw), each against the others; a neighbour counts when it carries the same
  label (the same articleType group: "Pants", "Shoes", ...).
- Search by photo: the same photos, and the garment crops of the held-out Clothing Co-Parsing photos
  (the bundle's split.json street.val, cut from the annotations as the training crops are), each
  searched in the catalogue test split; a thumbnail found counts when the photo's or crop's label
  allows its articleType (a Pants photo finding Jeans or Trousers).

Embeddings are the service's: Classifier.embed on the whole image (an item of kind product), rounded to
float16 as stored, searched exactly; beside each figure its chance level (the share of same-label
pairs) and its ceiling (a label with n items in the gallery has only n - 1 others to find). Also the
recall@10 of the service's IVF index against exact search on these real vectors. Each figure is also
given as the service searches by default, with query expansion (`with_query_expansion`: the query
expanded by its SIMILARITY_QUERY_EXPANSION nearest others, app.similarity). Writes
bench/results/retrieval-quality-<time>.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402,F401  (before TensorFlow)
import torchvision  # noqa: E402,F401
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm import tqdm  # noqa: E402

from app.config import Settings  # noqa: E402
from app.similarity import EXPANSION_ALPHA, expanded_query  # noqa: E402
from app.vector_index import VectorIndex  # noqa: E402
from bench.results import write_report  # noqa: E402
from classification.catalogue import read_catalogue  # noqa: E402
from classification.embedding_head import precision_at_k  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.label_map import LabelMap  # noqa: E402
from classification.data import load_image  # noqa: E402
from classification.photo_datasets import read_labelled_photos, read_street_crops  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
PHOTO_LABEL_MAP = ROOT / "classification" / "label_maps" / "clothing-dataset.json"
STREET_LABEL_MAP = ROOT / "classification" / "label_maps" / "clothing-co-parsing.json"


def embed_files(classifier: Classifier, paths: list[Path], batch: int = 64, desc: str = "") -> np.ndarray:
    def decoded(path: Path) -> np.ndarray:
        with Image.open(path) as picture:
            return np.asarray(picture.convert("RGB"))
    return embed_images(classifier, [decoded(path) for path in paths], batch, desc)


def embed_images(classifier: Classifier, images: list[np.ndarray], batch: int = 64, desc: str = "") -> np.ndarray:
    out = [classifier.embed(images[start:start + batch])
           for start in tqdm(range(0, len(images), batch), desc=f"embedding {desc}", unit="batch")]
    return np.concatenate(out).astype(np.float16).astype(np.float32)  # as the database stores them


def search_in_catalogue(query_vectors: np.ndarray, queries: list, vectors: np.ndarray, gallery: list, k: int,
                        expansion: int) -> dict:
    """Precision@k of each query (a labelled photo or crop) searched in the catalogue gallery: a found
    thumbnail counts when the query's label allows its articleType; plain, and with the service's query
    expansion (the query expanded by its `expansion` nearest thumbnails, as app.similarity does)."""
    allowed = np.array([[r.get("articleType") in query.allowed.get("articleType", ()) for r in gallery] for query in queries])

    def precision(query_of) -> float:
        return float(np.mean([allowed[row, np.argsort(-(vectors @ query_of(row)), kind="stable")[:k]].mean()
                              for row in range(len(queries))]))

    def expanded(row: int) -> np.ndarray:
        cosines = vectors @ query_vectors[row]
        nearest = np.argsort(-cosines, kind="stable")[:expansion]
        return expanded_query(query_vectors[row], vectors[nearest], cosines[nearest], EXPANSION_ALPHA)

    out = {"queries": len(queries), "gallery": len(gallery), f"precision@{k}_allowed": round(precision(lambda row: query_vectors[row]), 4),
           "chance_allowed": round(float(allowed.mean()), 4)}
    if expansion:
        out["with_query_expansion"] = {"nearest": expansion, f"precision@{k}_allowed": round(precision(expanded), 4)}
    return out


def expanded_queries(vectors: np.ndarray, rows, count: int, alpha: float = EXPANSION_ALPHA) -> np.ndarray:
    """The gallery rows' vectors expanded as the service expands a query (app.similarity.expanded_query),
    each by its `count` nearest others in the gallery (itself left out)."""
    out = []
    for row in rows:
        cosines = vectors @ vectors[row]
        cosines[row] = -np.inf
        nearest = np.argsort(-cosines, kind="stable")[:count]
        out.append(expanded_query(vectors[row], vectors[nearest], cosines[nearest], alpha))
    return np.stack(out)


def expanded_precision(vectors: np.ndarray, labels, query_rows: np.ndarray, k: int, count: int) -> float:
    """Precision@k as the service searches with query expansion: each query expanded by its `count`
    nearest others in the gallery, then searched exactly, the query itself left out both times."""
    names = np.array([label or "" for label in labels], dtype=object)
    rows = np.asarray([row for row in query_rows if names[row]])
    found = expanded_queries(vectors, rows, count) @ vectors.T
    found[np.arange(len(rows)), rows] = -np.inf
    top = np.argsort(-found, axis=1, kind="stable")[:, :k]
    return float((names[top] == names[rows][:, None]).mean())


def ivf_recall(vectors: np.ndarray, query_rows: np.ndarray, k: int, nprobe: int) -> dict:
    """The service's IVF index (forced on, whatever the size) against exact search on real vectors."""
    ids = np.arange(len(vectors), dtype=np.int64)
    index = VectorIndex(vectors.shape[1], exact_max=0, nprobe=nprobe)
    index.add(ids, vectors)
    recalls = []
    for row in query_rows:
        exact = np.argsort(-(vectors @ vectors[row]), kind="stable")[:k]
        found, _ = index.search(vectors[row], k)
        recalls.append(len(set(found.tolist()) & set(exact.tolist())) / k)
    return {"index": index.kind, "vectors": len(vectors), "nprobe": nprobe, f"recall@{k}": round(float(np.mean(recalls)), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=ROOT / "models" / "fashion-lite0")
    parser.add_argument("--catalogue", type=Path, default=DATASETS / "fashion-product-images-small")
    parser.add_argument("--photos", type=Path, default=DATASETS / "clothing-dataset")
    parser.add_argument("--street", type=Path, default=DATASETS / "clothing-co-parsing",
                        help="Clothing Co-Parsing folder: its held-out photos' garment crops searched in the catalogue")
    parser.add_argument("--catalogue-queries", type=int, default=2000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--query-expansion", type=int, default=Settings().similarity_query_expansion,
                        help="nearest items expanding each query, as SIMILARITY_QUERY_EXPANSION (default: the service's)")
    args = parser.parse_args()

    started = time.perf_counter()
    classifier = Classifier(args.bundle)
    split = json.loads((args.bundle / "split.json").read_text())
    rng = np.random.default_rng(args.seed)
    report = {"bundle": classifier.embedding_version, "embedding_dim": classifier.embedding_dim, "k": args.k,
              "embedding": "trained head (classification.embedding_head)" if classifier.embedding_head else "pooled trunk features"}

    catalogue = {r.id: r for r in read_catalogue(args.catalogue).records}
    gallery = [catalogue[i] for i in split["test"] if i in catalogue]
    vectors = embed_files(classifier, [r.image_path for r in gallery], desc="catalogue test split")
    queries = np.sort(rng.choice(len(gallery), min(args.catalogue_queries, len(gallery)), replace=False))
    article = precision_at_k(vectors, [r.get("articleType") for r in gallery], queries, args.k)
    colour = precision_at_k(vectors, [r.get("baseColour") for r in gallery], queries, args.k)
    report["catalogue"] = {
        "gallery": len(gallery), "queries": len(queries),
        f"precision@{args.k}_articleType": round(article.precision, 4), "chance_articleType": round(article.chance, 4),
        "ceiling_articleType": round(article.ceiling, 4),
        f"precision@{args.k}_baseColour": round(colour.precision, 4), "chance_baseColour": round(colour.chance, 4),
        "ceiling_baseColour": round(colour.ceiling, 4), "queries_with_colour": colour.queries, "ivf": ivf_recall(vectors, queries[:500], args.k, args.nprobe)}
    if args.query_expansion:
        report["catalogue"]["with_query_expansion"] = {
            "nearest": args.query_expansion,
            f"precision@{args.k}_articleType": round(expanded_precision(
                vectors, [r.get("articleType") for r in gallery], queries, args.k, args.query_expansion), 4),
            f"precision@{args.k}_baseColour": round(expanded_precision(
                vectors, [r.get("baseColour") for r in gallery], queries, args.k, args.query_expansion), 4)}
    print(json.dumps(report["catalogue"]))

    from classification.bundle import read_manifest
    from classification.taxonomy import Taxonomy

    taxonomy = Taxonomy.from_dict(read_manifest(args.bundle)["taxonomy"])
    photos = {r.id: r for r in read_labelled_photos(args.photos, LabelMap.load(PHOTO_LABEL_MAP), taxonomy)}
    val = [photos[i] for i in split["photo"]["val"] if i in photos]
    photo_vectors = embed_files(classifier, [r.image_path for r in val], desc="validation senders' photos")
    photo_queries = np.arange(len(val))
    group = precision_at_k(photo_vectors, [r.source_label for r in val], photo_queries, args.k)
    report["photos"] = {"gallery": len(val), "queries": len(val), "senders": len({r.group for r in val}),
                        f"precision@{args.k}_label": round(group.precision, 4), "chance_label": round(group.chance, 4),
                        "ceiling_label": round(group.ceiling, 4),
                        "baseColour": "not labelled in this dataset"}
    if args.query_expansion:
        report["photos"]["with_query_expansion"] = {"nearest": args.query_expansion, f"precision@{args.k}_label": round(
            expanded_precision(photo_vectors, [r.source_label for r in val], photo_queries, args.k, args.query_expansion), 4)}
    print(json.dumps(report["photos"]))

    # Search by photo: each validation photo, and each garment crop of the held-out street photos, searched
    # in the catalogue test split (a shopper's photo against a shop's products).
    report["photos_in_catalogue"] = search_in_catalogue(photo_vectors, val, vectors, gallery, args.k, args.query_expansion)
    print(json.dumps(report["photos_in_catalogue"]))
    if args.street:
        street_split = json.loads((args.bundle / "split.json").read_text())["street"]["val"]
        crops = {r.id: r for r in read_street_crops(args.street, LabelMap.load(STREET_LABEL_MAP), taxonomy)}
        held_out = [crops[i] for i in street_split if i in crops]
        crop_vectors = embed_images(classifier, [load_image(r) for r in held_out], desc="held-out street crops")
        report["street_crops_in_catalogue"] = search_in_catalogue(crop_vectors, held_out, vectors, gallery, args.k,
                                                                  args.query_expansion)
        print(json.dumps(report["street_crops_in_catalogue"]))
    report["seconds"] = round(time.perf_counter() - started, 1)
    write_report("retrieval-quality", report)


if __name__ == "__main__":
    main()
