#!/usr/bin/env bash
# One GPU-host call (≤ 6 minutes on one H200): the scan's two knobs over a grid, at every experiment
# shape at batch 32 — threads per lane (--scan-threads; the default gives 1 below N 32, so Mamba-1 and
# Mamba-2 N16 run 16 384 threads in all) and time steps per backward chunk (--scan-chunk; 14 chunks and
# 28 dispatches per layer at the default 16). JSONL into $OUT/scan-grid*.jsonl, one row per combination.
#
#   bash bench/gpu-scan-ab.sh        (with the bundle carried: bundle/run.sh runs node)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
RUN="bash bundle/run.sh"
log() { echo "[$(date +%T)] $*" >> "$OUT/log.txt"; }
B="--node dist/bench/train-step-gpu.js --backend webgpu --experiment --batches 32 --steps 5"
log start
timeout 150 $RUN $B --shapes m1:16,m2:16,m2:64 --scan-threads 1,2,4,8 --scan-chunk 16,32,64 > "$OUT/scan-grid-small.jsonl" 2>> "$OUT/log.txt"; log "small rc=$?"
timeout 90 $RUN $B --shapes m2:128,m2:256 --scan-threads 4,8,16 --scan-chunk 16,32,64 > "$OUT/scan-grid-mid.jsonl" 2>> "$OUT/log.txt"; log "mid rc=$?"
timeout 100 $RUN $B --shapes m2:512 --scan-threads 16,32 --scan-chunk 16,32 > "$OUT/scan-grid-512.jsonl" 2>> "$OUT/log.txt"; log "512 rc=$?"
log done
