import type { Command } from 'commander';
import type { WorkflowView } from '../../api/wire.js';
import { collect, seg, type Ctx } from '../context.js';
import { mergeWorkflowSettings, parseWorkflowFlags, type WorkflowFlags } from '../workflow-flags.js';

export function registerWorkflow(program: Command, ctx: Ctx): void {
  const workflow = program.command('workflow').description("a resource's workflow settings");
  workflow
    .command('show')
    .description('show the workflow settings of a resource')
    .argument('<resource>', 'resource name')
    .option('--json', 'print raw JSON')
    .action(async (name: string, flags: { json?: boolean }, cmd: Command) => {
      const view = await (await ctx.client(cmd)).get<WorkflowView>(`/resources/${seg(name)}/workflow`);
      if (flags.json) return ctx.printJson(view);
      printWorkflow(ctx, name, view);
    });

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
    .action(async (name: string, flags: WorkflowFlags, cmd: Command) => {
      const parsed = parseWorkflowFlags(flags);
      const client = await ctx.client(cmd);
      const path = `/resources/${seg(name)}/workflow`;
      const current = parsed.clear ? {} : (await client.get<WorkflowView>(path)).settings;
      const settings = mergeWorkflowSettings(current, parsed);
      const view = await client.put<WorkflowView>(path, settings);
      ctx.print(`Updated the workflow of ${name}:`);
      printWorkflow(ctx, name, view);
    });
}

function printWorkflow(ctx: Ctx, name: string, view: WorkflowView): void {
  for (const line of view.lines) ctx.print(`  ${line}`);
  if (view.canConfigure) ctx.print(`You may change these settings: gatehouse workflow set ${name} ...`);
}
