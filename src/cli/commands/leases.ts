import type { Command } from 'commander';
import type { Ctx } from '../context.js';

/** The command line only: what runs is in ../actions/leases.ts, loaded when a command runs. */
const run = () => import('../actions/leases.js');

/** Single-user resources: check out, check in, and an approver's force check-in. */
export function registerLeases(program: Command, ctx: Ctx): void {
  program
    .command('checkout')
    .description('check out a single-user resource: you alone may use it until you check it in')
    .argument('<resource>', 'resource name')
    .option('--json', 'print raw JSON')
    .action(async (name: string, flags: { json?: boolean }, cmd: Command) => (await run()).checkout(ctx, name, flags, cmd));

  program
    .command('checkin')
    .description('check a resource back in; your live sessions on it end')
    .argument('<resource>', 'resource name')
    .option('--json', 'print raw JSON')
    .action(async (name: string, flags: { json?: boolean }, cmd: Command) => (await run()).checkin(ctx, name, flags, cmd));

  program
    .command('force-checkin')
    .description("end someone's check-out at once (approvers, owner, admins); their sessions are cut")
    .argument('<resource>', 'resource name')
    .option('--reason <text>', 'why, for the holder and the audit log')
    .option('--json', 'print raw JSON')
    .action(async (name: string, flags: { reason?: string; json?: boolean }, cmd: Command) => (await run()).forceCheckin(ctx, name, flags, cmd));
}
