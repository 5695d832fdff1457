/**
 * node:test reporter for `make test`: Node's spec output, then one closing line
 * `N passed, N failed, N skipped` (cancelled tests count as failed, todo as skipped), and under it
 * each skip's reason once (what to install). Counts are the runner's own totals.
 */
import { once } from 'node:events';
import { spec } from 'node:test/reporters';

interface TestEvent {
  type: string;
  data: { nesting?: number; message?: string; skip?: string | boolean; name?: string; details?: { type?: string } };
}

/** The closing line from the runner's totals (the `pass N`, `fail N`, … diagnostics at nesting 0). */
export function summaryLine(totals: Record<string, number>): string {
  const n = (k: string) => totals[k] ?? 0;
  return `${n('pass')} passed, ${n('fail') + n('cancelled')} failed, ${n('skipped') + n('todo')} skipped`;
}

export default async function* summaryReporter(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const inner = new spec();
  const chunks: string[] = [];
  inner.on('data', (c: unknown) => chunks.push(String(c)));
  const totals: Record<string, number> = {};
  const reasons = new Map<string, number>();
  for await (const ev of source) {
    if (ev.type === 'test:diagnostic' && (ev.data.nesting ?? 0) === 0) {
      const m = /^(tests|suites|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(ev.data.message ?? '');
      if (m) totals[m[1]!] = Number(m[2]);
    }
    if (ev.type === 'test:pass' && typeof ev.data.skip === 'string' && ev.data.details?.type !== 'suite') {
      reasons.set(ev.data.skip, (reasons.get(ev.data.skip) ?? 0) + 1);
    }
    inner.write(ev);
    while (chunks.length) yield chunks.shift()!;
  }
  const ended = once(inner, 'end');
  inner.end();
  await ended;
  while (chunks.length) yield chunks.shift()!;
  let tail = '\n';
  for (const [why, k] of reasons) tail += `skipped ${k}: ${why}\n`;
  yield `${tail}${summaryLine(totals)}\n`;
}
