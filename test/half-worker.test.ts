import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { halfReader } from '../src/checkpoint/half-worker.js';
import { Checkpoint } from '../src/checkpoint/checkpoint.js';
import { SafetensorsReader, SafetensorsError, writeSafetensors } from '../src/checkpoint/safetensors.js';
import { writeSynthCheckpoint, tmpDir } from './helpers/synth-checkpoint.js';
import { referenceBits, assertBitsEqual } from './helpers/half-reference.js';

/** The helper thread, once it is up (the first call only starts it). */
async function readyHelper(): Promise<NonNullable<ReturnType<typeof halfReader>>> {
  for (let waited = 0; waited < 30_000; waited += 10) {
    const h = halfReader();
    if (h) return h;
    await sleep(10);
  }
  throw new Error('the helper thread did not start in 30 s');
}

test('helper thread: BF16 and F16 reads (every bit pattern, odd lengths) into fresh and transferred buffers match the reference; a failed read reports the file and the thread still serves', async () => {
  const helper = await readyHelper();
  const dir = tmpDir('half-worker');
  try {
    const patterns = (n: number, seed: number) => Uint16Array.from({ length: n }, (_, i) => (i < 65536 ? i : (Math.imul(i + seed, 2654435761) >>> 16) & 0xffff));
    const tensors = [
      { name: 'a', shape: [3], dtype: 'BF16' as const, data: Uint16Array.from([1, 2, 3]) }, // puts the others off a 16-byte boundary
      { name: 'b', shape: [65536 * 3 + 5], dtype: 'BF16' as const, data: patterns(65536 * 3 + 5, 1) },
      { name: 'c', shape: [65536 * 3 + 1], dtype: 'F16' as const, data: patterns(65536 * 3 + 1, 2) },
    ];
    const file = path.join(dir, 'h.safetensors');
    writeSafetensors(file, tensors, { metadata: null });
    const r = SafetensorsReader.open(file);
    try {
      const reads = tensors.map((t) => ({ ...r.halfRead(t.name)!, length: t.data.length }));
      const fresh = helper.read(reads)!();
      const given = tensors.map((t) => new Float32Array(t.data.length).fill(NaN));
      const reused = helper.read(reads.map((x, k) => ({ ...x, into: given[k] })))!();
      tensors.forEach((t, k) => {
        const want = referenceBits(t.dtype, t.data);
        assertBitsEqual(fresh[k]!, want, `${t.name} fresh`);
        assertBitsEqual(reused[k]!, want, `${t.name} transferred`);
        assert.equal(given[k]!.length, 0, 'the given array was transferred away');
      });
      // Only the first `count` values: the rest of the array is left as it was.
      const b = reads[1]!;
      const part = helper.read([{ ...b, count: b.count - 1001, into: new Float32Array(b.length).fill(-3) }])!()[0]!;
      assertBitsEqual(part.subarray(0, b.count - 1001), referenceBits('BF16', tensors[1]!.data.subarray(0, b.count - 1001)), 'b, first part');
      assert.ok(part.subarray(b.count - 1001).every((v) => v === -3));
      // Cut the file after its header was read: the helper's read reaches its end.
      fs.truncateSync(file, r.info('c').begin + 10);
      const wait = helper.read([reads[2]!])!;
      assert.throws(wait, (e: unknown) => e instanceof SafetensorsError && e.message.startsWith(file) && /truncated while being read/.test(e.message));
      assertBitsEqual(helper.read([reads[1]!])!()[0]!, referenceBits('BF16', tensors[1]!.data), 'b after the failure');
    } finally {
      r.close();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('readLayer: large half tensors go to the helper thread (the largest one split with this thread), fresh and reused, with the values of a plain read; a truncated layer fails and the next read is right', async () => {
  await readyHelper();
  for (const dtype of ['BF16', 'F16'] as const) {
    const dir = tmpDir('half-worker-layer');
    // in_proj is 8 MiB and out_proj 4 MiB stored: both large enough to be sent.
    writeSynthCheckpoint(dir, { arch: 'mamba1', numLayers: 3, hidden: 1024, dInner: 2048, state: 4, conv: 4, dtRank: 8, vocab: 11, dtype });
    const c = Checkpoint.open(dir);
    try {
      const file = path.join(dir, 'model.safetensors');
      const plain = SafetensorsReader.open(file);
      const expect = (layer: number, got: Record<string, { data: Float32Array }>) => {
        for (const [short, t] of Object.entries(got)) {
          const want = plain.readFloat32(`backbone.layers.${layer}.${short}`).data;
          assert.ok(Buffer.from(want.buffer).equals(Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength)), `${dtype} layer ${layer} ${short}`);
        }
      };
      const before = c.bytesRead();
      const l0 = c.readLayer(0);
      assert.equal(c.bytesRead() - before, c.layerBytes(0));
      expect(0, l0);
      const big = l0['mixer.in_proj.weight']!.data;
      const smallBuffer = l0['mixer.A_log']!.data.buffer;
      const l1 = c.readLayer(1, { into: l0 });
      expect(1, l1);
      assert.equal(big.length, 0, 'in_proj went to the helper and came back as a new view');
      assert.equal(l1['mixer.A_log']!.data.buffer, smallBuffer, 'small tensors are read here, into the given buffer');
      // A reused array that does not own its whole buffer is read here, into that array.
      const shared = new Float32Array(l1['mixer.in_proj.weight']!.data.length + 4);
      const view = shared.subarray(4);
      const l2 = c.readLayer(2, { into: { ...l1, 'mixer.in_proj.weight': { shape: [], data: view } } });
      expect(2, l2);
      assert.equal(l2['mixer.in_proj.weight']!.data, view);
      fs.truncateSync(file, c.info('backbone.layers.2.mixer.in_proj.weight').begin + 100);
      assert.throws(() => c.readLayer(2), (e: unknown) => e instanceof SafetensorsError && /truncated while being read/.test(e.message));
      // Layer 0 lies before the cut: read again, it has its own values, not a stale reply's.
      expect(0, c.readLayer(0));
      plain.close();
    } finally {
      c.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }
});
