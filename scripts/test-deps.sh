#!/usr/bin/env bash
# What the browser and WebGPU tests need beyond Node, installed when this runs as root with apt
# (a fresh Debian/Ubuntu machine or CI); elsewhere it says what is missing and the tests that need it
# skip with one line naming what to install (MIMETIC_TEST_STRICT=1 turns those skips into failures).
#  - chromium: the report's browser test renders pages in headless Chromium.
#  - libvulkan1 + mesa-vulkan-drivers (lavapipe, a CPU Vulkan driver): the WebGPU backend's tests run
#    on it when there is no GPU. Debian 12's own Mesa 22.3 gives Dawn no adapter; the backports Mesa does.
# Used by `make test` and .ci/run.
set -euo pipefail

have_chromium() { command -v chromium >/dev/null || command -v chromium-browser >/dev/null; }
have_vulkan() { ls /usr/share/vulkan/icd.d/*.json /etc/vulkan/icd.d/*.json >/dev/null 2>&1; }
# lavapipe that gives Dawn an adapter: Mesa >= 23 (Debian 12's own 22.3 does not), with the loader.
have_lavapipe() {
  local v
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null) && dpkg --compare-versions "$v" ge 23 &&
    dpkg-query -W -f='${Status}' libvulkan1 2>/dev/null | grep -q 'install ok installed'
}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # Already there (a second `make test`): nothing to do, no apt-get update.
  if have_chromium && have_lavapipe && [ "${MIMETIC_TEST_DEPS_FORCE:-0}" != 1 ]; then exit 0; fi
  export DEBIAN_FRONTEND=noninteractive
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  bp="${codename}-backports"
  if [ -n "$codename" ] && ! grep -rqs -- "$bp" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    # Reuse the mirror the machine is already configured with for its main suite.
    mirror=$(awk '/^URIs:/ {u=$2} /^Suites:/ && $0 ~ " '"$codename"'( |$)" && u != "" {print u; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    [ -n "$mirror" ] || mirror=$(awk '$1=="deb" && $3=="'"$codename"'" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
    if [ -n "$mirror" ]; then echo "deb $mirror $bp main" > /etc/apt/sources.list.d/"$bp".list; fi
  fi
  echo "test-deps: installing chromium and lavapipe (mesa-vulkan-drivers) with apt" >&2
  install() {
    apt-get update -qq &&
      apt-get install -y -qq --no-install-recommends chromium >/dev/null &&
      if grep -rqs -- "$bp" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        apt-get install -y -qq --no-install-recommends -t "$bp" mesa-vulkan-drivers libvulkan1 >/dev/null
      else
        apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1 >/dev/null
      fi
  }
  # No network or a broken mirror: say so and go on; the tests that need them skip (or fail under
  # MIMETIC_TEST_STRICT=1, as in CI).
  install || echo "test-deps: apt-get failed; the browser and WebGPU tests will skip without chromium and lavapipe" >&2
  exit 0
fi

missing=()
have_chromium || missing+=("chromium")
have_vulkan || missing+=("a Vulkan driver (libvulkan1 mesa-vulkan-drivers, Mesa >= 23)")
if [ ${#missing[@]} -gt 0 ]; then
  echo "test-deps: not root with apt, so not installing ${missing[*]}; the tests that need them will skip (sudo make test installs them)" >&2
fi
