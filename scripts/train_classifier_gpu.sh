#!/usr/bin/env bash
# Train the classifier from ImageNet on a GPU machine for a fixed time, from a pack of the training
# data (python -m classification.packed_data), and write the bundle into OUT.
#
#   scripts/train_classifier_gpu.sh PACK OUT SECONDS [more classification.train options]
#
# A probe of two short epochs measures the machine, then the schedule gets as many epochs as fit in
# SECONDS (the learning rate decays over exactly those); --time-limit stops early should the probe
# have been optimistic. Evaluate the bundle where the original images are:
#   python -m classification.evaluate --bundle OUT/fashion-lite0 --catalogue ... --photos ... --street ... --update-manifest
set -euo pipefail
pack=$1 out=$2 seconds=$3
shift 3
python=${PYTHON:-python3}
batch=${BATCH_SIZE:-256}
export PYTHONUNBUFFERED=1 KERAS_BACKEND=${KERAS_BACKEND:-torch}

# One epoch: every catalogue training thumbnail, the photo kinds drawn 2.5x (they are the service's
# use, and the smaller sets).
options=(--packed "$pack" --trunk efficientnet_lite0 --frozen-stages 0 --height 160 --input-width 120
         --batch-size "$batch" --lr "${LR:-1.2e-3}" --workers "${WORKERS:-12}" --processes
         --catalogue-per-epoch 32000 --photos-per-epoch 8000 --street-per-epoch 11000 "$@")
steps_per_epoch=$(( (32000 + 8000 + 11000 + batch - 1) / batch ))

probe=$(mktemp -d)
started=$(date +%s)
# Two short epochs: the first pays the start-up (worker pool, kernel choice), the second is steady.
"$python" -m classification.train "${options[@]}" --bundle "$probe/bundle" --run-dir "$probe/run" \
    --epochs 2 --steps-per-epoch 40 --no-evaluate
now=$(date +%s)
left=$(( seconds - (now - started) ))
# Per epoch: 40 steady steps and a validation pass, scaled to a real epoch (which has one validation
# pass too, so this overstates a little). Off the time left: a start-up like the probe's, and a margin.
read -r epochs limit < <("$python" -c '
import json, sys
state = json.load(open(sys.argv[1]))
steps, left, probe_wall = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
first, steady = state["epoch_seconds"]
startup = probe_wall - first - steady
limit = left - startup - 20
print(max(1, int(limit / (steady / 40 * steps))), int(limit))
' "$probe/run/state.json" "$steps_per_epoch" "$left" "$(( now - started ))")
echo "probe: $(grep -o '"epoch_seconds": \[[^]]*\]' "$probe/run/state.json"); ${left}s left, ${limit}s to train: $epochs epochs of $steps_per_epoch steps"
"$python" -m classification.train "${options[@]}" --bundle "$out/fashion-lite0" --run-dir "${RUN_DIR:-$probe/train}" \
    --epochs "$epochs" --time-limit "$limit" --no-evaluate
