"""Ideas for the served tags and "more like this" that were measured and not kept, rerunnable.

    nice -n 15 .venv/bin/python bench/vote_probes.py [--run-dir runs/knn]

Everything here starts from the served bundle's cached pooled features and model probabilities (the
feature cache of classification.build_neighbour_vote, shared with train_embedding_head: 20-25 min to
fill on the 2 cores, then about 12 min for these probes). Every choice is made on the catalogue
**validation** split; the test split, the validation senders' phone photos and the held-out street crops
chose nothing. Probes:

1. `joint_gender`: gender decoded jointly with the category path, with a term lambda x log P(gender |
   articleType) counted on the catalogue training rows (smoothed by alpha).
2. `vote_space`: the neighbour vote searched in other spaces than the embedding head's projection: the
   pooled trunk features themselves (1280-d) and their whitened PCA to 256-d (fitted on the vote's rows).
3. `style_parameters`: k / temperature / weight chosen per style task (gender, baseColour, season, usage:
   decoded on their own), the category levels keeping the served parameters.
4. `query_expansion`: "more like this" searched again from the query plus its n nearest gallery items
   (weighted by cosine^alpha), on each held-out gallery.
5. `own_photos`: a shop labels some of its own photos and adds them as vote rows, no retraining: the
   validation senders split in two halves at random (6 draws), one half joins the vote, the other half is
   measured (articleType group, mean over labels) with the model alone, the served vote, and the vote with
   the added rows.
6. `type_boost`: "more like this" (with the served query expansion) ranking up by `beta` the items whose
   served articleType is the query's.

Writes bench/results/vote-probes-<time>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow, the backend first)

import numpy as np  # noqa: E402

from bench.results import write_report  # noqa: E402
from bench.retrieval_quality import expanded_queries  # noqa: E402
from classification.build_neighbour_vote import scores  # noqa: E402
from classification.embedding_head import l2_normalise  # noqa: E402
from classification.evaluate import decoded_indices, true_indices  # noqa: E402
from classification.neighbour_vote import NeighbourVote, project, vote_rows  # noqa: E402
from classification.taxonomy import TASKS  # noqa: E402
from classification.train_embedding_head import add_data_arguments, bundle_features  # noqa: E402

DATASETS = ROOT.parent / "shared" / "datasets"
VAL, TEST = ("catalogue", "val"), ("catalogue", "test")
GRID = {"k": (3, 5, 10, 20), "temperature": (0.02, 0.05, 0.1), "weight": (0.2, 0.35, 0.5, 0.65)}
STYLE_TASKS = ("gender", "baseColour", "season", "usage")


def accuracy(true: np.ndarray, predicted: np.ndarray) -> float:
    known = true >= 0
    return round(float((true[known] == predicted[known]).mean()), 4)


class Probes:
    def __init__(self, args):
        manifest, self.classifier, self.records, self.features, self.probs = bundle_features(args)
        self.taxonomy = self.classifier.taxonomy
        self.train_keys = [key for key in self.records if key[1] == "train"]
        self.held_out = [key for key in self.records if key[1] != "train"]
        train_records = [r for key in self.train_keys for r in self.records[key]]
        train_probs = {t: np.concatenate([self.probs[key][t] for key in self.train_keys]) for t in TASKS}
        self.labels, self.distributions = vote_rows(train_records, train_probs, self.taxonomy, TASKS)
        parameters = manifest["neighbour_vote"]["parameters"]  # the served vote's (k, temperature, weight)
        self.served = (parameters["k"], parameters["temperature"], parameters["weight"])

    def vote(self, space) -> tuple[NeighbourVote, dict]:
        """A vote over the training rows in `space` (features -> unit vectors), and each held-out part's
        20 nearest rows."""
        vote = NeighbourVote(vectors=np.concatenate([space(self.features[key]) for key in self.train_keys]),
                             labels=self.labels, distributions=self.distributions,
                             classes={t: self.taxonomy.num_classes(t) for t in TASKS}, head_version="probe")
        return vote, {key: vote.neighbours(space(self.features[key]), k=max(GRID["k"])) for key in self.held_out}

    def mixed(self, vote: NeighbourVote, neighbours: dict, key, parameters) -> dict:
        candidate = vote.with_parameters(*parameters)
        return candidate.mixed(self.probs[key], candidate.votes(*neighbours[key]))

    def figures(self, vote, neighbours, parameters) -> dict:
        return {"/".join(key): scores(self.classifier, key, self.records[key], self.mixed(vote, neighbours, key, parameters))
                for key in self.held_out}

    def projection(self, features):
        return project(self.classifier.embedding_head, features)

    @functools.cached_property
    def projection_vote(self) -> tuple[NeighbourVote, dict]:
        """The served vote's rows in the served space (the embedding head's projection), built once."""
        return self.vote(self.projection)

    # ---- 1 -------------------------------------------------------------------------------------------

    def joint_gender(self) -> dict:
        vote, neighbours = self.projection_vote
        decoder = self.classifier.decoder
        train = self.records[("catalogue", "train")]
        articles = true_indices(train, self.classifier, "articleType")
        genders = true_indices(train, self.classifier, "gender")
        known = (articles >= 0) & (genders >= 0)
        counts = np.zeros((self.taxonomy.num_classes("articleType"), self.taxonomy.num_classes("gender")))
        np.add.at(counts, (articles[known], genders[known]), 1)
        out = {}
        for key in (VAL, TEST):
            probs = self.mixed(vote, neighbours, key, self.served)
            truth = {t: true_indices(self.records[key], self.classifier, t) for t in ("gender", "articleType")}
            for lam, alpha in [(0.0, 1.0)] + list(itertools.product((0.25, 0.5, 1.0, 2.0), (0.1, 1.0, 5.0))):
                smoothed = counts + alpha
                log_given = np.log(smoothed / smoothed.sum(axis=1, keepdims=True))[decoder.paths[:, 2]]  # (paths, genders)
                total = (decoder.path_scores(probs)[:, :, None] + np.log(probs["gender"] + 1e-9)[:, None, :]
                         + lam * log_given[None])
                best = total.reshape(len(total), -1).argmax(axis=1)
                genders_of = log_given.shape[1]
                out.setdefault(f"lambda {lam} alpha {alpha}", {})["/".join(key)] = {
                    "gender": accuracy(truth["gender"], best % genders_of),
                    "articleType": accuracy(truth["articleType"], decoder.paths[best // genders_of, 2])}
        return out

    # ---- 2 -------------------------------------------------------------------------------------------

    def vote_space(self) -> dict:
        train = np.concatenate([self.features[key] for key in self.train_keys]).astype(np.float32)
        mean = train.mean(axis=0)
        _, singular, axes = np.linalg.svd(train - mean, full_matrices=False)

        def whitened_pca(features):
            return l2_normalise((features.astype(np.float32) - mean) @ axes[:256].T / singular[:256])

        spaces = {"projection (served)": self.projection,
                  "pooled features": lambda f: l2_normalise(f.astype(np.float32)),
                  "whitened PCA 256": whitened_pca}
        out = {}
        for name, space in spaces.items():
            vote, neighbours = self.projection_vote if space == self.projection else self.vote(space)
            best = max(itertools.product(*GRID.values()), key=lambda p: sum(
                scores(self.classifier, VAL, self.records[VAL], self.mixed(vote, neighbours, VAL, p)).values()))
            out[name] = {"chosen (k, temperature, weight)": best, **self.figures(vote, neighbours, best)}
            print(name, json.dumps(out[name]), flush=True)
        return out

    # ---- 3 -------------------------------------------------------------------------------------------

    def style_parameters(self) -> dict:
        vote, neighbours = self.projection_vote
        out = {}
        for task in STYLE_TASKS:
            def task_accuracy(key, parameters, task=task):
                predicted = self.mixed(vote, neighbours, key, parameters)[task].argmax(axis=1)
                return accuracy(true_indices(self.records[key], self.classifier, task), predicted)
            best = max(itertools.product(*GRID.values()), key=lambda p: task_accuracy(VAL, p))
            out[task] = {"served": {"parameters": self.served, "val": task_accuracy(VAL, self.served),
                                    "test": task_accuracy(TEST, self.served)},
                         "chosen on val": {"parameters": best, "val": task_accuracy(VAL, best),
                                           "test": task_accuracy(TEST, best)}}
        return out

    # ---- 4 -------------------------------------------------------------------------------------------

    def gallery(self, key) -> tuple[np.ndarray, np.ndarray]:
        """A held-out part as a search gallery: its embeddings as stored (float16) and each one's label
        ("": none): the articleType on the catalogue, the source's coarse label elsewhere."""
        records = self.records[key]
        labels = [r.label("articleType") for r in records] if key[0] == "catalogue" else [r.source_label for r in records]
        vectors = self.classifier.embedding_head.project(self.features[key], self.probs[key])
        return vectors.astype(np.float16).astype(np.float32), np.array([label or "" for label in labels], dtype=object)

    @staticmethod
    def precision(scores: np.ndarray, names: np.ndarray, k: int = 10) -> float:
        """Precision@k of each gallery row's query ranked by `scores` (rows x gallery), itself left out."""
        scores = scores.copy()
        np.fill_diagonal(scores, -np.inf)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return round(float((names[top] == names[:, None])[names != ""].mean()), 4)

    def query_expansion(self) -> dict:
        out = {}
        for key in self.held_out:
            vectors, names = self.gallery(key)
            row = {"plain": self.precision(vectors @ vectors.T, names)}
            for n, alpha in itertools.product((1, 3, 5, 10, 20, 40), (1, 3)):
                expanded = expanded_queries(vectors, range(len(vectors)), n, alpha)
                row[f"n {n} alpha {alpha}"] = self.precision(expanded @ vectors.T, names)
            out["/".join(key)] = row
        return out

    # ---- 5 -------------------------------------------------------------------------------------------

    def own_photos(self, draws: int = 6) -> dict:
        key = ("photo", "val")
        records = self.records[key]
        senders = sorted({r.group for r in records})
        served = self.projection_vote[0].with_parameters(*self.served)
        rng = np.random.default_rng(1234)
        rows = []
        for _ in range(draws):
            added_senders = set(rng.permutation(senders)[: len(senders) // 2])
            added = np.array([i for i, r in enumerate(records) if r.group in added_senders])
            measured = np.array([i for i, r in enumerate(records) if r.group not in added_senders])
            # the served vote's rows plus the added photos, each labelled as a training photo is
            labels, distributions = vote_rows(
                [r for k in self.train_keys for r in self.records[k]] + [records[i] for i in added],
                {t: np.concatenate([self.probs[k][t] for k in self.train_keys] + [self.probs[key][t][added]]) for t in TASKS},
                self.taxonomy, TASKS)
            own = dataclasses.replace(served, vectors=np.concatenate(
                [served.vectors, self.projection(self.features[key][added])]), labels=labels, distributions=distributions)
            probs = {t: self.probs[key][t][measured] for t in TASKS}
            queries = self.projection(self.features[key][measured])
            figure = lambda p: scores(self.classifier, key, [records[i] for i in measured], p)["articleType_group_accuracy"]  # noqa: E731
            rows.append({"added photos": len(added), "measured photos": len(measured), "model alone": figure(probs),
                         "served vote": figure(served.mix(probs, queries)), "vote with the added rows": figure(own.mix(probs, queries))})
        mean = {name: round(float(np.mean([row[name] for row in rows])), 4) for name in rows[0]}
        return {"draws": rows, "mean": mean}

    # ---- 6 -------------------------------------------------------------------------------------------

    def type_boost(self) -> dict:
        """Neighbours sharing the query's served articleType (the vote's tags) ranked up by `beta`."""
        vote = self.projection_vote[0].with_parameters(*self.served)
        out = {}
        for key in self.held_out:
            vectors, names = self.gallery(key)
            served_tags = vote.mix(self.probs[key], self.projection(self.features[key]))
            predicted = decoded_indices(self.classifier, self.classifier.describe(served_tags), "articleType")
            same_type = (predicted[:, None] == predicted[None, :]).astype(np.float32)
            found = expanded_queries(vectors, range(len(vectors)), 20) @ vectors.T  # as served: expansion first
            out["/".join(key)] = {f"beta {beta}": self.precision(found + beta * same_type, names)
                                  for beta in (0.0, 0.05, 0.1, 0.2, 1.0)}
        return out

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_data_arguments(parser, required=False)  # every path has a default here
    parser.set_defaults(bundle=ROOT / "models" / "fashion-lite0", catalogue=DATASETS / "fashion-product-images-small",
                        photos=DATASETS / "clothing-dataset", street=DATASETS / "clothing-co-parsing",
                        run_dir=ROOT / "runs" / "knn")
    parser.add_argument("--probes", default="joint_gender,vote_space,style_parameters,query_expansion,own_photos,type_boost")
    args = parser.parse_args()
    probes = Probes(args)
    report = {"bundle": str(args.bundle), "served_vote": probes.served, "chosen_on": "catalogue validation split"}
    for name in args.probes.split(","):
        print(f"probe {name}", flush=True)
        report[name] = getattr(probes, name)()
        print(json.dumps(report[name])[:2000], flush=True)
    write_report("vote-probes", report)


if __name__ == "__main__":
    main()
