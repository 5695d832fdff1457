#!/usr/bin/env node
/**
 * The `mimetic` command line. Each command lives in its own file and exports `register(program)`;
 * this file only wires them and turns user errors into one line and exit code 2.
 */
import { Command, CommanderError } from 'commander';
import { isUserError } from '../util/errors.js';
import { commands } from './commands.js';

export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  const program = new Command('mimetic')
    .description('Audit pretrained Mamba checkpoints for mimetic structure, transplant layers, train on copy/recall tasks')
    .option('--debug', 'print stack traces for errors')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  for (const register of commands) register(program);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Commander already printed its message; --help and --version exit 0.
      return e.exitCode === 0 ? 0 : 2;
    }
    if (isUserError(e)) {
      process.stderr.write(`mimetic: ${(e as Error).message}\n`);
      if (debug) process.stderr.write(`${(e as Error).stack}\n`);
      // An interrupted download carries 130 (the shell's code for Ctrl-C); other user errors are 2.
      const code = (e as { exitCode?: unknown }).exitCode;
      return typeof code === 'number' ? code : 2;
    }
    if (debug) throw e;
    process.stderr.write(`mimetic: internal error: ${(e as Error)?.message ?? String(e)} (run again with --debug for the stack trace)\n`);
    return 1;
  }
}

// Run when executed directly (also through the npm bin symlink).
const invoked = process.argv[1] ?? '';
if (invoked.endsWith('main.js') || invoked.endsWith('mimetic')) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e) => {
      process.stderr.write(`${(e as Error)?.stack ?? String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
