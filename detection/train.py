"""Train a Mask R-CNN garment detector and write a bundle.

    python -m detection.train --dataset ccp --data ../shared/datasets/clothing-co-parsing \
        --architecture maskrcnn_mobilenet_v3_fpn --bundle models/ccp-maskrcnn-mobilenet \
        --run-dir runs/detector --epochs 20

The ImageNet-backed detector, with the usual fine-tuning settings (SGD 0.01, frozen batch norm) and
the CPU profile's cheap heads (a 128-channel FPN; 1.24 s per step of 2 photos at 512 px on 2 cores):

    python -m detection.train --dataset ccp --data ../shared/datasets/clothing-co-parsing \
        --architecture maskrcnn_efficientnet_lite0_fpn --bundle models/ccp-maskrcnn-efflite0 --run-dir runs/efflite0 \
        --epochs 4 --batch-size 2 --min-size 512 --max-size 768 --scale-jitter 0.75 1.25 \
        --optimizer sgd --lr 0.01 --fpn-channels 128 --mask-head-channels 128 --mask-head-layers 2 --roi-samples 128 \
        --rpn-train-proposals 600 300 --rpn-test-proposals 300 300 --class-agnostic-nms 0.7 --cache --workers 1

`--garment-photos ../shared/datasets/clothing-dataset --garment-photo-split models/fashion-lite0/split.json`
adds phone photos of one garment (a classifier bundle's training senders only), boxed and outlined by
GrabCut (`garment_photos.py`), to the training split; the validation split stays street photos.

A plain loop after torchvision's detection references: AdamW or SGD with warm-up and cosine decay,
gradient clipping, AMP on a GPU, a checkpoint every epoch (--resume continues), a fixed seed, a
loss-curve PNG, and a COCO evaluation of the validation split recorded in the bundle's manifest.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from common.images import load_rgb

from .bundle import load_bundle, write_bundle
from .evaluate import SUMMARY_SKIPS, evaluate, record_in_manifest
from .garment_photos import LABEL_MAPS, PHOTO_ID_BASE, read_garment_photos
from .inference import Detection, Detector
from .model import DetectorConfig, backbone_info, build_detector
from .plots import loss_curve, prediction_sheet
from .records import READERS, DetectionRecord, split_records
from .transforms import downscale, jitter_model_scale, load_sample, scale_jitter_sizes, train_transforms

CHECKPOINT = "checkpoint.pt"
GARMENT_PHOTOS_SHEET = "garment_photos.png"


class DetectionDataset(Dataset):
    """Records as (image, target) training samples. With `cache_side`, every sample is decoded once,
    downscaled to that shorter side and kept in memory (`preload`): reading CCP's .mat annotations
    costs more than a training step at CPU input sizes."""

    def __init__(self, records: Sequence[DetectionRecord], transforms=None, cache_side: int | None = None):
        self.records, self.transforms, self.cache_side = list(records), transforms, cache_side
        self.cache: list | None = None

    def __len__(self):
        return len(self.records)

    def decode(self, index):
        record = self.records[index]
        image, instances = load_rgb(record.image_path), record.instances()
        return downscale(image, instances, self.cache_side) if self.cache_side else (image, instances)

    def preload(self, workers: int) -> None:
        loader = DataLoader(_Decoded(self), batch_size=None, num_workers=workers, collate_fn=_as_is)
        self.cache = list(tqdm(loader, total=len(self), desc="decoding samples"))

    def drop_empty(self) -> int:
        """Forget preloaded samples without an instance (a garment photo GrabCut could not outline: trained
        on, it would teach that the garment is background); returns how many."""
        kept = [i for i, (_, instances) in enumerate(self.cache) if instances]
        dropped = len(self.cache) - len(kept)
        self.records, self.cache = [self.records[i] for i in kept], [self.cache[i] for i in kept]
        return dropped

    def __getitem__(self, index):
        image, instances = self.cache[index] if self.cache is not None else self.decode(index)
        return load_sample(instances, image, self.transforms)


class _Decoded(Dataset):
    def __init__(self, dataset: DetectionDataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset.decode(index)


def _as_is(sample):
    return sample


def collate(batch):
    return tuple(zip(*batch))


def initialise_from_bundle(model: torch.nn.Module, folder: Path, config: DetectorConfig, classes: list[str]) -> dict:
    """Load a finished bundle's weights into `model` and say what they were (its name, version and training)."""
    source, manifest = load_bundle(folder)
    if manifest["model"]["architecture"] != config.architecture or manifest["classes"] != classes:
        raise SystemExit(f"--init-from {folder}: a {manifest['model']['architecture']} bundle for "
                         f"{len(manifest['classes'])} classes cannot start a {config.architecture} run for {len(classes)}")
    model.load_state_dict(source.state_dict())
    earlier = manifest.get("training", {})
    return {"bundle": manifest["name"], "version": manifest["version"],
            **{k: earlier[k] for k in ("command", "epochs", "seconds", "initialised_from") if k in earlier}}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=sorted(READERS), required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--run-dir", type=Path, required=True)
    parser.add_argument("--architecture", default="maskrcnn_mobilenet_v3_fpn")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--max-iters", type=int, help="stop each epoch after this many iterations (smoke runs)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw",
                        help="sgd: momentum 0.9 (the usual choice for fine-tuning a pretrained backbone)")
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--weight-decay", type=float, default=1e-4)
    parser.add_argument("--warmup-iters", type=int, default=300, help="linear warm-up (at most a tenth of the run)")
    parser.add_argument("--scale-jitter", type=float, nargs=2, metavar=("LOW", "HIGH"),
                        help="train at shorter sides drawn from LOW..HIGH x --min-size (steps of 32 px)")
    parser.add_argument("--fpn-channels", type=int, default=256, help="FPN width (EfficientNet-Lite backbones)")
    parser.add_argument("--class-agnostic-nms", type=float,
                        help="serve with one NMS across classes at this IoU (recorded in the bundle)")
    parser.add_argument("--min-size", type=int, default=512)
    parser.add_argument("--max-size", type=int, default=768)
    parser.add_argument("--mask-head-channels", type=int, default=256)
    parser.add_argument("--mask-head-layers", type=int, default=4)
    parser.add_argument("--roi-samples", type=int, default=512, help="RoIs sampled per image for the heads' losses")
    parser.add_argument("--rpn-train-proposals", type=int, nargs=2, default=(2000, 2000), metavar=("PRE", "POST"),
                        help="proposals kept per image before and after NMS while training")
    parser.add_argument("--rpn-test-proposals", type=int, nargs=2, default=(1000, 1000), metavar=("PRE", "POST"))
    parser.add_argument("--cache", action="store_true",
                        help="decode every training sample once, downscaled to 1.25x --min-size (or the largest "
                             "--scale-jitter size), and keep it in memory")
    parser.add_argument("--val-fraction", type=float, default=0.15)
    parser.add_argument("--limit", type=int, help="use only the first N records (smoke runs)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--init-from", type=Path, metavar="BUNDLE",
                        help="start from this detector bundle's weights (same architecture and classes): "
                             "a further schedule on top of a finished run")
    parser.add_argument("--device", default="auto")
    photos = parser.add_argument_group("phone photos of one garment, added to the training split (detection.garment_photos)")
    photos.add_argument("--garment-photos", type=Path, metavar="DIR", help="a clothing-dataset layout folder")
    photos.add_argument("--garment-photo-label-map", type=Path, default=LABEL_MAPS / "clothing-dataset.json")
    photos.add_argument("--garment-photo-split", type=Path, metavar="SPLIT_JSON",
                        help="a classifier bundle's split.json: only its `photo.train` photos are used, so the "
                             "senders it holds out stay unseen by both models")
    photos.add_argument("--garment-photo-count", type=int, help="use this many of them, drawn with --garment-photo-seed")
    photos.add_argument("--garment-photo-seed", type=int,
                        help="draws the photos (default --seed; a run continuing another draws others with its own, "
                             "while --seed keeps the street photos' split)")
    args = parser.parse_args(argv)
    if args.garment_photos and not args.cache:
        parser.error("--garment-photos needs --cache (photos GrabCut cannot outline are dropped once decoded)")
    return args


