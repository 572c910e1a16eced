#!/usr/bin/env bash
# The zero-shot model: rtvp-tiny trained on the base names of models/split-synth.json
# only (views holding a novel defect are left out entirely), 250 steps of 8 crops of
# 256 px, 1 torch thread. scripts/train_default.sh ships it with all five names and
# measures the novel names zero-shot. Resumes if interrupted.
#
#   scripts/train_zero_shot.sh [WORK_DIR]      (default runs/default)
set -euo pipefail
WORK=${1:-runs/default}
export HF_HUB_OFFLINE=1
RESUME=()
[ -f "$WORK/zs/last.pt" ] && RESUME=(--resume)
edge train --data "$WORK/train" --val "$WORK/val" --split models/split-synth.json --model rtvp-tiny --epochs 2 \
  --max-steps 250 --crop 256 --batch 8 --imgsz 640 --threads 1 --val-every 2 --save-every 25 \
  --version rtvp-tiny-base --out "$WORK/zs" "${RESUME[@]}"
