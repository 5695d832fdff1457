#!/usr/bin/env bash
# What one GPU-host session runs (after `make bundle`, with bundle/ carried): backend and adapter
# info, the backend/webgpu/parity tests, `mimetic forward --backend webgpu` on the fixtures checked
# against the HF goldens, and the benchmarks. Everything lands in $OUT (default ./gpu-out).
# Training-step speed: bench/train-step-gpu.ts (README "Training step"); experiment sweeps:
# bench/gpu-sweep.sh MINUTES PARALLEL CONFIG... (packed into $OUT).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"
mkdir -p "$OUT"
export MIMETIC_BUNDLE_CACHE="${MIMETIC_BUNDLE_CACHE:-/tmp/mimetic-bundle}"
RUN="bash bundle/run.sh"
APP="$MIMETIC_BUNDLE_CACHE/$(cat bundle/STAMP)/app"
log() { echo "== $* ($(date +%T))" | tee -a "$OUT/summary.txt" >&2; }

log env
{
  $RUN --shell bash -c 'uname -m; nvidia-smi -L; echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"; echo "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"; node --version'
  $RUN --shell node --input-type=module -e "
    const b = await import('$APP/dist/src/model/backend.js');
    const t0 = performance.now();
    const name = await b.initBackend('auto');
    console.log(JSON.stringify({ auto: name, init_ms: Math.round(performance.now() - t0), adapter: b.webgpuAdapter() }, null, 1));"
} >> "$OUT/summary.txt" 2>&1

log tests
timeout 200 $RUN --test dist/test/backend.test.js dist/test/webgpu.test.js dist/test/model-parity.test.js dist/test/compiled-step.test.js > "$OUT/tests.tap" 2>&1
echo "tests rc=$?" >> "$OUT/summary.txt"
grep -E '^# (pass|fail)|^not ok' "$OUT/tests.tap" >> "$OUT/summary.txt"

log forward
for fx in mamba1-tiny mamba2-tiny; do
  $RUN --shell node --input-type=module -e "
    const { SafetensorsReader } = await import('$APP/dist/src/checkpoint/safetensors.js');
    const g = SafetensorsReader.open('test/fixtures/$fx/golden.safetensors');
    const t = g.readFloat32('input_ids');
    const ids = [0, 1].map((b) => Array.from(t.data.subarray(b * 24, b * 24 + 24)));
    (await import('node:fs')).writeFileSync('/tmp/ids-$fx.json', JSON.stringify(ids));" >> "$OUT/summary.txt" 2>&1
  start=$(date +%s%N)
  $RUN forward "test/fixtures/$fx" --ids "/tmp/ids-$fx.json" --backend webgpu --out "/tmp/fwd-$fx.safetensors" >> "$OUT/summary.txt" 2>&1
  echo "forward $fx rc=$? wall_ms=$(( ($(date +%s%N) - start) / 1000000 ))" >> "$OUT/summary.txt"
  $RUN --shell node --input-type=module -e "
    const { SafetensorsReader } = await import('$APP/dist/src/checkpoint/safetensors.js');
    const g = SafetensorsReader.open('test/fixtures/$fx/golden.safetensors');
    const m = SafetensorsReader.open('/tmp/fwd-$fx.safetensors');
    const rows = [];
    for (const n of g.names().filter((n) => n !== 'input_ids' && m.names().includes(n))) {
      const a = g.readFloat32(n).data, b = m.readFloat32(n).data;
      let e = 0, s = 0;
      for (let i = 0; i < a.length; i++) { e = Math.max(e, Math.abs(a[i] - b[i])); s = Math.max(s, Math.abs(a[i])); }
      rows.push(n + ' max_abs_err=' + e.toExponential(2) + ' max_abs=' + s.toFixed(3));
    }
    console.log('$fx webgpu forward vs HF golden:\n  ' + rows.join('\n  '));" >> "$OUT/summary.txt" 2>&1
done

log bench-scan
timeout 100 $RUN --node dist/bench/scan-webgpu.js --backend webgpu > "$OUT/bench-scan.json" 2> "$OUT/bench-scan.err"
echo "bench-scan rc=$?" >> "$OUT/summary.txt"

if [ -f "$APP/dist/bench/forward.js" ]; then
  log bench-forward
  timeout 100 $RUN --node dist/bench/forward.js --backend webgpu > "$OUT/bench-forward.json" 2> "$OUT/bench-forward.err"
  echo "bench-forward rc=$?" >> "$OUT/summary.txt"
fi
if [ -f bench/forward_torch.py ]; then
  log bench-torch
  timeout 100 python3 bench/forward_torch.py --device cuda > "$OUT/bench-torch.json" 2> "$OUT/bench-torch.err"
  echo "bench-torch rc=$?" >> "$OUT/summary.txt"
fi
if [ -f "$APP/dist/bench/init-parity.js" ] && [ -f bench/init_parity_torch.py ]; then
  # transformers loads what `mimetic init` writes, and its logits match ours (README "Parity").
  log init-parity
  rm -rf /tmp/init-parity
  timeout 60 $RUN --node dist/bench/init-parity.js /tmp/init-parity > "$OUT/init-parity.err" 2>&1 &&
    timeout 60 python3 bench/init_parity_torch.py /tmp/init-parity > "$OUT/init-parity.jsonl" 2>> "$OUT/init-parity.err"
  echo "init-parity rc=$?" >> "$OUT/summary.txt"
fi
log done
