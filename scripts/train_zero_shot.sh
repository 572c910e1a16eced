#!/usr/bin/env bash
# The zero-shot figure for docs/training.md: a model trained on the split's base names
# only (models/split-synth.json), then prompted with the novel names it never saw, on
# views it never saw. Uses the datasets scripts/train_default.sh made (run it first:
# it also writes test/first40.json, the first 40 test containers). rtvp-tiny and 250
# steps: what the shared 2-core CPU allowed beside the default model's run.
#
#   scripts/train_zero_shot.sh [WORK_DIR]      (default runs/default)
set -euo pipefail
WORK=${1:-runs/default}
SPLIT=models/split-synth.json
export HF_HUB_OFFLINE=1

if [ ! -f "$WORK/zs/rtvp-tiny-base/manifest.json" ]; then
  RESUME=()
  [ -f "$WORK/zs/last.pt" ] && RESUME=(--resume)
  edge train --data "$WORK/train" --val "$WORK/val_mini" --split "$SPLIT" --model rtvp-tiny --epochs 2 \
    --max-steps 250 --crop 256 --batch 8 --imgsz 640 --threads 1 --val-every 2 --save-every 25 \
    --version rtvp-tiny-base --out "$WORK/zs" "${RESUME[@]}"
fi
# base names on the unseen test set, then the novel names alone (zero-shot)
edge eval "$WORK/zs/rtvp-tiny-base" --data "$WORK/test/first40.json" --vocab "oil,black spot,bubble" --runtime onnxruntime \
  --json "$WORK/zs_base_metrics.json"
edge eval "$WORK/zs/rtvp-tiny-base" --data "$WORK/test/first40.json" --split "$SPLIT" --runtime onnxruntime \
  --json "$WORK/zs_novel_metrics.json"

# Stored beside the shipped model's own figures (models/rtvp-tiny-synth, made by
# scripts/train_default.sh).
if [ -f models/rtvp-tiny-synth/manifest.json ]; then
  python - "$WORK" <<'PY'
import json, sys
from engines.package import ModelPackage
work = sys.argv[1]
package = ModelPackage.load("models/rtvp-tiny-synth")
novel = json.load(open(f"{work}/zs_novel_metrics.json"))
base = json.load(open(f"{work}/zs_base_metrics.json"))
keys = ("ap", "ap50", "ap75", "per_class", "at_target", "images", "vocabulary")
package.update(zero_shot={
    "model": "rtvp-tiny trained on the base names of models/split-synth.json (scripts/train_zero_shot.sh)",
    "novel": {k: novel[k] for k in keys}, "base": {k: base[k] for k in keys}})
PY
fi
