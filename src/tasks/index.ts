/** Task construction by name. */
import { UserError } from '../util/errors.js';
import type { Task } from './common.js';
import { CopyTask, type CopyOptions } from './copy.js';
import { MqarTask, type MqarOptions } from './mqar.js';
import { LmTask, type LmOptions } from './lm.js';

export type { Batch, EvalScore, EvalSpec, Task } from './common.js';
export { CopyTask, MqarTask, LmTask };

export type TaskOptions = ({ task: 'copy' } & CopyOptions) | ({ task: 'mqar' } & MqarOptions) | ({ task: 'lm' } & LmOptions);

export function makeTask(o: TaskOptions): Task {
  if (o.task === 'copy') return new CopyTask(o);
  if (o.task === 'mqar') return new MqarTask(o);
  if (o.task === 'lm') return new LmTask(o);
  throw new UserError(`--task: unknown task '${(o as { task: string }).task}'; choose copy, mqar or lm`);
}
