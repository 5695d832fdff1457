#!/usr/bin/env bash
# `make bundle`: build bundle/, a self-contained folder (< 64 MiB) that runs mimetic on a linux-x64
# GPU host without Node.js, a registry or libvulkan: this machine's node binary, the production
# node_modules pruned to what Node on linux-x64 loads, the built toolkit (dist/, package.json,
# test fixtures), Debian's libvulkan1 + libglvnd debs and run.sh (scripts/gpu-run.sh). Everything large is xz'd.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
LIMIT_MB=64

die() { echo "make-bundle: $*" >&2; exit 1; }

[ "$(node -p 'process.platform + "-" + process.arch')" = linux-x64 ] || die "needs a linux-x64 node to bundle (this one is $(node -p 'process.platform + "-" + process.arch'))"
[ -d node_modules ] || die "node_modules missing: run npm ci first"
command -v xz >/dev/null || die "xz missing: apt-get install xz-utils"

# Build. Errors in files still being written elsewhere should not stop a bundle of what compiled.
npx tsc -p tsconfig.json || echo "make-bundle: tsc reported errors (above); bundling what it emitted" >&2
bash native/vk-gpu-select/build.sh   # --gpu i on the GPU host (dist/native/vk-gpu-select)
[ -f dist/src/cli/main.js ] || die "dist/src/cli/main.js missing after the build"

STAGE="$ROOT/bundle.tmp-$$"   # *.tmp-* is git-ignored
rm -rf "$STAGE"
mkdir -p "$STAGE/app"
trap 'rm -rf "$STAGE"' EXIT

echo "make-bundle: node $(node --version)" >&2
# xz-ing node takes minutes on a small machine: keep it in the git-ignored .gpu/ keyed by its hash.
node_bin="$(command -v node)"
form=plain; command -v strip >/dev/null && form=stripped
node_xz=".gpu/node-$(sha256sum "$node_bin" | cut -c1-16)-$form.xz"
if [ ! -f "$node_xz" ]; then
  mkdir -p .gpu
  # Debian's node keeps its debug info: stripped, it xz's to 22 MB instead of 24 (the carried tree is limited to 64 MiB).
  if [ $form = stripped ]; then strip -o "$node_xz.bin-$$" "$node_bin"; else cp "$node_bin" "$node_xz.bin-$$"; fi
  xz -T0 -6 -c "$node_xz.bin-$$" > "$node_xz.tmp-$$" && mv "$node_xz.tmp-$$" "$node_xz"
  rm -f "$node_xz.bin-$$"
fi
cp "$node_xz" "$STAGE/node.xz"

# --- node_modules, production only, linux-x64 only ---------------------------------------------
echo "make-bundle: node_modules" >&2
# readlink: in a git worktree node_modules may be a link, and pruning through it would prune the original.
cp -a "$(readlink -f node_modules)" "$STAGE/app/node_modules"
NM="$STAGE/app/node_modules"
# Dev dependencies and what only they need; tfjs-node-gpu has no native binding here and is never
# required (backend.ts imports it lazily and reports it missing).
rm -rf "$NM"/{typescript,playwright-core,@types,undici-types,.bin,.cache} "$NM/@tensorflow/tfjs-node-gpu"
# The optional text corpora (138 MB): the GPU host gets a prepared, compressed token file instead.
rm -rf "$NM"/@stdlib
# Native builds for other platforms.
for d in "$NM"/webgpu/dist/*; do [ "$(basename "$d")" = linux-x64 ] || rm -rf "$d"; done
for d in "$NM"/@img/*; do case "$(basename "$d")" in *linux-x64*|colour) ;; *) rm -rf "$d" ;; esac; done
# tfjs: Node loads each package's self-contained dist/*.node.js ("main"); the per-file ES modules,
# browser bundles and source maps are for bundlers and browsers. The wasm backend also loads its
# .wasm files (and a worker script when threaded) from its dist folder.
for pkg in "$NM"/@tensorflow/*; do
  main="$(node -p "require('$pkg/package.json').main")"
  find "$pkg/dist" -type f ! -path "$pkg/$main" ! -name '*.wasm' ! -name '*.worker.js' -delete
  find "$pkg/dist" -type d -empty -delete
  rm -rf "$pkg/src" "$pkg/scripts"
done
find "$NM" \( -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.md' -o -name '*.markdown' \) -type f -delete
tar -C "$STAGE/app" -cf - node_modules | xz -T0 -6 > "$STAGE/node_modules.tar.xz"
rm -rf "$NM"

# --- the toolkit ---------------------------------------------------------------------------------
echo "make-bundle: toolkit" >&2
extra=()
for f in bench/*.py bench/*.json; do [ -e "$f" ] && extra+=("$f"); done
tar -cf - --exclude='*.map' --exclude='*.d.ts' dist package.json test/fixtures "${extra[@]}" | xz -T0 -6 > "$STAGE/app.tar.xz"

# --- libvulkan1 (the Vulkan loader; the GPU host has the NVIDIA driver but no loader) and libglvnd:
# without libGLdispatch & co. the NVIDIA ICD (libGLX_nvidia.so.0) loads but returns no
# vkCreateInstance (seen on the H200 host).
# fonts-dejavu-core: the reports' PNG text goes through fontconfig, and the GPU host has no fonts.
DEBS="libvulkan1:amd64 libglvnd0:amd64 libglx0:amd64 libegl1:amd64 libgl1:amd64 libopengl0:amd64 libgles2:amd64 fonts-dejavu-core"
echo "make-bundle: $DEBS" >&2
# shellcheck disable=SC2086
( cd "$STAGE" && apt-get download $DEBS >/dev/null 2>&1 ) \
  || ( apt-get update -qq >/dev/null 2>&1 && cd "$STAGE" && apt-get download $DEBS >/dev/null 2>&1 ) \
  || die "apt-get download $DEBS failed (needs Debian/Ubuntu apt and network)"

cp scripts/gpu-run.sh "$STAGE/run.sh"
chmod +x "$STAGE/run.sh"
rmdir "$STAGE/app"
( cd "$STAGE" && cat node.xz node_modules.tar.xz app.tar.xz ./*.deb run.sh | sha256sum | cut -c1-16 ) > "$STAGE/STAMP"

size_mb=$(du -sm "$STAGE" | cut -f1)
[ "$size_mb" -lt "$LIMIT_MB" ] || die "bundle is ${size_mb} MiB, over ${LIMIT_MB} MiB"
rm -rf bundle.old-$$
[ -e bundle ] && mv bundle "bundle.old-$$"
mv "$STAGE" bundle
trap - EXIT
rm -rf "bundle.old-$$"
ls -l bundle >&2
echo "make-bundle: bundle/ is ${size_mb} MiB (stamp $(cat bundle/STAMP)); on the GPU host: bash bundle/run.sh <mimetic args>" >&2
