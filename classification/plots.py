"""Figures a person would rather look at than read: training curves, confusion matrices, reliability."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def training_curves(history: dict[str, list[float]], path: Path) -> None:
    accuracy_keys = sorted(k for k in history if k.endswith("accuracy") and not k.startswith("val_"))
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5))
    axes[0].plot(history.get("loss", []), label="train")
    axes[0].plot(history.get("val_loss", []), label="validation")
    axes[0].set(title="total loss", xlabel="epoch")
    axes[0].legend()
    for key in accuracy_keys:
        line, = axes[1].plot(history[key], linestyle="--", alpha=0.6)
        axes[1].plot(history.get(f"val_{key}", []), color=line.get_color(), label=key.replace("_accuracy", ""))
    axes[1].set(title="accuracy (dashed: train, solid: validation)", xlabel="epoch", ylim=(0, 1))
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def confusion_matrix_png(matrix: np.ndarray, labels: tuple[str, ...], title: str, path: Path) -> None:
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix, dtype=float), where=rows > 0)
    size = max(6, 0.28 * len(labels))
    fig, ax = plt.subplots(figsize=(size + 2, size))
    image = ax.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)), labels, fontsize=7)
    ax.set(title=f"{title} (rows: true, normalised)", xlabel="predicted", ylabel="true")
    fig.colorbar(image, ax=ax, fraction=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def image_grid(images: list[np.ndarray], captions: list[str], title: str, path: Path, columns: int = 6) -> None:
    """Images with a caption under each (e.g. the most confident mistakes)."""
    rows = max(1, int(np.ceil(len(images) / columns)))
    fig, axes = plt.subplots(rows, columns, figsize=(2.3 * columns, 2.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, image, caption in zip(axes.ravel(), images, captions):
        ax.imshow(image)
        ax.set_title(caption, fontsize=6.5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight()))  # room for the title above the top captions
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reliability_png(by_kind: dict[str, dict[str, dict]], path: Path) -> None:
    """A reliability diagram per kind of image: each task's accuracy against its mean confidence per
    confidence bin (classification.confidence), on the diagonal where confidence can be taken at its word;
    each dot sized by its bin's share of the images."""
    if not by_kind:
        return
    fig, axes = plt.subplots(1, len(by_kind), figsize=(4.6 * len(by_kind), 4.4), squeeze=False)
    for ax, (kind, by_task) in zip(axes[0], by_kind.items()):
        ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
        for task, report in by_task.items():
            bins = report["bins"]
            x, y = [b["mean_confidence"] for b in bins], [b["accuracy"] for b in bins]
            line, = ax.plot(x, y, linewidth=1, alpha=0.7, label=f"{task} (error {report['expected_calibration_error']:.3f})")
            # A dot's area is its bin's share of the images: a bin of three images says little.
            ax.scatter(x, y, s=[4 + 160 * b["images"] / report["images"] for b in bins], color=line.get_color())
        ax.set(title=kind, xlabel="mean confidence in the bin", ylabel="accuracy in the bin", xlim=(0, 1), ylim=(0, 1))
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
