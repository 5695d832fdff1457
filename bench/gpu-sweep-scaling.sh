#!/usr/bin/env bash
# Issue 16 on a multi-GPU host, in one device command: throughput of `sweep --gpus all` with
# 2 × (number of GPUs) identical copy runs against 2 runs on GPU 0 alone, both on webgpu. Prints
# one JSON line (runs per hour each way, the scaling against linear, the GPUs each run's run.json
# recorded, and nvidia-smi's utilisation sampled during the multi-GPU sweep); files go to $OUT.
#   STEPS=300 DMODEL=256 bash bench/gpu-sweep-scaling.sh
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
STEPS="${STEPS:-300}"; DMODEL="${DMODEL:-256}"
CLI="${CLI:-node dist/src/cli/main.js}"
W=$(mktemp -d)
N=$($CLI gpus --json 2>/dev/null | tail -1 | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).gpus))')
config() { # $1 file, $2 runs
  node -e 'const [f,n,steps,dm]=process.argv.slice(1);require("fs").writeFileSync(f,JSON.stringify({name:"scaling",base:{task:"copy",nLayers:2,dModel:+dm,steps:+steps,batchSize:32,evalEvery:+steps,evalExamples:64,checkpointEvery:+steps},grid:{seed:[...Array(+n).keys()]}}))' "$1" "$2" "$STEPS" "$DMODEL"
}
timed() { # $1 out, rest: sweep args; prints seconds
  local t0; t0=$(date +%s.%N)
  $CLI sweep "${@:2}" --out "$1" --backend webgpu --parallel 1 >> "$OUT/scaling-log.txt" 2>&1
  node -e 'console.log(+process.argv[1] - +process.argv[2])' "$(date +%s.%N)" "$t0"
}
# A warm-up run first, so neither timing pays first-start costs (page cache, driver start-up).
config "$W/warm.json" 1
timed "$W/warm" "$W/warm.json" --gpus 0 > /dev/null
config "$W/one.json" 2
config "$W/all.json" $((2 * N))
t1=$(timed "$W/one" "$W/one.json" --gpus 0)
( while sleep 5; do nvidia-smi --query-gpu=index,utilization.gpu --format=csv,noheader,nounits 2>/dev/null | tr '\n' ';'; echo; done ) > "$OUT/nvidia-smi.txt" &
smi=$!
tN=$(timed "$W/all" "$W/all.json" --gpus all)
kill "$smi" 2>/dev/null || true
node -e '
const fs = require("fs"), path = require("path");
const [n, t1, tN, dir, smiFile] = process.argv.slice(1);
const gpus = fs.readdirSync(dir).filter((d) => d.startsWith("seed=")).map((d) => JSON.parse(fs.readFileSync(path.join(dir, d, "run.json"), "utf8")).device?.gpu?.index);
const busy = {};
for (const line of fs.readFileSync(smiFile, "utf8").split("\n")) for (const c of line.split(";").filter(Boolean)) { const [i, u] = c.split(",").map(Number); busy[i] = Math.max(busy[i] ?? 0, u); }
const one = 2 / +t1 * 3600, all = 2 * n / +tN * 3600;
console.log(JSON.stringify({ gpus: +n, steps: +process.env.STEPS || 300, oneGpu: { runs: 2, seconds: +t1, runsPerHour: one }, allGpus: { runs: 2 * n, seconds: +tN, runsPerHour: all },
  scaling: all / (n * one), runJsonGpus: gpus.sort(), maxUtilisation: busy }));
' "$N" "$t1" "$tN" "$W/all" "$OUT/nvidia-smi.txt" | tee "$OUT/scaling.json"
