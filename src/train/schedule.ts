/** Learning-rate schedules: linear warmup from 0, then cosine or linear decay to minLr (or constant). */
export type ScheduleKind = 'cosine' | 'linear' | 'constant';
export const SCHEDULES: readonly ScheduleKind[] = ['cosine', 'linear', 'constant'];

export interface Schedule {
  kind: ScheduleKind;
  lr: number;
  minLr: number;
  warmup: number;
  steps: number;
}

/** The learning rate used for update number `step` (1-based, as torch's LambdaLR after step−1 calls). */
export function lrAt(s: Schedule, step: number): number {
  if (s.warmup > 0 && step <= s.warmup) return (s.lr * step) / s.warmup;
  if (s.kind === 'constant') return s.lr;
  const span = Math.max(1, s.steps - s.warmup);
  const p = Math.min(1, Math.max(0, (step - s.warmup) / span));
  const f = s.kind === 'cosine' ? 0.5 * (1 + Math.cos(Math.PI * p)) : 1 - p;
  return s.minLr + (s.lr - s.minLr) * f;
}
