/** What `gatehouse request`, `requests`, `remind`, `cancel`, `approve`, `deny` do; loaded only when one of them runs (../commands/requests.ts declares them). */
import type { Command } from 'commander';
import type { WorkflowSettings } from '../../core/model.js';
import type { RequestView, ResourceView } from '../../api/wire.js';
import { CliError } from '../cli-error.js';
import type { ApiClient } from '../client.js';
import { seg, type Ctx } from '../context.js';
import { describeRequestState, formatLocalTime, formatTable, formatTimestamp } from '../format.js';
import { waitForDecision } from '../wait.js';

export interface RequestFlags {
  reason?: string;
  ticket?: string;
  wait?: boolean;
  json?: boolean;
}

/** The option a request action (approve, deny, ...) takes, and the body field it fills. */
export interface ActFlag {
  name: string;
  field: string;
  help: string;
}

export async function request(ctx: Ctx, resource: string, flags: RequestFlags, cmd: Command): Promise<void> {
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
}

export async function list(ctx: Ctx, flags: { mine?: boolean; toApprove?: boolean; all?: boolean; json?: boolean }, cmd: Command): Promise<void> {
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
}

/** remind, cancel, approve, deny: POST /requests/ID/VERB, then the request's new state. */
export async function act(
  ctx: Ctx,
  step: { verb: string; done: string; flag: ActFlag | undefined },
  id: string,
  flags: Record<string, string | undefined>,
  cmd: Command,
): Promise<void> {
  const { verb, done, flag } = step;
  const body: Record<string, string> = {};
  const value = flag ? flags[flag.name] : undefined;
  if (flag && value !== undefined) body[flag.field] = value;
  const client = await ctx.client(cmd);
  const r = await client.post<RequestView>(`/requests/${seg(id)}/${verb}`, body);
  const settings = await settingsOf(client, [r.resource]);
  ctx.print(`${done} request ${r.id} for ${r.resource}; now ${describeRequestState(r, ctx.now(), ctx.zone, settings.get(r.resource))}.`);
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
