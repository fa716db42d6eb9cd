import type { Command } from 'commander';
import type { Ctx } from '../context.js';

/** The command line only: what runs is in ../actions/keys.ts, loaded when a command runs. */
const run = () => import('../actions/keys.js');

/**
 * `gatehouse key list | key remove FP`: the SSH keys the gateway accepts for me. `key add`
 * lives beside `launch` (commands/launch.ts); this file adds to the same `key` command.
 */
export function registerKeys(program: Command, ctx: Ctx): void {
  const key = subcommand(program, 'key').description('your SSH public keys, for ssh through the gateway');

  const list = subcommand(key, 'list');
  if (!list.options.some((o) => o.long === '--json')) list.option('--json', 'print raw JSON');
  list
    .description('your SSH public keys, with the fingerprints key remove takes')
    .action(async (flags: { json?: boolean }, cmd: Command) => (await run()).list(ctx, flags, cmd));

  key
    .command('remove')
    .description('remove one of your SSH keys; the SSH door stops accepting it at once')
    .argument('<fingerprint>', 'SHA256:... as gatehouse key list shows it')
    .action(async (fingerprint: string, _flags: unknown, cmd: Command) => (await run()).remove(ctx, fingerprint, cmd));
}

/** The existing subcommand of that name (another file may have made it), or a new one. */
export function subcommand(parent: Command, name: string): Command {
  return parent.commands.find((c) => c.name() === name) ?? parent.command(name);
}
