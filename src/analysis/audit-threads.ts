/**
 * The audit on several threads (issue 17). The probe's sequences are independent through the
 * whole forward pass (projections and norms act per token; the convolution, the scan and the
 * attention maps per sequence), so the probe's rows are split into contiguous chunks: the first
 * is run on the calling thread, each other one on a worker_threads Worker running its own tf.js
 * backend on the same checkpoint (opened again there) and the same layer code. A worker sends each
 * captured layer's per-row arrays (maps, mixer input, scan internals) as soon as it has them; the
 * caller concatenates them along the batch axis in row order, so every score and every piece of
 * the report's detail is computed from the very arrays the single-threaded audit would have (the
 * per-row computation does not depend on which other rows share the batch; the tests check this
 * to the last bit on the fixtures).
 *
 * Workers are kept between audits (the report's reference rows are two more audits) and are
 * unref'd while idle, so they never keep a process alive; closeAuditThreads() ends them.
 * This file is both sides: loaded as a worker, it serves audit jobs.
 */
import { Worker, parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import * as os from 'node:os';
import type { Tensor } from '../checkpoint/safetensors.js';
import { UserError, isUserError } from '../util/errors.js';
import type { CaptureLevel, LayerCapture, PlainInternals } from './capture.js';

const ROLE = 'mimetic-audit-rows';

/** The backends whose work runs on the calling thread, which more threads can share. */
export const THREADED_BACKENDS: readonly string[] = ['wasm', 'cpu'];

/**
 * Parameters above which the default is one thread: each thread holds its own embedding, layer
 * weights and wasm heap, so a mamba-2.8b-shaped audit went from 1481 to 2846 MB of peak RSS with two
 * threads (bench/results/cpu-2core-score-2.8b-threads-*.json), past the 2 GB the streamed audit
 * promises. 1e9 keeps the 130m-790m shapes threaded and the 1.4B-2.8B ones on one thread.
 */
export const THREADED_MAX_PARAMS = 1e9;

/** The default thread count: the machine's cores, at most one per probe row; one for a model over THREADED_MAX_PARAMS. */
export function defaultThreads(batch: number, parameters = 0): number {
  if (parameters > THREADED_MAX_PARAMS) return 1;
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, Math.min(cores, batch));
}

/** `--threads`: a positive integer; null when not given. */
export function parseThreads(v: string | undefined): number | null {
  if (v === undefined) return null;
  const s = v.trim();
  const n = Number(s);
  if (s === '' || !/^\d+$/.test(s) || !Number.isSafeInteger(n) || n < 1) throw new UserError(`--threads: '${v}' is not a positive integer; give 1 (one thread) or more`);
  return n;
}

/** Contiguous chunks of `rows`, as even as can be, the larger ones first; at most `n` (none empty). */
export function splitRows<T>(rows: T[], n: number): T[][] {
  const k = Math.max(1, Math.min(n, rows.length));
  const out: T[][] = [];
  let at = 0;
  for (let j = 0; j < k; j++) {
    const len = Math.floor(rows.length / k) + (j < rows.length % k ? 1 : 0);
    out.push(rows.slice(at, at + len));
    at += len;
  }
  return out;
}

export interface RowsJob {
  /** What Checkpoint.open is given. */
  source: string;
  backend: string;
  ids: number[][];
  layers: number[];
  capture: CaptureLevel;
  channelBlock?: number;
  /** Layers whose weight-only scores (cbIdentity, cbRowCos) the worker computes too, sparing the caller. */
  cbLayers?: number[];
}

/** One captured layer as a worker sends it (LayerCapture without tf objects). */
export type Sent = Pick<LayerCapture, 'layer' | 'mixerInput' | 'attention' | 'internals'> & { cb?: { cbIdentity: number; cbRowCos: number } };

type FromWorker =
  | { job: number; kind: 'layer'; cap: Sent }
  | { job: number; kind: 'done' }
  | { job: number; kind: 'error'; message: string; user: boolean; stack?: string };

// ---------------------------------------------------------------- worker side

