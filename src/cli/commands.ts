import type { Command } from 'commander';

/** Every command's register function; each command file adds itself here. */
export const commands: ((program: Command) => void)[] = [];
