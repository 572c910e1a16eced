#!/usr/bin/env bash
# The recorded commands behind the shipped models: models/rtvp-n-synth (the default) and
# models/rtvp-tiny-synth (the CPU model, as fast as YOLOv8n: docs/performance.md).
#
# Synthetic containers only (camera/synth.py via `edge synth`): a line needs its own
# samples (`edge retrain`). rtvp-n from scratch (no Mobile-SAM or CLIP weights exist on
# the training machine; the text prompts come from the bundled MiniLM encoder): one
# cosine schedule of 4,000 steps of 8 crops of 256 px at native resolution, 2 torch
# threads, fp16 weights in the package (half the size). About 70 minutes on a quiet
# 2-core CPU (1 s a step) for rtvp-n. Interrupted runs resume from the last checkpoint
# (every 100 steps), so running this again continues where it stopped. Both models see
# the same containers (the same seeds).
# rtvp-n's zero-shot figure comes from scripts/train_zero_shot.sh (a base-names-only model).
#
#   scripts/train_default.sh [WORK_DIR] [MODEL]   (default runs/default rtvp-n; or rtvp-tiny)
set -euo pipefail
WORK=${1:-runs/default}
MODEL=${2:-rtvp-n}
SCALE=${MODEL#rtvp-}
NAME=$MODEL-synth
STEPS=4000
export HF_HUB_OFFLINE=1
mkdir -p "$WORK"

[ -d "$WORK/train" ] || edge synth -n 400 --seed 1000 --out "$WORK/train"      # 2,400 views
[ -d "$WORK/val_mini" ] || edge synth -n 4 --seed 2001 --out "$WORK/val_mini"  # picks nothing, only watched
[ -d "$WORK/test" ] || edge synth -n 100 --seed 3000 --out "$WORK/test"        # never seen in training
[ -d "$WORK/calib" ] || edge synth -n 80 --seed 4000 --out "$WORK/calib"       # thresholds only

if [ ! -f "$WORK/$SCALE/$NAME/manifest.json" ]; then
  RESUME=()
  [ -f "$WORK/$SCALE/last.pt" ] && RESUME=(--resume)
  edge train --data "$WORK/train" --val "$WORK/val_mini" --model "$MODEL" --epochs 20 --max-steps "$STEPS" \
    --crop 256 --batch 8 --imgsz 640 --threads 2 --val-every 20 --save-every 100 --half-weights \
    --version "$NAME" --out "$WORK/$SCALE" "${RESUME[@]}"
fi

# Ship it; calibrate per-class thresholds on containers it never saw (seed 4000), then
# record its figures on the 100 unseen test containers (seed 3000) in its manifest.
rm -rf "models/$NAME"
cp -r "$WORK/$SCALE/$NAME" "models/$NAME"
chmod 755 "models/$NAME"
edge eval "models/$NAME" --data "$WORK/calib" --runtime onnxruntime --imgsz 640 --target-fr 0.01 \
  --calibrate --record calibration
edge eval "models/$NAME" --data "$WORK/test" --runtime onnxruntime --imgsz 640 --target-fr 0.01 \
  --record test --json "$WORK/$SCALE/test_metrics.json"

# Zero-shot (rtvp-n only): the base-names-only model prompted with the novel names.
[ "$MODEL" = rtvp-n ] || exit 0
[ -f "$WORK/zs-n/rtvp-n-base/manifest.json" ] || scripts/train_zero_shot.sh "$WORK"
edge eval "$WORK/zs-n/rtvp-n-base" --data "$WORK/test" --split models/split-synth.json --runtime onnxruntime \
  --imgsz 640 --json "$WORK/zs_novel_metrics.json"
python - "$WORK" "$NAME" <<'PY'
import json, sys
from engines.package import ModelPackage
work, name = sys.argv[1], sys.argv[2]
novel = json.load(open(f"{work}/zs_novel_metrics.json"))
ModelPackage.load(f"models/{name}").update(zero_shot={
    "model": "rtvp-n-base: rtvp-n trained on the base names of models/split-synth.json only "
             "(scripts/train_zero_shot.sh), prompted with the novel names",
    **{k: novel[k] for k in ("ap", "ap50", "ap75", "per_class", "at_target", "images", "vocabulary")}})
PY
