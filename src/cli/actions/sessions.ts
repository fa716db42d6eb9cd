/** What `gatehouse sessions`, `sessions kill` do; loaded only when one of them runs (../commands/sessions.ts declares them). */
import type { Command } from 'commander';
import type { SessionView } from '../../api/wire.js';
import { seg, type Ctx } from '../context.js';
import { formatDurationMs, formatTable, formatTimestamp } from '../format.js';

export async function list(ctx: Ctx, flags: { live?: boolean; json?: boolean }, cmd: Command): Promise<void> {
  const list = await (await ctx.client(cmd)).get<SessionView[]>('/sessions', { state: flags.live ? 'live' : undefined });
  if (flags.json) return ctx.printJson(list);
  if (list.length === 0) return ctx.print(flags.live ? 'No live sessions.' : 'No sessions.');
  const now = ctx.now().getTime();
  const rows = list.map((s) => [
    s.id,
    s.user,
    s.resource,
    s.account ?? '-',
    s.protocol,
    s.state === 'ended' ? `ended (${s.endReason ?? 'unknown'})` : s.state,
    formatTimestamp(s.startedAt, ctx.zone),
    s.state === 'live' && s.deadline ? `${formatDurationMs(new Date(s.deadline).getTime() - now)} left` : formatTimestamp(s.endedAt, ctx.zone),
    s.client,
  ]);
  ctx.print(formatTable(['ID', 'USER', 'RESOURCE', 'ACCOUNT', 'PROTOCOL', 'STATE', 'STARTED', 'ENDS/ENDED', 'CLIENT'], rows));
  // Sessions that could not start for a reason the resource's owner must fix (a temporary account the target refused).
  const failed = list.filter((s) => s.state === 'ended' && s.endReason === 'error' && s.endMessage);
  if (failed.length) ctx.print(['', 'Failed to start:', ...failed.map((s) => `  ${s.id}  ${s.endMessage}`)].join('\n'));
}

export async function kill(ctx: Ctx, id: string, cmd: Command): Promise<void> {
  const res = await (await ctx.client(cmd)).post<{ ok: boolean }>(`/sessions/${seg(id)}/kill`);
  ctx.print(res.ok ? `Killed session ${id}.` : `Session ${id} is not live; nothing to kill.`);
}
