import { readFileSync, writeFileSync } from 'node:fs';
import type { Command } from 'commander';
import type { AuditCheckpointView, AuditVerifyResponse, AuditView } from '../../api/wire.js';
import { CliError, usageError } from '../cli-error.js';
import { intArg, type Ctx } from '../context.js';
import { formatTable, formatTimestamp } from '../format.js';

export function registerAudit(program: Command, ctx: Ctx): void {
  const audit = program
    .command('audit')
    .description('the tamper-evident audit log (admin)')
    .option('--limit <n>', 'at most this many entries', intArg(1, 10_000))
    .option('--after <seq>', 'only entries after this sequence number', intArg(0))
    .option('--actor <user>', 'only entries by this actor')
    .option('--action <action>', 'only this action, e.g. request.approved')
    .option('--subject <subject>', 'only entries about this subject')
    .option('--json', 'print raw JSON')
    .action(async (flags: { limit?: number; after?: number; actor?: string; action?: string; subject?: string; json?: boolean }, cmd: Command) => {
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
    });
  audit
    .command('checkpoint')
    .description("save a signed checkpoint of the log's head; keep it off the gateway's machine")
    .argument('[file]', 'where to write it (default: print it)')
    .action(async (file: string | undefined, _flags: unknown, cmd: Command) => {
      const cp = await (await ctx.client(cmd)).get<AuditCheckpointView>('/audit/checkpoint');
      if (!file) return ctx.printJson(cp);
      writeFileSync(file, `${JSON.stringify(cp, null, 2)}\n`, { mode: 0o600 });
      ctx.print(`Checkpoint of entry ${cp.seq} written to ${file}; later: gatehouse audit verify --checkpoint ${file}`);
    });
  audit
    .command('verify')
    .description('check the hash chain of the whole log (and that it still holds a checkpoint kept elsewhere)')
    .option('--checkpoint <file>', 'a file from `gatehouse audit checkpoint`: finds a cut or re-signed tail')
    .option('--json', 'print raw JSON')
    .action(async (flags: { json?: boolean; checkpoint?: string }, cmd: Command) => {
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
    });
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
