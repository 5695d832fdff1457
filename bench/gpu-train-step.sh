#!/usr/bin/env bash
# One GPU-host call for issue 10's training-step figures (≤ 10 minutes on one H200): the kernel tests on
# the NVIDIA driver, then bench/train-step-gpu.ts --experiment (every shape at batch 32 and 256, with
# the per-kernel profile and the adapter's features), the batch-32 shapes again with the chunked SSD
# scan (--scan-form ssd, with the per-kernel profile: the scan form A/B) and with Dawn's shader safety
# passes off (MIMETIC_DAWN_TOGGLES: no index clamping, no zeroed workgroup memory), and the PyTorch
# reference path on the same shapes. The layout and tile A/Bs are decided (lane-fastest and 64×64,
# 2026-12-03). JSONL into $OUT. The timeouts add up to 600 s (ab: 360 s).
#
#   bash bench/gpu-train-step.sh        (with the bundle carried: bundle/run.sh runs node)
#   bash bench/gpu-train-step.sh ab     the scan-form and toggles A/B alone (≤ 360 s): the tests, then batch 32
#                                       recurrent (with the profile), ssd (with the profile) and toggles
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
RUN="bash bundle/run.sh"
log() { echo "[$(date +%T)] $*" >> "$OUT/log.txt"; }
log start; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$OUT/log.txt" 2>&1
timeout 60 $RUN --test dist/test/gpu-matmul.test.js dist/test/scan-chunked.test.js > "$OUT/tests.tap" 2>&1; log "tests rc=$?"
# The compiled step against autodiff (loss and every gradient, N up to 512, SSD) and the trainer on it (kill -9 and resume).
timeout 120 $RUN --test dist/test/compiled-step.test.js dist/test/train-gpu.test.js > "$OUT/tests-step.tap" 2>&1; log "step tests rc=$?"
if [ "${1:-}" = ab ]; then
  timeout 60 $RUN --node dist/bench/train-step-gpu.js --backend webgpu --experiment --batches 32 --steps 5 --profile > "$OUT/experiment.jsonl" 2>> "$OUT/log.txt"; log "experiment (b32) rc=$?"
else
  timeout 180 $RUN --node dist/bench/train-step-gpu.js --backend webgpu --experiment --steps 5 --profile > "$OUT/experiment.jsonl" 2>> "$OUT/log.txt"; log "experiment rc=$?"
fi
timeout 60 $RUN --node dist/bench/train-step-gpu.js --backend webgpu --experiment --batches 32 --steps 5 --scan-form ssd --profile > "$OUT/experiment-ssd.jsonl" 2>> "$OUT/log.txt"; log "ssd rc=$?"
MIMETIC_DAWN_TOGGLES=disable_robustness,disable_workgroup_init timeout 60 $RUN --node dist/bench/train-step-gpu.js --backend webgpu --experiment --batches 32 --steps 5 > "$OUT/experiment-toggles.jsonl" 2>> "$OUT/log.txt"; log "toggles rc=$?"
[ "${1:-}" = ab ] && { log done; exit 0; }
PYTHONUNBUFFERED=1 timeout 120 python3 bench/train-step-torch.py --device cuda --experiment --steps 5 > "$OUT/experiment-torch.jsonl" 2>> "$OUT/log.txt"; log "torch rc=$?"
log done
