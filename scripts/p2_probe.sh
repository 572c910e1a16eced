#!/usr/bin/env bash
# Issue 17, thin defects: does a stride-4 head level (`edge train --p2`) lift plastering
# thread? Two fine-tunes of models/rtvp-n-synth on its own five-class training containers
# (the seeds of scripts/train_default.sh), the same steps and learning rate, one with the
# added level and one without (the control: it tells the level apart from the extra
# steps). Both are evaluated on the shipped model's 100 test containers (seed 3000) at
# 640 px; the figures land in WORK/test_metrics_{p2,control}.json. Resumable: run again
# after a stop and it continues each arm from its last checkpoint (every 100 steps). SEED
# (edge train --seed: crop order, augmentation, prompt sampling, the new level's start)
# repeats the probe to show how far two runs of one recipe differ; the data stay the same.
#
#   scripts/p2_probe.sh [WORK_DIR] [STEPS] [SEED]   (default runs/p2_probe 600 0)
set -euo pipefail
WORK=${1:-runs/p2_probe}
STEPS=${2:-600}
SEED=${3:-0}
export HF_HUB_OFFLINE=1
mkdir -p "$WORK"

[ -d "$WORK/train" ] || edge synth -n 400 --seed 1000 --out "$WORK/train"      # 2,400 views
[ -d "$WORK/val_mini" ] || edge synth -n 4 --seed 2001 --out "$WORK/val_mini"  # only watched
[ -d "$WORK/test" ] || edge synth -n 100 --seed 3000 --out "$WORK/test"        # never seen

source "$(dirname "$0")/finetune.sh"
finetune "$WORK/control" rtvp-n-control "$WORK/train" "$WORK/val_mini" "$STEPS" --seed "$SEED"
finetune "$WORK/p2" rtvp-n-p2 "$WORK/train" "$WORK/val_mini" "$STEPS" --p2 --seed "$SEED"
for ARM in control p2; do
  OUT="$WORK/test_metrics_$ARM.json"
  [ -f "$OUT" ] || edge eval "$WORK/$ARM/rtvp-n-$ARM" --data "$WORK/test" --runtime onnxruntime \
    --imgsz 640 --target-fr 0.01 --json "$OUT"
done
