"""Classification metrics on decoded predictions: accuracy, top-5, macro-F1, per-class P/R/support."""
from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


# The figures the manifest keeps for each photo kind (phone photos, street crops): articleType group
# accuracy as a mean over labels and over images, and masterCategory accuracy over images.
PHOTO_KIND_FIGURES = ("articleType_group_accuracy", "articleType_group_accuracy_micro", "masterCategory_accuracy")

def task_metrics(true: np.ndarray, pred: np.ndarray, probs: np.ndarray, labels: tuple[str, ...]) -> dict:
    """`true` uses -1 for a missing label and -2 for a label the model does not know (counted wrong)."""
    keep = true != -1
    true, pred, probs = true[keep], pred[keep], probs[keep]
    if len(true) == 0:
        return {"support": 0}
    k = min(5, probs.shape[1])
    top5 = np.argsort(-probs, axis=1)[:, :k]
    present = sorted(set(true[true >= 0].tolist()) | set(pred.tolist()))
    precision, recall, f1, support = precision_recall_fscore_support(true, pred, labels=present, zero_division=0)
    return {
        "support": int(len(true)),
        "unknown_labels": int((true == -2).sum()),
        "accuracy": float((true == pred).mean()),
        "top5_accuracy": float((top5 == true[:, None]).any(axis=1).mean()),
        "macro_f1": float(np.mean(f1[np.asarray(support) > 0])) if (np.asarray(support) > 0).any() else 0.0,
        # `predicted`: how many images got the class (its precision is 0 by convention when none did)
        "per_class": {
            labels[c]: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s),
                        "predicted": int((pred == c).sum())}
            for c, p, r, f, s in zip(present, precision, recall, f1, support)
        },
    }


def confusion(true: np.ndarray, pred: np.ndarray, num_classes: int) -> np.ndarray:
    keep = true >= 0
    return confusion_matrix(true[keep], pred[keep], labels=list(range(num_classes)))
