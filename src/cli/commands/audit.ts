import type { Command } from 'commander';
import type { AuditVerifyResponse, AuditView } from '../../api/wire.js';
import { CliError } from '../cli-error.js';
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
    .command('verify')
    .description('check the hash chain of the whole log')
    .option('--json', 'print raw JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const res = await (await ctx.client(cmd)).get<AuditVerifyResponse>('/audit/verify');
      if (flags.json) ctx.printJson(res);
      if (res.ok) {
        if (!flags.json) ctx.print(`OK: ${res.count} entries, hash chain intact.`);
        return;
      }
      const where = res.firstBadSeq !== undefined ? ` at entry ${res.firstBadSeq}` : '';
      throw new CliError('AUDIT_BROKEN', `audit log verification FAILED${where} (${res.problem ?? 'unknown problem'}); ${res.count} entries before it check out`);
    });
}

/** A short key=value digest of an entry's data for the table; --json has all of it. */
function summarise(data: Record<string, unknown>): string {
  const text = Object.entries(data ?? {})
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return text.length > 80 ? `${text.slice(0, 77)}...` : text;
}
