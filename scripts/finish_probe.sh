#!/usr/bin/env bash
# Can rtvp-n learn the thin finish defects at all? (issue 17, docs/training.md)
# The catalogue fine-tunes found almost none of split finish, overpress and line over
# finish (0-6% of their test boxes). This probe fine-tunes models/rtvp-n-synth on the
# catalogue training views whose only defects are finish families (views without a
# defect left out, so most crops hold one), prompted by name, and scores those five
# families on the catalogue test set: AP50 and the share found (any class, IoU 0.5).
# If it finds them, the catalogue runs were short of steps on them; if not, the input
# size or the head is the limit. A second arm adds a stride-4 head level (--p2).
# Figures of 2026-12-07 (400 steps): docs/training.md.
#
#   scripts/finish_probe.sh [CATALOGUE_WORK] [PROBE_WORK]   (default runs/catalogue2 runs/finish_probe)
#   STEPS=400 by default. Resumes from its checkpoint; skips what is done.
set -euo pipefail
CAT=${1:-runs/catalogue2}
WORK=${2:-runs/finish_probe}
STEPS=${STEPS:-400}
FINISH="split finish,chipped finish,unfilled finish,overpress,line over finish"
export HF_HUB_OFFLINE=1
[ -f "$CAT/train/annotations.json" ] || { echo "$CAT/train: run scripts/train_catalogue.sh $CAT first" >&2; exit 2; }
mkdir -p "$WORK"

# The views whose labelled defects are all finish families, in a COCO file beside the images.
SUBSET="$CAT/train/finish_only.json"
[ -f "$SUBSET" ] || python - "$CAT/train" "$SUBSET" "$FINISH" <<'EOF'
import sys
from engines.training.datasets import load_labels
from storage.labels import write_coco
source, out, names = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
kept = [im for im in load_labels(source, check_images=False).images if im.classes and set(im.classes) <= set(names)]
write_coco(out, kept, names)
print(f"{out}: {len(kept)} views, {sum(len(im.classes) for im in kept)} finish defects")
EOF

# Two arms, the same steps and seeds: the model as it is, and with a stride-4 head level
# added (`--p2`, the thin-defect question; new weights start untrained).
source "$(dirname "$0")/finetune.sh"
finetune "$WORK/n" finish-probe "$SUBSET" "$CAT/val_mini" "$STEPS"
finetune "$WORK/n-p2" finish-probe-p2 "$SUBSET" "$CAT/val_mini" "$STEPS" --p2
# At the inference size of the line (640) and at the views' native scale (832).
for SIZE in 640 832; do
  OUT="$WORK/test_metrics_$SIZE.json"
  [ -f "$OUT" ] || edge eval "$WORK/n/finish-probe" --data "$CAT/test" --vocab "$FINISH" \
    --runtime onnxruntime --imgsz "$SIZE" --json "$OUT"
done
OUT="$WORK/test_metrics_p2_640.json"
[ -f "$OUT" ] || edge eval "$WORK/n-p2/finish-probe-p2" --data "$CAT/test" --vocab "$FINISH" \
  --runtime onnxruntime --imgsz 640 --json "$OUT"
