/** A prepared five-document corpus (`mimetic data prepare`, 40 % held out) for LM dry runs. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

export function tinyCorpus(dir: string): string {
  const txt = path.join(dir, 'txt');
  fs.mkdirSync(txt);
  for (let i = 0; i < 5; i++) fs.writeFileSync(path.join(txt, `d${i}.txt`), `document ${i}: call me Ishmael. `.repeat(20));
  const corpus = path.join(dir, 'corpus');
  const p = spawnSync(process.execPath, [path.resolve('dist/src/cli/main.js'), 'data', 'prepare', txt, '--out', corpus, '--held-out', '0.4', '--quiet'], { encoding: 'utf8' });
  assert.equal(p.status, 0, p.stderr);
  return corpus;
}
