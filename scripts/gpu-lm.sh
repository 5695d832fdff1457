#!/usr/bin/env bash
# Issue 14 on the GPU host, one device command (≤ 9 minutes) at a time. Two entries:
#
#   bash scripts/gpu-lm.sh pretrain VARIANT SEED [MINUTES]
#     carry: bundle, .gpu/lm-corpus.tar.xz (from `bash scripts/prepare-corpus.sh`, 7.8 MB)
#     Unpacks the corpus to .gpu/lm-corpus (once), runs the lm-pretrain run VARIANT,seed=SEED
#     (experiments/lm-pretrain.json, --where variant=VARIANT --where seed=SEED, a slice of MINUTES,
#     default 8) and writes to $OUT:
#       lm-pretrain-VARIANT-SEED.tgz         the sweep folder without checkpoints (metrics, run.json,
#                                            summary.json, figures, logs)
#       ckpt/config.json, ckpt/model.safetensors.part-aa, -ab, ...   the run's last checkpoint, its
#                                            weights in pieces of 15 MiB ($OUT takes files ≤ 16 MiB)
#       ckpt/SHA256SUMS, ckpt/source.txt     the whole file's hash; which run and step it is
#       lm-series-VARIANT-SEED.tgz           `report RUN --steps all` over every kept checkpoint
#                                            (written last, under a time limit, so that a slow report
#                                            cannot cost the run's results)
#
#   bash scripts/gpu-lm.sh series VARIANT SEED
#     The series report alone, for a run that a pretrain call left in /tmp/sweeps on a machine still
#     warm (when the pretrain call had no time left for it): $OUT/lm-series-VARIANT-SEED.tgz.
#
#   bash scripts/gpu-lm.sh transplant PIECES_DIR [MINUTES] [SWEEP_ARGS...]
#     carry: bundle, PIECES_DIR (the ckpt/ folder above, put in the repo, e.g. .gpu/lm-pretrained);
#     or, on a machine still warm from a pretrain call, nothing: PIECES_DIR may be that run's folder
#     (/tmp/sweeps/lm-pretrain/default,seed=0), whose last checkpoint is then used
#     Reassembles the checkpoint into /tmp/lm-pretrained (PRETRAINED; checked against SHA256SUMS), rebuilds
#     runs/lm-transplants/ from it (deterministic: the same six checkpoints every call) and runs
#     experiments/lm-transplant.json through scripts/lm-transplants.sh for a slice of MINUTES
#     (default 8) with SWEEP_ARGS (e.g. --where variant=top-mixer,bottom-mixer --where seed=0);
#     writes $OUT/lm-transplant.tgz (the sweep folder without checkpoints, and layers.json).
#     Finished runs are kept in /tmp/sweeps/lm-transplant while the machine stays warm; on a fresh
#     machine select the runs not yet done with --where and merge the folders afterwards.
#
# Back here: tar -xzf lm-pretrain-V-S.tgz -C DEST and tar -xzf lm-series-V-S.tgz -C DEST/lm-pretrain (the
# experiments page, mimetic experiments-report DEST/lm-pretrain, embeds the series-* folders it finds
# in a sweep folder); several runs' tgzs unpack into the same DEST/lm-pretrain (summary: sweep
# experiments/lm-pretrain.json --out DEST/lm-pretrain --report-only).
#
# Reassembling the pieces by hand (here, after a pretrain call; FILES_AT is the run's files_at):
#   mkdir -p .gpu/lm-pretrained && cp FILES_AT/ckpt/* .gpu/lm-pretrained/
#   (cd .gpu/lm-pretrained && cat model.safetensors.part-* > model.safetensors && sha256sum -c SHA256SUMS)
# The transplant entry needs only the pieces (it reassembles them itself): keep model.safetensors out
# of the carried folder (rm .gpu/lm-pretrained/model.safetensors) so that the weights travel once
# (21.6 MiB; with the 39 MiB bundle the carried tree stays under 64 MiB).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu-out}"; mkdir -p "$OUT"
MIMETIC=(bash bundle/run.sh)
[ -n "${MIMETIC_CLI:-}" ] && read -r -a MIMETIC <<< "$MIMETIC_CLI"  # a dry run here: MIMETIC_CLI='node dist/src/cli/main.js'
BACKEND=${BACKEND:-webgpu}
SWEEPS=${SWEEPS:-/tmp/sweeps}
# a dry run elsewhere: PRETRAIN_CONFIG / TRANSPLANT_CONFIG name shrunk copies of the configs
PRETRAIN_CONFIG=${PRETRAIN_CONFIG:-experiments/lm-pretrain.json}
TRANSPLANT_CONFIG=${TRANSPLANT_CONFIG:-experiments/lm-transplant.json}
LOG="$OUT/lm-log.txt"
say() { echo "[$(date +%T)] $*" | tee -a "$LOG" >&2; }
unxz() { if command -v xz >/dev/null 2>&1; then xz -dc "$1"; else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"; fi; }
usage() { echo "usage: bash scripts/gpu-lm.sh pretrain VARIANT SEED [MINUTES] | series VARIANT SEED | transplant PIECES_DIR [MINUTES] [SWEEP_ARGS...]" >&2; exit 2; }

mode=${1:-}; shift || true
case $mode in
  pretrain)
    [ $# -ge 2 ] || usage
    V=$1; S=$2; MINUTES=${3:-8}
    START=$(date +%s)
    # The corpus the default config names (a shrunk PRETRAIN_CONFIG brings its own data).
    if [ "$PRETRAIN_CONFIG" = experiments/lm-pretrain.json ] && [ ! -f .gpu/lm-corpus/meta.json ]; then
      [ -f .gpu/lm-corpus.tar.xz ] || { echo "gpu-lm: .gpu/lm-corpus.tar.xz is missing; make it with bash scripts/prepare-corpus.sh and carry it" >&2; exit 2; }
      unxz .gpu/lm-corpus.tar.xz | tar -x -C .gpu || { echo "gpu-lm: could not unpack .gpu/lm-corpus.tar.xz" >&2; exit 2; }
      say "corpus unpacked: $(du -sb .gpu/lm-corpus | cut -f1) bytes"
    fi
    NAME=lm-pretrain; DIR="$SWEEPS/$NAME"; RUN="$DIR/$V,seed=$S"
    say "$NAME $V seed $S: $MINUTES min"
    "${MIMETIC[@]}" sweep "$PRETRAIN_CONFIG" --out "$DIR" --parallel 1 --backend "$BACKEND" --slice-minutes "$MINUTES" \
      --where "variant=$V" --where "seed=$S" >> "$LOG" 2>&1
    say "$NAME rc=$?"
    tar -C "$SWEEPS" -czf "$OUT/$NAME-$V-$S.tgz" --exclude=checkpoints "$NAME"
    CK=$(ls -d "$RUN"/checkpoints/step-* 2>/dev/null | grep -E '/step-[0-9]{8}$' | sort | tail -1 || true)
    if [ -n "$CK" ]; then
      mkdir -p "$OUT/ckpt"
      cp "$CK/config.json" "$OUT/ckpt/"
      split -b 15M "$CK/model.safetensors" "$OUT/ckpt/model.safetensors.part-"
      (cd "$CK" && sha256sum model.safetensors) > "$OUT/ckpt/SHA256SUMS"
      echo "$V,seed=$S $(basename "$CK") of $PRETRAIN_CONFIG" > "$OUT/ckpt/source.txt"
      say "checkpoint $(basename "$CK") -> ckpt/ ($(ls "$OUT/ckpt" | grep -c part-) pieces)"
    else
      say "no checkpoint in $RUN"
      exit 1
    fi
    # the series report last, with what is left of a 9-minute command
    left=$(( 9 * 60 - ($(date +%s) - START) - 20 ))
    if [ "$left" -ge 30 ]; then
      timeout "$left" "${MIMETIC[@]}" report "$RUN" --steps all --backend "$BACKEND" --out "$DIR/series-$V-$S" >> "$LOG" 2>&1
      say "series report rc=$? ($left s allowed)"
      [ -d "$DIR/series-$V-$S" ] && tar -C "$DIR" -czf "$OUT/lm-series-$V-$S.tgz" "series-$V-$S"
    else
      say "no time left for the series report (run it alone: report $RUN --steps all)"
    fi
    ;;
  series)
    [ $# -ge 2 ] || usage
    V=$1; S=$2; DIR="$SWEEPS/lm-pretrain"; RUN="$DIR/$V,seed=$S"
    [ -d "$RUN/checkpoints" ] || { echo "gpu-lm: $RUN has no checkpoints (a fresh machine: run the pretrain entry again)" >&2; exit 2; }
    "${MIMETIC[@]}" report "$RUN" --steps all --backend "$BACKEND" --out "$DIR/series-$V-$S" >> "$LOG" 2>&1
    say "series report rc=$?"
    [ -d "$DIR/series-$V-$S" ] && tar -C "$DIR" -czf "$OUT/lm-series-$V-$S.tgz" "series-$V-$S"
    ;;
  transplant)
    [ $# -ge 1 ] || usage
    P=$1; shift
    MINUTES=8
    if [ $# -ge 1 ] && [[ $1 =~ ^[0-9]+$ ]]; then MINUTES=$1; shift; fi
    # A pretrain run folder still on this machine (a warm one, after a pretrain call): its last checkpoint, hashed here.
    if [ ! -f "$P/config.json" ] && [ -d "$P/checkpoints" ]; then
      RUNCK=$(ls -d "$P"/checkpoints/step-* 2>/dev/null | grep -E '/step-[0-9]{8}$' | sort | tail -1 || true)
      [ -n "$RUNCK" ] || { echo "gpu-lm: $P/checkpoints holds no step-NNNNNNNN checkpoint" >&2; exit 2; }
      FROMRUN=$(mktemp -d)
      cp "$RUNCK/config.json" "$RUNCK/model.safetensors" "$FROMRUN/"
      (cd "$FROMRUN" && sha256sum model.safetensors > SHA256SUMS)
      echo "$(basename "$P") $(basename "$RUNCK") (from the run folder)" > "$FROMRUN/source.txt"
      P=$FROMRUN
    fi
    [ -f "$P/config.json" ] && [ -f "$P/SHA256SUMS" ] || { echo "gpu-lm: $P has no config.json and SHA256SUMS; give the ckpt/ folder of a pretrain call, or its run folder" >&2; exit 2; }
    CK=${PRETRAINED:-/tmp/lm-pretrained}
    rm -rf "$CK"; mkdir -p "$CK"
    cp "$P/config.json" "$P/SHA256SUMS" "$CK/"
    if ls "$P"/model.safetensors.part-* >/dev/null 2>&1; then cat "$P"/model.safetensors.part-* > "$CK/model.safetensors"; else cp "$P/model.safetensors" "$CK/"; fi
    (cd "$CK" && sha256sum -c --quiet SHA256SUMS) || { echo "gpu-lm: the reassembled $CK/model.safetensors does not match $P/SHA256SUMS; carry every piece" >&2; exit 2; }
    say "checkpoint reassembled: $(cat "$P/source.txt" 2>/dev/null)"
    TRANSPLANTS=${TRANSPLANTS:-runs/lm-transplants}
    rm -rf "$TRANSPLANTS"
    NAME=lm-transplant; DIR="$SWEEPS/$NAME"
    say "$NAME: $MINUTES min $*"
    MIMETIC="${MIMETIC[*]}" TRANSPLANTS="$TRANSPLANTS" BACKEND="$BACKEND" bash scripts/lm-transplants.sh "$CK" "$TRANSPLANT_CONFIG" -- \
      --out "$DIR" --parallel 1 --backend "$BACKEND" --slice-minutes "$MINUTES" "$@" >> "$LOG" 2>&1
    say "$NAME rc=$?"
    mkdir -p "$DIR"
    [ -f "$TRANSPLANTS/layers.json" ] && cp "$TRANSPLANTS/layers.json" "$DIR/layers.json"
    tar -C "$SWEEPS" -czf "$OUT/$NAME.tgz" --exclude=checkpoints --exclude='*.safetensors' "$NAME"
    ;;
  *) usage ;;
esac
