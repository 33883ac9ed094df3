"""Compare evaluated classifier bundles on the held-out figures of the three kinds of image.

    python -m classification.compare_bundles --baseline models/fashion-lite0 \
        runs/soup-a/fashion-lite0 runs/soup-b/fashion-lite0 [--json out.json]

Reads only the manifests (`python -m classification.evaluate ... --update-manifest` writes their
metrics) and loads no model. Each candidate gets its 13 held-out figures, their sum against the
baseline and how many of them are up or equal. The rule the served bundle is chosen by: the
candidate with the largest sum against the bundle served before, provided that sum is positive
(ties: more figures up or equal). Every figure is weighed alike, which weighs the photo kinds
(6 figures) about as much as the catalogue (7). Where the baseline's manifest has them, its figures'
95% bootstrap intervals stand beside them (classification.intervals): a difference well inside one is
what other held-out images of the same labels could give.
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from common.bundles import BundleError

from .bundle import flip_average_of, heads_suffix, mirror_suffix, vote_suffix
from .metrics import PHOTO_KIND_FIGURES
from .taxonomy import TASKS

# (kind in the manifest's metrics, key, how docs/classifier.md's tables name it): the catalogue's accuracy per
# task, then each photo kind's figures.
PHOTO_KIND_NAMES = {"photo": ("phone photos", "photos"), "street": ("street crops", "crops")}
PHOTO_FIGURE_NAMES = {"articleType_group_accuracy": "group, mean over labels",
                      "articleType_group_accuracy_micro": "group, over {unit}",
                      "masterCategory_accuracy": "masterCategory"}
FIGURES: tuple[tuple[str, str, str], ...] = tuple(("catalogue", task, f"catalogue {task}") for task in TASKS) + tuple(
    (kind, key, f"{name} {PHOTO_FIGURE_NAMES[key].format(unit=unit)}")
    for kind, (name, unit) in PHOTO_KIND_NAMES.items() for key in PHOTO_KIND_FIGURES)


@dataclass
class Scored:
    """One bundle's figures and, for a candidate, their differences from the baseline's."""
    bundle: str
    version: str
    figures: dict[str, float]
    deltas: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, list[float]] = field(default_factory=dict)  # label -> [low, high], where evaluated

    @property
    def delta_sum(self) -> float:
        return round(sum(self.deltas.values()), 4)

    @property
    def up_or_equal(self) -> int:
        # Manifests round to 4 decimals: a difference under half a unit there is equality.
        return sum(delta > -5e-5 for delta in self.deltas.values())

    def as_json(self) -> dict:
        return {"bundle": self.bundle, "version": self.version, "figures": self.figures, "deltas": self.deltas,
                "delta_sum": self.delta_sum, "up_or_equal": self.up_or_equal, "intervals_95": self.intervals}


def held_out_figures(folder: Path) -> Scored:
    """The 13 figures a bundle's manifest records; a bundle not evaluated on all three kinds is refused."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise BundleError(f"{folder}: no manifest.json; not a bundle")
    manifest = json.loads(path.read_text())
    metrics = manifest.get("metrics") or {}
    missing = [f"{kind}.{key}" for kind, key, _ in FIGURES if key not in (metrics.get(kind) or {})]
    if missing:
        raise BundleError(f"{folder}: not evaluated on {', '.join(missing)}; run classification.evaluate "
                          "with --catalogue, --photos, --street and --update-manifest first")
    figures = {label: float(metrics[kind][key]) for kind, key, label in FIGURES}
    intervals = metrics.get("intervals_95") or {}
    bounds = {label: intervals[kind][key] for kind, key, label in FIGURES if key in (intervals.get(kind) or {})}
    # The same weights served with the mirror view or a neighbour vote are another candidate: the version
    # says which.
    version = (str(manifest.get("version", "?")) + mirror_suffix(flip_average_of(manifest))
               + vote_suffix((manifest.get("inference") or {}).get("neighbour_vote"))
               + heads_suffix((manifest.get("inference") or {}).get("feature_heads")))
    return Scored(bundle=str(folder), version=version, figures=figures, intervals=bounds)


def compare(baseline: Scored, candidates: Sequence[Scored]) -> list[Scored]:
    """Fill each candidate's differences from the baseline, figure by figure."""
    for candidate in candidates:
        candidate.deltas = {label: candidate.figures[label] - baseline.figures[label] for label in baseline.figures}
    return list(candidates)


def choose(candidates: Sequence[Scored]) -> Scored | None:
    """The candidate to serve by the rule above, or None where none beats the baseline."""
    better = [c for c in candidates if c.delta_sum > 0]
    return max(better, key=lambda c: (c.delta_sum, c.up_or_equal)) if better else None


def markdown(baseline: Scored, candidates: Sequence[Scored], chosen: Scored | None) -> str:
    with_intervals = bool(baseline.intervals)
    header = ["", f"baseline `{baseline.version}`"] + (["its 95% interval"] if with_intervals else []) + [
        ("**chosen** " if c is chosen else "") + f"`{c.version}`" for c in candidates]
    lines = ["| " + " | ".join(header) + " |", "|---" + "|---:" * (len(header) - 1) + "|"]
    for label in baseline.figures:
        values = [baseline.figures[label]] + [c.figures[label] for c in candidates]
        cells = [f"**{value:.4f}**" if value == max(values) else f"{value:.4f}" for value in values]
        if with_intervals:
            bounds = baseline.intervals.get(label)
            cells.insert(1, f"{bounds[0]:.4f}-{bounds[1]:.4f}" if bounds else "")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| sum against baseline / up or equal (of 13) | " + "| " * with_intervals + "| " + " | ".join(
        f"{c.delta_sum:+.4f} / {c.up_or_equal}" for c in candidates) + " |")
    bundles = "; ".join(f"`{s.version}` {s.bundle}" for s in [baseline, *candidates])
    verdict = (f"Chosen: `{chosen.version}` ({chosen.bundle})." if chosen
               else "None beats the baseline: keep it.")
    return "\n".join(lines) + f"\n\n{verdict}\nBundles: {bundles}\n"


def main(argv: Sequence[str] | None = None) -> Scored | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="the bundle served now")
    parser.add_argument("candidates", type=Path, nargs="+", help="evaluated bundles to weigh against it")
    parser.add_argument("--json", type=Path, help="also write the comparison here")
    args = parser.parse_args(argv)
    try:
        baseline = held_out_figures(args.baseline)
        candidates = compare(baseline, [held_out_figures(folder) for folder in args.candidates])
    except BundleError as error:
        parser.exit(2, f"error: {error}\n")
    chosen = choose(candidates)
    sys.stdout.write(markdown(baseline, candidates, chosen))
    if args.json:
        args.json.write_text(json.dumps({
            "rule": "largest sum of the 13 held-out figures against the baseline, if positive",
            "baseline": baseline.as_json(), "candidates": [c.as_json() for c in candidates],
            "chosen": chosen.version if chosen else None}, indent=2))
    return chosen


if __name__ == "__main__":
    main()
