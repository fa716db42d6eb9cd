import { Option, type Command } from 'commander';
import type { WorkflowSettings } from '../../core/model.js';
import type { RequestView, ResourceView } from '../../api/wire.js';
import { CliError } from '../cli-error.js';
import type { ApiClient } from '../client.js';
import { seg, type Ctx } from '../context.js';
import { describeRequestState, formatLocalTime, formatTable, formatTimestamp } from '../format.js';
import { waitForDecision } from '../wait.js';

interface RequestFlags {
  reason?: string;
  ticket?: string;
  wait?: boolean;
  json?: boolean;
}

export function registerRequests(program: Command, ctx: Ctx): void {
  program
    .command('request')
    .description('ask for access to a resource')
    .argument('<resource>', 'resource name')
    .option('--reason <text>', 'why you need access')
    .option('--ticket <id>', 'change or incident ticket id')
    .option('--wait', 'follow the request live until it is approved or refused (exit 0 only if approved)')
    .option('--json', 'print raw JSON (with --wait: the final request)')
    .action(async (resource: string, flags: RequestFlags, cmd: Command) => {
      const client = await ctx.client(cmd);
      const body: { resource: string; reason?: string; ticket?: string } = { resource };
      if (flags.reason !== undefined) body.reason = flags.reason;
      if (flags.ticket !== undefined) body.ticket = flags.ticket;
      const created = await client.post<RequestView>('/requests', body);
      const settings = await settingsOf(client, [created.resource]);
      const state = (r: RequestView): string => describeRequestState(r, ctx.now(), ctx.zone, settings.get(r.resource));
      if (!flags.wait) {
        if (flags.json) return ctx.printJson(created);
        ctx.print(`Request ${created.id} for ${created.resource}: ${state(created)}.`);
        return;
      }
      if (!flags.json) ctx.print(`Request ${created.id} for ${created.resource} sent; waiting for a decision (Ctrl-C stops waiting, not the request).`);
      let toldApprovers = false;
      const final = await waitForDecision({
        client,
        requestId: created.id,
        onUpdate: (r) => {
          if (flags.json) return;
          if (!toldApprovers && r.approvers?.length) {
            toldApprovers = true;
            ctx.print(`Approvers: ${r.approvers.join(', ')}`);
          }
          ctx.print(`[${formatLocalTime(ctx.now(), ctx.now(), ctx.zone)}] ${state(r)}`);
        },
      });
      if (flags.json) ctx.printJson(final);
      if (final.state !== 'approved' && final.state !== 'active') {
        throw new CliError(`REQUEST_${final.state.toUpperCase()}`, `request ${final.id} ${state(final)}`, { exitCode: 1 });
      }
    });

  program
    .command('requests')
    .description('access requests: yours and those waiting for your approval')
    .addOption(new Option('--mine', 'only the ones you made').conflicts(['toApprove', 'all']))
    .addOption(new Option('--to-approve', 'only the ones waiting for you').conflicts('all'))
    .option('--all', 'every request (admin)')
    .option('--json', 'print raw JSON')
    .action(async (flags: { mine?: boolean; toApprove?: boolean; all?: boolean; json?: boolean }, cmd: Command) => {
      const client = await ctx.client(cmd);
      const views = flags.mine ? ['mine'] : flags.toApprove ? ['to-approve'] : flags.all ? ['all'] : ['mine', 'to-approve'];
      const byId = new Map<string, RequestView>();
      for (const view of views) for (const r of await client.get<RequestView[]>('/requests', { view })) byId.set(r.id, r);
      const list = [...byId.values()].sort((a, b) => b.createdAt.localeCompare(a.createdAt));
      if (flags.json) return ctx.printJson(list);
      if (list.length === 0) return ctx.print('No requests.');
      const settings = await settingsOf(client, list.filter((r) => r.state === 'pending').map((r) => r.resource));
      const now = ctx.now();
      const rows = list.map((r) => [
        r.id,
        r.resource,
        r.requester,
        describeRequestState(r, now, ctx.zone, settings.get(r.resource)),
        formatTimestamp(r.createdAt, ctx.zone),
        [r.reason, r.ticket ? `[${r.ticket}]` : ''].filter(Boolean).join(' '),
      ]);
      ctx.print(formatTable(['ID', 'RESOURCE', 'REQUESTER', 'STATE', 'CREATED', 'REASON'], rows));
    });

  const act = (verb: string, description: string, done: string, flag?: { name: string; field: string; help: string }): void => {
    const c = program.command(verb).description(description).argument('<id>', 'request id');
    if (flag) c.option(`--${flag.name} <text>`, flag.help);
    c.action(async (id: string, flags: Record<string, string | undefined>, cmd: Command) => {
      const body: Record<string, string> = {};
      const value = flag ? flags[flag.name] : undefined;
      if (flag && value !== undefined) body[flag.field] = value;
      const client = await ctx.client(cmd);
      const r = await client.post<RequestView>(`/requests/${seg(id)}/${verb}`, body);
      const settings = await settingsOf(client, [r.resource]);
      ctx.print(`${done} request ${r.id} for ${r.resource}; now ${describeRequestState(r, ctx.now(), ctx.zone, settings.get(r.resource))}.`);
    });
  };
  act('remind', 'remind the approvers of your pending request', 'Reminded the approvers of');
  act('cancel', 'cancel your request', 'Cancelled');
  act('approve', 'approve a request', 'Approved', { name: 'comment', field: 'comment', help: 'a note for the requester' });
  act('deny', 'deny a request', 'Denied', { name: 'reason', field: 'reason', help: 'why, for the requester' });
}

/** Best effort: workflow settings by resource name, for "1/2 approvals"; without them the count alone shows. */
async function settingsOf(client: ApiClient, names: string[]): Promise<Map<string, WorkflowSettings>> {
  const out = new Map<string, WorkflowSettings>();
  if (names.length === 0) return out;
  try {
    for (const v of await client.get<ResourceView[]>('/resources')) out.set(v.name, v.settings);
  } catch {
    // Listing resources is a nicety here; the request itself already succeeded.
  }
  return out;
}
