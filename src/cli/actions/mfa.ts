/** What `gatehouse mfa enroll`, `mfa verify` do; loaded only when one of them runs (../commands/mfa.ts declares them). */
import type { Command } from 'commander';
import type { Ctx } from '../context.js';

export async function enroll(ctx: Ctx, flags: { json?: boolean }, cmd: Command): Promise<void> {
  const res = await (await ctx.client(cmd)).post<{ secret: string; uri: string }>('/mfa/enroll');
  if (flags.json) return ctx.printJson(res);
  ctx.print(`Secret: ${res.secret}`);
  ctx.print(`URI:    ${res.uri}`);
  ctx.print('Add it to your authenticator app, then confirm with: gatehouse mfa verify CODE');
}

export async function verify(ctx: Ctx, code: string, cmd: Command): Promise<void> {
  await (await ctx.client(cmd)).post('/mfa/verify', { code });
  ctx.print('MFA enrolled: from now on sign-in and MFA resources ask for a code.');
}
