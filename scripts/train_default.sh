#!/usr/bin/env bash
# The recorded commands behind the shipped default model, models/rtvp-tiny-synth.
#
# Synthetic containers only (camera/synth.py via `edge synth`): a line needs its own
# samples (`edge retrain`). What the shared 2-core CPU allowed on 2026-11-25 (load
# average 7-27, two real-time-priority processes of another test holding most of both
# cores for the last hour): rtvp-n was trained first (4-9 s a step) and had no detection
# above 0.001 on validation after 300 steps; an rtvp-tiny run on all five names could
# not finish. The shipped weights are the rtvp-tiny model that scripts/train_zero_shot.sh
# trains on the split's BASE names (oil, black spot, bubble; 250 steps of 8 crops of
# 256 px); its vocabulary holds all five names, so "plastering thread" and "quenched
# grain" are detected zero-shot, from their text embeddings alone.
#
#   scripts/train_default.sh [WORK_DIR]        (default runs/default)
set -euo pipefail
WORK=${1:-runs/default}
NAME=rtvp-tiny-synth
TEST_CONTAINERS=${TEST_CONTAINERS:-100}
export HF_HUB_OFFLINE=1
mkdir -p "$WORK"

[ -d "$WORK/train" ] || edge synth -n 400 --seed 1000 --out "$WORK/train"    # 2,400 views
[ -d "$WORK/val" ] || edge synth -n 20 --seed 2000 --out "$WORK/val"         # picks nothing, only watched
[ -d "$WORK/val_mini" ] || edge synth -n 4 --seed 2001 --out "$WORK/val_mini"
[ -d "$WORK/test" ] || edge synth -n 100 --seed 3000 --out "$WORK/test"      # never seen in training

# 1. the base-names model (resumes if interrupted)
[ -f "$WORK/zs/rtvp-tiny-base/manifest.json" ] || scripts/train_zero_shot.sh "$WORK"

# 2. ship it with all five names, then record its figures on unseen test containers
python - "$WORK" "$NAME" "$TEST_CONTAINERS" <<'PY'
import shutil, sys
from pathlib import Path
from camera.synth import CLASSES
from engines.export import vocabulary_embeddings
from engines.package import ModelPackage
from storage.labels import read_coco, write_coco
work, name, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
base = ModelPackage.load(work / "zs" / "rtvp-tiny-base")
vocabulary, embeddings = vocabulary_embeddings(base, CLASSES)  # novel names encoded by its text encoder
shutil.rmtree(Path("models") / name, ignore_errors=True)
info = {k: v for k, v in base.manifest.items() if k not in ("version", "created", "arch", "vocabulary", "files")}
package = ModelPackage.create(Path("models") / name, version=name, state_dict=base.state_dict(), arch=base.arch,
                              vocabulary=list(vocabulary), embeddings=embeddings, **info,
                              trained_names=list(base.vocabulary),
                              zero_shot_names=[c for c in vocabulary if c not in base.vocabulary])
(Path("models") / name).chmod(0o755)
test = read_coco(work / "test" / "annotations.json")
write_coco(work / "test" / f"first{n}.json", [im for im in test.images if im.container_seq < n], test.classes)
PY
edge eval "models/$NAME" --data "$WORK/test/first$TEST_CONTAINERS.json" --runtime onnxruntime --imgsz 640 \
  --target-fr 0.01 --record test --json "$WORK/test_metrics.json"
edge eval "models/$NAME" --data "$WORK/test/first$TEST_CONTAINERS.json" --split models/split-synth.json \
  --runtime onnxruntime --imgsz 640 --record zero_shot_novel --json "$WORK/zs_novel_metrics.json"
