/**
 * Tests that need something outside Node (a Vulkan adapter, Chromium, Slurm) ask here first. Where the
 * thing is missing they skip with one line naming what to install; under MIMETIC_TEST_STRICT=1 (set by
 * .ci/run) nothing may be skipped, so the test runs and fails on the missing piece instead.
 */
export const STRICT = process.env.MIMETIC_TEST_STRICT === '1';

/** Options for node:test's `test(name, opts, fn)`: `{}` when `ok` (or strict), else `{ skip: reason }`. */
export function requires(ok: boolean, what: string, install: string): { skip?: string } {
  if (ok || STRICT) return {};
  return { skip: `needs ${what}: ${install}` };
}
