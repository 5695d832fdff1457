#!/usr/bin/env bash
# Run experiment sweeps on the GPU host inside one device command and pack what comes back:
#   bash bench/gpu-sweep.sh MINUTES PARALLEL CONFIG...
#   SWEEP_ARGS='--where variant=mamba2-default,mamba2-mimetic --where lr=0.001' bash bench/gpu-sweep.sh 9 2 experiments/study1-copy.json
# Each sweep gets the minutes left (a slice: unfinished runs are reported, not lost mid-write); every
# sweep folder is packed without checkpoints into $OUT/<name>.tgz.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
MINUTES="$1"; PAR="$2"; shift 2
END=$(( $(date +%s) + MINUTES * 60 ))
for cfg in "$@"; do
  name="$(basename "$cfg" .json)"
  left=$(( (END - $(date +%s)) / 60 ))
  [ "$left" -ge 1 ] || { echo "no time left for $name" >> "$OUT/sweep-log.txt"; continue; }
  echo "[$(date +%T)] $name: $left min" >> "$OUT/sweep-log.txt"
  bash bundle/run.sh sweep "$cfg" --out "/tmp/sweeps/$name" --parallel "$PAR" --backend webgpu --slice-minutes "$left" ${SWEEP_ARGS:-} >> "$OUT/sweep-log.txt" 2>&1
  echo "[$(date +%T)] $name rc=$?" >> "$OUT/sweep-log.txt"
  tar -C /tmp/sweeps -czf "$OUT/$name.tgz" --exclude='*.safetensors' "$name"
done
