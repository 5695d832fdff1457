/**
 * The layering of ARCHITECTURE.md, checked on the sources: every relative import (static, dynamic,
 * type-only, re-export) of a file under src/<folder>/ must land in a folder that <folder> may import.
 * Imports are read by TypeScript's own pre-processor, not by a regular expression.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { requires } from './helpers/requires.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
// The GPU bundle (make bundle) has neither the sources nor the TypeScript compiler.
const ts = (await import('typescript').catch(() => null))?.default;
const needTs = requires(ts !== undefined, 'the typescript package', 'npm ci (a checkout, not the GPU bundle)');
const needSrc = requires(ts !== undefined && fs.existsSync(path.join(ROOT, 'src')), 'the sources in src/ and the typescript package', 'run it in a checkout of the repository (npm ci), not the GPU bundle');

/** Folder → the other src/ folders its files may import (ARCHITECTURE.md). '.' is src/index.ts. */
export const ALLOWED: Record<string, string[]> = {
  util: [],
  checkpoint: ['util'],
  hub: ['checkpoint', 'util'],
  model: ['checkpoint', 'util'],
  analysis: ['model', 'checkpoint', 'util'],
  render: ['util'],
  report: ['analysis', 'render', 'model', 'checkpoint', 'util'],
  data: ['util'],
  tasks: ['data', 'util'],
  train: ['tasks', 'data', 'model', 'render', 'checkpoint', 'util'],
  cli: ['train', 'tasks', 'data', 'report', 'render', 'analysis', 'model', 'hub', 'checkpoint', 'util'],
  '.': ['train', 'tasks', 'data', 'report', 'render', 'analysis', 'model', 'hub', 'checkpoint', 'util'],
};

/** The src/ folder a path inside src/ belongs to ('.' for files directly in src/). */
function folderOf(rel: string): string {
  const parts = rel.split('/');
  return parts.length > 1 ? parts[0]! : '.';
}

/** Every import that breaks ALLOWED, as `src/a/x.ts → src/b/y.js`; files maps a path relative to src/ to its text. */
export function violations(files: Map<string, string>): string[] {
  const out: string[] = [];
  for (const [rel, text] of files) {
    const from = folderOf(rel);
    const allowed = ALLOWED[from];
    if (!allowed) {
      out.push(`src/${rel}: folder '${from}' is not in the layering (add it to ARCHITECTURE.md and this test)`);
      continue;
    }
    for (const imp of ts!.preProcessFile(text, true, true).importedFiles) {
      if (!imp.fileName.startsWith('.')) continue; // packages
      const target = path.posix.normalize(path.posix.join(path.posix.dirname(rel), imp.fileName));
      if (target.startsWith('..')) {
        out.push(`src/${rel} → ${imp.fileName}: outside src/`);
        continue;
      }
      const to = folderOf(target);
      if (to !== from && !allowed.includes(to)) out.push(`src/${rel} → src/${target}: ${from}/ may not import ${to}/`);
    }
  }
  return out;
}

function sources(): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith('.ts')) files.set(path.relative(path.join(ROOT, 'src'), p).split(path.sep).join('/'), fs.readFileSync(p, 'utf8'));
    }
  };
  walk(path.join(ROOT, 'src'));
  return files;
}

test('the checker catches each kind of import that breaks the layering', needTs, () => {
  const bad = new Map([
    ['model/a.ts', "import { x } from '../analysis/attention.js';"],
    ['model/kernels/b.ts', "import type { T } from '../../report/types.js';"],
    ['model/c.ts', "export { y } from '../train/trainer.js';"],
    ['model/d.ts', "const m = await import('../cli/main.js');"],
    ['model/e.ts', "import '../tasks/index.js';"],
    ['checkpoint/f.ts', "import { Canvas } from '../render/png.js';"],
    ['tasks/g.ts', "import { train } from '../train/trainer.js';"],
    ['lab/h.ts', "import * as fs from 'node:fs';"],
  ]);
  const v = violations(bad);
  assert.equal(v.length, bad.size, v.join('\n'));
  const good = new Map([
    ['model/a.ts', "import { UserError } from '../util/errors.js';\nimport * as tf from '@tensorflow/tfjs';\nimport { selectiveScan } from './kernels/scan.js';"],
    ['analysis/b.ts', "import { block } from '../model/mamba.js';"],
    ['index.ts', "export { train } from './train/trainer.js';"],
  ]);
  assert.deepEqual(violations(good), []);
});

test('src/ follows the layering: no src/model file imports analysis/, report/, train/, tasks/ or cli/', needSrc, () => {
  const files = sources();
  assert.ok([...files.keys()].filter((f) => f.startsWith('model/')).length >= 10, 'the model files are found');
  assert.deepEqual(violations(files), []);
});
