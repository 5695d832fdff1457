import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/util/rng.js';
import { UserError } from '../src/util/errors.js';
import { BOS, CopyTask, EOS, FIRST_LETTER, PAD, SEP, copyText } from '../src/tasks/copy.js';
import { MqarTask } from '../src/tasks/mqar.js';
import { generalisationLengths, longestAtLeast } from '../src/tasks/common.js';

test('copy: packed training rows are `$ s | s .` back to back, mask on the copy and the final dot', () => {
  const task = new CopyTask({ alphabet: 5, minLen: 2, maxLen: 6, context: 40, evalLengths: [] });
  assert.equal(task.vocabSize, 9);
  const b = task.sampleTrain(new Rng(0), 8);
  assert.equal(b.length, 40);
  for (let r = 0; r < 8; r++) {
    const ids = Array.from(b.ids.subarray(r * 40, r * 40 + 40));
    const tg = Array.from(b.targets.subarray(r * 40, r * 40 + 40));
    const mk = Array.from(b.mask.subarray(r * 40, r * 40 + 40));
    for (let t = 0; t < 39; t++) assert.equal(tg[t], ids[t + 1], 'targets are next tokens');
    const text = copyText(ids);
    const m = /^((?:\$[a-e]+\|[a-e]+\.)+)(\**)$/.exec(text);
    assert.ok(m, text);
    let pos = 0;
    for (const ex of m[1]!.match(/\$[a-e]+\|[a-e]+\./g)!) {
      const [s, c] = ex.slice(1, -1).split('|');
      assert.equal(s, c, 'copy equals source');
      assert.ok(s!.length >= 2 && s!.length <= 6);
      const n = s!.length;
      // predicted tokens at t: the second copy (t = pos+n+1 .. pos+2n) and EOS (t = pos+2n+1)
      for (let k = 0; k < 2 * n + 3; k++) {
        const t = pos + k - 1;
        if (t < 0) continue;
        assert.equal(mk[t], k >= n + 2 ? 1 : 0, `${text} mask at ${t}`);
      }
      pos += 2 * n + 3;
    }
    for (let t = pos - 1; t < 40; t++) assert.equal(mk[t], 0, 'pad positions unmasked');
    assert.ok(40 - pos < 2 * 6 + 3, 'packing stops only when a drawn example no longer fits');
  }
  // determinism and seed sensitivity
  assert.deepEqual(task.sampleTrain(new Rng(3), 4), task.sampleTrain(new Rng(3), 4));
  assert.notDeepEqual(task.sampleTrain(new Rng(3), 4).ids, task.sampleTrain(new Rng(4), 4).ids);
});

test('copy: an exact small layout', () => {
  const task = new CopyTask({ alphabet: 3, minLen: 2, maxLen: 2, context: 7, evalLengths: [] });
  const b = task.sampleTrain(new Rng(1), 1);
  const ids = Array.from(b.ids);
  assert.equal(ids[0], BOS);
  assert.equal(ids[3], SEP);
  assert.equal(ids[6], EOS);
  assert.deepEqual(ids.slice(4, 6), ids.slice(1, 3));
  assert.ok(ids.slice(1, 3).every((x) => x >= FIRST_LETTER && x < FIRST_LETTER + 3));
  assert.deepEqual(Array.from(b.mask), [0, 0, 0, 1, 1, 1, 0]);
  assert.deepEqual(Array.from(b.targets), [...ids.slice(1), PAD]);
});

