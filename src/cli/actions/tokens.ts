/** What `gatehouse token list`, `token revoke` do; loaded only when one of them runs (../commands/tokens.ts declares them). */
import type { Command } from 'commander';
import type { TokenListResponse, TokenRevokeResponse } from '../../api/wire.js';
import { removeSavedLogin } from '../config.js';
import { seg, type Ctx } from '../context.js';
import { formatLocalTime, formatTable } from '../format.js';

export async function list(ctx: Ctx, flags: { json?: boolean }, cmd: Command): Promise<void> {
  const { tokens } = await (await ctx.client(cmd)).get<TokenListResponse>('/tokens');
  if (flags.json) return ctx.printJson(tokens);
  const now = ctx.now();
  const when = (at: string | undefined): string => (at ? formatLocalTime(at, now, ctx.zone) : 'never');
  ctx.print(formatTable(
    ['ID', 'KIND', 'LABEL', 'CREATED', 'EXPIRES'],
    tokens.map((t) => [t.id, t.current ? `${t.kind} (this one)` : t.kind, t.label ?? '', when(t.createdAt), when(t.expiresAt)]),
  ));
}

export async function revoke(ctx: Ctx, id: string, cmd: Command): Promise<void> {
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
}
