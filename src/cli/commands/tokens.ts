import type { Command } from 'commander';
import type { Ctx } from '../context.js';
import { subcommand } from './keys.js';

/** The command line only: what runs is in ../actions/tokens.ts, loaded when a command runs. */
const run = () => import('../actions/tokens.js');

/**
 * `gatehouse token list | token revoke ID`: my sessions and API tokens. `token create` lives
 * with login (commands/auth.ts); this file adds to the same `token` command.
 */
export function registerTokens(program: Command, ctx: Ctx): void {
  const token = subcommand(program, 'token').description('your sessions and API tokens');

  token
    .command('list')
    .description('your sessions and API tokens that are still valid (never the tokens themselves)')
    .option('--json', 'print raw JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => (await run()).list(ctx, flags, cmd));

  token
    .command('revoke')
    .description('revoke a session or API token at once; its open notification streams close too')
    .argument('<id>', 'token id, as gatehouse token list shows it')
    .action(async (id: string, _flags: unknown, cmd: Command) => (await run()).revoke(ctx, id, cmd));
}
