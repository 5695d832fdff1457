/**
 * A second thread for reading half-precision tensors, so a layer's reads use both cores. Copying
 * out of a SharedArrayBuffer runs at half memcpy speed in V8 (relaxed word copies), so no data
 * passes through shared memory: each output's ArrayBuffer is transferred to the thread, filled
 * there by the same readHalfInto, and transferred back (no copy). The caller blocks until then;
 * only a small shared counter says a reply is waiting (receiveMessageOnPort takes it without the
 * event loop). This file is both sides: loaded as the worker, it serves requests.
 */
import { Worker, MessageChannel, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { SafetensorsError, readHalfInto, type HalfRead } from './safetensors.js';

const ROLE = 'mimetic-half-reader';
/** Counter slots: the thread sets READY once it serves requests; REPLIES counts replies sent. */
const READY = 0, REPLIES = 1;
/** With no reply for this long, the thread is taken for dead (a read takes milliseconds). */
const REPLY_TIMEOUT_MS = 120_000;

/** A read of the first `count` values into an array of `length` (the rest is the caller's), given or fresh. */
export type HelperRead = HalfRead & { length: number; into?: Float32Array };
interface Request { reads: (HalfRead & { length: number; buffer: ArrayBuffer | null })[] }
interface Reply { buffers: ArrayBuffer[]; error: { tensor: string; file: string; problem: string; safetensors: boolean } | null }

function serve(port: MessagePort, counters: Int32Array): void {
  port.on('message', ({ reads }: Request) => {
    const buffers: ArrayBuffer[] = [];
    let error: Reply['error'] = null;
    for (const r of reads) {
      const out = r.buffer ? new Float32Array(r.buffer) : new Float32Array(r.length);
      buffers.push(out.buffer as ArrayBuffer);
      if (error) continue;
      try {
        readHalfInto(r.file, r.fd, r.dtype, r.begin, out.subarray(0, r.count));
      } catch (e) {
        const safetensors = e instanceof SafetensorsError;
        error = { tensor: r.tensor, file: r.file, problem: safetensors ? e.problem : String((e as Error).message ?? e), safetensors };
      }
    }
    port.postMessage({ buffers, error } satisfies Reply, buffers);
    Atomics.add(counters, REPLIES, 1);
    Atomics.notify(counters, REPLIES);
  });
  Atomics.store(counters, READY, 1);
}

const asWorker = workerData as { role?: string; port?: MessagePort; counters?: Int32Array } | null;
if (asWorker?.role === ROLE) serve(asWorker.port!, asWorker.counters!);

interface Helper { port: MessagePort; counters: Int32Array; worker: Worker; repliesSeen: number }
let helper: Helper | null = null;
let helperFailed = false;

/**
 * The helper thread if it is up; the first call starts it and returns null (its start takes tens
 * of milliseconds, which the caller spends reading alone). Unref'd: it never keeps a process alive.
 */
export function halfReader(): { read: (reads: HelperRead[]) => (() => Float32Array[]) | null } | null {
  if (helperFailed) return null;
  if (!helper) {
    const { port1, port2 } = new MessageChannel();
    const counters = new Int32Array(new SharedArrayBuffer(8));
    const worker = new Worker(fileURLToPath(import.meta.url), { workerData: { role: ROLE, port: port2, counters }, transferList: [port2] });
    worker.unref();
    port1.unref();
    worker.on('error', () => { helperFailed = true; });
    worker.on('exit', () => { helperFailed = true; });
    helper = { port: port1, counters, worker, repliesSeen: 0 };
    return null;
  }
  if (Atomics.load(helper.counters, READY) !== 1) return null;
  const h = helper;
  return { read: (reads) => start(h, reads) };
}

/**
 * Hand `reads` to the helper (each into its given whole-buffer array, or a fresh one); returns the
 * wait for them, or null when they could not be sent. The given arrays are detached once sent:
 * use the returned ones.
 */
function start(h: Helper, reads: HelperRead[]): (() => Float32Array[]) | null {
  const request: Request = { reads: reads.map(({ into, ...r }) => ({ ...r, buffer: into ? (into.buffer as ArrayBuffer) : null })) };
  try {
    h.port.postMessage(request, request.reads.flatMap((r) => (r.buffer ? [r.buffer] : [])));
  } catch {
    return null; // a buffer that cannot be transferred (checked before any is detached): read here instead
  }
  return () => {
    let waited = 0;
    for (;;) {
      const got = receiveMessageOnPort(h.port);
      if (got) {
        h.repliesSeen++;
        const reply = got.message as Reply;
        if (reply.error) {
          const e = reply.error;
          throw e.safetensors ? new SafetensorsError(e.file, null, e.problem) : new Error(`${e.file}: tensor '${e.tensor}': ${e.problem}`);
        }
        return reply.buffers.map((b) => new Float32Array(b));
      }
      if (waited >= REPLY_TIMEOUT_MS) {
        helperFailed = true;
        void h.worker.terminate();
        throw new Error(`the half-precision reading thread sent no reply in ${REPLY_TIMEOUT_MS / 1000} s; it was stopped`);
      }
      Atomics.wait(h.counters, REPLIES, h.repliesSeen, 1000);
      waited += 1000;
    }
  };
}

/** Whether an array can go to the helper: it must own its whole, non-shared ArrayBuffer (it is transferred). */
export function transferable(a: Float32Array): boolean {
  return a.byteOffset === 0 && a.buffer.byteLength === a.byteLength && a.buffer instanceof ArrayBuffer;
}
