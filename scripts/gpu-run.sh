#!/usr/bin/env bash
# The bundle's entry point (copied to bundle/run.sh by scripts/make-bundle.sh): runs mimetic on a
# linux-x64 machine that has no Node.js, no registry and no libvulkan (the GPU host).
#
#   run.sh <mimetic arguments>     the CLI, e.g. run.sh forward test/fixtures/mamba1-tiny --backend webgpu
#   run.sh --node SCRIPT [args]    any node script; a relative SCRIPT missing here resolves in the toolkit
#   run.sh --test [FILES...]       node --test over the toolkit's dist/test (default: every *.test.js)
#   run.sh --shell CMD...          run CMD with the bundle's PATH / LD_LIBRARY_PATH / VK_DRIVER_FILES
#
# First use unpacks node, node_modules, the toolkit and the Vulkan loader + libglvnd into a cache folder
# (MIMETIC_BUNDLE_CACHE, default /tmp/mimetic-bundle), once per bundle version.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${MIMETIC_BUNDLE_CACHE:-/tmp/mimetic-bundle}"
STAMP="$(cat "$HERE/STAMP")"
ROOT="$CACHE/$STAMP"

# xz may be missing on a minimal image; python3's lzma reads the same files.
unxz_to_stdout() {
  if command -v xz >/dev/null 2>&1; then
    xz -dc "$1"
  else
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1"
  fi
}

unpack_deb() {
  if command -v dpkg >/dev/null 2>&1; then
    dpkg -x "$1" "$2"
  else
    # A .deb is an ar archive holding data.tar.*; python3 can take it apart.
    python3 - "$1" "$2" <<'PY'
import io, sys, tarfile
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'!<arch>\n', 'not a .deb'
pos = 8
while pos < len(data):
    name = data[pos:pos + 16].decode().strip().rstrip('/')
    size = int(data[pos + 48:pos + 58].decode().strip())
    body = data[pos + 60:pos + 60 + size]
    if name.startswith('data.tar'):
        tarfile.open(fileobj=io.BytesIO(body)).extractall(sys.argv[2])
    pos += 60 + size + (size % 2)
PY
  fi
}

if [ ! -f "$ROOT/.ready" ]; then
  mkdir -p "$CACHE"
  TMP="$ROOT.tmp-$$"
  rm -rf "$TMP"
  mkdir -p "$TMP/bin" "$TMP/app" "$TMP/vulkan"
  trap 'rm -rf "$TMP"' EXIT
  echo "run.sh: unpacking the bundle into $ROOT (once)" >&2
  unxz_to_stdout "$HERE/node.xz" > "$TMP/bin/node"
  chmod +x "$TMP/bin/node"
  unxz_to_stdout "$HERE/node_modules.tar.xz" | tar -x -C "$TMP/app"
  unxz_to_stdout "$HERE/app.tar.xz" | tar -x -C "$TMP/app"
  for deb in "$HERE"/*.deb; do
    [ -e "$deb" ] && unpack_deb "$deb" "$TMP/vulkan"
  done
  touch "$TMP/.ready"
  rm -rf "$ROOT"
  mv "$TMP" "$ROOT"
  trap - EXIT
fi

APP="$ROOT/app"
export PATH="$ROOT/bin:$PATH"
LIBS="$ROOT/vulkan/usr/lib/x86_64-linux-gnu"
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib; do
  [ -d "$d" ] && LIBS="$LIBS:$d"
done
export LD_LIBRARY_PATH="$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
NVIDIA_ICD=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && [ -f "$NVIDIA_ICD" ]; then
  export VK_DRIVER_FILES="$NVIDIA_ICD"
fi
# The reports' PNG text is rendered through fontconfig: on a host with no fonts and no config (the
# GPU host) every label is a box, so point fontconfig at the bundle's DejaVu fonts.
if [ -z "${FONTCONFIG_FILE:-}" ] && [ ! -e /etc/fonts/fonts.conf ] && [ -d "$ROOT/vulkan/usr/share/fonts" ]; then
  FONTCONFIG_FILE="$ROOT/fonts.conf"
  [ -f "$FONTCONFIG_FILE" ] || printf '<?xml version="1.0"?>\n<fontconfig><dir>%s</dir><cachedir>%s</cachedir></fontconfig>\n' "$ROOT/vulkan/usr/share/fonts" "$ROOT/fontcache" > "$FONTCONFIG_FILE"
  export FONTCONFIG_FILE
fi
# Mesa's and Dawn's loaders complain without it on a bare container.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

case "${1:-}" in
  --node)
    shift
    script="${1:?run.sh --node needs a script}"
    shift
    if [ ! -e "$script" ] && [ -e "$APP/$script" ]; then script="$APP/$script"; fi
    exec node "$script" "$@"
    ;;
  --test)
    shift
    cd "$APP"
    if [ $# -eq 0 ]; then set -- dist/test/*.test.js; fi
    exec node --test --test-concurrency=1 "$@"
    ;;
  --shell)
    shift
    exec "$@"
    ;;
  *)
    exec node "$APP/dist/src/cli/main.js" "$@"
    ;;
esac
