"""Load a classifier bundle once and tag batches of RGB images of any size."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import logging
import threading

import torch  # before keras: with the TensorFlow backend, torch must load first

import keras
import numpy as np

from . import runtime
from .bundle import (flip_average_of, garment_input_size_of, garments_suffix, heads_suffix, load_bundle, mirror_policy,
                     served_version, slips_suffix, vote_suffix)
from .decoding import AllowedPaths, HierarchyDecoder
from .detector_prior import allowed_where
from .embedding_head import embedding_version, l2_normalise, load_head
from .feature_heads import load_heads
from .garment_context import GarmentContext
from .neighbour_vote import NeighbourVote, load_vote, project
from .preprocess import preprocess_batch
from .product_garment import KeptGarments, ProductGarment
from .serving_graph import ExportedNetwork, for_serving
from .taxonomy import HIERARCHY_LEVELS, MODEL_GROUPS, TASKS
from .thumbnail_specialist import corrected, rows_to_read, settings_of, specialist_suffix

log = logging.getLogger(__name__)


def needs_mirror_view(article_type_probs: np.ndarray, flip_average: bool | float) -> np.ndarray:
    """Which images (a bool per row) get the mirror view under a policy (bundle.mirror_policy): all,
    none, or those whose first view's top articleType probability is under the confidence."""
    policy = mirror_policy(flip_average)
    if isinstance(policy, bool):
        return np.full(len(article_type_probs), policy)
    return article_type_probs.max(axis=1) < policy


