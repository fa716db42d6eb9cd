import type { Command } from 'commander';
import type { KeysResponse, SshKeyView } from '../../api/wire.js';
import { seg, type Ctx } from '../context.js';
import { formatTable } from '../format.js';

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
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const res = await (await ctx.client(cmd)).get<KeysResponse>('/keys');
      if (flags.json) return ctx.printJson(res.entries);
      if (res.entries.length === 0) return ctx.print('No SSH keys; add one with gatehouse key add FILE.');
      ctx.print(formatTable(['FINGERPRINT', 'TYPE', 'COMMENT'], res.entries.map((k) => [k.fingerprint, k.type, k.comment ?? ''])));
    });

  key
    .command('remove')
    .description('remove one of your SSH keys; the SSH door stops accepting it at once')
    .argument('<fingerprint>', 'SHA256:... as gatehouse key list shows it')
    .action(async (fingerprint: string, _flags: unknown, cmd: Command) => {
      const res = await (await ctx.client(cmd)).delete<{ removed: SshKeyView }>(`/keys/${seg(fingerprint)}`);
      const k = res.removed;
      ctx.print(`Removed SSH key ${k.fingerprint}${k.comment ? ` (${k.comment})` : ''}.`);
    });
}

/** The existing subcommand of that name (another file may have made it), or a new one. */
export function subcommand(parent: Command, name: string): Command {
  return parent.commands.find((c) => c.name() === name) ?? parent.command(name);
}