test('copy: eval scoring — a perfect predictor scores 1, a wrong one 0, one wrong letter breaks the string', () => {
  const task = new CopyTask({ alphabet: 26, minLen: 5, maxLen: 10, context: 30, evalLengths: [4, 8, 20] });
  const specs = task.evalSpecs();
  assert.deepEqual(specs.map((s) => [s.key, s.length, s.train]), [['len=10', 23, true], ['len=4', 11, false], ['len=8', 19, true], ['len=20', 43, false]]);
  const spec = specs[1]!;
  const b = task.sampleEval(new Rng(9), spec, 16);
  assert.equal(b.length, 11);
  const perfect = Int32Array.from(b.targets);
  const s1 = task.score(spec, b, perfect);
  assert.equal(s1.accuracy, 1);
  assert.equal(s1.charAccuracy, 1);
  const wrong = Int32Array.from(b.targets, (x) => (x + 1) % task.vocabSize);
  const s0 = task.score(spec, b, wrong);
  assert.equal(s0.accuracy, 0);
  assert.equal(s0.charAccuracy, 0);
  // flip one copied letter in row 0 and the EOS in row 1: 14/16 strings, 63/64 chars.
  const one = Int32Array.from(b.targets);
  one[0 * 11 + 6] = (one[0 * 11 + 6]! + 1) % task.vocabSize;
  one[1 * 11 + 9] = PAD;
  const s2 = task.score(spec, b, one);
  assert.equal(s2.accuracy, 14 / 16);
  assert.equal(s2.charAccuracy, 63 / 64);
  // only scored positions matter: garbage on the prompt leaves accuracy 1
  const prompt = Int32Array.from(b.targets);
  for (let r = 0; r < 16; r++) for (let t = 0; t <= 4; t++) prompt[r * 11 + t] = 0;
  assert.equal(task.score(spec, b, prompt).accuracy, 1);
});

test('copy: per-position and prefix curves from a predictor with errors at known positions', () => {
  const n = 6;
  const task = new CopyTask({ alphabet: 26, minLen: 2, maxLen: 10, context: 30, evalLengths: [n] });
  const spec = task.evalSpecs().find((s) => s.size === n)!;
  const R = 10;
  const b = task.sampleEval(new Rng(3), spec, R);
  const L = b.length;
  assert.equal(L, 2 * n + 3);
  const pred = Int32Array.from(b.targets);
  // Copied letter i of row r is predicted at t = n + 1 + i (its target is the letter itself).
  const wrong = (r: number, i: number) => { const t = r * L + n + 1 + i; pred[t] = (pred[t]! + 1 - FIRST_LETTER) % 26 + FIRST_LETTER; };
  // Rows 0-3 miss letter 4; rows 0-1 also miss letter 1; row 5 misses the final dot only.
  for (const r of [0, 1, 2, 3]) wrong(r, 4);
  for (const r of [0, 1]) wrong(r, 1);
  pred[5 * L + 2 * n + 1] = PAD;
  const sc = task.score(spec, b, pred);
  assert.deepEqual(sc.perPosition, [1, 0.8, 1, 1, 0.6, 1]);
  // Strings right through letter i: rows 0-1 fail from 1 on, rows 2-3 from 4 on; the dot is not a position.
  assert.deepEqual(sc.prefix, [1, 0.8, 0.8, 0.8, 0.6, 0.6]);
  assert.equal(sc.charAccuracy, (60 - 6) / 60);
  assert.equal(sc.accuracy, 5 / 10);
  // The mean of the per-position curve is the character accuracy.
  assert.ok(Math.abs(sc.perPosition!.reduce((a, x) => a + x, 0) / n - sc.charAccuracy!) < 1e-15);
});

test('mqar: per-query accuracy follows the queries in sequence order', () => {
  const task = new MqarTask({ vocab: 256, contexts: [64], kvPairs: [4], powerA: 0.01, evalLengths: [], randomNonQueries: true });
  const spec = task.evalSpecs()[0]!;
  const b = task.sampleEval(new Rng(2), spec, 4);
  const pred = Int32Array.from(b.targets);
  // Break the 3rd query of every row and the 1st query of row 0.
  for (let r = 0; r < 4; r++) {
    const qs = [];
    for (let t = 0; t < 64; t++) if (b.mask[r * 64 + t]) qs.push(r * 64 + t);
    assert.equal(qs.length, 4);
    pred[qs[2]!] = 0;
    if (r === 0) pred[qs[0]!] = 0;
  }
  const sc = task.score(spec, b, pred);
  assert.deepEqual(sc.perPosition, [0.75, 1, 0, 1]);
  assert.equal(sc.accuracy, (2 / 4 + 3 * 3 / 4) / 4);
});

