#!/usr/bin/env bash
# Merge one slice of a sweep that came back from the GPU host (bench/gpu-sweep.sh's NAME.tgz) into the
# study's committed results, then rebuild its summary and report:
#   bash bench/merge-sweep.sh CONFIG SLICE.tgz [RESULTS_DIR]     (default RESULTS_DIR bench/results/studies-h200)
# RESULTS_DIR/NAME.tgz holds every run folder so far (metrics, logs, no weights); RESULTS_DIR/NAME/ the
# summary.json, sweep.json and report/ for reading in place. A run the slice did not finish never
# replaces one an earlier slice finished.
set -euo pipefail
cd "$(dirname "$0")/.."
cfg="$1"; slice="$2"; res="${3:-bench/results/studies-h200}"
name="$(basename "$cfg" .json)"
cli=(node dist/src/cli/main.js)
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
mkdir -p "$res" "$work/old" "$work/new"
[ -f "$res/$name.tgz" ] && tar -C "$work/old" -xzf "$res/$name.tgz"
tar -C "$work/new" -xzf "$slice"
[ -d "$work/new/$name" ] || { echo "merge-sweep: $slice holds no folder $name/ (is it a slice of $cfg?)" >&2; exit 2; }
mkdir -p "$work/old/$name"
"${cli[@]}" sweep "$cfg" --out "$work/new/$name" --report-only >/dev/null
# Run ids the slice completed: copy those (with their .sweep record and log) over the merged folder.
node -e '
const fs = require("fs"), path = require("path");
const [src, dst] = process.argv.slice(1);
const s = JSON.parse(fs.readFileSync(path.join(src, "summary.json"), "utf8"));
for (const sub of [".sweep", "logs"]) fs.mkdirSync(path.join(dst, sub), { recursive: true });
fs.copyFileSync(path.join(src, "sweep.json"), path.join(dst, "sweep.json"));
let n = 0;
for (const r of s.runs) {
  if (r.status !== "finished" && r.status !== "target-reached") continue;
  fs.rmSync(path.join(dst, r.id), { recursive: true, force: true });
  fs.cpSync(path.join(src, r.id), path.join(dst, r.id), { recursive: true });
  for (const f of [path.join(".sweep", r.id + ".json"), path.join("logs", r.id + ".log")]) if (fs.existsSync(path.join(src, f))) fs.copyFileSync(path.join(src, f), path.join(dst, f));
  n++;
}
console.log(`merge-sweep: ${n} finished run(s) from the slice`);
' "$work/new/$name" "$work/old/$name"
"${cli[@]}" sweep "$cfg" --out "$work/old/$name" --report-only | sed -e "s#$work/old/#$res/#g"
tar -C "$work/old" -czf "$res/.$name.tgz.tmp" --exclude='*.safetensors' "$name"
mv "$res/.$name.tgz.tmp" "$res/$name.tgz"
rm -rf "$res/$name"; mkdir -p "$res/$name"
cp -r "$work/old/$name/summary.json" "$work/old/$name/sweep.json" "$work/old/$name/report" "$res/$name/"
