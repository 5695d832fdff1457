#!/usr/bin/env bash
# One GPU-host call for the speed work (after `make bundle`, with bundle/ carried): the forward
# benchmark (fused and tf-op paths, streaming and in-memory), the train-step benchmark (tf-op and
# fused AdamW), their PyTorch counterparts, then the fused-path tests on the real GPU. Everything
# lands in $OUT (default ./gpu-out); most important first, in case the call's time runs out.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
RUN="bash bundle/run.sh"
log() { echo "== $* ($(date +%T))" | tee -a "$OUT/summary.txt" >&2; }
log env
nvidia-smi -L >> "$OUT/summary.txt" 2>&1
log bench-forward
timeout 80 $RUN --node dist/bench/forward.js --backend webgpu --reps 2 > "$OUT/bench-forward.json" 2> "$OUT/bench-forward.err"
echo "bench-forward rc=$?" >> "$OUT/summary.txt"
log bench-train
timeout 70 $RUN --node dist/bench/train-step-gpu.js --backend webgpu --steps 5 > "$OUT/bench-train.jsonl" 2> "$OUT/bench-train.err"
echo "bench-train rc=$?" >> "$OUT/summary.txt"
log bench-train-torch
PYTHONUNBUFFERED=1 timeout 40 python3 bench/train-step-torch.py --device cuda --steps 5 > "$OUT/bench-train-torch.jsonl" 2> "$OUT/bench-train-torch.err"
echo "bench-train-torch rc=$?" >> "$OUT/summary.txt"
log bench-forward-torch
PYTHONUNBUFFERED=1 timeout 50 python3 bench/forward_torch.py --device cuda --reps 2 > "$OUT/bench-forward-torch.json" 2> "$OUT/bench-forward-torch.err"
echo "bench-forward-torch rc=$?" >> "$OUT/summary.txt"
log tests
timeout 40 $RUN --test dist/test/fused-webgpu.test.js dist/test/webgpu.test.js > "$OUT/tests.tap" 2>&1
echo "tests rc=$?" >> "$OUT/summary.txt"; grep -E '^# (pass|fail)|^not ok' "$OUT/tests.tap" >> "$OUT/summary.txt"
log done
