# Sourced by the issue-17 probe scripts: one recipe for fine-tuning models/rtvp-n-synth.
#
#   finetune OUT VERSION DATA VAL STEPS [more edge train options]
#
# lr 0.001, 8 crops of 256 px a step, 2 threads, a checkpoint every 100 steps. A finished
# run (OUT/VERSION/manifest.json) is skipped and a stopped one resumes from OUT/last.pt.
finetune() {
  local out=$1 version=$2 data=$3 val=$4 steps=$5
  shift 5
  [ -f "$out/$version/manifest.json" ] && return 0
  local resume=()
  [ -f "$out/last.pt" ] && resume=(--resume)
  edge train --data "$data" --val "$val" --init models/rtvp-n-synth --lr 0.001 --epochs 100 \
    --max-steps "$steps" --crop 256 --batch 8 --imgsz 640 --threads 2 --val-every 100 --save-every 100 \
    --half-weights --version "$version" --out "$out" "$@" "${resume[@]}"
}
