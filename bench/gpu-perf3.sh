#!/usr/bin/env bash
# Third GPU-host call (session 2): the compiled training step on the H200. Its tests (against tf.js
# autodiff on the NVIDIA driver), the train-step benchmark (compiled vs the tf.js path) with its
# PyTorch counterpart, transformers loading what `mimetic init` writes, and 300-step timing probes
# of the three experiment configs (bench/timing/*.json) through `mimetic sweep`.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
RUN="bash bundle/run.sh"
log() { echo "[$(date +%T)] $*" >> "$OUT/log.txt"; }
log start; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv >> "$OUT/log.txt" 2>&1
timeout 100 $RUN --test dist/test/compiled-step.test.js dist/test/webgpu.test.js > "$OUT/tests.tap" 2>&1; log "tests rc=$?"
timeout 150 $RUN --node dist/bench/train-step-gpu.js --backend webgpu --steps 10 --optimizers compiled,fused > "$OUT/bench-train.jsonl" 2>> "$OUT/log.txt"; log "bench rc=$?"
PYTHONUNBUFFERED=1 timeout 60 python3 bench/train-step-torch.py --device cuda --steps 10 > "$OUT/bench-train-torch.jsonl" 2>> "$OUT/log.txt"; log "torch rc=$?"
rm -rf /tmp/ip && timeout 60 $RUN --node dist/bench/init-parity.js /tmp/ip >> "$OUT/log.txt" 2>&1 && timeout 60 python3 bench/init_parity_torch.py /tmp/ip > "$OUT/init-parity.jsonl" 2>> "$OUT/log.txt"; log "parity rc=$?"
for c in copy-mamba1 copy-mamba2 mqar; do
  timeout 110 $RUN sweep bench/timing/$c.json --out /tmp/timing/$c --parallel 2 --backend webgpu >> "$OUT/log.txt" 2>&1; log "timing $c rc=$?"
done
tar -C /tmp/timing -czf "$OUT/timing.tgz" --exclude='checkpoints' --exclude='*.png' --exclude='*.html' . 2>> "$OUT/log.txt"; log done
