#!/usr/bin/env bash
# Second GPU-host call: the train-step benchmark after the differentiable conv+SiLU kernel (fused
# AdamW, with a per-kernel profile), its PyTorch counterpart, and the fused-path tests on the GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
RUN="bash bundle/run.sh"
timeout 60 $RUN --node dist/bench/train-step-gpu.js --backend webgpu --steps 5 --optimizers fused --profile > "$OUT/bench-train.jsonl" 2> "$OUT/bench-train.err"
echo "bench-train rc=$?" >> "$OUT/bench-train.jsonl"
PYTHONUNBUFFERED=1 timeout 40 python3 bench/train-step-torch.py --device cuda --steps 5 > "$OUT/bench-train-torch.jsonl" 2>&1
timeout 40 $RUN --test dist/test/fused-webgpu.test.js dist/test/webgpu.test.js > "$OUT/tests.tap" 2>&1
echo "tests rc=$?" >> "$OUT/tests.tap"
