/** What `gatehouse checkout`, `checkin`, `force-checkin` do; loaded only when one of them runs (../commands/leases.ts declares them). */
import type { Command } from 'commander';
import type { LeaseView } from '../../api/wire.js';
import { seg, type Ctx } from '../context.js';
import { formatDurationMs, formatLocalTime } from '../format.js';

export async function checkout(ctx: Ctx, name: string, flags: { json?: boolean }, cmd: Command): Promise<void> {
  const lease = await (await ctx.client(cmd)).post<LeaseView>(`/resources/${seg(name)}/checkout`);
  if (flags.json) return ctx.printJson(lease);
  const now = ctx.now();
  const left = formatDurationMs(new Date(lease.expiresAt).getTime() - now.getTime());
  ctx.print(`Checked out ${lease.resource} until ${formatLocalTime(lease.expiresAt, now, ctx.zone)} (${left}). Check it in when done: gatehouse checkin ${lease.resource}`);
}

export async function checkin(ctx: Ctx, name: string, flags: { json?: boolean }, cmd: Command): Promise<void> {
  const lease = await (await ctx.client(cmd)).post<LeaseView>(`/resources/${seg(name)}/checkin`);
  if (flags.json) return ctx.printJson(lease);
  ctx.print(`Checked in ${lease.resource}.`);
}

export async function forceCheckin(ctx: Ctx, name: string, flags: { reason?: string; json?: boolean }, cmd: Command): Promise<void> {
  const body = flags.reason !== undefined ? { reason: flags.reason } : {};
  const lease = await (await ctx.client(cmd)).post<LeaseView>(`/resources/${seg(name)}/force-checkin`, body);
  if (flags.json) return ctx.printJson(lease);
  ctx.print(`Force-checked-in ${lease.resource} from ${lease.holder}.`);
}
