/**
 * Tests that need something outside Node (a Vulkan adapter, Chromium, Slurm) ask here first. Where the
 * thing is missing they skip with one line naming what to install; under MIMETIC_TEST_STRICT=1 (set by
 * .ci/run) nothing may be skipped, so the test runs and fails on the missing piece instead.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { vulkanDriverFiles } from '../../src/model/backend.js';

export const STRICT = process.env.MIMETIC_TEST_STRICT === '1';

/** What `scripts/test-deps.sh` (run as root, as `make test` does) installs; named in every skip line. */
export const INSTALL_HINT = 'run `sudo make test` (scripts/test-deps.sh installs it with apt)';

/** Options for node:test's `test(name, opts, fn)`: `{}` when `ok` (or strict), else `{ skip: reason }`. */
export function requires(ok: boolean, what: string, install: string): { skip?: string } {
  if (ok || STRICT) return {};
  return { skip: `needs ${what}: ${install}` };
}

const BACKEND = new URL('../../src/model/backend.js', import.meta.url).href;
let webgpuProbe: boolean | undefined;

/**
 * Whether Dawn finds a WebGPU adapter here (a software one such as lavapipe counts). Asked in a child
 * process, so the Vulkan loader's complaints on a machine without a driver stay out of the test output.
 */
export async function hasWebGPU(): Promise<boolean> {
  if (webgpuProbe !== undefined) return webgpuProbe;
  if (vulkanDriverFiles().length === 0) return (webgpuProbe = false);
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', `const m = await import(${JSON.stringify(BACKEND)}); process.stdout.write(String(await m.webgpuAvailable())); process.exit(0);`], {
    encoding: 'utf8', timeout: 120_000, stdio: ['ignore', 'pipe', 'ignore'],
  });
  return (webgpuProbe = r.stdout.trim() === 'true');
}

/** Skip options for a test that needs a WebGPU adapter. */
export async function requiresWebGPU(): Promise<{ skip?: string }> {
  return requires(
    await hasWebGPU(),
    'a WebGPU adapter (a GPU, or a CPU Vulkan driver)',
    `apt-get install libvulkan1 mesa-vulkan-drivers (Mesa >= 23: on Debian 12 from bookworm-backports), or ${INSTALL_HINT}`,
  );
}

/** Chromium for the browser test: MIMETIC_CHROMIUM, else the first chromium (or chromium-browser) on PATH; null when none. */
export function chromiumPath(env: NodeJS.ProcessEnv = process.env): string | null {
  if (env.MIMETIC_CHROMIUM) return fs.existsSync(env.MIMETIC_CHROMIUM) ? env.MIMETIC_CHROMIUM : null;
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    for (const name of ['chromium', 'chromium-browser']) {
      const p = path.join(dir, name);
      try {
        fs.accessSync(p, fs.constants.X_OK);
        if (fs.statSync(p).isFile()) return p;
      } catch {
        // not here
      }
    }
  }
  return null;
}

/** Skip options for a test that needs Chromium. */
export function requiresChromium(): { skip?: string } {
  return requires(chromiumPath() !== null, 'Chromium', `apt-get install chromium (or set MIMETIC_CHROMIUM to a Chromium binary), or ${INSTALL_HINT}`);
}
