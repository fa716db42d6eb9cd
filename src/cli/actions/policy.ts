/** What `gatehouse policy check`, `policy schema`, `policy explain` do; loaded only when one of them runs (../commands/policy.ts declares them). */
import type { Command } from 'commander';
import { isGatehouseError } from '../../core/errors.js';
import { loadPolicies, policyJsonSchema } from '../../workflow/policies.js';
import type { ExplainResponse } from '../../api/wire.js';
import { CliError, usageError } from '../cli-error.js';
import type { Ctx } from '../context.js';
import { formatLocalTime } from '../format.js';

export async function check(ctx: Ctx, dir: string): Promise<void> {
  try {
    const set = await loadPolicies(dir);
    const n = (k: number, what: string): string => `${k} ${what}${k === 1 ? '' : 's'}`;
    ctx.print(`OK: ${n(set.files.length, 'file')}, ${n(set.teams.length, 'team')}, ${n(set.resources.length, 'resource')}.`);
  } catch (e) {
    // The loader's message already reads "file:line: field: problem".
    if (isGatehouseError(e)) throw new CliError(e.code, e.message);
    throw e;
  }
}

export function schema(ctx: Ctx): void {
  ctx.printJson(policyJsonSchema());
}

export async function explain(ctx: Ctx, flags: { user: string; resource: string; at?: string; json?: boolean }, cmd: Command): Promise<void> {
  if (flags.at !== undefined && Number.isNaN(Date.parse(flags.at))) {
    throw usageError(`--at: "${flags.at}" is not an ISO-8601 time, e.g. 2026-01-05T09:00:00Z`);
  }
  const at = flags.at !== undefined ? new Date(flags.at).toISOString() : undefined;
  const res = await (await ctx.client(cmd)).get<ExplainResponse>('/policy/explain', { user: flags.user, resource: flags.resource, at });
  if (flags.json) return ctx.printJson(res);
  for (const c of res.checks) ctx.print(`  ${c.ok ? 'ok  ' : 'FAIL'}  ${c.check.padEnd(12)} ${c.detail}`);
  if (res.allow) {
    const until = res.deadline ? ` until ${formatLocalTime(res.deadline, ctx.now(), ctx.zone)}` : '';
    ctx.print(`ALLOW: ${flags.user} may connect to ${flags.resource}${until}.`);
  } else {
    ctx.print(`DENY (${res.code ?? 'denied'}): ${res.message ?? ''}`.trimEnd());
    if (res.hint) ctx.print(`  fix: ${res.hint}`);
  }
  if (res.jit) ctx.print(`Upstream account: ${res.jit.description}.`);
}