async function serve(port: MessagePort): Promise<void> {
  // Imported here, not at the top, so the calling thread loads none of this for the worker's sake.
  const { Checkpoint } = await import('../checkpoint/checkpoint.js');
  const { initBackend } = await import('../model/backend.js');
  const { runCheckpoint } = await import('./capture.js');
  const { readBC } = await import('./audit.js');
  const { cbIdentity, cbRowCos } = await import('./scores.js');
  let backend: string | null = null;
  // Jobs run one at a time, in the order they come.
  let chain = Promise.resolve();
  port.on('message', (msg: { job: number; spec: RowsJob } | { warm: string }) => {
    chain = chain.then(async () => {
      if ('warm' in msg) {
        // A head start: load the backend before the first job (its failure is left to that job).
        try {
          if (backend !== msg.warm) await initBackend(msg.warm as Parameters<typeof initBackend>[0], { quiet: true });
          backend = msg.warm;
        } catch {
          backend = null;
        }
        return;
      }
      const { job, spec } = msg;
      try {
        if (backend !== spec.backend) {
          await initBackend(spec.backend as Parameters<typeof initBackend>[0], { quiet: true });
          backend = spec.backend;
        }
        const ckpt = Checkpoint.open(spec.source);
        try {
          await runCheckpoint(ckpt, spec.ids, {
            capture: spec.capture,
            layers: spec.layers,
            keepCaptures: false,
            skipLogits: true,
            hiddenStates: false,
            stopAfterLastCapture: true,
            channelBlock: spec.channelBlock,
            onLayer: (i, cap) => {
              const sent: Sent = { layer: cap.layer, mixerInput: cap.mixerInput, attention: cap.attention, internals: cap.internals };
              if (spec.cbLayers?.includes(i)) {
                const bc = readBC(ckpt, i);
                sent.cb = { cbIdentity: cbIdentity(bc), cbRowCos: cbRowCos(bc) };
              }
              const list = transferList(sent);
              port.postMessage({ job, kind: 'layer', cap: sent } satisfies FromWorker, list);
            },
          });
        } finally {
          ckpt.close();
        }
        port.postMessage({ job, kind: 'done' } satisfies FromWorker);
      } catch (e) {
        const err = e as Error;
        port.postMessage({ job, kind: 'error', message: String(err?.message ?? e), user: isUserError(e), stack: err?.stack } satisfies FromWorker);
      }
    });
  });
}

/** The arrays of a capture, each on a buffer of its own (copied where a buffer is shared or larger). */
function transferList(c: Sent): ArrayBuffer[] {
  const seen = new Set<ArrayBufferLike>();
  const own = (t: Tensor | undefined): void => {
    if (!t) return;
    const d = t.data;
    if (d.byteOffset !== 0 || d.byteLength !== d.buffer.byteLength || seen.has(d.buffer) || !(d.buffer instanceof ArrayBuffer)) t.data = d.slice();
    seen.add(t.data.buffer);
  };
  own(c.mixerInput);
  if (c.attention) for (const t of Object.values(c.attention)) own(t);
  if (c.internals) for (const t of Object.values(c.internals)) own(t);
  return [...seen] as ArrayBuffer[];
}

const asWorker = workerData as { role?: string } | null;
if (asWorker?.role === ROLE && parentPort) void serve(parentPort);

// ---------------------------------------------------------------- calling side

/** A job's layers as they arrive, in order. */
export interface RowsStream {
  /** The next captured layer, which must be `layer`; rejects with the worker's error. */
  next(layer: number): Promise<Sent>;
}

interface Slot {
  worker: Worker;
  /** Set once the worker failed or exited; no job is given to it again. */
  dead: Error | null;
  job: { id: number; queue: Sent[]; waiting: ((v: void) => void) | null; error: Error | null; done: boolean } | null;
}

let nextJob = 1;
const slots: Slot[] = [];

function threadError(message: string, user: boolean): Error {
  return user ? new UserError(message) : new Error(`audit thread: ${message}`);
}

/**
 * The parent's Node options for the worker, less those about the parent's own entry point (a
 * parent started as `node --input-type=module -e …` would hand the worker options that a file
 * entry point refuses).
 */
export function workerExecArgv(argv: readonly string[] = process.execArgv): string[] {
  const out: string[] = [];
  for (let k = 0; k < argv.length; k++) {
    const a = argv[k]!;
    if (a === '-e' || a === '--eval' || a === '-p' || a === '--print' || a === '-pe' || a === '--input-type') { k++; continue; }
    if (/^(--eval|--print|--input-type)=/.test(a)) continue;
    out.push(a);
  }
  return out;
}

function startSlot(): Slot {
  const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { role: ROLE }, execArgv: workerExecArgv(), stdout: false, stderr: false });
  worker.unref();
  const slot: Slot = { worker, dead: null, job: null };
  const fail = (err: Error) => {
    slot.dead ??= err;
    const j = slot.job;
    if (j && !j.done && !j.error) {
      j.error = err;
      j.waiting?.();
    }
    slot.worker.unref();
  };
  worker.on('message', (m: FromWorker) => {
    const j = slot.job;
    if (!j || m.job !== j.id) return; // an abandoned job's late messages
    if (m.kind === 'layer') j.queue.push(m.cap);
    else if (m.kind === 'done') {
      j.done = true;
      slot.worker.unref();
    } else {
      j.error = threadError(m.message, m.user);
      slot.worker.unref();
    }
    j.waiting?.();
  });
  worker.on('error', (e) => fail(threadError(String((e as Error)?.message ?? e), false)));
  worker.on('exit', (code) => fail(threadError(`the worker exited (code ${code}) before the audit finished`, false)));
  return slot;
}

