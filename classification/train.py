"""Train the category + style classifier on catalogue thumbnails, phone photos and street crops.

    python -m classification.train --catalogue ../shared/datasets/fashion-product-images-small \
        --photos ../shared/datasets/clothing-dataset \
        --street ../shared/datasets/clothing-co-parsing --street-split models/ccp-maskrcnn-mobilenet/split.json \
        --trunk efficientnet_lite0 --bundle models/fashion-lite0 --run-dir runs/lite0 --epochs 7

Every source is read once into one record format (classification.records). Catalogue rows train
every task; a photo's label (through a label map file: --photo-label-map, --street-label-map)
trains the hierarchy levels with a partial-label loss and nothing else. Phone photos are split by
sender, street crops by photo (the detector's split when given). Each epoch draws
--catalogue-per-epoch thumbnails and every training photo and crop, augmented to look like photos.

Checkpoints every epoch into --run-dir (rerun with --resume to continue), cosine learning-rate
schedule with warm-up, mixed precision when a GPU is present, fixed seeds (--split-seed for the
split, --seed for the training order: a continuation, --init-from, keeps its bundle's split and may
vary its order), a training-curve PNG, and at the end the evaluation on all three kinds of image
written into the bundle's manifest.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
from tqdm import tqdm

from . import runtime
import keras  # noqa: E402  (after runtime, which picks the backend and import order)

from .augment import PhotoAugmenter  # noqa: E402
from .bundle import load_weights, read_manifest, write_bundle  # noqa: E402
from .catalogue import read_catalogue  # noqa: E402
from .data import MixedBatches, encode_allowed, image_cache_path, label_balance_weights, load_images  # noqa: E402
from .losses import PartialLabelAccuracy, PartialLabelCrossEntropy  # noqa: E402
from .model import build_model  # noqa: E402
from .packed_data import read_pack  # noqa: E402
from .plots import training_curves  # noqa: E402
from .preprocess import PREPROCESSING  # noqa: E402
from .photo_datasets import STREET_CROP_MARGIN  # noqa: E402
from .sources import (HELD_OUT_PART, add_source_arguments, describe_sources, held_out_leaks, kind_split,
                      read_sources)  # noqa: E402
from .taxonomy import MODEL_GROUPS, TASKS, Taxonomy  # noqa: E402
from .trunks import get_trunk  # noqa: E402
from .weight_average import WeightAverage  # noqa: E402

CHECKPOINT = "checkpoint.keras"
AVERAGE = "weight_average.npz"
STATE = "state.json"


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves model + optimizer state and the history after every epoch, so --resume loses at most one."""

    def __init__(self, run_dir: Path, state: dict):
        super().__init__()
        self.run_dir, self.state = run_dir, state
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.state["history"].setdefault(key, []).append(float(value))
        tmp = self.run_dir / f"tmp-{CHECKPOINT}"
        self.model.save(tmp)
        tmp.replace(self.run_dir / CHECKPOINT)
        self.state["epoch"] = epoch + 1
        self.state.setdefault("epoch_seconds", []).append(round(time.time() - self.started, 2))
        self.state["train_seconds"] = self.state.get("train_seconds", 0.0) + time.time() - self.started
        self.started = time.time()
        (self.run_dir / STATE).write_text(json.dumps(self.state))
        training_curves(self.state["history"], self.run_dir / "training_curve.png")


class StepProgress(keras.callbacks.Callback):
    """A progress bar per epoch (images/s), also readable in a log file: fit's own is off there."""

    def __init__(self, steps: int, batch_size: int):
        super().__init__()
        self.steps, self.batch_size, self.bar = steps, batch_size, None

    def on_epoch_begin(self, epoch, logs=None):
        self.bar = tqdm(total=self.steps, desc=f"epoch {epoch + 1}", unit="step", mininterval=30,
                        dynamic_ncols=False, ascii=not sys.stderr.isatty())

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(1)
        rate = self.bar.format_dict.get("rate")
        if rate:
            self.bar.set_postfix(images_per_s=f"{rate * self.batch_size:.1f}", loss=f"{(logs or {}).get('loss', 0):.3f}",
                                 refresh=False)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.close()