test('generalisation lengths: longest evaluated length reaching the threshold, 0 when none', () => {
  const table = (rows: [number, number, number][]) => rows.map(([size, accuracy, charAccuracy]) => ({ size, accuracy, charAccuracy }));
  // The Mamba-2 4L mimetic row: string 0.96, 0.52, 0, 0 and char ... 0.83, 0.29.
  assert.deepEqual(generalisationLengths(table([[50, 0.96, 0.999], [75, 0.52, 0.95], [100, 0, 0.83], [150, 0, 0.29]])), { string: 75, char: 75 });
  // Exactly at the thresholds counts; order of the table does not matter.
  assert.deepEqual(generalisationLengths(table([[100, 0.5, 0.9], [50, 1, 1], [200, 0.49, 0.8999]])), { string: 100, char: 100 });
  // A longer length passing after a failing one still counts (the definition is "longest evaluated").
  assert.deepEqual(generalisationLengths(table([[50, 0.9, 0.99], [60, 0.4, 0.88], [75, 0.6, 0.91]])), { string: 75, char: 75 });
  assert.deepEqual(generalisationLengths(table([[50, 0.1, 0.5], [100, 0, 0.2]])), { string: 0, char: 0 });
  // No character accuracy (MQAR-like scores): char length 0.
  assert.deepEqual(generalisationLengths([{ size: 16, accuracy: 0.9 }]), { string: 16, char: 0 });
  assert.equal(longestAtLeast([{ size: 10, value: NaN }, { size: 5, value: 1 }], 0.5), 5);
});

test('copy: bad options are user errors', () => {
  assert.throws(() => new CopyTask({ alphabet: 26, minLen: 5, maxLen: 50, context: 100, evalLengths: [] }), (e: unknown) => e instanceof UserError && /2·50\+3 = 103/.test((e as Error).message));
  assert.throws(() => new CopyTask({ alphabet: 26, minLen: 9, maxLen: 5, context: 100, evalLengths: [] }), UserError);
  assert.throws(() => new CopyTask({ alphabet: 1, minLen: 2, maxLen: 5, context: 100, evalLengths: [] }), UserError);
});

test('mqar: Zoology layout — distinct keys and values in range, queries after the pairs, only query positions scored', () => {
  const task = new MqarTask({ vocab: 64, contexts: [64], kvPairs: [4, 8], powerA: 0.01, evalLengths: [128], randomNonQueries: true });
  const b = task.sampleTrain(new Rng(2), 16);
  const L = 64;
  for (let r = 0; r < 16; r++) {
    const ids = Array.from(b.ids.subarray(r * L, (r + 1) * L));
    const mask = Array.from(b.mask.subarray(r * L, (r + 1) * L));
    const tg = Array.from(b.targets.subarray(r * L, (r + 1) * L));
    const D = mask.reduce((a, x) => a + x, 0);
    assert.ok(D === 4 || D === 8, `pairs ${D}`);
    const kv = new Map<number, number>();
    for (let i = 0; i < D; i++) {
      const k = ids[2 * i]!, v = ids[2 * i + 1]!;
      assert.ok(k >= 1 && k < 32, `key ${k}`);
      assert.ok(v >= 32 && v < 64, `value ${v}`);
      assert.ok(!kv.has(k), 'distinct keys');
      kv.set(k, v);
    }
    assert.equal(new Set(kv.values()).size, D, 'distinct values');
    const queried = new Set<number>();
    for (let t = 0; t < L; t++) {
      if (!mask[t]) continue;
      assert.ok(t >= 2 * D && (t - 2 * D) % 2 === 0, `query at even offset after the pairs (t=${t})`);
      assert.ok(kv.has(ids[t]!), 'query is a key');
      assert.equal(tg[t], kv.get(ids[t]!), 'target is the value');
      queried.add(ids[t]!);
    }
    assert.equal(queried.size, D, 'each key queried once');
    assert.ok(ids.every((x) => x >= 0 && x < 64));
  }
  assert.deepEqual(task.sampleTrain(new Rng(5), 3), task.sampleTrain(new Rng(5), 3));
});