/**
 * Start `n` workers now, loading `backend` (wasm or cpu), so that their start-up overlaps the
 * caller's own (opening the checkpoint, loading its backend); unref'd, as always while idle.
 */
export function prestartAuditThreads(n: number, backend: string): void {
  if (!THREADED_BACKENDS.includes(backend)) return;
  const had = slots.length;
  while (slots.length < n) slots.push(startSlot());
  for (const s of slots.slice(had)) s.worker.postMessage({ warm: backend });
}

/**
 * Start `specs.length` jobs, one per worker (started on first use, kept after). Each stream's
 * worker is ref'd (keeps the process alive) while its job runs, and unref'd when it ends.
 */
export function startRowsJobs(specs: RowsJob[]): RowsStream[] {
  for (let k = slots.length - 1; k >= 0; k--) {
    if (slots[k]!.dead) {
      void slots[k]!.worker.terminate();
      slots.splice(k, 1);
    }
  }
  while (slots.length < specs.length) slots.push(startSlot());
  return specs.map((spec, k) => {
    const slot = slots[k]!;
    const job = { id: nextJob++, queue: [] as Sent[], waiting: null as ((v: void) => void) | null, error: null as Error | null, done: false };
    slot.job = job;
    slot.worker.ref();
    slot.worker.postMessage({ job: job.id, spec });
    return {
      async next(layer: number): Promise<Sent> {
        for (;;) {
          if (job.queue.length) {
            const cap = job.queue.shift()!;
            if (cap.layer !== layer) throw new Error(`audit thread: sent layer ${cap.layer} where layer ${layer} was due`);
            return cap;
          }
          if (job.error) throw job.error;
          if (slot.dead) throw slot.dead;
          if (job.done) throw new Error(`audit thread: finished without layer ${layer}`);
          await new Promise<void>((r) => { job.waiting = r; });
          job.waiting = null;
        }
      },
    };
  });
}

/**
 * Abandon the jobs still running (after an error on the calling thread): their workers are ended,
 * as a job cannot be stopped midway.
 */
export function abandonRowsJobs(): void {
  for (const s of slots.splice(0)) {
    if (s.job && !s.job.done && !s.job.error) void s.worker.terminate();
    else {
      s.worker.unref();
      slots.push(s);
    }
  }
}

/** End every audit worker (they are unref'd while idle, so this is only needed to free them early). */
export async function closeAuditThreads(): Promise<void> {
  const all = slots.splice(0);
  await Promise.all(all.map((s) => s.worker.terminate()));
}

// ---------------------------------------------------------------- merging

function concat(parts: (Tensor | undefined)[], what: string): Tensor {
  const ts = parts.map((p) => {
    if (!p) throw new Error(`audit thread: a part lacks its ${what}`);
    return p;
  });
  const first = ts[0]!;
  const rest = first.shape.slice(1);
  for (const t of ts) if (t.shape.length !== first.shape.length || t.shape.slice(1).some((d, j) => d !== rest[j])) throw new Error(`audit thread: ${what} of shape [${t.shape}] does not match [${first.shape}]`);
  const data = new Float32Array(ts.reduce((s, t) => s + t.data.length, 0));
  let at = 0;
  for (const t of ts) {
    data.set(t.data, at);
    at += t.data.length;
  }
  return { shape: [ts.reduce((s, t) => s + t.shape[0]!, 0), ...rest], data };
}

/**
 * One capture of all rows from the captures of consecutive row chunks (the first the calling
 * thread's): every batch-leading array concatenated in order; A and D (weights) from the first.
 */
export function mergeCaptures(parts: Sent[]): LayerCapture {
  const first = parts[0]!;
  if (parts.length === 1) return { layer: first.layer, mixerInput: first.mixerInput, attention: first.attention, internals: first.internals };
  const out: LayerCapture = { layer: first.layer, mixerInput: concat(parts.map((p) => p.mixerInput), 'mixer input') };
  if (first.attention) {
    out.attention = {
      attention: concat(parts.map((p) => p.attention?.attention), 'attention map'),
      decay: concat(parts.map((p) => p.attention?.decay), 'decay map'),
      qk: concat(parts.map((p) => p.attention?.qk), 'qk map'),
    };
  }
  if (first.internals) {
    const f = first.internals;
    const cat = (k: 'x' | 'delta' | 'B' | 'C') => concat(parts.map((p) => p.internals?.[k]), `internals ${k}`);
    out.internals = { x: cat('x'), delta: cat('delta'), B: cat('B'), C: cat('C'), A: f.A, D: f.D } satisfies PlainInternals;
  }
  return out;
}