class TimeLimit(keras.callbacks.Callback):
    """Stops after the epoch at which one more would run past `seconds` of this process's training
    (judged by the slowest epoch so far); the bundle is then written as after a full run. A safety
    net for rented machines, not a schedule: the learning rate was planned for every epoch."""

    def __init__(self, seconds: float, state: dict):
        super().__init__()
        self.seconds, self.state = seconds, state
        self.started = self.epoch_started = time.time()
        self.slowest = 0.0

    def on_train_begin(self, logs=None):
        self.started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        self.slowest = max(self.slowest, now - self.epoch_started)
        last = epoch + 1 >= self.params.get("epochs", epoch + 1)
        if not last and now - self.started + self.slowest > self.seconds:
            self.model.stop_training = True
            self.state["stopped_by_time_limit_after_epoch"] = epoch + 1


def compile_model(model: keras.Model, lr: float, total_steps: int, constant: bool = False) -> None:
    """AdamW; linear warm-up, then cosine decay to 1% of `lr`, or (`constant`) `lr` to the end."""
    warmup = max(1, min(500, total_steps // 10))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr * 0.05, decay_steps=max(1, total_steps - warmup), alpha=1.0 if constant else 0.01,
        warmup_target=lr, warmup_steps=warmup)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=1e-4),
        loss={t: PartialLabelCrossEntropy() for t in TASKS},
        metrics={t: [PartialLabelAccuracy()] for t in TASKS},
    )


def initialise_from_bundle(model: keras.Model, folder: Path, taxonomy: Taxonomy, trunk: str) -> dict:
    """Copy a finished bundle's weights into `model` and say what they were (name, version, training)."""
    manifest = read_manifest(folder)
    if manifest["model"].get("trunk", "vgg19") != trunk or not Taxonomy.from_dict(manifest["taxonomy"]).same_classes(taxonomy):
        raise SystemExit(f"--init-from {folder}: its trunk ({manifest['model'].get('trunk', 'vgg19')}) or labels differ "
                         f"from this run's ({trunk}, the catalogue's labels)")
    load_weights(model, folder / manifest["weights"]["file"], taxonomy)
    earlier = manifest.get("training", {})
    return {"bundle": manifest["name"], "version": manifest["version"],
            **{k: earlier[k] for k in ("command", "epochs", "train_seconds", "initialised_from") if k in earlier}}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_source_arguments(parser, catalogue_required=False)
    parser.add_argument("--packed", type=Path, metavar="PACK",
                        help="train from a pack of the three sources (classification.packed_data) instead of "
                             "--catalogue/--photos/--street")
    parser.add_argument("--bundle", type=Path, required=True, help="output bundle folder")
    parser.add_argument("--run-dir", type=Path, required=True, help="checkpoints, cache, curves")
    parser.add_argument("--trunk", default="vgg19", help="vgg19 | efficientnet_lite0 | efficientnet_lite1 | efficientnet_lite2")
    parser.add_argument("--frozen-stages", type=int, default=0,
                        help="pretrained trunks: keep the stem and this many stages at their ImageNet weights")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=float, default=1.0, help="VGG19 channel multiplier (1.0 = published)")
    parser.add_argument("--height", type=int, default=80)
    parser.add_argument("--input-width", type=int, default=60)
    parser.add_argument("--head-units", type=int, default=512)
    parser.add_argument("--max-side", type=int, default=192, help="photos and crops are kept at most this large")
    parser.add_argument("--catalogue-per-epoch", type=int, help="thumbnails drawn per epoch (default: all)")
    parser.add_argument("--photos-per-epoch", type=int, help="phone photos drawn per epoch (default: all; more repeats them)")
    parser.add_argument("--street-per-epoch", type=int, help="street crops drawn per epoch (default: all; more repeats them)")
    parser.add_argument("--val-catalogue", type=int, default=1500, help="catalogue validation images scored each epoch")
    parser.add_argument("--catalogue-augmentation", choices=["photo", "light"], default="photo",
                        help="photo: thumbnails made to look like photos (backgrounds, rotation, blur, JPEG...); "
                             "light: a mild crop and the flip only, for a network that reads thumbnails alone")
    parser.add_argument("--seed", type=int, default=1234, help="the training order and augmentation (--split-seed: the split)")
    parser.add_argument("--limit", type=int, help="use only this many catalogue rows (smoke runs)")
    parser.add_argument("--balance-labels", type=float, default=0.0, metavar="POWER",
                        help="draw phone photos and street crops with weight 1/(count of their label)**POWER "
                             "(0: as they come, 1: every label as often)")
    parser.add_argument("--steps-per-epoch", type=int, help="cap steps per epoch (smoke runs)")
    parser.add_argument("--workers", type=int, default=2, help="threads (or processes) preparing batches")
    parser.add_argument("--processes", action="store_true",
                        help="prepare batches in --workers processes rather than threads (many-core machines: "
                             "augmentation holds the GIL much of the time)")
    parser.add_argument("--precision", choices=["auto", "float32", "mixed_bfloat16", "mixed_float16"], default="auto",
                        help="auto: mixed bfloat16 on a GPU, float32 on the CPU")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init-from", type=Path, metavar="BUNDLE",
                        help="start from this classifier bundle's weights (same trunk and labels; any input size "
                             "and frozen stages): a further schedule on top of a finished run")
    parser.add_argument("--average-from-epoch", type=int, metavar="N",
                        help="serve the running average of the weights from epoch N (1-based) to the end, taken "
                             "every --average-every steps (SWA); the learning rate then stays constant after warm-up")
    parser.add_argument("--average-every", type=int, default=10, help="steps between two averaged weight samples")
    parser.add_argument("--time-limit", type=float, metavar="SECONDS",
                        help="stop after the epoch at which another would pass this many seconds of training")
    parser.add_argument("--no-evaluate", action="store_true", help="skip the three-kind evaluation at the end")
    parser.add_argument("--weights-dtype", choices=["float16", "float32"], default="float16")
    args = parser.parse_args(argv)
    if (args.catalogue is None) == (args.packed is None):
        parser.error("give either --catalogue (with --photos/--street) or --packed")
    if args.packed and (args.photos or args.street or args.limit):
        parser.error("--packed holds every source already: drop --photos, --street and --limit")
    return args


