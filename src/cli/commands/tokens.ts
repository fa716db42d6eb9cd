import type { Command } from 'commander';
import type { TokenListResponse, TokenRevokeResponse } from '../../api/wire.js';
import { removeSavedLogin } from '../config.js';
import { seg, type Ctx } from '../context.js';
import { formatLocalTime, formatTable } from '../format.js';
import { subcommand } from './keys.js';

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
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const { tokens } = await (await ctx.client(cmd)).get<TokenListResponse>('/tokens');
      if (flags.json) return ctx.printJson(tokens);
      const now = ctx.now();
      const when = (at: string | undefined): string => (at ? formatLocalTime(at, now, ctx.zone) : 'never');
      ctx.print(formatTable(
        ['ID', 'KIND', 'LABEL', 'CREATED', 'EXPIRES'],
        tokens.map((t) => [t.id, t.current ? `${t.kind} (this one)` : t.kind, t.label ?? '', when(t.createdAt), when(t.expiresAt)]),
      ));
    });

  token
    .command('revoke')
    .description('revoke a session or API token at once; its open notification streams close too')
    .argument('<id>', 'token id, as gatehouse token list shows it')
    .action(async (id: string, _flags: unknown, cmd: Command) => {
      const client = await ctx.client(cmd);
      const label = (await client.get<TokenListResponse>('/tokens')).tokens.find((t) => t.id === id)?.label;
      const res = await client.delete<TokenRevokeResponse>(`/tokens/${seg(id)}`);
      ctx.print(`Revoked token ${id}${label ? ` (${label})` : ''}.`);
      if (res.current) {
        // The saved login was that token: keeping it would only fail later.
        const conn = await ctx.connection(cmd);
        if (conn.saved && conn.saved.token === conn.token) await removeSavedLogin(ctx.home);
        ctx.print('That was the token this command used: sign in again with gatehouse login.');
      }
    });
}
