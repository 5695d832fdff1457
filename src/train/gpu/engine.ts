/**
 * A tiny raw-WebGPU runtime for the compiled training step (step.ts). tf.js costs ~0.1-0.3 ms of
 * host time per op on the GPU host (uniform upload, bind group, pipeline lookup), and a training
 * step through autodiff is ~900 ops. Here every buffer is allocated once for a fixed batch shape,
 * every dispatch's parameters live in one uniform buffer (a 256-byte slot each, bound with a
 * dynamic offset), and one bind group serves every kernel: a step is one compute pass of
 * setPipeline / setBindGroup / dispatch calls and one submit.
 *
 * Buffers (all f32 but I): P parameters, G gradients, M/V AdamW moments (all in one flat layout),
 * X activations and scratch (an arena of named regions), S scan states, I int32 batch data.
 */

/* eslint-disable @typescript-eslint/no-explicit-any */
export type GPUDevice = any;
export type GPUBuffer = any;

export const QUERY_RESOLVE = 0x200, STORAGE = 0x80, UNIFORM = 0x40, COPY_DST = 0x08, COPY_SRC = 0x04, MAP_READ = 0x01;
const COMPUTE = 0x4;

export type BufName = 'P' | 'G' | 'X' | 'I' | 'S' | 'M' | 'V';
const BINDING: Record<BufName, number> = { P: 1, G: 2, X: 3, I: 4, S: 5, M: 6, V: 7 };
const SLOT = 256; // minUniformBufferOffsetAlignment
const FIELDS = 64; // one 256-byte uniform slot

/** A kernel: WGSL body (with `@compute … fn main`), its uniform fields (`name` u32, `name:f` f32) and buffers. */
export interface Kernel {
  key: string;
  fields: string[];
  bufs: BufName[];
  body: string;
}

export function wgslOf(k: Kernel): string {
  if (k.fields.length > FIELDS) throw new Error(`${k.key}: more than ${FIELDS} uniform fields`);
  const fields = k.fields.map((f) => (f.endsWith(':f') ? `${f.slice(0, -2)} : f32` : `${f} : u32`));
  for (let i = k.fields.length; i < FIELDS; i++) fields.push(`pad${i} : u32`);
  const decl = k.bufs.map((b) => `@group(0) @binding(${BINDING[b]}) var<storage, read_write> ${b} : array<${b === 'I' ? 'i32' : 'f32'}>;`);
  return `struct Params { ${fields.join(', ')} };\n@group(0) @binding(0) var<uniform> u : Params;\n${decl.join('\n')}\n${k.body}`;
}

interface Op {
  key: string;
  pipeline: any;
  slot: number;
  groups: [number, number, number];
}


export class Engine {
  readonly buffers = {} as Record<BufName, GPUBuffer>;
  readonly sizes = {} as Record<BufName, number>;
  private readonly borrowed = new Set<BufName>();
  private readonly pipelines: Map<string, any>;
  private readonly layout: any;
  private readonly pipelineLayout: any;
  private uniformBytes = new ArrayBuffer(SLOT * 64);
  private nSlots = 0;
  private uniformBuffer: GPUBuffer = null;
  private bindGroup: any = null;
  private readonly lists = new Map<string, Op[]>();
  private current: Op[] | null = null;

  /** `like`: an engine on the same device whose layout and compiled pipelines this one reuses. */
  constructor(readonly device: GPUDevice, like?: Engine) {
    if (like && like.device === device) {
      this.layout = like.layout;
      this.pipelineLayout = like.pipelineLayout;
      this.pipelines = like.pipelines;
      return;
    }
    const entries: any[] = [{ binding: 0, visibility: COMPUTE, buffer: { type: 'uniform', hasDynamicOffset: true, minBindingSize: FIELDS * 4 } }];
    for (const b of Object.values(BINDING)) entries.push({ binding: b, visibility: COMPUTE, buffer: { type: 'storage' } });
    this.layout = device.createBindGroupLayout({ entries });
    this.pipelineLayout = device.createPipelineLayout({ bindGroupLayouts: [this.layout] });
    this.pipelines = new Map();
  }

