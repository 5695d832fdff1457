/**
 * `--checkpoint-steps`: steps whose checkpoints a run keeps (besides the last), for an audit across
 * training. A list (`100,200,500`) or `log`: two a factor of two (round(2^(k/2)): 1, 2, 3, 4, 6, 8,
 * 11, 16, 23, 32, …), and the last step.
 */
import { UserError } from '../util/errors.js';

export function logSpacedSteps(steps: number): number[] {
  const out = new Set<number>();
  for (let k = 0; ; k++) {
    const s = Math.round(2 ** (k / 2));
    if (s > steps) break;
    out.add(s);
  }
  out.add(steps);
  return [...out].sort((a, b) => a - b);
}

export function parseCheckpointSteps(spec: string, steps: number): number[] {
  const s = spec.trim();
  if (s === 'log') return logSpacedSteps(steps);
  const out = new Set<number>();
  for (const p of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const n = Number(p);
    if (!Number.isSafeInteger(n) || n < 1 || n > steps) throw new UserError(`--checkpoint-steps: '${p}' is not a step from 1 to --steps ${steps}; give a list like 100,200,500 or 'log'`);
    out.add(n);
  }
  if (!out.size) throw new UserError("--checkpoint-steps: empty; give a list like 100,200,500 or 'log'");
  return [...out].sort((a, b) => a - b);
}
