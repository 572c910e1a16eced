#!/usr/bin/env bash
# The catalogue model (issue 17): models/rtvp-n-synth fine-tuned on the whole glass-industry
# defect catalogue (camera/defect_catalogue.yaml: 17 families on finish, shoulder, body,
# heel and base, drawn beside non-defects that must pass). Each step prompts every class by
# its name with probability 0.5, otherwise by a synonym or its one-line description; 10% of
# steps prompt "defect" alone. Starting from the five-class model keeps most of what it
# learnt of those five (a catalogue model trained from scratch at this budget lost two
# thirds of its AP on them, docs/training.md). 3,000 steps of 8 crops of 256 px on 1,200
# containers took 92 minutes of a quiet 2-core CPU (1.5-1.9 s a step), evaluation 15 more.
# Its figures on the paper's five classes are measured on the very same test views as
# models/rtvp-n-synth's. The package stays in WORK/n/rtvp-n-catalogue (not shipped: see
# docs/training.md); copy it to models/ to ship it. Re-running resumes from the last
# checkpoint (every 100 steps) and skips what is done. A new WORK folder renders renderer 2's
# finish defects and the non-defects' boxes, and trains with 25% of crops on those (edge
# train's default --negative-crops); docs/training.md has both runs' figures (runs/catalogue:
# renderer 1, runs/catalogue2: renderer 2, 2 h 20 min of training on the shared CPU).
#
#   scripts/train_catalogue.sh [WORK_DIR]   (default runs/catalogue)
set -euo pipefail
WORK=${1:-runs/catalogue}
NAME=rtvp-n-catalogue
CLASSIC="oil,black spot,bubble,plastering thread,quenched grain"
export HF_HUB_OFFLINE=1
mkdir -p "$WORK"

[ -d "$WORK/train" ] || edge synth -n 1200 --seed 1000 --catalogue full --out "$WORK/train"    # 7,200 views
[ -d "$WORK/val_mini" ] || edge synth -n 4 --seed 2001 --catalogue full --out "$WORK/val_mini" # only watched
[ -d "$WORK/test" ] || edge synth -n 100 --seed 3000 --catalogue full --out "$WORK/test"       # never seen
[ -d "$WORK/calib" ] || edge synth -n 80 --seed 4000 --catalogue full --out "$WORK/calib"      # thresholds only
# The five-class test set of scripts/train_default.sh (same seed, same pixels).
[ -d "$WORK/test_classic" ] || edge synth -n 100 --seed 3000 --out "$WORK/test_classic"
# Good containers carrying only non-defects (water drops, dust, embossing, label shadows).
[ -d "$WORK/good" ] || edge synth -n 100 --seed 5000 --catalogue full --defect-free-share 1.0 --out "$WORK/good"

if [ ! -f "$WORK/n/$NAME/manifest.json" ]; then
  RESUME=()
  [ -f "$WORK/n/last.pt" ] && RESUME=(--resume)
  edge train --data "$WORK/train" --val "$WORK/val_mini" --init models/rtvp-n-synth --lr 0.001 \
    --epochs 20 --max-steps 3000 --crop 256 --batch 8 --imgsz 640 --threads 2 --val-every 20 \
    --save-every 100 --half-weights --prompts catalogue --name-share 0.5 --generic-share 0.1 \
    --version "$NAME" --out "$WORK/n" "${RESUME[@]}"
fi

PKG="$WORK/n/$NAME"
EVAL=(--runtime onnxruntime --imgsz 640 --target-fr 0.01)
# Each figure is measured once: a re-run skips those whose JSON exists.
[ -f "$WORK/calib_metrics.json" ] || edge eval "$PKG" --data "$WORK/calib" "${EVAL[@]}" --calibrate \
  --record calibration --json "$WORK/calib_metrics.json"
[ -f "$WORK/test_metrics.json" ] || edge eval "$PKG" --data "$WORK/test" "${EVAL[@]}" --record test \
  --json "$WORK/test_metrics.json"
# The trained-families check: the paper's five classes, the catalogue model against
# models/rtvp-n-synth (trained on those five alone) on the same views.
[ -f "$WORK/classic_metrics.json" ] || edge eval "$PKG" --data "$WORK/test_classic" --vocab "$CLASSIC" \
  "${EVAL[@]}" --record classic_test --json "$WORK/classic_metrics.json"
[ -f "$WORK/classic_metrics_synth.json" ] || edge eval models/rtvp-n-synth --data "$WORK/test_classic" \
  "${EVAL[@]}" --json "$WORK/classic_metrics_synth.json"
# False rejects on good containers with non-defects, at the calibrated thresholds, both models.
[ -f "$WORK/good_metrics.json" ] || edge eval "$PKG" --data "$WORK/good" "${EVAL[@]}" --json "$WORK/good_metrics.json"
[ -f "$WORK/good_metrics_synth.json" ] || edge eval models/rtvp-n-synth --data "$WORK/good" "${EVAL[@]}" \
  --json "$WORK/good_metrics_synth.json"