  /** Allocate buffer `name` of `elements` 4-byte elements (zero-filled by WebGPU). */
  alloc(name: BufName, elements: number): void {
    const bytes = Math.max(16, Math.ceil((elements * 4) / 16) * 16);
    const limit = Number(this.device.limits.maxStorageBufferBindingSize);
    if (bytes > limit) throw new Error(`compiled step: buffer ${name} needs ${(bytes / 2 ** 20).toFixed(0)} MiB, over this device's ${(limit / 2 ** 20).toFixed(0)} MiB binding limit`);
    this.buffers[name] = this.device.createBuffer({ size: bytes, usage: STORAGE | COPY_DST | COPY_SRC });
    this.sizes[name] = elements;
  }

  /** Use another engine's buffer `name` (same device), e.g. parameters shared by steps of two lengths. */
  borrow(name: BufName, from: Engine): void {
    this.buffers[name] = from.buffers[name];
    this.sizes[name] = from.sizes[name];
    this.borrowed.add(name);
  }

  private pipeline(k: Kernel): any {
    let p = this.pipelines.get(k.key);
    if (!p) {
      const module = this.device.createShaderModule({ code: wgslOf(k) });
      p = this.device.createComputePipeline({ layout: this.pipelineLayout, compute: { module, entryPoint: 'main' } });
      this.pipelines.set(k.key, p);
    }
    return p;
  }

  /** Start recording the op list `name` (e.g. 'step', 'optimizer'). */
  begin(name: string): void {
    this.current = [];
    this.lists.set(name, this.current);
  }

  /** Record one dispatch with its uniform values (in the kernel's field order). */
  op(k: Kernel, values: Record<string, number>, groups: [number, number, number]): void {
    if (!this.current) throw new Error('Engine.op outside begin()');
    for (const f of Object.keys(values)) if (!k.fields.includes(f) && !k.fields.includes(f + ':f')) throw new Error(`${k.key}: unknown uniform field ${f}`);
    if ((this.nSlots + 1) * SLOT > this.uniformBytes.byteLength) {
      const bigger = new ArrayBuffer(this.uniformBytes.byteLength * 2);
      new Uint8Array(bigger).set(new Uint8Array(this.uniformBytes));
      this.uniformBytes = bigger;
    }
    const slot = this.nSlots++;
    const u32 = new Uint32Array(this.uniformBytes, slot * SLOT, FIELDS);
    const f32 = new Float32Array(this.uniformBytes, slot * SLOT, FIELDS);
    k.fields.forEach((f, i) => {
      const isF = f.endsWith(':f');
      const v = values[isF ? f.slice(0, -2) : f];
      if (v === undefined) throw new Error(`${k.key}: uniform field ${f} not given`);
      if (isF) f32[i] = v;
      else {
        if (!(Number.isInteger(v) && v >= 0 && v < 2 ** 32)) throw new Error(`${k.key}: field ${f} = ${v} is not a u32`);
        u32[i] = v;
      }
    });
    if (groups.some((g) => g < 1 || g > 65535)) throw new Error(`${k.key}: dispatch ${groups.join('×')} out of range`);
    this.current.push({ key: k.key, pipeline: this.pipeline(k), slot, groups });
  }

  /** After all buffers and op lists: upload the uniforms and make the one bind group. */
  finish(): void {
    this.current = null;
    this.uniformBuffer = this.device.createBuffer({ size: Math.max(SLOT, this.nSlots * SLOT), usage: UNIFORM | COPY_DST });
    this.device.queue.writeBuffer(this.uniformBuffer, 0, this.uniformBytes, 0, Math.max(SLOT, this.nSlots * SLOT));
    const entries: any[] = [{ binding: 0, resource: { buffer: this.uniformBuffer, offset: 0, size: FIELDS * 4 } }];
    for (const [name, b] of Object.entries(BINDING) as [BufName, number][]) {
      if (!this.buffers[name]) this.alloc(name, 4);
      entries.push({ binding: b, resource: { buffer: this.buffers[name] } });
    }
    this.bindGroup = this.device.createBindGroup({ layout: this.layout, entries });
  }

  /** Kernels whose key starts with one of these prefixes are skipped (profiling by omission). */
  skip: string[] = [];

  /** Encode op lists into one compute pass of `encoder`. */
  encode(encoder: any, ...names: string[]): void {
    const pass = encoder.beginComputePass();
    let last: any = null;
    for (const name of names) {
      const ops = this.lists.get(name);
      if (!ops) throw new Error(`no op list '${name}'`);
      for (const o of ops) {
        if (this.skip.length && this.skip.some((p) => o.key.startsWith(p))) continue;
        if (o.pipeline !== last) pass.setPipeline((last = o.pipeline));
        pass.setBindGroup(0, this.bindGroup, [o.slot * SLOT]);
        pass.dispatchWorkgroups(o.groups[0], o.groups[1], o.groups[2]);
      }
    }
    pass.end();
  }