test('mqar: power-law gaps favour short gaps; eval specs by pairs; scoring', () => {
  const task = new MqarTask({ vocab: 256, contexts: [128], kvPairs: [2], powerA: 0.01, evalLengths: [64, 256], randomNonQueries: false });
  // with a = 0.01, p(g) ∝ g^-0.99: the first gap slot is far more likely than the last
  let first = 0, last = 0;
  const rng = new Rng(11);
  for (let i = 0; i < 400; i++) {
    const ex = task.example(rng, 128, 2);
    for (let t = 0; t < 128; t++) if (ex.mask[t]) { if (t === 4) first++; if (t === 4 + 2 * 61) last++; }
    // without random filler every non-pair, non-query position is 0
    for (let t = 4; t < 128; t++) if (!ex.mask[t]) assert.equal(ex.row[t], 0);
  }
  assert.ok(first > 10 * Math.max(1, last), `first ${first} last ${last}`);
  assert.deepEqual(task.evalSpecs().map((s) => s.key), ['len=128,kv=2', 'len=64,kv=2', 'len=64,kv=16', 'len=256,kv=2', 'len=256,kv=64']);
  const spec = task.evalSpecs()[2]!;
  const b = task.sampleEval(new Rng(1), spec, 8);
  assert.equal(task.score(spec, b, Int32Array.from(b.targets)).accuracy, 1);
  assert.equal(task.score(spec, b, new Int32Array(b.targets.length)).accuracy, 0);
  const half = Int32Array.from(b.targets);
  let seen = 0;
  for (let t = 0; t < half.length; t++) if (b.mask[t] && t < 64) { if (seen++ % 2 === 0) half[t] = 0; }
  assert.equal(task.score(spec, b, half).accuracy, (1 - 8 / 16) / 8 + 7 / 8);
});

test('mqar: several training lengths — each step one length, each row a pair count that fits it', () => {
  const task = new MqarTask({ vocab: 512, contexts: [16, 64], kvPairs: [2, 8], powerA: 0.01, evalLengths: [], randomNonQueries: true });
  assert.equal(task.trainLength, 64);
  assert.deepEqual(task.evalSpecs().map((s) => s.key), ['len=16,kv=2', 'len=64,kv=2', 'len=64,kv=8']);
  const rng = new Rng(4);
  const seen = new Set<string>();
  for (let i = 0; i < 60; i++) {
    const b = task.sampleTrain(rng, 4);
    for (let r = 0; r < 4; r++) {
      const D = b.mask.subarray(r * b.length, (r + 1) * b.length).reduce((a, x) => a + x, 0);
      assert.ok(MqarTask.fits(b.length, D), `${D} pairs in ${b.length}`);
      seen.add(`${b.length}:${D}`);
    }
  }
  assert.deepEqual([...seen].sort(), ['16:2', '64:2', '64:8']);
  assert.throws(() => new MqarTask({ vocab: 512, contexts: [6, 64], kvPairs: [2, 8], powerA: 0.01, evalLengths: [], randomNonQueries: true }), /--context 6 is too short for any/);
});

test('mqar: vocabulary too small or context too short are user errors', () => {
  assert.throws(() => new MqarTask({ vocab: 16, contexts: [256], kvPairs: [16], powerA: 0.01, evalLengths: [], randomNonQueries: true }), (e: unknown) => e instanceof UserError && /--vocab 16 is too small for 16 key-value pairs/.test((e as Error).message));
  assert.throws(() => new MqarTask({ vocab: 8192, contexts: [60], kvPairs: [16], powerA: 0.01, evalLengths: [], randomNonQueries: true }), /--context 60 is too short/);
});
