"""Figures: loss curves and detections drawn on images."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def loss_curve(history: dict[str, list[float]], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for key, values in history.items():
        ax.plot(values, label=key, linewidth=2 if key == "loss" else 1)
    ax.set(title="detector training loss (per logged step window)", xlabel="log step", yscale="log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def prediction_sheet(samples, path: Path, columns: int = 3) -> None:
    """samples: [(image HxWx3, [Detection, ...]), ...]"""
    if not samples:
        return
    rows = int(np.ceil(len(samples) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4 * columns, 5.5 * rows), squeeze=False)
    colours = plt.cm.tab20(np.linspace(0, 1, 20))
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (image, detections) in zip(axes.ravel(), samples):
        overlay = image.astype(np.float32)
        for i, d in enumerate(detections):
            colour = colours[i % 20][:3] * 255
            overlay[d.mask] = overlay[d.mask] * 0.5 + colour * 0.5
            x1, y1, x2, y2 = d.box
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, color=colours[i % 20], linewidth=1.5))
            ax.text(x1, y1, f"{d.label} {d.score:.2f}", fontsize=7, color="white",
                    bbox={"facecolor": colours[i % 20], "pad": 1, "linewidth": 0})
        ax.imshow(overlay.astype(np.uint8))
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