def draw_garment_photos(train_set: DetectionDataset, classes, path: Path, count: int = 12) -> None:
    """The first garment photos' GrabCut boxes and masks, as trained on: a person checks them at a glance."""
    shown = [(image, [Detection(i.box, i.mask, classes[i.category - 1], 1.0) for i in instances])
             for record, (image, instances) in zip(train_set.records, train_set.cache) if record.image_id >= PHOTO_ID_BASE]
    prediction_sheet(shown[:count], path, columns=4)


def garment_photo_records(args, classes) -> tuple[list[DetectionRecord], dict]:
    ids = json.loads(args.garment_photo_split.read_text())["photo"]["train"] if args.garment_photo_split else None
    records = read_garment_photos(args.garment_photos, args.garment_photo_label_map, classes, ids)
    seed = args.seed if args.garment_photo_seed is None else args.garment_photo_seed
    drawn = args.garment_photo_count is not None and args.garment_photo_count < len(records)
    if drawn:
        chosen = np.random.default_rng(seed).choice(len(records), args.garment_photo_count, replace=False)
        records = [records[i] for i in sorted(chosen)]
    return records, {"path": str(args.garment_photos), "label_map": os.path.relpath(args.garment_photo_label_map),
                     "split_file": str(args.garment_photo_split) if args.garment_photo_split else None,
                     "photos": len(records), "drawn_with_seed": seed if drawn else None}


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    reader, classes = READERS[args.dataset]
    records = reader(args.data)[: args.limit]
    split = split_records(records, args.val_fraction, args.seed)
    (args.run_dir / "split.json").write_text(json.dumps(split))
    by_id = {r.image_id: r for r in records}
    sizes = scale_jitter_sizes(args.min_size, *args.scale_jitter) if args.scale_jitter else (args.min_size,)
    # Cached at the largest training size (at least 1.25x the serving size), so jitter never upsamples.
    photo_records, photo_data = garment_photo_records(args, classes) if args.garment_photos else ([], None)
    train_set = DetectionDataset([by_id[i] for i in split["train"]] + photo_records, train_transforms(args.min_size),
                                 cache_side=max(int(args.min_size * 1.25), max(sizes)) if args.cache else None)
    if args.cache:
        train_set.preload(args.workers)
    if photo_data:
        photo_data["dropped_without_mask"] = train_set.drop_empty()
        print(f"garment photos: {photo_data['photos']} read, {photo_data['dropped_without_mask']} without a mask dropped")
        draw_garment_photos(train_set, classes, args.run_dir / GARMENT_PHOTOS_SHEET)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, collate_fn=collate,
                        num_workers=args.workers, generator=torch.Generator().manual_seed(args.seed),
                        persistent_workers=args.workers > 0)

    config = DetectorConfig(architecture=args.architecture, num_classes=len(classes) + 1,
                            min_size=args.min_size, max_size=args.max_size,
                            mask_head_channels=args.mask_head_channels, mask_head_layers=args.mask_head_layers,
                            rpn_train_pre_nms=args.rpn_train_proposals[0], rpn_train_post_nms=args.rpn_train_proposals[1],
                            rpn_test_pre_nms=args.rpn_test_proposals[0], rpn_test_post_nms=args.rpn_test_proposals[1],
                            roi_samples_per_image=args.roi_samples, fpn_channels=args.fpn_channels,
                            class_agnostic_nms=args.class_agnostic_nms)
    model = build_detector(config, pretrained=True)
    initialised_from = initialise_from_bundle(model, args.init_from, config, list(classes)) if args.init_from else None
    model = model.to(device)
    jitter_model_scale(model, sizes, args.max_size / args.min_size)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if args.optimizer == "sgd":
        optimizer = torch.optim.SGD(trainable, lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    else:
        optimizer = torch.optim.AdamW(trainable, lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = min(len(loader), args.max_iters or len(loader))
    total, warmup = steps_per_epoch * args.epochs, min(args.warmup_iters, steps_per_epoch * args.epochs // 10 + 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * (
        0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / max(1, total))))))
    scaler = torch.amp.GradScaler(enabled=device.type == "cuda")
    state = {"epoch": 0, "history": {}}
    checkpoint = args.run_dir / CHECKPOINT
    if args.resume and checkpoint.is_file():
        saved = torch.load(checkpoint, map_location=device, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        scaler.load_state_dict(saved["scaler"])
        state = saved["state"]
        print(f"resuming from epoch {state['epoch']}")

    for epoch in range(state["epoch"], args.epochs):
        epoch_started = time.time()
        model.train()
        window: dict[str, list[float]] = {}
        progress = tqdm(loader, total=steps_per_epoch, desc=f"epoch {epoch + 1}/{args.epochs}")
        for step, (images, targets) in enumerate(progress):
            if step >= steps_per_epoch:
                break
            images = [i.to(device) for i in images]
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            with torch.autocast(device.type, enabled=device.type == "cuda"):
                losses = model(images, targets)
            loss = sum(losses.values())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss is {loss.item()} at epoch {epoch + 1} step {step}: {losses}")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            for key, value in {"loss": loss.item(), **{k: v.item() for k, v in losses.items()}}.items():
                window.setdefault(key, []).append(value)
            progress.set_postfix(loss=f"{np.mean(window['loss'][-20:]):.3f}")
        for key, values in window.items():
            state["history"].setdefault(key, []).append(float(np.mean(values)))
        state["epoch"] = epoch + 1
        state["train_seconds"] = state.get("train_seconds", 0.0) + time.time() - epoch_started
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "state": state},
                   args.run_dir / f"tmp-{CHECKPOINT}")
        (args.run_dir / f"tmp-{CHECKPOINT}").replace(checkpoint)
        loss_curve(state["history"], args.run_dir / "loss_curve.png")

    training = {
        "data": {"dataset": args.dataset, "path": str(args.data), "images": len(records),
                 "split": {k: len(v) for k, v in split.items()}, "split_file": "split.json", "seed": args.seed,
                 **({"garment_photos": photo_data} if photo_data else {})},
        "command": "python -m detection.train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "device": f"{platform.machine()} {device.type}", "amp": device.type == "cuda",
        "epochs": args.epochs, "iterations_per_epoch": steps_per_epoch, "batch_size": args.batch_size,
        "optimizer": (f"SGD(lr={args.lr}, momentum=0.9" if args.optimizer == "sgd" else f"AdamW(lr={args.lr}")
                     + f", weight_decay={args.weight_decay}), {warmup}-iteration warm-up + cosine",
        "augmentation": f"horizontal flip, colour jitter, shorter side drawn from {list(sizes)}",
        "backbone": backbone_info(args.architecture),
        "trainable_parameters": sum(p.numel() for p in trainable),
        "epoch_mean_losses": state["history"],
        "seconds": round(state.get("train_seconds", 0.0), 1),  # training epochs, summed over resumed runs
    }
    if initialised_from:
        training["initialised_from"] = initialised_from
    manifest = write_bundle(args.bundle, model.cpu().float(), config, list(classes), {"training": training})
    (args.bundle / "split.json").write_text(json.dumps(split))
    for sheet in ("loss_curve.png", GARMENT_PHOTOS_SHEET):
        if (args.run_dir / sheet).is_file():
            (args.bundle / sheet).write_bytes((args.run_dir / sheet).read_bytes())
    val = [by_id[i] for i in split["val"]]
    metrics = evaluate(Detector(args.bundle, score_threshold=0.05), val, args.bundle / "evaluation")
    # Serve at the score threshold with the best F1 on the validation split, not an arbitrary 0.5.
    manifest = record_in_manifest(args.bundle, metrics, "val")
    print(json.dumps({k: v for k, v in metrics.items() if k not in SUMMARY_SKIPS}))
    return manifest


if __name__ == "__main__":
    main()
