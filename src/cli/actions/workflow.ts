/** What `gatehouse workflow show`, `workflow set` do; loaded only when one of them runs (../commands/workflow.ts declares them). */
import type { Command } from 'commander';
import type { WorkflowView } from '../../api/wire.js';
import { seg, type Ctx } from '../context.js';
import { mergeWorkflowSettings, parseWorkflowFlags, type WorkflowFlags } from '../workflow-flags.js';

export async function show(ctx: Ctx, name: string, flags: { json?: boolean }, cmd: Command): Promise<void> {
  const view = await (await ctx.client(cmd)).get<WorkflowView>(`/resources/${seg(name)}/workflow`);
  if (flags.json) return ctx.printJson(view);
  printWorkflow(ctx, name, view);
}

export async function set(ctx: Ctx, name: string, flags: WorkflowFlags, cmd: Command): Promise<void> {
  const parsed = parseWorkflowFlags(flags);
  const client = await ctx.client(cmd);
  const path = `/resources/${seg(name)}/workflow`;
  const current = parsed.clear ? {} : (await client.get<WorkflowView>(path)).settings;
  const settings = mergeWorkflowSettings(current, parsed);
  const view = await client.put<WorkflowView>(path, settings);
  ctx.print(`Updated the workflow of ${name}:`);
  printWorkflow(ctx, name, view);
}

function printWorkflow(ctx: Ctx, name: string, view: WorkflowView): void {
  for (const line of view.lines) ctx.print(`  ${line}`);
  if (view.canConfigure) ctx.print(`You may change these settings: gatehouse workflow set ${name} ...`);
}
