#!/usr/bin/env node
/**
 * The `mimetic` command line. Each command lives in its own file and exports `register(program)`;
 * this file only wires them and turns user errors into one line and exit code 2.
 */
import * as fs from 'node:fs';
import { Command, CommanderError } from 'commander';
import { isUserError } from '../util/errors.js';
import { printable } from '../util/text.js';
import { commands } from './commands.js';

/** package.json's version (dist/src/cli/main.js → ../../../package.json). */
function version(): string {
  const pkg = JSON.parse(fs.readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/**
 * Commander's own error ("error: unknown option '--x'\n(Did you mean --y?)") as the project's one
 * line: what, the nearest valid option where commander found one, and where to look.
 */
export function commanderLine(message: string, argv: string[], program: Command): string {
  const [what, ...rest] = message.replace(/^error:\s*/, '').trim().split('\n').map((l) => l.trim()).filter(Boolean);
  const hint = rest.join(' ').replace(/^\((.*)\)$/, '$1').replace(/^Did you mean/, 'did you mean');
  const first = argv.find((a) => !a.startsWith('-'));
  const sub = program.commands.find((c) => c.name() === first);
  const help = sub ? `mimetic ${sub.name()} --help` : 'mimetic --help';
  return `mimetic: ${what}${hint ? ` (${hint})` : ''}; see ${help}`;
}

export async function main(argv: string[]): Promise<number> {
  const debug = argv.includes('--debug');
  const program = new Command('mimetic')
    .description('Audit pretrained Mamba checkpoints for mimetic structure, transplant layers, train on copy/recall tasks')
    .version(version(), '-V, --version', 'print the version')
    .option('--debug', 'print stack traces for errors')
    .exitOverride()
    // Errors are printed once, as one `mimetic:` line, below; help and usage still go out as written.
    .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: () => {} });
  for (const register of commands) register(program);
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help and --version exit 0; `mimetic` alone printed its help to stderr.
      if (e.exitCode === 0 || e.code === 'commander.help') return e.exitCode === 0 ? 0 : 2;
      process.stderr.write(`${printable(commanderLine(e.message, argv, program))}\n`);
      return 2;
    }
    if (isUserError(e)) {
      // Messages quote outside text (file and tensor names, server replies): one line, no escapes.
      process.stderr.write(`mimetic: ${printable((e as Error).message)}\n`);
      if (debug) process.stderr.write(`${(e as Error).stack}\n`);
      // An interrupted download carries 130 (the shell's code for Ctrl-C); other user errors are 2.
      const code = (e as { exitCode?: unknown }).exitCode;
      return typeof code === 'number' ? code : 2;
    }
    if (debug) throw e;
    process.stderr.write(`mimetic: internal error: ${printable((e as Error)?.message ?? String(e))} (run again with --debug for the stack trace)\n`);
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
