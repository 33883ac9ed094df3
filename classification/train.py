"""Train the category + style classifier on a catalogue folder and write a bundle.

    python -m classification.train --data ../shared/datasets/fashion-product-images-small \
        --bundle models/fashion-vgg19 --run-dir runs/classifier --epochs 12 --width 0.25

Checkpoints every epoch into --run-dir (rerun with --resume to continue), cosine learning-rate
schedule with warm-up, mixed precision when a GPU is present, a fixed seed, a training-curve PNG, and
at the end an evaluation of the held-back test split written into the bundle.
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

from . import runtime
import keras  # noqa: E402  (after runtime, which picks the backend and import order)

from .bundle import write_bundle  # noqa: E402
from .catalogue import read_catalogue, split_ids  # noqa: E402
from .data import CatalogueBatches, class_weights, encode_labels, load_images  # noqa: E402
from .evaluate import evaluate_records, format_table  # noqa: E402
from .inference import Classifier  # noqa: E402
from .losses import MaskedAccuracy, MaskedSparseCrossEntropy  # noqa: E402
from .model import build_model  # noqa: E402
from .plots import training_curves  # noqa: E402
from .preprocess import PREPROCESSING  # noqa: E402
from .taxonomy import MODEL_GROUPS, TASKS, Taxonomy  # noqa: E402

CHECKPOINT = "checkpoint.keras"
STATE = "state.json"


class EpochCheckpoint(keras.callbacks.Callback):
    """Saves model + optimizer state and the history after every epoch, so --resume loses at most one."""

    def __init__(self, run_dir: Path, history: dict):
        super().__init__()
        self.run_dir, self.history = run_dir, history

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(float(value))
        tmp = self.run_dir / f"tmp-{CHECKPOINT}"
        self.model.save(tmp)
        tmp.replace(self.run_dir / CHECKPOINT)
        (self.run_dir / STATE).write_text(json.dumps({"epoch": epoch + 1, "history": self.history}))
        training_curves(self.history, self.run_dir / "training_curve.png")


def compile_model(model: keras.Model, weights: dict[str, np.ndarray] | None, lr: float, total_steps: int) -> None:
    warmup = max(1, min(500, total_steps // 10))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=lr * 0.05, decay_steps=max(1, total_steps - warmup), alpha=0.01,
        warmup_target=lr, warmup_steps=warmup)
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=schedule, weight_decay=1e-4),
        loss={t: MaskedSparseCrossEntropy(None if weights is None else weights[t].tolist()) for t in TASKS},
        metrics={t: [MaskedAccuracy()] for t in TASKS},
    )


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True, help="output bundle folder")
    parser.add_argument("--run-dir", type=Path, required=True, help="checkpoints, cache, curves")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--width", type=float, default=1.0, help="VGG19 channel multiplier (1.0 = published)")
    parser.add_argument("--height", type=int, default=80)
    parser.add_argument("--input-width", type=int, default=60)
    parser.add_argument("--head-units", type=int, default=512)
    parser.add_argument("--class-weighting", choices=["sqrt", "none"], default="none",
                        help="sqrt: inverse-frequency weights to the power 0.5, clipped at 10 (measured worse "
                             "than none in a short run: README, Models)")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--limit", type=int, help="use only this many catalogue rows (smoke runs)")
    parser.add_argument("--steps-per-epoch", type=int, help="cap steps per epoch (smoke runs)")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--weights-dtype", choices=["float16", "float32"], default="float16")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.time()
    args.run_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(args.seed)
    if runtime.gpu_available():
        keras.mixed_precision.set_global_policy("mixed_float16")

    catalogue = read_catalogue(args.data)
    records = catalogue.records
    if args.limit:
        rng = np.random.default_rng(args.seed)
        records = [records[i] for i in sorted(rng.choice(len(records), min(args.limit, len(records)), replace=False))]
    taxonomy = Taxonomy.from_records(records)
    split = split_ids(records, seed=args.seed)
    (args.run_dir / "split.json").write_text(json.dumps(split))
    position = {r.id: i for i, r in enumerate(records)}
    index = {name: np.asarray([position[i] for i in ids], dtype=np.int64) for name, ids in split.items()}

    input_size = (args.height, args.input_width)
    cache = args.run_dir / f"images-{args.height}x{args.input_width}-{len(records)}.npy"
    if cache.is_file():
        images = np.load(cache)
    else:
        images = load_images(records, input_size)
        np.save(cache, images)
    labels = encode_labels(records, taxonomy)
    weights = None
    if args.class_weighting == "sqrt":
        weights = {t: class_weights(labels[index["train"], i], taxonomy.num_classes(t)) for i, t in enumerate(TASKS)}

    train = CatalogueBatches(images[index["train"]], labels[index["train"]], args.batch_size, shuffle=True,
                             augment=True, seed=args.seed)
    val = CatalogueBatches(images[index["val"]], labels[index["val"]], 256)
    steps = min(len(train), args.steps_per_epoch or len(train))
    state = {"epoch": 0, "history": {}}
    checkpoint = args.run_dir / CHECKPOINT
    if args.resume and checkpoint.is_file():
        model = keras.saving.load_model(checkpoint)
        state = json.loads((args.run_dir / STATE).read_text())
        print(f"resuming from epoch {state['epoch']}")
    else:
        model = build_model(taxonomy, input_size, width=args.width, head_units=args.head_units)
        compile_model(model, weights, args.lr, steps * args.epochs)
    if state["epoch"] < args.epochs:
        model.fit(train, validation_data=val, epochs=args.epochs, initial_epoch=state["epoch"],
                  steps_per_epoch=steps, callbacks=[EpochCheckpoint(args.run_dir, state["history"])],
                  verbose=1 if sys.stdout.isatty() else 2)

    config = {"architecture": "vgg19-bn", "width": args.width, "head_units": args.head_units,
              "input_size": list(input_size), "preprocessing": PREPROCESSING,
              "groups": {g: {"tasks": list(t)} for g, t in MODEL_GROUPS.items()}}
    training = {
        "data": {"catalogue": str(args.data), "rows_used": len(records), "rows_missing_image": len(catalogue.missing_images),
                 "split": {k: len(v) for k, v in split.items()}, "split_file": "split.json", "seed": args.seed},
        "command": "python -m classification.train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "backend": runtime.backend(), "mixed_precision": runtime.gpu_available(),
        "machine": f"{platform.machine()} {'GPU' if runtime.gpu_available() else 'CPU only'}",
        "epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.lr,
        "schedule": "cosine decay with linear warm-up", "optimizer": "AdamW(weight_decay=1e-4)",
        "class_weighting": args.class_weighting, "augmentation": "horizontal flip, +-4 px shift, brightness x0.9-1.1",
        "history": state["history"], "seconds": round(time.time() - started, 1),
    }
    test_records = [records[i] for i in index["test"]]
    # float32 reference first, then the float16 bundle that ships: the manifest records both.
    reference_dir = args.run_dir / "bundle-float32"
    write_bundle(reference_dir, model, taxonomy, config, {"training": training}, dtype="float32")
    reference = evaluate_records(Classifier(reference_dir), test_records, images[index["test"]])
    manifest = write_bundle(args.bundle, model, taxonomy, config, {"training": training}, dtype=args.weights_dtype)
    (args.bundle / "split.json").write_text(json.dumps(split))
    if (args.run_dir / "training_curve.png").is_file():
        (args.bundle / "training_curve.png").write_bytes((args.run_dir / "training_curve.png").read_bytes())
    shipped = evaluate_records(Classifier(args.bundle), test_records, images[index["test"]],
                               out_dir=args.bundle / "evaluation")
    manifest["metrics"] = {
        "split": "test", "images": len(test_records),
        "tasks": {t: {k: m.get(k) for k in ("accuracy", "top5_accuracy", "macro_f1", "support")}
                  for t, m in shipped["tasks"].items()},
        "float32_accuracy": {t: m.get("accuracy") for t, m in reference["tasks"].items()},
        "report": "evaluation/report.md",
    }
    (args.bundle / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    print(format_table(shipped))
    return manifest


if __name__ == "__main__":
    main()
