#!/usr/bin/env bash
# The zero-shot model: rtvp-n trained on the base names of models/split-synth.json only
# (views holding a novel defect are left out entirely), 1,200 steps of 8 crops of 256 px,
# 2 torch threads (about 20 minutes of a quiet 2-core CPU). scripts/train_default.sh
# measures it on the novel names. Resumes if interrupted.
#
#   scripts/train_zero_shot.sh [WORK_DIR]      (default runs/default)
set -euo pipefail
WORK=${1:-runs/default}
export HF_HUB_OFFLINE=1
RESUME=()
[ -f "$WORK/zs-n/last.pt" ] && RESUME=(--resume)
edge train --data "$WORK/train" --val "$WORK/val_mini" --split models/split-synth.json --model rtvp-n --epochs 8 \
  --max-steps 1200 --crop 256 --batch 8 --imgsz 640 --threads 2 --val-every 8 --save-every 100 --half-weights \
  --version rtvp-n-base --out "$WORK/zs-n" "${RESUME[@]}"
