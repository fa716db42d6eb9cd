/** What `gatehouse audit`, `audit checkpoint`, `audit verify` do; loaded only when one of them runs (../commands/audit.ts declares them). */
import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { AuditCheckpointView, AuditVerifyResponse, AuditView } from '../../api/wire.js';
import { CliError, usageError } from '../cli-error.js';
import type { Ctx } from '../context.js';
import { formatTable, formatTimestamp } from '../format.js';

export interface AuditListFlags {
  limit?: number;
  after?: number;
  actor?: string;
  action?: string;
  subject?: string;
  json?: boolean;
}

/** `gatehouse audit`: the entries the filters select, as a table or raw JSON. */
export async function list(ctx: Ctx, flags: AuditListFlags, cmd: Command): Promise<void> {
  const entries = await (await ctx.client(cmd)).get<AuditView[]>('/audit', {
    limit: flags.limit,
    afterSeq: flags.after,
    actor: flags.actor,
    action: flags.action,
    subject: flags.subject,
  });
  if (flags.json) return ctx.printJson(entries);
  if (entries.length === 0) return ctx.print('No audit entries.');
  const rows = entries.map((e) => [String(e.seq), formatTimestamp(e.at, ctx.zone), e.actor, e.action, e.subject, summarise(e.data)]);
  ctx.print(formatTable(['SEQ', 'TIME', 'ACTOR', 'ACTION', 'SUBJECT', 'DATA'], rows));
}

export async function checkpoint(ctx: Ctx, file: string | undefined, cmd: Command): Promise<void> {
  const cp = await (await ctx.client(cmd)).get<AuditCheckpointView>('/audit/checkpoint');
  if (!file) return ctx.printJson(cp);
  writeFileSync(file, `${JSON.stringify(cp, null, 2)}\n`, { mode: 0o600 });
  ctx.print(`Checkpoint of entry ${cp.seq} written to ${file}; later: gatehouse audit verify --checkpoint ${file}`);
}

export async function verify(ctx: Ctx, flags: { json?: boolean; checkpoint?: string }, cmd: Command): Promise<void> {
  const client = await ctx.client(cmd);
  const res = flags.checkpoint
    ? await client.post<AuditVerifyResponse>('/audit/verify', { checkpoint: readCheckpoint(flags.checkpoint) })
    : await client.get<AuditVerifyResponse>('/audit/verify');
  if (flags.json) ctx.printJson(res);
  if (res.ok) {
    if (!flags.json) ctx.print(`OK: ${res.count} entries, hash chain intact${flags.checkpoint ? ', checkpoint found in it' : ''}.`);
    return;
  }
  const where = res.firstBadSeq !== undefined ? ` at entry ${res.firstBadSeq}` : '';
  throw new CliError('AUDIT_BROKEN', `audit log verification FAILED${where} (${res.problem ?? 'unknown problem'}); ${res.count} entries before it check out`);
}

function readCheckpoint(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw usageError(`--checkpoint ${file}: ${(e as Error).message}`);
  }
}

/** A short key=value digest of an entry's data for the table; --json has all of it. */
function summarise(data: Record<string, unknown>): string {
  const text = Object.entries(data ?? {})
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