  /**
   * Device time of each dispatch of op lists `names`, run once: with timestamp queries (each dispatch
   * in its own pass) where the device has them, else each dispatch submitted alone and timed on the
   * host up to onSubmittedWorkDone (an upper bound: it includes the submit's round trip).
   */
  async profile(...names: string[]): Promise<{ method: string; ops: { key: string; ms: number }[] }> {
    const ops = names.flatMap((n) => {
      const l = this.lists.get(n);
      if (!l) throw new Error(`no op list '${n}'`);
      return l;
    });
    const dispatch = (pass: any, o: Op) => {
      pass.setPipeline(o.pipeline);
      pass.setBindGroup(0, this.bindGroup, [o.slot * SLOT]);
      pass.dispatchWorkgroups(o.groups[0], o.groups[1], o.groups[2]);
    };
    const out: { key: string; ms: number }[] = [];
    if (this.device.features?.has?.('timestamp-query')) {
      const per = 2048; // a query set holds at most 4096 timestamps
      for (let at = 0; at < ops.length; at += per) {
        const part = ops.slice(at, at + per);
        const qs = this.device.createQuerySet({ type: 'timestamp', count: 2 * part.length });
        const resolve = this.device.createBuffer({ size: 16 * part.length, usage: QUERY_RESOLVE | COPY_SRC });
        const staging = this.device.createBuffer({ size: 16 * part.length, usage: MAP_READ | COPY_DST });
        const enc = this.device.createCommandEncoder();
        part.forEach((o, i) => {
          const pass = enc.beginComputePass({ timestampWrites: { querySet: qs, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
          dispatch(pass, o);
          pass.end();
        });
        enc.resolveQuerySet(qs, 0, 2 * part.length, resolve, 0);
        enc.copyBufferToBuffer(resolve, 0, staging, 0, 16 * part.length);
        this.device.queue.submit([enc.finish()]);
        await staging.mapAsync(MAP_READ);
        const t = new BigUint64Array(staging.getMappedRange().slice(0));
        staging.unmap();
        part.forEach((o, i) => out.push({ key: o.key, ms: Number(t[2 * i + 1]! - t[2 * i]!) / 1e6 }));
        staging.destroy();
        resolve.destroy();
        qs.destroy();
      }
      return { method: 'timestamp-query', ops: out };
    }
    for (const o of ops) {
      const enc = this.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      dispatch(pass, o);
      pass.end();
      const t0 = performance.now();
      this.device.queue.submit([enc.finish()]);
      await this.device.queue.onSubmittedWorkDone();
      out.push({ key: o.key, ms: performance.now() - t0 });
    }
    return { method: 'onSubmittedWorkDone', ops: out };
  }

  count(name: string): number {
    return this.lists.get(name)?.length ?? 0;
  }

  /** Run op lists now: one command buffer, one submit. */
  run(...names: string[]): void {
    const enc = this.device.createCommandEncoder();
    this.encode(enc, ...names);
    this.device.queue.submit([enc.finish()]);
  }

  /** Write host data into buffer `name` at element offset `at`. */
  write(name: BufName, at: number, data: Float32Array | Int32Array | Uint32Array): void {
    this.device.queue.writeBuffer(this.buffers[name], at * 4, data.buffer, data.byteOffset, data.byteLength);
  }

  /** Read `n` elements of buffer `name` from element offset `at` (waits for queued work). */
  async read(name: BufName, at: number, n: number): Promise<Float32Array> {
    const bytes = n * 4;
    const staging = this.device.createBuffer({ size: Math.max(16, Math.ceil(bytes / 16) * 16), usage: MAP_READ | COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer(this.buffers[name], at * 4, staging, 0, bytes);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(MAP_READ);
    const out = new Float32Array(staging.getMappedRange(0, bytes).slice(0));
    staging.unmap();
    staging.destroy();
    return out;
  }

  destroy(): void {
    for (const [name, b] of Object.entries(this.buffers) as [BufName, GPUBuffer][]) if (!this.borrowed.has(name)) b?.destroy();
    this.uniformBuffer?.destroy();
  }
}
