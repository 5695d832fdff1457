#!/usr/bin/env bash
# Issue 14, experiment 3: build the transplanted checkpoints that experiments/lm-transplant.json
# fine-tunes, then run that sweep.
#
#   bash scripts/lm-transplants.sh PRETRAINED [CONFIG] [-- SWEEP_ARGS...]
#
# PRETRAINED is a run folder of lm-pretrain (its last kept checkpoint is used) or a checkpoint.
# Its layers are scored (`mimetic score --json`, default probe); the rank-1 (top), middle
# (rank ceil(n/2)) and last-ranked (bottom) layer each go into every layer of a fresh 4-layer model
# (the source's widths, vocabulary 30 = the copy task's, default init seed 0), with --parts mixer
# and with --parts ssm, as TRANSPLANTS/<rank>-<part>; TRANSPLANTS/layers.json records which layer
# each is and the scores. Then `mimetic sweep CONFIG SWEEP_ARGS...` (default CONFIG
# experiments/lm-transplant.json, whose variants name runs/lm-transplants/<rank>-<part>).
#
# Environment: MIMETIC (default `node dist/src/cli/main.js`; on the GPU host `bash bundle/run.sh`),
# TRANSPLANTS (default runs/lm-transplants), BACKEND for the scoring (default auto), NODE (default
# node on PATH, else the bundle's: bash bundle/run.sh --shell node).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bash scripts/lm-transplants.sh PRETRAINED_RUN_OR_CHECKPOINT [CONFIG] [-- SWEEP_ARGS...]" >&2; exit 2; }
SRC=$1; shift
CONFIG=experiments/lm-transplant.json
if [ $# -ge 1 ] && [ "$1" != "--" ]; then CONFIG=$1; shift; fi
[ $# -ge 1 ] && [ "$1" = "--" ] && shift
read -r -a MIMETIC <<< "${MIMETIC:-node dist/src/cli/main.js}"
TRANSPLANTS=${TRANSPLANTS:-runs/lm-transplants}
BACKEND=${BACKEND:-auto}
# node for the two small JSON steps: the GPU host has none on PATH, only the bundle's (run.sh --shell)
if [ -n "${NODE:-}" ]; then read -r -a NODE <<< "$NODE"
elif command -v node >/dev/null 2>&1; then NODE=(node)
elif [ -f bundle/run.sh ]; then NODE=(bash bundle/run.sh --shell node)
else echo "lm-transplants: no node on PATH and no bundle/run.sh; set NODE" >&2; exit 2; fi

if [ -d "$SRC/checkpoints" ]; then
  # step-NNNNNNNN (zero-padded to 8 digits, so a lexical sort is the step order); a half-written
  # step-*.tmp-* folder of an interrupted run is left out
  CK=$(ls -d "$SRC"/checkpoints/step-* 2>/dev/null | grep -E '/step-[0-9]{8}$' | sort | tail -1 || true)
  [ -n "$CK" ] || { echo "lm-transplants: $SRC has no checkpoints/step-*; give a finished lm-pretrain run" >&2; exit 2; }
else
  CK=$SRC
fi
[ -e "$TRANSPLANTS/layers.json" ] && { echo "lm-transplants: $TRANSPLANTS already holds transplants (layers.json); remove it to rebuild, or run the sweep alone: mimetic sweep $CONFIG" >&2; exit 2; }
mkdir -p "$TRANSPLANTS"
SCORES=$(mktemp)
trap 'rm -f "$SCORES"' EXIT
"${MIMETIC[@]}" score "$CK" --json --no-reference --backend "$BACKEND" > "$SCORES"

# top / middle / bottom by rank (unranked, non-finite layers are left out)
PICK=$("${NODE[@]}" -e '
  const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const r = s.layers.filter((l) => l.rank !== null).sort((a, b) => a.rank - b.rank);
  if (r.length < 3) { console.error(`lm-transplants: ${r.length} ranked layers; need 3 (top, middle, bottom)`); process.exit(2); }
  console.log(r[0].layer, r[Math.ceil(r.length / 2) - 1].layer, r[r.length - 1].layer);
' "$SCORES")
read -r TOP MIDDLE BOTTOM <<< "$PICK"

for part in mixer ssm; do
  for rank in top middle bottom; do
    case $rank in top) L=$TOP ;; middle) L=$MIDDLE ;; bottom) L=$BOTTOM ;; esac
    "${MIMETIC[@]}" transplant --from "$CK" --layers "$L" --n-layers 4 --vocab 30 --parts "$part" --init default --seed 0 --out "$TRANSPLANTS/$rank-$part" > /dev/null
  done
done
"${NODE[@]}" -e '
  const fs = require("fs");
  const [file, ck, top, middle, bottom, out] = process.argv.slice(1);
  const s = JSON.parse(fs.readFileSync(file, "utf8"));
  const of = (l) => s.layers.find((x) => x.layer === Number(l));
  const j = { source: ck, probe: s.probe, top: of(top), middle: of(middle), bottom: of(bottom), layers: s.layers };
  fs.writeFileSync(out + ".tmp", JSON.stringify(j, null, 1) + "\n");
  fs.renameSync(out + ".tmp", out);
' "$SCORES" "$CK" "$TOP" "$MIDDLE" "$BOTTOM" "$TRANSPLANTS/layers.json"
echo "lm-transplants: from $CK: top layer $TOP, middle $MIDDLE, bottom $BOTTOM -> $TRANSPLANTS/{top,middle,bottom}-{mixer,ssm}"
exec "${MIMETIC[@]}" sweep "$CONFIG" "$@"
