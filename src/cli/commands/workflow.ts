import type { Command } from 'commander';
import { collect, type Ctx } from '../context.js';
import type { WorkflowFlags } from '../workflow-flags.js';

/** The command line only: what runs is in ../actions/workflow.ts, loaded when a command runs. */
const run = () => import('../actions/workflow.js');

export function registerWorkflow(program: Command, ctx: Ctx): void {
  const workflow = program.command('workflow').description("a resource's workflow settings");
  workflow
    .command('show')
    .description('show the workflow settings of a resource')
    .argument('<resource>', 'resource name')
    .option('--json', 'print raw JSON')
    .action(async (name: string, flags: { json?: boolean }, cmd: Command) => (await run()).show(ctx, name, flags, cmd));

  workflow
    .command('set')
    .description('change workflow settings; flags merge onto the current settings')
    .argument('<resource>', 'resource name')
    .option('--timezone <zone>', 'IANA time zone of the schedule, e.g. Europe/Berlin')
    .option('--schedule <spec>', 'weekly window, e.g. "mon-fri 08:00-17:00" (repeatable; replaces the schedule)', collect)
    .option('--max-duration <duration>', 'longest access, e.g. 90m, 2h, 1d')
    .option('--approvals <n>', 'approvals needed')
    .option('--no-approvals', 'stop requiring approval')
    .option('--approver <who>', 'approver besides the owner: a user or team:NAME (repeatable; replaces the list)', collect)
    .option('--require-reason', 'requests must give a reason')
    .option('--no-require-reason', 'a reason is optional')
    .option('--require-ticket', 'requests must give a ticket id')
    .option('--no-require-ticket', 'a ticket id is optional')
    .option('--ticket-pattern <regex>', 'ticket ids must match this pattern')
    .option('--start-on <when>', 'the access timer starts on: approval | first-connection')
    .option('--single-user', 'one holder at a time (check-out / check-in)')
    .option('--no-single-user', 'no check-out')
    .option('--mfa', 'require a fresh TOTP before each connection')
    .option('--no-mfa', 'no MFA at connection')
    .option('--clear', 'start from no settings at all (only the flags given apply)')
    .action(async (name: string, flags: WorkflowFlags, cmd: Command) => (await run()).set(ctx, name, flags, cmd));
}
