/**
 * What the sweep report and the experiments page plot, computed from a sweep's summary alone
 * (summary.json), so a page can be rebuilt from committed summaries without the run folders.
 * Every function returns the plotted numbers; the caller renders and records them.
 */
import { parseMimeticParts, MIMETIC_PARTS } from '../model/init.js';
import type { GroupPoint, GroupSummary, Stat, SweepSummary } from './sweep-report.js';

/** What a copy accuracy is over: whole strings, characters; MQAR: queries. */
export type Measure = 'string' | 'char' | 'query';

export interface LengthCurve { x: number[]; y: number[]; err: number[] }

/**
 * Final accuracy against evaluation length. Copy: x is the string length, y the string or
 * character accuracy. MQAR: x is the sequence length, y the query accuracy averaged over that
 * length's kv-pair settings (and the std averaged likewise).
 */
export function accuracyByLength(g: GroupSummary, task: string, measure: Measure): LengthCurve | null {
  const pts = new Map<number, { m: number[]; s: number[] }>();
  for (const v of Object.values(g.final)) {
    const st = measure === 'char' ? v.charAccuracy : v;
    if (!st) continue;
    const x = task === 'copy' ? v.size : v.length;
    const p = pts.get(x) ?? { m: [], s: [] };
    p.m.push(st.mean);
    p.s.push(st.std);
    pts.set(x, p);
  }
  if (!pts.size) return null;
  const xs = [...pts.keys()].sort((a, b) => a - b);
  const avg = (a: number[]) => a.reduce((x, y) => x + y, 0) / a.length;
  return { x: xs, y: xs.map((x) => avg(pts.get(x)!.m)), err: xs.map((x) => avg(pts.get(x)!.s)) };
}

/**
 * The task whose figures a sweep's evaluations take: its own, or for a language model the task
 * of its --eval-tasks evaluations (keys `copy:…`, `mqar:…`); a mix is shown as MQAR's plain accuracy.
 */
export function evalTaskOf(s: Pick<SweepSummary, 'task' | 'groups'>): string {
  if (s.task !== 'lm') return s.task;
  const keys = s.groups.flatMap((g) => Object.keys(g.final));
  return keys.length && keys.every((k) => k.startsWith('copy:')) ? 'copy' : 'mqar';
}

/** The measures a task's figures show. */
export function measuresOf(task: string): Measure[] {
  return task === 'copy' ? ['string', 'char'] : ['query'];
}

export const MEASURE_NAME: Record<Measure, string> = { string: 'whole-string accuracy', char: 'character accuracy', query: 'query accuracy' };

/** The group each init label is shown with: the one at its best lr. */
export function bestGroups(s: SweepSummary): GroupSummary[] {
  return Object.keys(s.bestLr).map((l) => s.groups.find((g) => g.group === s.bestLr[l]!.group)!).filter((g) => g.n > 0);
}

/** The options shared by a group's runs (those of its first run, less seed). */
export function groupOptions(s: SweepSummary, g: GroupSummary): Record<string, unknown> {
  const r = s.runs.find((x) => x.id === g.runs[0]);
  const o: Record<string, unknown> = { ...(r?.options ?? {}) };
  delete o.seed;
  return o;
}

/** Longest trained size (copy: string length) of a sweep's groups, or null. */
export function trainedSize(s: SweepSummary): number | null {
  let m: number | null = null;
  for (const g of s.groups) for (const v of Object.values(g.final)) if (v.train) m = Math.max(m ?? 0, v.size);
  return m;
}

/** The evaluated copy settings at given sizes, by key. */
function keyOfSize(g: GroupSummary, size: number): string | undefined {
  return Object.keys(g.final).find((k) => g.final[k]!.size === size);
}

export function pointAt(g: GroupSummary, size: number): GroupPoint | undefined {
  const k = keyOfSize(g, size);
  return k === undefined ? undefined : g.final[k];
}

/** Evaluated sizes nearest to 1×, 1.5×, 2× and 3× the trained length (copy), distinct and sorted. */
export function positionSizes(s: SweepSummary): number[] {
  const t = trainedSize(s);
  const sizes = [...new Set(s.groups.flatMap((g) => Object.values(g.final).map((v) => v.size)))].sort((a, b) => a - b);
  if (t === null || !sizes.length) return [];
  const out = new Set<number>();
  for (const f of [1, 1.5, 2, 3]) {
    const want = t * f;
    const hit = sizes.find((x) => x === want);
    if (hit !== undefined) out.add(hit);
  }
  return [...out].sort((a, b) => a - b);
}

/** MQAR: the evaluated setting with the longest sequence and, among those, the most pairs. */
export function longestMqarKey(s: SweepSummary): string | null {
  let best: { k: string; L: number; d: number } | null = null;
  for (const g of s.groups) {
    for (const [k, v] of Object.entries(g.final)) {
      if (!v.perPosition) continue;
      if (!best || v.length > best.L || (v.length === best.L && v.size > best.d)) best = { k, L: v.length, d: v.size };
    }
  }
  return best?.k ?? null;
}

