#!/usr/bin/env bash
# Leave-families-out (issue 17): K rotated splits of the defect catalogue; each trains
# rtvp-n on the base families (prompts sampled from names, synonyms and descriptions) and
# evaluates the held-out families prompted by name only: per-family AP50 and
# class-agnostic recall, in WORK/split<k>/novel_metrics.json and WORK/summary.json.
# Resumable: re-run the same command after an interruption (nohup-friendly):
#   nohup scripts/leave_families_out.sh runs/lfo > runs/lfo.log 2>&1 &
# Extra arguments go to engines.training.leave_families_out (--splits, --steps, ...).
set -euo pipefail
WORK=${1:-runs/lfo}
shift || true
export HF_HUB_OFFLINE=1
python -m engines.training.leave_families_out "$WORK" "$@"
