import type { Command } from 'commander';
import type { LeaseView } from '../../api/wire.js';
import { seg, type Ctx } from '../context.js';
import { formatDurationMs, formatLocalTime } from '../format.js';

/** Single-user resources: check out, check in, and an approver's force check-in. */
export function registerLeases(program: Command, ctx: Ctx): void {
  program
    .command('checkout')
    .description('check out a single-user resource: you alone may use it until you check it in')
    .argument('<resource>', 'resource name')
    .option('--json', 'print raw JSON')
    .action(async (name: string, flags: { json?: boolean }, cmd: Command) => {
      const lease = await (await ctx.client(cmd)).post<LeaseView>(`/resources/${seg(name)}/checkout`);
      if (flags.json) return ctx.printJson(lease);
      const now = ctx.now();
      const left = formatDurationMs(new Date(lease.expiresAt).getTime() - now.getTime());
      ctx.print(`Checked out ${lease.resource} until ${formatLocalTime(lease.expiresAt, now, ctx.zone)} (${left}). Check it in when done: gatehouse checkin ${lease.resource}`);
    });

  program
    .command('checkin')
    .description('check a resource back in; your live sessions on it end')
    .argument('<resource>', 'resource name')
    .option('--json', 'print raw JSON')
    .action(async (name: string, flags: { json?: boolean }, cmd: Command) => {
      const lease = await (await ctx.client(cmd)).post<LeaseView>(`/resources/${seg(name)}/checkin`);
      if (flags.json) return ctx.printJson(lease);
      ctx.print(`Checked in ${lease.resource}.`);
    });

  program
    .command('force-checkin')
    .description("end someone's check-out at once (approvers, owner, admins); their sessions are cut")
    .argument('<resource>', 'resource name')
    .option('--reason <text>', 'why, for the holder and the audit log')
    .option('--json', 'print raw JSON')
    .action(async (name: string, flags: { reason?: string; json?: boolean }, cmd: Command) => {
      const body = flags.reason !== undefined ? { reason: flags.reason } : {};
      const lease = await (await ctx.client(cmd)).post<LeaseView>(`/resources/${seg(name)}/force-checkin`, body);
      if (flags.json) return ctx.printJson(lease);
      ctx.print(`Force-checked-in ${lease.resource} from ${lease.holder}.`);
    });
}
