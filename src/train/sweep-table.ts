/**
 * A sweep's summary as plain text for the terminal: one row per group (final accuracy at each
 * evaluated setting, string and character, mean ± std over seeds; generalisation lengths), and a
 * comparison of two variants per setting with Welch's t (unequal variances: seeds of two inits need
 * not spread alike). `mimetic sweep --report-only [--compare A,B]` prints them; `make reproduce` ends so.
 */
import type { GroupSummary, RunSummary, Stat, SweepSummary } from './sweep-report.js';
import { meanStd } from './sweep-report.js';
import { UserError } from '../util/errors.js';

/** Welch's t for mean(b) − mean(a) and its Welch–Satterthwaite degrees of freedom; null below 2 values a side or with no spread. */
export function welch(a: number[], b: number[]): { t: number; df: number } | null {
  if (a.length < 2 || b.length < 2) return null;
  const sa = meanStd(a), sb = meanStd(b);
  const va = sa.std ** 2 / a.length, vb = sb.std ** 2 / b.length;
  if (va + vb === 0) return null;
  const t = (sb.mean - sa.mean) / Math.sqrt(va + vb);
  const df = (va + vb) ** 2 / (va ** 2 / (a.length - 1) + vb ** 2 / (b.length - 1));
  return { t, df };
}

const pm = (s: Stat, digits: number) => (s.n > 1 && s.std > 0 ? `${s.mean.toFixed(digits)}±${s.std.toFixed(digits)}` : s.mean.toFixed(digits));

/** Every group's settings, by size (copy: string length; MQAR: key-value pairs), then name. */
function settingKeys(s: SweepSummary): string[] {
  const size = new Map<string, number>();
  for (const g of s.groups) for (const [k, p] of Object.entries(g.final)) if (!size.has(k)) size.set(k, p.size);
  return [...size.keys()].sort((a, b) => size.get(a)! - size.get(b)! || (a < b ? -1 : a > b ? 1 : 0));
}

function pad(rows: string[][]): string[] {
  const w = rows[0]!.map((_, j) => Math.max(...rows.map((r) => (r[j] ?? '').length)));
  return rows.map((r) => r.map((c, j) => c.padEnd(w[j]!)).join('  ').trimEnd());
}

const groupName = (g: GroupSummary) => (g.lr === null ? g.label : `${g.label} lr=${g.lr}`);

/** One row per group with completed runs: n, then string (char) accuracy per setting, then the generalisation lengths. */
export function sweepTable(s: SweepSummary): string[] {
  const keys = settingKeys(s);
  const groups = s.groups.filter((g) => g.n > 0);
  if (!groups.length) return ['no completed runs yet'];
  const gen = groups.some((g) => g.gen);
  const head = ['group', 'n', ...keys, ...(gen ? ['gen. length (string / char)'] : [])];
  const rows = groups.map((g) => [groupName(g), String(g.n), ...keys.map((k) => {
    const p = g.final[k];
    if (!p) return '–';
    return p.charAccuracy ? `${pm(p, 2)} (${pm(p.charAccuracy, 2)})` : pm(p, 2);
  }), ...(gen ? [g.gen ? `${pm(g.gen.string, 0)} / ${pm(g.gen.char, 0)}` : '–'] : [])]);
  return pad([head, ...rows]);
}

/** The runs behind a group, by id. */
const runsOf = (s: SweepSummary, g: GroupSummary) => g.runs.map((id) => s.runs.find((r) => r.id === id)).filter((r): r is RunSummary => !!r && !!r.finalStep);

/** Groups whose label is `label` (or begins with `label,`: a grid's other options follow the variant's name). */
function groupsLabelled(s: SweepSummary, label: string): GroupSummary[] {
  return s.groups.filter((g) => g.n > 0 && (g.label === label || g.label.startsWith(`${label},`)));
}

/**
 * `other` against `base`, group by group (the same lr and grid values): per setting the difference
 * of mean string and character accuracy with Welch's t, then the generalisation lengths'.
 */
export function compareVariants(s: SweepSummary, base: string, other: string): string[] {
  const bs = groupsLabelled(s, base);
  const os = groupsLabelled(s, other);
  if (!bs.length || !os.length) {
    const known = [...new Set(s.groups.map((g) => g.label.split(',')[0]!))].join(', ');
    throw new UserError(`--compare ${base},${other}: ${!bs.length ? base : other} has no completed runs in this sweep (variants: ${known}); name two of them`);
  }
  const out: string[] = [];
  const fmtT = (w: { t: number; df: number } | null) => (w ? `t ${w.t.toFixed(1)}, df ${w.df.toFixed(1)}` : 't –');
  const signed = (x: number, digits: number) => `${x >= 0 ? '+' : ''}${x.toFixed(digits)}`;
  for (const o of os) {
    const rest = o.label.slice(other.length);
    const b = bs.find((g) => g.label.slice(base.length) === rest && g.lr === o.lr);
    if (!b) continue;
    const br = runsOf(s, b), or = runsOf(s, o);
    out.push(`${groupName(o)} − ${groupName(b)} (${or.length} vs ${br.length} seeds; Welch's t):`);
    const rows: string[][] = [['setting', 'string acc.', '', 'char acc.', '']];
    for (const k of settingKeys(s)) {
      if (!o.final[k] || !b.final[k]) continue;
      const val = (rs: RunSummary[], f: (p: RunSummary['final'][string]) => number | undefined) => rs.map((r) => r.final[k] && f(r.final[k]!)).filter((x): x is number => typeof x === 'number');
      const sa = [val(br, (p) => p.accuracy), val(or, (p) => p.accuracy)] as const;
      const ca = [val(br, (p) => p.charAccuracy), val(or, (p) => p.charAccuracy)] as const;
      const d = (x: readonly [number[], number[]]) => meanStd(x[1]).mean - meanStd(x[0]).mean;
      rows.push([k, signed(d(sa), 2), fmtT(welch(...sa)), ca[0].length ? signed(d(ca), 2) : '–', ca[0].length ? fmtT(welch(...ca)) : '']);
    }
    if (o.gen && b.gen) {
      for (const which of ['string', 'char'] as const) {
        const g = [br.map((r) => r.gen?.[which] ?? 0), or.map((r) => r.gen?.[which] ?? 0)] as const;
        rows.push([`gen. length (${which})`, signed(meanStd(g[1]).mean - meanStd(g[0]).mean, 1), fmtT(welch(...g)), '', '']);
      }
    }
    out.push(...pad(rows).map((l) => `  ${l}`));
  }
  if (!out.length) throw new UserError(`--compare ${base},${other}: no group of ${other} has a ${base} group with the same lr and grid values`);
  return out;
}