class Classifier:
    def __init__(self, bundle_dir: str | Path, batch_size: int = 64, input_size: tuple[int, int] | None = None,
                 flip_average: bool | float | None = None, neighbour_vote: bool = True, serving_graph: bool = True,
                 feature_heads: bool = True, garment_input_size: tuple[int, int] | None = None,
                 thumbnail_specialist: bool = True):
        """`flip_average` (None: as the bundle's manifest says) averages every output over each image and
        its left-right mirror: garments are mirror-symmetric in their labels, so the two views are two
        honest looks at the same item (twice the compute). A confidence in (0, 1) instead gives the second
        view only to images whose top articleType probability is under it (bundle.mirror_policy).
        `neighbour_vote` (when the bundle has one) mixes the tags with the labels of the nearest training
        images (classification.neighbour_vote), and so do embeddings whose head's class profile reads the served
        probabilities (profile_probabilities). `feature_heads` (when the
        bundle has them) mixes some tasks with logistic regressions on the pooled features, after the vote
        (classification.feature_heads). `serving_graph`: on the
        torch backend, run the network as its channels-first copy with folded batch normalisations
        (classification.serving_graph: the same outputs to float rounding, a faster call).
        `garment_input_size` (height, width): garment crops (the rows predict_with_embeddings is told are not
        whole images) are read by the same weights at this size; the trunk pools globally, and a garment cut
        out of a photo has more detail to show than a whole image's letterbox (docs/detector.md). None: the
        manifest's inference.garment_input_size, or `input_size` when that is given (a size being measured).
        `thumbnail_specialist` (when the bundle has one, and a kind gate is loaded to say where it speaks): the
        whole images the gate reads as catalogue thumbnails are also read by a second network trained on
        thumbnails alone, mixed in (classification.thumbnail_specialist)."""
        self.bundle_dir = Path(bundle_dir)
        self.model, self.taxonomy, self.manifest = load_bundle(self.bundle_dir, input_size=input_size)
        trained = self.model
        if serving_graph and keras.backend.backend() == "torch":
            try:
                self.model = for_serving(self.model)
            except ValueError as error:  # a network the copy does not cover serves as it was trained
                log.info("classifier served without its serving copy: %s", error)
        self.input_size = tuple(input_size or self.manifest["model"]["input_size"])
        self.garment_input_size = (garment_input_size_of(self.manifest, garment_input_size) if input_size is None
                                   else tuple(garment_input_size or input_size))  # another size: garments too
        self.garment_model = self.model
        if self.garment_input_size != self.input_size:  # the same weights, built for the other size
            self.garment_model = load_bundle(self.bundle_dir, input_size=self.garment_input_size)[0]
            if self.model is not trained:  # served as its copy, like the network at the images' size
                self.garment_model = for_serving(self.garment_model)
        # On the CPU the served network also runs exported (serving_graph.ExportedNetwork), made on first use.
        self._export = serving_graph and keras.backend.backend() == "torch" and not torch.cuda.is_available()
        self._exported: dict[int, ExportedNetwork] = {}  # by id() of the (long-lived) network exported
        self._export_lock = threading.Lock()
        self.flip_average = flip_average_of(self.manifest) if flip_average is None else mirror_policy(flip_average)
        self.decoder = HierarchyDecoder(self.taxonomy)
        self.batch_size = batch_size
        # The retrieval projection trained on the pooled features, when the bundle has one.
        self.embedding_head = load_head(self.bundle_dir)
        self.neighbour_vote = (load_vote(self.bundle_dir, self.embedding_head,
                                         (self.manifest.get("neighbour_vote") or {}).get("version"))
                               if neighbour_vote else None)
        self.feature_heads = (load_heads(self.bundle_dir, (self.manifest.get("feature_heads") or {}).get("version"))
                              if feature_heads else None)
        self.specialist_settings = (settings_of(self.bundle_dir, self.manifest)
                                    if thumbnail_specialist and self.feature_heads is not None
                                    and self.feature_heads.gate is not None else None)
        self.specialist: Classifier | None = None
        if self.specialist_settings is not None:  # read with the same mirror view and graph as this network
            self.specialist = Classifier(self.specialist_settings.folder, batch_size=batch_size,
                                         input_size=input_size, flip_average=self.flip_average,
                                         serving_graph=serving_graph, thumbnail_specialist=False)
            if self.specialist.input_size != self.input_size:
                raise ValueError(f"{self.specialist_settings.folder}: the thumbnail specialist reads "
                                 f"{self.specialist.input_size}, this network {self.input_size}")
        # what the served probabilities gain over the model's: the vote and heads this classifier loaded
        # (how the network reads garments first, then what is mixed into what it reads)
        extras = (garments_suffix(self.garment_input_size, self.input_size)
                  + vote_suffix(self.neighbour_vote.version if self.neighbour_vote else None)
                  + heads_suffix(self.feature_heads.version if self.feature_heads else None))
        # tags only: the specialist never changes an embedding
        tag_extras = extras + specialist_suffix(self.specialist_settings.version if self.specialist else None)
        # the category's tags also name the slip paths shown as their articleType's commonest (Taxonomy.slips)
        self.versions = {group: f"{served_version(self.manifest, self.flip_average)}{tag_extras}"
                                f"{slips_suffix(self.taxonomy) if group == 'category' else ''}/{group}"
                         for group in MODEL_GROUPS}
        # Where the vote comes from at each call: the bundle's, unless a server adds rows to it (the items
        # people labelled, app/label_votes.py) by setting a callable that returns the vote to use.
        self.vote_source: Callable[[], NeighbourVote | None] | None = None
        # Embeddings are comparable only between images embedded by the same weights (and head; a profile
        # of the served probabilities also by the same vote and heads).
        self.embedding_version = embedding_version(self.manifest, self.embedding_head, self.flip_average, extras)
        self._with_embedding: dict[int, keras.Model] = {}  # by id() of the network it extends

    def predict_proba(self, images: Sequence[np.ndarray], garments: bool = False) -> dict[str, np.ndarray]:
        """Softmax outputs per task, (N, classes) each, computed in batches. `garments`: the images are
        garment crops, read as the pipeline reads a detection (by the network at garment_input_size)."""
        model, size = self._network(garments)
        return self.predict_proba_preprocessed(preprocess_batch(images, size), model, whole_images=not garments)

    def _network(self, garments: bool) -> tuple[keras.Model, tuple[int, int]]:
        """The network that reads garment crops (`garments`) or whole images, and the size it reads them at."""
        return (self.garment_model, self.garment_input_size) if garments else (self.model, self.input_size)

    def predict_proba_preprocessed(self, batch: np.ndarray, model: keras.Model | None = None,
                                   whole_images: bool | None = None) -> dict[str, np.ndarray]:
        """The served probabilities (with the neighbour vote, the feature heads and the thumbnail specialist,
        where the bundle has them) of a batch preprocessed for `model` (None: the whole images' network).
        `whole_images` (None: when `model` is the whole images' network): the rows are whole images, not
        garment crops, and so may be read by the thumbnail specialist."""
        model = self.model if model is None else model
        if not len(batch):
            return {task: np.zeros((0, self.taxonomy.num_classes(task)), np.float32) for task in TASKS}
        if self.neighbour_vote is None and self.feature_heads is None:
            return self._forward(model, batch, TASKS)
        outputs = self._forward(self._two_output_model(model), batch, (*TASKS, "embedding"))
        features = outputs.pop("embedding")
        served = self.voted(features, outputs)
        whole = model is self.model if whole_images is None else whole_images
        return self.with_specialist(served, features, outputs, np.arange(len(batch)) if whole else np.zeros(0, int),
                                    lambda rows: batch[rows])

    def with_specialist(self, served: dict[str, np.ndarray], features: np.ndarray, probs: dict[str, np.ndarray],
                        whole_rows: np.ndarray, preprocessed: Callable[[np.ndarray], np.ndarray]
                        ) -> dict[str, np.ndarray]:
        """`served` (what voted gave for `features` and the model's `probs`) with the thumbnail specialist's
        reading of the `whole_rows` (whole images) the kind gate reads as thumbnails mixed in
        (classification.thumbnail_specialist); `preprocessed(rows)`: those rows' images preprocessed at
        input_size. As it was without a specialist."""
        if self.specialist is None or not len(whole_rows):
            return served
        gate = np.zeros(len(features), np.float32)
        gate[whole_rows] = self.feature_heads.gate.catalogue_probability(features[whole_rows])
        rows = rows_to_read(gate, self.specialist_settings.min_gate)
        if not len(rows):
            return served
        own = self.specialist.predict_proba_preprocessed(preprocessed(rows))
        # what rows from people's labels moved in the served vote stays moved (the specialist's vote has none)
        without_people = served if self.vote_source is None else self._served_with(self.neighbour_vote, features, probs)
        return corrected(served, without_people, own, rows, gate, self.specialist_settings.weight)

    def voted(self, features: np.ndarray, probs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The served probabilities from the model's and the images' pooled features: mixed with the
        neighbour vote, then with the feature heads (each where the bundle has them); without the thumbnail
        specialist, which reads the images themselves (with_specialist)."""
        vote = self.vote_source() if self.vote_source is not None else self.neighbour_vote
        return self._served_with(vote, features, probs)

    def _served_with(self, vote: NeighbourVote | None, features: np.ndarray,
                     probs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if vote is not None:
            probs = vote.mix(probs, project(self.embedding_head, features))
        if self.feature_heads is not None:
            probs = self.feature_heads.mix(probs, features)
        return probs

    def profile_probabilities(self, features: np.ndarray, probs: dict[str, np.ndarray],
                              allowed: Sequence[AllowedPaths | None] | None = None,
                              outside_weight: float = 0.0) -> dict[str, np.ndarray]:
        """The probabilities the embedding head's class profile reads: the model's own, or for a profile of
        the served ones, the bundle's vote and feature heads, never the rows a server adds from people's
        labels (an image's embedding must not move as others are labelled), constrained as the tags'
        category path is (`allowed`, `outside_weight`: see constrained)."""
        if self.embedding_head is None or self.embedding_head.profile_source == "model":
            return probs
        return self.constrained(self._served_with(self.neighbour_vote, features, probs), allowed, outside_weight)

    def constrained(self, probs: dict[str, np.ndarray], allowed: Sequence[AllowedPaths | None] | None,
                    outside_weight: float = 0.0) -> dict[str, np.ndarray]:
        """`probs` with each category level's mass moved onto the classes an image's `allowed` paths go
        through (the detector's class, for a garment), the others' multiplied by `outside_weight` (0: none
        left), renormalised: what the category path was chosen from. None, or a set with no path of the
        taxonomy: as it was."""
        if allowed is None or not any(allowed):
            return probs
        out = dict(probs)
        for level, task in enumerate(HIERARCHY_LEVELS):
            rows = out[task].copy()
            for row, paths in enumerate(allowed):
                mask = self.decoder.level_mask(paths, level) if paths else None
                if mask is None or not mask.any():
                    continue
                weighted = rows[row] * np.where(mask, 1.0, outside_weight)
                if weighted.sum() > 0:
                    rows[row] = weighted / weighted.sum()
            out[task] = rows
        return out

    def _forward(self, model: keras.Model, batch: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        """`model`'s named outputs for a non-empty preprocessed batch, run in chunks of batch_size (averaged
        with the mirror images' outputs as flip_average says)."""
        parts = {name: [] for name in names}
        model = self._runnable(model)
        for start in range(0, len(batch), self.batch_size):
            chunk = batch[start:start + self.batch_size]
            if self.flip_average is True and 2 * len(chunk) <= self.batch_size:
                # Both views in one call: a request's few images pay one call's fixed cost, not two, and
                # the call holds no more activations than a full chunk of one view does (docs/benchmarks.md).
                both = self._run(model, np.concatenate([chunk, chunk[:, :, ::-1]]), names)
                for name in names:
                    parts[name].append((both[name][:len(chunk)] + both[name][len(chunk):]) / 2)
                continue
            outputs = self._run(model, chunk, names)
            # Larger chunks (and the unsure-only policy) give the mirror images a call of their own.
            rows = np.flatnonzero(needs_mirror_view(outputs["articleType"], self.flip_average))
            if len(rows):
                mirrored = self._run(model, chunk[rows, :, ::-1], names)
                for name in names:
                    outputs[name][rows] = (outputs[name][rows] + mirrored[name]) / 2
            for name in names:
                parts[name].append(outputs[name])
        return {name: np.concatenate(chunks) for name, chunks in parts.items()}

    def warm_up(self) -> None:
        """One call of each network this classifier serves (the images' and the garments'), so that making
        them ready (exporting, first-call allocations) is not paid by a request."""
        blank = np.full((*self.input_size, 3), 255, np.uint8)
        self.embedding_inputs([blank, blank], garments=[False, True])
        if self.specialist is not None:
            self.specialist.warm_up()

    def _runnable(self, model: keras.Model) -> keras.Model | ExportedNetwork:
        """`model`, or its exported graph where this classifier serves exported (made once per network)."""
        if not self._export:
            return model
        with self._export_lock:
            if id(model) not in self._exported:
                height, width = model.input.shape[1:3]
                self._exported[id(model)] = ExportedNetwork(model, height, width)
            return self._exported[id(model)]

    @staticmethod
    def _run(model: keras.Model | ExportedNetwork, view: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
        with runtime.no_grad():
            out = model(np.ascontiguousarray(view), training=False)
        return {name: keras.ops.convert_to_numpy(out[name]).astype(np.float32) for name in names}

    def predict(self, images: Sequence[np.ndarray], allowed: Sequence[AllowedPaths | None] | None = None,
                outside_weight: float = 0.0) -> list[dict]:
        """One result per image: every task's label, confidence and top-3; the category path decoded jointly
        (among each image's `allowed` paths, when given: see HierarchyDecoder.decode)."""
        if not len(images):
            return []
        probs = self.predict_proba(images)
        return self.describe(probs, allowed, outside_weight)

    def describe(self, probs: dict[str, np.ndarray], allowed: Sequence[AllowedPaths | None] | None = None,
                 outside_weight: float = 0.0) -> list[dict]:
        """Labels from softmax outputs; `allowed` (per image, None: unconstrained) and `outside_weight`
        steer only the choice of the category path, every confidence and top-3 stays the model's own."""
        paths = self.decoder.decode(probs, allowed=allowed, outside_weight=outside_weight)
        results = []
        for row, path in enumerate(paths):
            result = {"category_path_confidence": path["path_confidence"], "category_top_paths": path["top_paths"],
                      "category_constrained": path["constrained"]}
            for task in TASKS:
                p = probs[task][row]
                top = np.argsort(-p)[:3]
                chosen = path["levels"][task]["index"] if task in HIERARCHY_LEVELS else int(top[0])
                result[task] = {
                    "label": self.taxonomy.labels[task][chosen],
                    "confidence": float(p[chosen]),
                    "top3": [{"label": self.taxonomy.labels[task][i], "confidence": float(p[i])} for i in top],
                }
            results.append(result)
        return results

    # ---- embeddings ---------------------------------------------------------------------------------------

    EMBEDDING_LAYER = "gap"  # the trunk's globally pooled features: what every head is computed from

    @property
    def embedding_dim(self) -> int:
        if self.embedding_head is not None:
            return self.embedding_head.dim
        return self.features_dim

    @property
    def features_dim(self) -> int:
        return int(self.model.get_layer(self.EMBEDDING_LAYER).output.shape[-1])

    def embedding_of(self, features: np.ndarray, probs: dict[str, np.ndarray],
                     profile_probs: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """The embeddings of images from their pooled trunk features and the model's probabilities
        (`profile_probs`: what profile_probabilities gives for them, when the caller has it already)."""
        if self.embedding_head is not None:
            if profile_probs is None:
                profile_probs = self.profile_probabilities(features, probs)
            return self.embedding_head.project(features, profile_probs)
        return l2_normalise(features)

    def _two_output_model(self, model: keras.Model | None = None) -> keras.Model:
        """The same network with the pooled trunk features as one more output, so tags and embedding
        come from ONE forward pass (built once; it shares the loaded weights, nothing is copied)."""
        model = self.model if model is None else model
        if id(model) not in self._with_embedding:
            outputs = dict(model.output)
            outputs["embedding"] = model.get_layer(self.EMBEDDING_LAYER).output
            self._with_embedding[id(model)] = keras.Model(model.input, outputs, name=f"{model.name}_with_embedding")
        return self._with_embedding[id(model)]

    def predict_with_embeddings(self, images: Sequence[np.ndarray],
                                allowed: Sequence[AllowedPaths | None] | None = None,
                                outside_weight: float = 0.0, constrained_kinds: frozenset[str] | None = None,
                                whole_image_rows: Sequence[int] | None = None,
                                context: GarmentContext | None = None,
                                tell_image_kind: bool = False,
                                product_garment: ProductGarment | None = None,
                                kept_garments: KeptGarments | None = None) -> tuple[list[dict], np.ndarray]:
        """What `predict` returns, plus each image's L2-normalised embedding, (N, embedding_dim) float32,
        from the same forward pass. `constrained_kinds`, `whole_image_rows`: `allowed` holds only where
        the kind gate reads the whole image as one of those kinds (allowed_where). `context`: the
        garments' tags pooled with their whole image's (GarmentContext; the embeddings are not); a pooled
        garment's tags say `category_read_with_image`. `tell_image_kind`: every row's tags say `image_kind`, how
        the kind gate read its whole image (None without a gate). `product_garment`: a whole image's tags pooled
        with its one garment's (ProductGarment; `kept_garments` says which garment rows of an image are kept);
        such a whole image's tags say `category_read_with_garment`."""
        if not len(images):
            return [], np.zeros((0, self.embedding_dim), np.float32)
        garments = None if whole_image_rows is None else [whole != row for row, whole in enumerate(whole_image_rows)]
        features, probs = self.embedding_inputs(images, garments)
        # The kind gate, read once for the detector prior and the garment context; not at all for a batch with
        # nothing to constrain (product shots) and no garment to pool.
        constrains = allowed is not None and constrained_kinds is not None and any(p is not None for p in allowed)
        pools = context is not None and context.pooling != "off" and whole_image_rows is not None
        reads_products = (product_garment is not None and product_garment.pooling != "off"
                          and kept_garments is not None and garments is not None and any(garments))
        read = self.image_kinds(features) if constrains or pools or reads_products or tell_image_kind else None
        if constrains:
            # The detector's classes were learnt on street photos of people: a garment lying on a bed, in a
            # phone photo, is the classifier's to name. The whole image says which it is far better than a crop
            # does (the served gate reads 126 of 128 held-out street photos as street, 1,093 of 1,100 phone
            # photos as photos).
            allowed = allowed_where(allowed, read, constrained_kinds, whole_image_rows)
        served = self.voted(features, probs)
        whole = np.asarray([row for row in range(len(images)) if garments is None or not garments[row]], int)
        tagged = self.with_specialist(served, features, probs, whole,
                                      lambda rows: preprocess_batch([images[i] for i in rows], self.input_size))
        pooled = context.pooled_rows(read, whole_image_rows) if pools else []
        in_context = context.pool(tagged, pooled, whole_image_rows) if pooled else tagged
        products = product_garment.pairs(read, whole_image_rows, kept_garments) if reads_products else {}
        # each product pooled with its garment's reading from before the garment was pooled with the product
        in_context = product_garment.pool_pairs(in_context, products, source=tagged) if products else in_context
        tags = self.describe(in_context, allowed, outside_weight)
        for row in pooled:
            tags[row]["category_read_with_image"] = True
        for row in products:
            tags[row]["category_read_with_garment"] = True
        if tell_image_kind:
            for row, whole in enumerate(whole_image_rows if whole_image_rows is not None else range(len(tags))):
                tags[row]["image_kind"] = read[whole] if read is not None else None
        profile = probs
        if self.embedding_head is not None and self.embedding_head.profile_source == "served":
            # the tags' probabilities before the thumbnail specialist (it never moves an embedding), and
            # without rows from people's labels in their vote
            bundles = served if self.vote_source is None else self._served_with(self.neighbour_vote, features, probs)
            profile = self.constrained(bundles, allowed, outside_weight)
        return tags, self.embedding_of(features, probs, profile)

    def embed(self, images: Sequence[np.ndarray], allowed: Sequence[AllowedPaths | None] | None = None,
              outside_weight: float = 0.0, constrained_kinds: frozenset[str] | None = None,
              whole_image_rows: Sequence[int] | None = None) -> np.ndarray:
        """L2-normalised embeddings, (N, embedding_dim) float32 (`allowed` and the rest: as
        predict_with_embeddings', for a profile of the served probabilities)."""
        return self.predict_with_embeddings(images, allowed, outside_weight, constrained_kinds, whole_image_rows)[1]

    def image_kinds(self, features: np.ndarray) -> list[str] | None:
        """The kind gate's likeliest kind of each image (`catalogue`, `photo`, `street`: the kinds the
        bundle trained on) from its pooled features; None when no gate is loaded (the bundle has none,
        or its feature heads are off)."""
        gate = self.feature_heads.gate if self.feature_heads is not None else None
        return gate.most_probable(features) if gate is not None else None

    def embedding_inputs(self, images: Sequence[np.ndarray], garments: Sequence[bool] | None = None
                         ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The raw pooled trunk features, (N, features_dim) float32, and every task's probabilities (the
        model's own, without the neighbour vote): what an embedding head trains on and is tuned with
        (embedding_of turns them into embeddings). `garments`: which images are garment crops, read at
        the garment input size (the rest at the input size)."""
        names = (*TASKS, "embedding")
        if not len(images):
            return np.zeros((0, self.features_dim), np.float32), {
                task: np.zeros((0, self.taxonomy.num_classes(task)), np.float32) for task in TASKS}
        if garments is None or self.garment_model is self.model or not any(garments):
            outputs = self._forward(self._two_output_model(), preprocess_batch(images, self.input_size), names)
            return outputs.pop("embedding"), outputs
        outputs = {}
        for as_garments in (False, True):  # whole images, then garments
            rows = [i for i, g in enumerate(garments) if bool(g) == as_garments]
            if not rows:
                continue
            model, size = self._network(as_garments)
            part = self._forward(self._two_output_model(model), preprocess_batch([images[i] for i in rows], size), names)
            for name, values in part.items():
                outputs.setdefault(name, np.zeros((len(images), values.shape[1]), np.float32))[rows] = values
        return outputs.pop("embedding"), outputs
