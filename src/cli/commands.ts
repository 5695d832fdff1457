import type { Command } from 'commander';
import { register as init } from './init.js';
import { register as transplant } from './transplant.js';
import { register as trainCmd } from './train.js';
import { register as pull } from './pull.js';
import { register as forward } from './forward.js';
import { register as inspect } from './inspect.js';
import { register as score } from './score.js';
import { register as report } from './report.js';
import { register as sweep } from './sweep.js';
import { register as experimentsReport } from './experiments-report.js';
import { register as gpus } from './gpus.js';
import { register as data } from './data.js';

/** Every command's register function; each command file adds itself here. */
export const commands: ((program: Command) => void)[] = [
  init,
  transplant,
  trainCmd,
  pull,
  forward,
  inspect,
  score,
  report,
  sweep,
  experimentsReport,
  gpus,
  data,
];
