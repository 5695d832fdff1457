import { Worker, isMainThread, workerData } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
await tf.setBackend('wasm'); await tf.ready();
const who = isMainThread ? 'main' : 'worker';
const b = tf.randomNormal([768, 3352]);
function run(M, reps) { const a = tf.randomNormal([M, 768]); tf.matMul(a, b).dataSync(); const t0 = performance.now(); for (let i = 0; i < reps; i++) tf.matMul(a, b).dataSync(); const dt = (performance.now() - t0) / 1000; return (reps * 2 * M * 768 * 3352 / dt / 1e9).toFixed(1); }
if (process.argv[2] === 'par') {
  if (isMainThread) { const w = new Worker(new URL(import.meta.url), { argv: ['par'] }); await new Promise(r => setTimeout(r, 1500)); }
  else await new Promise(r => setTimeout(r, 500));
  console.log(who, 'M=256 parallel GFLOP/s', run(256, 30));
} else {
  for (const M of [512, 256, 512, 256]) console.log(who, 'M', M, 'GFLOP/s', run(M, 15));
}
