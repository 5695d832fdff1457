#!/usr/bin/env bash
# Fourth GPU-host call: where a compiled step's GPU time goes (kernel families left out in turn),
# the scan's threads-per-lane split at d_state 64, transformers loading `mimetic init` output again
# (after the float fix), then as many experiment runs as the minutes left allow.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
RUN="bash bundle/run.sh"
log() { echo "[$(date +%T)] $*" >> "$OUT/log.txt"; }
START=$(date +%s)
log start
timeout 120 $RUN --node dist/bench/train-step-gpu.js --backend webgpu --steps 10 --optimizers compiled --profile > "$OUT/bench.jsonl" 2>> "$OUT/log.txt"; log "profile rc=$?"
for ns in 1 4; do
  timeout 60 $RUN --node dist/bench/train-step-gpu.js --backend webgpu --steps 10 --optimizers compiled --archs mamba2 --state 64 --lengths 220 --scan-threads $ns --profile >> "$OUT/bench.jsonl" 2>> "$OUT/log.txt"; log "ns=$ns rc=$?"
done
rm -rf /tmp/ip && timeout 60 $RUN --node dist/bench/init-parity.js /tmp/ip >> "$OUT/log.txt" 2>&1 && timeout 60 python3 bench/init_parity_torch.py /tmp/ip > "$OUT/init-parity.jsonl" 2>> "$OUT/log.txt"; log "parity rc=$?"
LEFT=$(( (START + ${BUDGET_S:-560} - $(date +%s)) / 60 ))
log "sweeps: $LEFT min"
bash bench/gpu-sweep.sh "$LEFT" 2 "$@"
log done