// ---- state size ----

export interface StateSeries {
  name: string;
  /** State sizes N and their log2. */
  N: number[];
  x: number[];
  gen: { string: Stat[]; char: Stat[] };
  groups: string[];
}

/**
 * Generalisation length against log2 N: one series per label with the dState part removed, each
 * point the label's group at its best lr. Null unless the sweep varies dState (copy only).
 */
export function stateSizeSeries(s: SweepSummary): StateSeries[] | null {
  if (s.task !== 'copy') return null;
  const gs = bestGroups(s).filter((g) => g.gen);
  const Ns = new Set(gs.map((g) => Number(groupOptions(s, g).dState)).filter(Number.isFinite));
  if (Ns.size < 2) return null;
  const by = new Map<string, { N: number; g: GroupSummary }[]>();
  for (const g of gs) {
    const N = Number(groupOptions(s, g).dState);
    if (!Number.isFinite(N)) continue;
    const name = g.label.split(',').filter((p) => !/^dState=/.test(p)).join(',') || 'all';
    by.set(name, [...(by.get(name) ?? []), { N, g }]);
  }
  return [...by].map(([name, pts]) => {
    pts.sort((a, b) => a.N - b.N);
    return { name, N: pts.map((p) => p.N), x: pts.map((p) => Math.log2(p.N)), gen: { string: pts.map((p) => p.g.gen!.string), char: pts.map((p) => p.g.gen!.char) }, groups: pts.map((p) => p.g.group) };
  });
}

// ---- ablation ----

/** A group's mimetic parts: none for the default init, else --mimetic (all parts when not given). */
export function mimeticSubset(o: Record<string, unknown>): string[] {
  if (o.init !== 'mimetic') return [];
  return parseMimeticParts(o.mimetic === undefined ? 'all' : Array.isArray(o.mimetic) ? o.mimetic.join(',') : String(o.mimetic));
}

export const subsetName = (parts: string[]) => (parts.length ? parts.join('+') : 'none (default init)');

export interface AblationCell { group: string; n: number; trained?: GroupPoint; double?: GroupPoint; gen: { string: Stat; char: Stat } | null }
export interface Ablation {
  /** The trained length and the evaluated length nearest 2× it. */
  trainedSize: number;
  doubleSize: number | null;
  /** Facets (architectures), in order of appearance. */
  facets: string[];
  rows: { parts: string[]; name: string; cells: Record<string, AblationCell> }[];
}

/**
 * The ablation over mimetic parts: one row per subset of {a, dt, bc, conv} present (ordered by
 * size, then by part), one cell per architecture, each the group at its best lr. Null unless the
 * sweep has at least three distinct subsets (copy only).
 */
export function ablation(s: SweepSummary): Ablation | null {
  const t = trainedSize(s);
  if (s.task !== 'copy' || t === null) return null;
  const gs = bestGroups(s);
  const order = (ps: string[]) => ps.map((p) => (MIMETIC_PARTS as readonly string[]).indexOf(p)).sort((a, b) => a - b);
  const rows = new Map<string, Ablation['rows'][number]>();
  const facets: string[] = [];
  const sizes = [...new Set(gs.flatMap((g) => Object.values(g.final).map((v) => v.size)))];
  const double = sizes.length ? sizes.reduce((a, b) => (Math.abs(b - 2 * t) < Math.abs(a - 2 * t) ? b : a)) : null;
  // Facets: the architecture and whatever else varies across the groups besides the init.
  const initKeys = new Set(['init', 'mimetic', 'lr', 'seed']);
  const opts = gs.map((g) => groupOptions(s, g));
  const varying = [...new Set(opts.flatMap((o) => Object.keys(o)))].filter((k) => !initKeys.has(k) && new Set(opts.map((o) => JSON.stringify(o[k]))).size > 1);
  for (const [gi, g] of gs.entries()) {
    const o = opts[gi]!;
    const parts = order(mimeticSubset(o)).map((i) => MIMETIC_PARTS[i]!);
    const facet = varying.length ? varying.map((k) => (k === 'arch' ? String(o[k]) : `${k}=${String(o[k])}`)).join(',') : String(o.arch ?? 'model');
    if (!facets.includes(facet)) facets.push(facet);
    const key = parts.join('+');
    const row = rows.get(key) ?? { parts, name: subsetName(parts), cells: {} };
    row.cells[facet] = { group: g.group, n: g.n, trained: pointAt(g, t), double: double === null ? undefined : pointAt(g, double), gen: g.gen ?? null };
    rows.set(key, row);
  }
  if (rows.size < 3) return null;
  const sorted = [...rows.values()].sort((a, b) => a.parts.length - b.parts.length || order(a.parts).join().localeCompare(order(b.parts).join()));
  return { trainedSize: t, doubleSize: double, facets, rows: sorted };
}

