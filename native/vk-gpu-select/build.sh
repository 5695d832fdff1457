#!/usr/bin/env bash
# Build the Vulkan layer that lets `--gpu i` choose among identical GPUs (gpu_select.c) into
# OUT (default dist/native/vk-gpu-select): the shared library and its manifest, which
# src/model/gpu-select.ts finds there. Needs only gcc (no Vulkan SDK).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-dist/native/vk-gpu-select}"
command -v gcc >/dev/null || { echo "vk-gpu-select: gcc missing, layer not built (--gpu will say so on webgpu)" >&2; exit 0; }
mkdir -p "$OUT"
gcc -O2 -Wall -Wextra -Werror -fPIC -shared -fvisibility=hidden -o "$OUT/libVkLayer_MIMETIC_gpu_select.so.tmp-$$" native/vk-gpu-select/gpu_select.c -lpthread
mv "$OUT/libVkLayer_MIMETIC_gpu_select.so.tmp-$$" "$OUT/libVkLayer_MIMETIC_gpu_select.so"
cat > "$OUT/VkLayer_MIMETIC_gpu_select.json.tmp-$$" <<'JSON'
{
  "file_format_version": "1.1.2",
  "layer": {
    "name": "VK_LAYER_MIMETIC_gpu_select",
    "type": "GLOBAL",
    "library_path": "./libVkLayer_MIMETIC_gpu_select.so",
    "api_version": "1.3.0",
    "implementation_version": "1",
    "description": "mimetic --gpu: keep only the physical device chosen by index (MIMETIC_VK_GPU)",
    "functions": {
      "vkGetInstanceProcAddr": "mimetic_GetInstanceProcAddr",
      "vkGetDeviceProcAddr": "mimetic_GetDeviceProcAddr"
    }
  }
}
JSON
mv "$OUT/VkLayer_MIMETIC_gpu_select.json.tmp-$$" "$OUT/VkLayer_MIMETIC_gpu_select.json"
