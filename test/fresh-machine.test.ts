/**
 * `make test` on a machine without Chromium or a Vulkan driver: the browser and WebGPU test files run
 * in a child `node --test` whose PATH hides chromium and whose Vulkan loader is pointed at no driver.
 * Their tests must skip, each with one line naming what to install, no file may crash at load (the
 * compiled-step file once did, on a top-level initBackend('webgpu')), and the run ends on the one
 * summary line; under MIMETIC_TEST_STRICT=1 (CI) the same tests fail instead.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { summaryLine } from './helpers/summary-reporter.js';
import { tempDirs } from './helpers/tmpdir.js';
import { requires } from './helpers/requires.js';

const here = (f: string) => fileURLToPath(new URL(f, import.meta.url));
const REPORTER = here('./helpers/summary-reporter.js');
const FILES = [here('./browser.test.js'), here('./compiled-step.test.js')];
const tmp = tempDirs('mimetic-fresh-');

/** The two files under `make test`'s reporter on a "fresh machine"; `strict` sets MIMETIC_TEST_STRICT=1. */
function freshRun(strict: boolean): { status: number | null; out: string; lines: string[] } {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: tmp(), VK_DRIVER_FILES: '/nonexistent/icd.json', VK_ICD_FILENAMES: '/nonexistent/icd.json' };
  delete env.MIMETIC_CHROMIUM;
  delete env.NODE_TEST_CONTEXT; // else the child node --test thinks it runs inside this file's runner
  delete env.MIMETIC_TEST_STRICT;
  if (strict) env.MIMETIC_TEST_STRICT = '1';
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', `--test-reporter=${REPORTER}`, '--test-reporter-destination=stdout', ...FILES], {
    env, encoding: 'utf8', timeout: 300_000,
  });
  const out = `${r.stdout}${r.stderr}`;
  return { status: r.status, out, lines: r.stdout.trimEnd().split('\n') };
}

test('without Chromium or Vulkan: every such test skips with one line naming what to install, and the run ends on the summary line', { timeout: 300_000 }, () => {
  const r = freshRun(false);
  assert.equal(r.status, 0, r.out);
  const skips = r.lines.filter((l) => l.includes('# needs '));
  assert.ok(skips.some((l) => /# needs Chromium: apt-get install chromium\b/.test(l)), r.out);
  assert.ok(skips.some((l) => /# needs a WebGPU adapter .*: apt-get install libvulkan1 mesa-vulkan-drivers/.test(l)), r.out);
  // Every WebGPU test of the file is there and skipped: none was hidden by a crash at load.
  assert.ok(skips.length >= 9, r.out);
  assert.equal(r.lines.at(-1), `0 passed, 0 failed, ${skips.length} skipped`, r.out);
  assert.doesNotMatch(r.out, /UserError|\n\s+at |✖/, 'no failure and no stack trace');
});

test('under MIMETIC_TEST_STRICT=1 the same tests fail instead of skipping', { timeout: 300_000 }, () => {
  const r = freshRun(true);
  assert.notEqual(r.status, 0, r.out);
  const last = r.lines.at(-1) ?? '';
  const m = /^0 passed, (\d+) failed, 0 skipped$/.exec(last);
  assert.ok(m && Number(m[1]) >= 9, `last line: ${last}\n${r.out}`);
  assert.match(r.out, /backend webgpu is not available: Dawn found no WebGPU adapter/);
  assert.match(r.out, /install Debian's chromium package/);
});

test('the summary line counts cancelled tests as failed and todo as skipped', () => {
  assert.equal(summaryLine({ pass: 5, fail: 1, cancelled: 2, skipped: 3, todo: 1 }), '5 passed, 3 failed, 4 skipped');
  assert.equal(summaryLine({}), '0 passed, 0 failed, 0 skipped');
});

test('make test and .ci/run share scripts/test-deps.sh, and CI runs strict', () => {
  const root = here('../..');
  const makefile = fs.readFileSync(`${root}/Makefile`, 'utf8');
  const ci = fs.readFileSync(`${root}/.ci/run`, 'utf8');
  const testTarget = /^test:.*\n((?:\t.*\n)+)/m.exec(makefile)?.[1] ?? '';
  assert.match(testTarget, /bash scripts\/test-deps\.sh/);
  assert.match(testTarget, /--test-reporter=\.\/dist\/test\/helpers\/summary-reporter\.js/);
  assert.match(ci, /^bash scripts\/test-deps\.sh$/m);
  assert.match(ci, /^export MIMETIC_TEST_STRICT=1\nmake test$/m);
  const r = spawnSync('bash', ['-n', `${root}/scripts/test-deps.sh`], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
});

const HAS_DPKG = spawnSync('dpkg', ['--version'], { stdio: 'ignore' }).status === 0;

test("test-deps.sh takes Debian 12's own Mesa 22.3 as no lavapipe (Dawn finds no adapter on it) and Mesa >= 23 as one", requires(HAS_DPKG, 'dpkg (Debian or Ubuntu)', 'run it on Debian or Ubuntu'), () => {
  const root = here('../..');
  const bin = tmp();
  // A dpkg-query that reports the given mesa-vulkan-drivers version and libvulkan1 as installed.
  fs.writeFileSync(`${bin}/dpkg-query`, '#!/bin/sh\ncase "$*" in *mesa-vulkan-drivers*) printf %s "$MESA";; *libvulkan1*) printf "install ok installed";; esac\n', { mode: 0o755 });
  const probe = (mesa: string) => spawnSync('bash', ['-c', `source <(sed -n '/^have_lavapipe()/,/^}/p' "$1"); have_lavapipe`, 'x', `${root}/scripts/test-deps.sh`], {
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}`, MESA: mesa }, encoding: 'utf8',
  }).status;
  assert.notEqual(probe('22.3.6-1+deb12u1'), 0, "bookworm's own Mesa");
  assert.equal(probe('24.2.8-1~bpo12+1'), 0, 'bookworm-backports Mesa');
  assert.equal(probe('23.0.0-1'), 0);
  assert.notEqual(probe(''), 0, 'not installed');
});
