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
7. `own_labels`: users' corrected tags as extra vote rows, no retraining: each held-out kind (catalogue test
   thumbnails, validation senders' photos, held-out street crops by source photo) halved at random (6 draws);
   from one half either every image joins the vote ("labelled sample") or only those the served vote tags
   wrongly ("corrections only": what a team fixing the mistakes it sees adds); the other half is measured
   (`scores`' figures) with the model alone, the served vote, and the vote with the added rows.
8. `labelled_copies`: what the labels do learn: copies of labelled images (each held-out image cropped to
   90-96% of each side at random, enlarged 1.5x and saved as JPEG quality 70, as a product re-uploaded under
   another URL), half of each kind labelled (rows from the originals, as in 7), measured on the copies of
   the labelled half and, as the control, on the copies of the other half.
9. `garment_rows`: the garments a detector cuts out (at serving they are told apart from whole images)
   voting from fewer kinds of row: the held-out street crops with the served parameters, their vote drawn
   from every training row (served), from the phone photos' and street crops' rows only, and from the
   street crops' alone. A choice without a parameter, measured on the held-out crops.
10. `gated_type_boost`: `type_boost` for the queries the kind gate reads as catalogue thumbnails only (the
   served tags and profile: vote and feature heads), so that photos and garments keep their ranking; beta
   chosen on the catalogue validation split, the other galleries measured with it.

Writes bench/results/vote-probes-<time>.json.
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import io
import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from classification import runtime  # noqa: E402,F401  (torch before TensorFlow, the backend first)

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from bench.results import write_report  # noqa: E402
from bench.served_data import add_served_data_arguments  # noqa: E402
from bench.retrieval_quality import expanded_queries  # noqa: E402
from classification.build_neighbour_vote import scores  # noqa: E402
from classification.embedding_head import l2_normalise  # noqa: E402
from classification.data import load_images  # noqa: E402
from classification.evaluate import allowed_set_scores, decoded_indices, true_indices  # noqa: E402
from classification.inference import Classifier  # noqa: E402
from classification.neighbour_vote import NeighbourVote, project, vote_of, vote_rows  # noqa: E402
from classification.taxonomy import TASKS  # noqa: E402
from classification.train_embedding_head import (bundle_features, embedding_inputs,  # noqa: E402
                                                 features_path)

VAL, TEST = ("catalogue", "val"), ("catalogue", "test")
PHOTOS, STREET = ("photo", "val"), ("street", "val")  # the validation senders' photos, the held-out street crops
GRID = {"k": (3, 5, 10, 20), "temperature": (0.02, 0.05, 0.1), "weight": (0.2, 0.35, 0.5, 0.65)}
STYLE_TASKS = ("gender", "baseColour", "season", "usage")


def accuracy(true: np.ndarray, predicted: np.ndarray) -> float:
    known = true >= 0
    return round(float((true[known] == predicted[known]).mean()), 4)


def mean_over_draws(draws: list[dict]) -> dict:
    """Each figure's mean over the draws, rounded as the figures are (dicts of figures: each figure's)."""
    return {name: mean_over_draws([draw[name] for draw in draws]) if isinstance(draws[0][name], dict)
            else round(float(np.mean([draw[name] for draw in draws])), 4) for name in draws[0]}


class Probes:
    def __init__(self, args):
        self.args = args
        manifest, self.classifier, self.records, self.features, self.probs = bundle_features(args)
        self.taxonomy = self.classifier.taxonomy
        self.train_keys = [key for key in self.records if key[1] == "train"]
        self.held_out = [key for key in self.records if key[1] != "train"]
        self.train_records = [r for key in self.train_keys for r in self.records[key]]
        self.train_probs = {t: np.concatenate([self.probs[key][t] for key in self.train_keys]) for t in TASKS}
        self.labels, self.distributions = vote_rows(self.train_records, self.train_probs, self.taxonomy, TASKS)
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

    @functools.cached_property
    def served_classifier(self) -> Classifier:
        """The bundle as it serves (its vote and feature heads): what a profile of the served probabilities reads."""
        return Classifier(self.args.bundle)

    def profile_probs(self, key) -> dict:
        """The probabilities the embedding head's class profile reads for held-out part `key`, as served."""
        return self.served_classifier.profile_probabilities(self.features[key], self.probs[key])

    @functools.cached_property
    def served_vote(self) -> NeighbourVote:
        """The vote as served: its rows and parameters."""
        return self.projection_vote[0].with_parameters(*self.served)

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
        vectors = self.classifier.embedding_head.project(self.features[key], self.profile_probs(key))
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

    # ---- 5 (its helpers shared with 7) ---------------------------------------------------------------

    def halves(self, key, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Images of held-out part `key` split by group (a sender, a street photo; a catalogue thumbnail is
        its own group) into a random half of the groups and the rest: the rows to add, the images to measure."""
        records = self.records[key]
        groups = sorted({r.group for r in records})
        added_groups = set(rng.permutation(groups)[: len(groups) // 2])
        added = np.array([r.group in added_groups for r in records], bool)
        return np.flatnonzero(added), np.flatnonzero(~added)

    def vote_with_rows(self, key, rows: np.ndarray) -> NeighbourVote:
        """The served vote plus images `rows` of `key` as rows, each labelled as a training image is."""
        served = self.served_vote
        labels, distributions = vote_rows(
            self.train_records + [self.records[key][i] for i in rows],
            {t: np.concatenate([self.train_probs[t], self.probs[key][t][rows]]) for t in TASKS}, self.taxonomy, TASKS)
        return dataclasses.replace(served, vectors=np.concatenate(
            [served.vectors, self.projection(self.features[key][rows])]), labels=labels, distributions=distributions)

    def scored(self, key, rows: np.ndarray, votes: dict) -> dict:
        """`scores` of images `rows` of `key` under each named vote (None: the model alone)."""
        records = [self.records[key][i] for i in rows]
        probs = {t: self.probs[key][t][rows] for t in TASKS}
        queries = self.projection(self.features[key][rows])
        return {name: scores(self.classifier, key, records, probs if vote is None else vote.mix(probs, queries))
                for name, vote in votes.items()}

    def own_photos(self, draws: int = 6) -> dict:
        rng = np.random.default_rng(1234)
        rows = []
        for _ in range(draws):
            added, measured = self.halves(PHOTOS, rng)
            figures = self.scored(PHOTOS, measured, {"model alone": None, "served vote": self.served_vote,
                                                     "vote with the added rows": self.vote_with_rows(PHOTOS, added)})
            rows.append({"added photos": len(added), "measured photos": len(measured),
                         **{name: figure["articleType_group_accuracy"] for name, figure in figures.items()}})
        return {"draws": rows, "mean": mean_over_draws(rows)}

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

    # ---- 10 ------------------------------------------------------------------------------------------

    def gated_type_boost(self) -> dict:
        """Neighbours sharing the query's served articleType (vote and feature heads, as stored) ranked up by
        `beta`, for queries the kind gate reads as catalogue thumbnails; beta chosen on catalogue validation."""
        served = self.served_classifier
        out, betas = {}, (0.0, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0, 2.0)
        for key in self.held_out:
            vectors, names = self.gallery(key)
            tags = self.profile_probs(key)
            predicted = decoded_indices(self.classifier, self.classifier.describe(tags), "articleType")
            catalogue_like = np.array([kind == "catalogue" for kind in served.image_kinds(self.features[key])])
            same_type = (predicted[:, None] == predicted[None, :]) & catalogue_like[:, None]
            found = expanded_queries(vectors, range(len(vectors)), 20) @ vectors.T  # as served: expansion first
            out["/".join(key)] = {"read as catalogue": round(float(catalogue_like.mean()), 4),
                                  **{f"beta {beta}": self.precision(found + beta * same_type, names) for beta in betas}}
        validation = out["/".join(VAL)]
        out["chosen on val"] = max(betas, key=lambda beta: validation[f"beta {beta}"])
        return out

    # ---- 7 -------------------------------------------------------------------------------------------

    def served_mistakes(self, key, rows: np.ndarray) -> np.ndarray:
        """Which of images `rows` of `key` the served vote tags wrongly, by the figures' own rules: the
        articleType on the catalogue, the articleType group a photo's or crop's label allows elsewhere."""
        records = [self.records[key][i] for i in rows]
        probs = {t: self.probs[key][t][rows] for t in TASKS}
        described = self.classifier.describe(self.served_vote.mix(probs, self.projection(self.features[key][rows])))
        if key[0] == "catalogue":
            true = true_indices(records, self.classifier, "articleType")
            return (true != -1) & (decoded_indices(self.classifier, described, "articleType") != true)
        _, group_ok, _ = allowed_set_scores([r.allowed for r in records], [r.source_label for r in records], described)
        return ~group_ok

    def own_labels(self, draws: int = 6) -> dict:
        """Per kind, both variants on each draw's same halves: they differ only by the rows they add."""
        out = {}
        for key in [key for key in (TEST, PHOTOS, STREET) if key in self.records]:
            name = "/".join(key)
            rng = np.random.default_rng(1234)  # every kind the same seed: the photos' halves are own_photos'
            variants = {"labelled sample": [], "corrections only": []}
            for _ in range(draws):
                added, measured = self.halves(key, rng)
                corrected = added[self.served_mistakes(key, added)]
                figures = self.scored(key, measured, {
                    "model alone": None, "served vote": self.served_vote,
                    "labelled sample": self.vote_with_rows(key, added),
                    "corrections only": self.vote_with_rows(key, corrected)})
                for variant, added_rows in (("labelled sample", added), ("corrections only", corrected)):
                    variants[variant].append({
                        "added half (images)": len(added), "rows added": len(added_rows),
                        "measured images": len(measured), "model alone": figures["model alone"],
                        "served vote": figures["served vote"], "vote with the added rows": figures[variant]})
            out[name] = {variant: {"draws": draws_of, "mean": mean_over_draws(draws_of)}
                         for variant, draws_of in variants.items()}
            print(name, json.dumps({variant: result["mean"] for variant, result in out[name].items()}), flush=True)
        return out


    # ---- 8 -------------------------------------------------------------------------------------------

    def copies(self, key) -> tuple[np.ndarray, dict]:
        """Pooled features and probabilities of altered copies of the images of `key` (cached in run_dir
        as the part "<part>-copies", like the originals' features)."""
        kind, part = key
        records = self.records[key]
        rng = np.random.default_rng(2026)
        max_side = None if kind == "catalogue" else self.args.max_side  # as the features of the originals
        decoded = None
        if not features_path(self.args, self.classifier, kind, f"{part}-copies", len(records)).is_file():
            decoded = {r.id: re_uploaded(image, rng) for r, image in zip(records, load_images(records, max_side))}
        return embedding_inputs(self.classifier, self.args, kind, f"{part}-copies", records, decoded)

    def labelled_copies(self, draws: int = 6) -> dict:
        out = {}
        for key in [key for key in (TEST, PHOTOS, STREET) if key in self.records]:
            copy_features, copy_probs = self.copies(key)
            rng = np.random.default_rng(1234)
            rows = []
            for _ in range(draws):
                added, other = self.halves(key, rng)
                with_rows = self.vote_with_rows(key, added)
                row = {"labelled images": len(added)}
                for name, measured in (("copies of labelled images", added), ("copies of other images", other)):
                    records = [self.records[key][i] for i in measured]
                    probs = {t: copy_probs[t][measured] for t in TASKS}
                    queries = self.projection(copy_features[measured])
                    row[name] = {vote_name: scores(self.classifier, key, records, probs if vote is None else vote.mix(probs, queries))
                                 for vote_name, vote in (("model alone", None), ("served vote", self.served_vote),
                                                         ("vote with the labelled rows", with_rows))}
                rows.append(row)
            out["/".join(key)] = {"draws": rows, "mean": mean_over_draws(rows)}
            print("/".join(key), json.dumps(out["/".join(key)]["mean"]), flush=True)
        return out

    # ---- 9 -------------------------------------------------------------------------------------------

    def garment_rows(self) -> dict:
        out = {}
        kinds = {"every row (served)": self.train_keys,
                 "phone photos and street crops": [key for key in self.train_keys if key[0] != "catalogue"],
                 "street crops": [("street", "train")]}
        for name, keys in kinds.items():
            records = [r for key in keys for r in self.records[key]]
            k, temperature, weight = self.served
            vote = vote_of(records, {t: np.concatenate([self.probs[key][t] for key in keys]) for t in TASKS},
                           np.concatenate([self.projection(self.features[key]) for key in keys]), self.taxonomy,
                           TASKS, "probe", k=k, temperature=temperature, weight=weight)
            mixed = vote.mix(self.probs[STREET], self.projection(self.features[STREET]))
            out[name] = {"rows": len(records)} | scores(self.classifier, STREET, self.records[STREET], mixed)
        return out


def re_uploaded(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A copy as a shop might upload the same product again: cropped a little, enlarged, re-compressed."""
    height, width = image.shape[:2]
    keep_h, keep_w = (int(round(side * rng.uniform(0.90, 0.96))) for side in (height, width))
    top, left = rng.integers(0, height - keep_h + 1), rng.integers(0, width - keep_w + 1)
    copy = Image.fromarray(image[top:top + keep_h, left:left + keep_w]).resize(
        (int(keep_w * 1.5), int(keep_h * 1.5)), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    copy.save(buffer, "JPEG", quality=70)
    return np.asarray(Image.open(buffer).convert("RGB"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_served_data_arguments(parser)
    parser.add_argument("--probes", default="joint_gender,vote_space,style_parameters,query_expansion,own_photos,"
                                            "type_boost,own_labels,labelled_copies,garment_rows,gated_type_boost")
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
