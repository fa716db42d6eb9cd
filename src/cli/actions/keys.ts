/** What `gatehouse key list`, `key remove` do; loaded only when one of them runs (../commands/keys.ts declares them). */
import type { Command } from 'commander';
import type { KeysResponse, SshKeyView } from '../../api/wire.js';
import { seg, type Ctx } from '../context.js';
import { formatTable } from '../format.js';

export async function list(ctx: Ctx, flags: { json?: boolean }, cmd: Command): Promise<void> {
  const res = await (await ctx.client(cmd)).get<KeysResponse>('/keys');
  if (flags.json) return ctx.printJson(res.entries);
  if (res.entries.length === 0) return ctx.print('No SSH keys; add one with gatehouse key add FILE.');
  ctx.print(formatTable(['FINGERPRINT', 'TYPE', 'COMMENT'], res.entries.map((k) => [k.fingerprint, k.type, k.comment ?? ''])));
}

export async function remove(ctx: Ctx, fingerprint: string, cmd: Command): Promise<void> {
  const res = await (await ctx.client(cmd)).delete<{ removed: SshKeyView }>(`/keys/${seg(fingerprint)}`);
  const k = res.removed;
  ctx.print(`Removed SSH key ${k.fingerprint}${k.comment ? ` (${k.comment})` : ''}.`);
}