def precision_policy(choice: str) -> str:
    """bfloat16 keeps float32's range (no loss scaling) and runs at full speed on current GPUs."""
    if choice == "auto":
        return "mixed_bfloat16" if runtime.gpu_available() else "float32"
    return choice


def read_training_data(args):
    """(taxonomy, records by kind, split, kind -> decoded images, what the manifest says of the data),
    from the three folders or from a pack of them (classification.packed_data)."""
    if args.packed:
        pack = read_pack(args.packed)
        info = {**pack.sources, "packed": str(args.packed), "packed_parts": pack.parts,
                "packed_max_side": pack.max_side}
        return pack.taxonomy, pack.records, pack.split, pack.images, info
    catalogue = read_catalogue(args.catalogue)
    catalogue_records = catalogue.records
    if args.limit:
        rng = np.random.default_rng(args.split_seed)
        pick = sorted(rng.choice(len(catalogue_records), min(args.limit, len(catalogue_records)), replace=False))
        catalogue_records = [catalogue_records[i] for i in pick]
    taxonomy = Taxonomy.from_records(catalogue_records)
    records, split = read_sources(catalogue_records, taxonomy, args.photos, args.photo_label_map, args.street,
                                  args.street_label_map, args.street_split, seed=args.split_seed,
                                  street_train_margin=args.street_train_margin)

    def images_of(kind):
        wide = kind == "street" and args.street_train_margin != STREET_CROP_MARGIN
        cache = image_cache_path(args.run_dir, kind + (f"-margin{args.street_train_margin}" if wide else ""),
                                 args.max_side, len(records[kind]))
        return load_images(records[kind], None if kind == "catalogue" else args.max_side, desc=f"decoding {kind}",
                           cache=cache)

    info = describe_sources(args, catalogue, len(catalogue_records))
    return taxonomy, records, split, images_of, info


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.time()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    policy = precision_policy(args.precision)
    keras.mixed_precision.set_global_policy(policy)
    trunk = get_trunk(args.trunk)

    taxonomy, records, split, images_of, data_info = read_training_data(args)
    if args.init_from and (args.init_from / "split.json").is_file():
        leaks = held_out_leaks(split, json.loads((args.init_from / "split.json").read_text()))
        if leaks:
            raise SystemExit(f"--init-from {args.init_from}: this run's split trains on images that bundle held out "
                             f"({leaks}); give the --split-seed (and sources) it was trained with")
    (args.run_dir / "split.json").write_text(json.dumps(split))

    # One flat table of every record of every kind; the datasets index into it.
    table, images, rows = [], [], {}
    for kind, kind_records in records.items():
        kind_images = images_of(kind)
        position = {r.id: len(table) + i for i, r in enumerate(kind_records)}
        for part, ids in kind_split(split, kind).items():
            # A pack holds only some parts (train and val by default).
            rows[(kind, part)] = np.asarray([position[i] for i in ids if i in position], dtype=np.int64)
        table += kind_records
        images += kind_images
    labels = encode_allowed(table, taxonomy)
    kinds = [r.kind for r in table]
    input_size = (args.height, args.input_width)

    def subset(index):
        return [images[i] for i in index], {t: v[index] for t, v in labels.items()}, [kinds[i] for i in index]

    train_index = np.concatenate([rows[(k, "train")] for k in records])
    val_index = np.concatenate([rows[("catalogue", "val")][:args.val_catalogue]]
                               + [rows[(k, "val")] for k in records if k != "catalogue"])
    backgrounds = [images[i] for i in rows.get(("photo", "train"), [])]
    street_margin = data_info.get("street_train_margin", STREET_CROP_MARGIN)  # packs made before it: the default
    train_images, train_labels, train_kinds = subset(train_index)
    train = MixedBatches(train_images, train_labels, train_kinds, input_size, args.batch_size,
                         PhotoAugmenter(input_size, backgrounds, seed=args.seed, street_margin=street_margin,
                                        catalogue_light=args.catalogue_augmentation == "light"),
                         per_epoch={"catalogue": args.catalogue_per_epoch, "photo": args.photos_per_epoch,
                                    "street": args.street_per_epoch}, seed=args.seed,
                         draw_weights=(label_balance_weights([table[i] for i in train_index], args.balance_labels)
                                       if args.balance_labels else None),
                         workers=args.workers, use_multiprocessing=args.processes)
    val = MixedBatches(*subset(val_index), input_size, 128)
    steps = min(len(train), args.steps_per_epoch or len(train))

    state = {"epoch": 0, "history": {}, "train_seconds": 0.0}
    checkpoint = args.run_dir / CHECKPOINT
    if args.resume and checkpoint.is_file():
        model = keras.saving.load_model(checkpoint)
        state = json.loads((args.run_dir / STATE).read_text())
        print(f"resuming from epoch {state['epoch']}")
    else:
        model = build_model(taxonomy, input_size, width=args.width, head_units=args.head_units, trunk=args.trunk,
                            frozen_stages=args.frozen_stages,
                            imagenet_init=trunk.pretrained is not None and not args.init_from)
        if args.init_from:
            state["initialised_from"] = initialise_from_bundle(model, args.init_from, taxonomy, args.trunk)
        compile_model(model, args.lr, steps * args.epochs, constant=args.average_from_epoch is not None)
    averager = None
    if args.average_from_epoch is not None:
        averager = WeightAverage(start_epoch=args.average_from_epoch - 1, every=args.average_every,
                                 path=args.run_dir / AVERAGE)
        if args.resume:
            averager.restore()
    # The average saves itself before the epoch's checkpoint: a resumed run never has it behind.
    callbacks = [averager] if averager else []
    callbacks += [EpochCheckpoint(args.run_dir, state), StepProgress(steps, args.batch_size)]
    if args.time_limit:
        callbacks.append(TimeLimit(args.time_limit, state))
    if state["epoch"] < args.epochs:
        model.fit(train, validation_data=val, epochs=args.epochs, initial_epoch=state["epoch"],
                  steps_per_epoch=steps, callbacks=callbacks, verbose=2)
    if averager is not None:
        averager.apply(model)
        print(f"serving the average of {averager.count} weight samples")

    config = {"architecture": f"{args.trunk} + dense heads", "trunk": args.trunk, "width": args.width,
              "head_units": args.head_units, "input_size": list(input_size),
              "preprocessing": {**PREPROCESSING, "dtype": f"uint8 into the model; the model scales {trunk.preprocessing}"},
              "groups": {g: {"tasks": list(t)} for g, t in MODEL_GROUPS.items()}}
    training = {
        "data": {**data_info,
                 "split": {kind: {part: len(ids) for part, ids in kind_split(split, kind).items()} for kind in records},
                 "split_file": "split.json", "seed": args.seed, "split_seed": args.split_seed},
        "command": "python -m classification.train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "trunk": {"name": args.trunk, "initial_weights": trunk.pretrained or "random (from scratch)",
                  "frozen_stages": args.frozen_stages},
        "backend": runtime.backend(), "precision": policy,
        "machine": f"{platform.machine()} {runtime.gpu_name() or 'CPU only'}",
        "epochs": state["epoch"], "epochs_planned": args.epochs, "steps_per_epoch": steps, "batch_size": args.batch_size,
        "catalogue_per_epoch": args.catalogue_per_epoch, "photos_per_epoch": args.photos_per_epoch,
        "street_per_epoch": args.street_per_epoch, "balance_labels": args.balance_labels, "learning_rate": args.lr,
        "schedule": "constant after linear warm-up" if averager else "cosine decay with linear warm-up",
        "optimizer": "AdamW(weight_decay=1e-4)",
        "loss": "partial-label cross-entropy (-log of the probability mass on the allowed labels)",
        "augmentation": "catalogue background replaced by photo patches or textures; random resized crop, "
                        "rotation, corner jitter, flip, brightness/contrast/saturation, blur, "
                        "downscale-upscale, JPEG; street crops cut with "
                        f"{street_margin} of context",
        "history": state["history"], "train_seconds": round(state.get("train_seconds", 0.0), 1),
        "seconds": round(time.time() - started, 1),
    }
    if state.get("stopped_by_time_limit_after_epoch"):
        training["stopped_by_time_limit_after_epoch"] = state["stopped_by_time_limit_after_epoch"]
    if state.get("initialised_from"):
        training["initialised_from"] = state["initialised_from"]
    if averager is not None:
        training["weight_average"] = {"from_epoch": args.average_from_epoch, "every_steps": args.average_every,
                                      "samples": averager.count,
                                      "what": "the served weights are the mean of the weights sampled along the "
                                              "trajectory (SWA), batch-norm statistics included"}
    # A float32 copy beside the checkpoint: what the float16 bundle that ships is compared against.
    write_bundle(args.run_dir / "bundle-float32", model, taxonomy, config, {"training": training}, dtype="float32")
    write_bundle(args.bundle, model, taxonomy, config, {"training": training}, dtype=args.weights_dtype)
    (args.bundle / "split.json").write_text(json.dumps(split))
    if (args.run_dir / "training_curve.png").is_file():
        (args.bundle / "training_curve.png").write_bytes((args.run_dir / "training_curve.png").read_bytes())
    if args.packed and not args.no_evaluate:
        # A pack holds re-encoded images and no catalogue test split: the figures that count come from
        # the original files.
        print("trained from a pack: evaluate the bundle with python -m classification.evaluate where the three "
              "sources are")
    elif not args.no_evaluate:
        from .evaluate import evaluate_bundle  # imported late: it loads the bundle just written

        held_out = {kind: set(kind_split(split, kind)[HELD_OUT_PART[kind]]) for kind in records}
        evaluate_bundle(args.bundle, {kind: [r for r in records[kind] if r.id in held_out[kind]] for kind in records},
                        update_manifest=True)
    return json.loads((args.bundle / "manifest.json").read_text())


if __name__ == "__main__":
    main()
