"""image -> detections -> crops (+ the whole image) -> ONE classifier batch -> colours.

Each item also carries `embedding`: the classifier's L2-normalised embedding (float32, not part of
the JSON; Classifier.embed), which storage keeps for similarity search.

Models load once per process (after gunicorn forks) and are warmed up before readiness turns true.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager

import numpy as np

from classification.detector_prior import DetectorPrior
from classification.garment_context import GarmentContext
from classification.inference import Classifier
from classification.product_garment import ProductGarment
from detection.inference import Detector
from detection.records import encode_mask

from .batching import RequestBatcher
from .colours import WHOLE_IMAGE_COLOURS, dominant_colours, whole_image_colours
from .crops import check_style, garment_crop, key_suffix
from .config import Settings
from .errors import ApiError
from .fragments import GarmentFragments
from .metrics import MODEL_SECONDS

CATEGORY = ("gender", "masterCategory", "subCategory", "articleType")
STYLE = ("baseColour", "season", "usage")


@contextmanager
def timed(timings: dict, stage: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        timings[stage] = round(elapsed * 1000, 2)
        MODEL_SECONDS.labels(stage).observe(elapsed)


class Pipeline:
    def __init__(self, detector: Detector, classifier: Classifier, batch_max_images: int = 1,
                 batch_max_wait: float = 0.005, garment_min_side: int = 16, prior: DetectorPrior | None = None,
                 garment_crop: str = "box", context: GarmentContext | None = None,
                 fragments: GarmentFragments | None = None, product_garment: ProductGarment | None = None):
        self.detector, self.classifier = detector, classifier
        self.garment_min_side = garment_min_side
        self.garment_crop = check_style(garment_crop)
        self.prior = prior or DetectorPrior()
        self.context = context or GarmentContext()
        self.fragments = fragments or GarmentFragments()
        self.product_garment = product_garment or ProductGarment()
        self.bundles = {"detector": detector.version, "classifier": classifier.versions}
        self.bundle_key = f"{detector.version}|{classifier.versions['category']}|{classifier.versions['style']}"
        if self.prior.mode != "off":  # the tags depend on it: a stored analysis made without it is not reused
            self.bundles["detector_prior"] = self.prior.name
            self.bundle_key += f"|prior:{self.prior.name}"
        if self.context.pooling != "off":
            self.bundles["garment_context"] = self.context.name
            self.bundle_key += f"|context:{self.context.name}"
        if self.fragments.containment is not None:  # which garments are reported depends on it
            self.bundles["garment_fragments"] = self.fragments.name
            self.bundle_key += f"|fragments:{self.fragments.name}"
        if self.product_garment.pooling != "off":
            self.bundles["product_garment"] = self.product_garment.name
            self.bundle_key += f"|product-garment:{self.product_garment.name}"
        # The whole image's colours are read without its backdrop (app/colours.py): analyses stored when
        # they were not are made again.
        self.bundle_key += WHOLE_IMAGE_COLOURS
        self.embedding_model = classifier.embedding_version
        if suffix := key_suffix(self.garment_crop):
            self.bundles["garment_crop"] = self.garment_crop
            self.bundle_key += suffix
            self.embedding_model += suffix
        # One model call at a time per process: request threads and embedded job threads share the models.
        self._lock = threading.Lock()
        self.batcher = (RequestBatcher(self._analyse_many, batch_max_images, batch_max_wait)
                        if batch_max_images > 1 else None)

    @classmethod
    def load(cls, settings: Settings) -> "Pipeline":
        detector = Detector(settings.detector_bundle, device=settings.device, min_size=settings.detector_min_size,
                            score_threshold=settings.detector_score_threshold,
                            class_agnostic_nms=settings.detector_class_agnostic_nms,
                            compute_dtype=settings.detector_compute_dtype)
        classifier = Classifier(settings.classifier_bundle, flip_average=settings.classifier_flip_average,
                                neighbour_vote=settings.classifier_neighbour_vote,
                                feature_heads=settings.classifier_feature_heads,
                                thumbnail_specialist=settings.classifier_thumbnail_specialist,
                                serving_graph=settings.classifier_serving_graph,
                                garment_input_size=settings.garment_input_size)
        prior = DetectorPrior.parse(settings.garment_detector_prior, classifier.taxonomy,
                                    settings.garment_detector_prior_min_score, settings.garment_detector_prior_kinds)
        context = GarmentContext.parse(settings.garment_context, settings.garment_context_kinds)
        fragments = GarmentFragments.parse(settings.garment_fragments, settings.garment_fragment_kinds)
        product_garment = ProductGarment.parse(settings.product_garment, settings.product_garment_kinds)
        return cls(detector, classifier, settings.batch_max_images, settings.batch_max_wait_ms / 1000,
                   settings.garment_min_side, prior, settings.garment_crop, context, fragments, product_garment)

    def warm_up(self) -> None:
        self.classifier.warm_up()  # both its networks: a blank image shows no garment to the one for garments
        self.analyse(np.full((256, 192, 3), 200, dtype=np.uint8), {})

    def analyse(self, image: np.ndarray, timings: dict) -> list[dict]:
        return self.analyse_many([image], timings)[0]

    def analyse_many(self, images: list[np.ndarray], timings: dict) -> list[list[dict]]:
        """Items for each image. Every image's detections are cropped and classified, with the whole
        images, in ONE classifier batch; `timings` gets each stage's time for the whole batch. With
        request batching on, concurrent callers' images share that batch (app/batching.py)."""
        if self.batcher is not None:
            return self.batcher.submit(images, timings)
        with self._lock:
            return self._analyse_many(images, timings)

    def _analyse_many(self, images: list[np.ndarray], timings: dict) -> list[list[dict]]:
        with timed(timings, "detect"):
            detections = [[d for d in found if self._big_enough(d)] for found in self.detector.detect(images)]
        with timed(timings, "crop"):
            crops, allowed, whole_image_rows = [], [], []
            boxes_of = {}  # a whole image's row -> its garments' boxes (theirs are the rows after it)
            for image, found in zip(images, detections):
                boxes_of[len(crops)] = [d.box for d in found]
                whole_image_rows += [len(crops)] * (1 + len(found))  # the kind gate reads the whole image
                crops += [image] + [self.crop(image, d) for d in found]
                allowed += [None] + [self.prior.for_detection(d.label, d.score) for d in found]  # products: never

        def kept_detections(row: int, kind: str | None) -> list[int]:
            """Which detections of the image at `row` are not fragments (the ones reported), by index."""
            return self.fragments.kept(boxes_of[row], kind)

        def kept_garments(row: int, kind: str | None) -> list[int]:
            """The same as rows of the classifier's batch (an image's garments follow its own row)."""
            return [row + 1 + i for i in kept_detections(row, kind)]

        with timed(timings, "classify"):  # tags and embeddings from the same forward pass
            tags, embeddings = self.classifier.predict_with_embeddings(crops, allowed, self.prior.weight,
                                                                       self.prior.kinds, whole_image_rows,
                                                                       self.context,
                                                                       tell_image_kind=self.fragments.containment is not None,
                                                                       product_garment=self.product_garment,
                                                                       kept_garments=kept_garments)
        results, row = [], 0
        with timed(timings, "colours"):
            for image, found in zip(images, detections):
                # the whole image's row, then its garments' (fragments of a larger garment left out: app/fragments.py)
                kept = kept_detections(row, tags[row].get("image_kind"))
                rows = [(None, row)] + [(found[i], row + 1 + i) for i in kept]
                results.append([self._item(position, tags[r], image, detection) | {"embedding": embeddings[r]}
                                for position, (detection, r) in enumerate(rows)])
                row += 1 + len(found)
        return results

    def crop(self, image: np.ndarray, detection) -> np.ndarray:
        """What the classifier sees of a detected garment (app/crops.py)."""
        return garment_crop(image, detection.box, detection.mask, self.garment_crop)

    def _big_enough(self, detection) -> bool:
        x1, y1, x2, y2 = detection.box
        return min(x2 - x1, y2 - y1) >= self.garment_min_side

    @staticmethod
    def _item(position: int, tag: dict, image: np.ndarray, detection) -> dict:
        # What besides the crop steered the category: the detector's class (the prior), the whole image (the
        # garment context), for a product its one garment (the product garment).
        steered = ([f"detector:{detection.label}"] if detection and tag.get("category_constrained") else []) + (
            ["image"] if tag.get("category_read_with_image") else []) + (
            ["garment"] if tag.get("category_read_with_garment") else [])
        constrained_by = "+".join(steered) or None
        return {
            "position": position,
            "kind": "garment" if detection else "product",
            "box": [round(v, 1) for v in detection.box] if detection else None,
            "mask": encode_mask(detection.mask) if detection else None,
            "detector": {"label": detection.label, "score": round(detection.score, 4)} if detection else None,
            "category": {task: tag[task] for task in CATEGORY} | {"path_confidence": tag["category_path_confidence"],
                                                                   "constrained_by": constrained_by},
            "style": {task: tag[task] for task in STYLE},
            "colours": dominant_colours(image, detection.mask) if detection else whole_image_colours(image),
        }


class PipelineHolder:
    """Loads the pipeline once per process, on demand or eagerly; tells readiness."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()
        self.error: str | None = None
        # Called once with the pipeline when it has loaded (the similarity index starts building).
        self.on_loaded: list = []

    @property
    def ready(self) -> bool:
        return self._pipeline is not None

    def load(self, notify: bool = True) -> Pipeline:
        with self._lock:
            if self._pipeline is None:
                try:
                    pipeline = Pipeline.load(self.settings)
                    pipeline.warm_up()
                except Exception as error:  # noqa: BLE001 - reported by /readyz and model_unavailable
                    self.error = f"{type(error).__name__}: {error}"
                    raise ApiError("model_unavailable", f"the model bundles could not be loaded: {self.error}")
                self._pipeline, self.error = pipeline, None
                if notify:
                    for callback in self.on_loaded:
                        callback(pipeline)
            return self._pipeline

    def set(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
