import type { Command } from 'commander';
import type { AuditListFlags } from '../actions/audit.js';
import { intArg, type Ctx } from '../context.js';

/** The command line only: what runs is in ../actions/audit.ts, loaded when a command runs. */
const run = () => import('../actions/audit.js');

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
    .action(async (flags: AuditListFlags, cmd: Command) => (await run()).list(ctx, flags, cmd));
  audit
    .command('checkpoint')
    .description("save a signed checkpoint of the log's head; keep it off the gateway's machine")
    .argument('[file]', 'where to write it (default: print it)')
    .action(async (file: string | undefined, _flags: unknown, cmd: Command) => (await run()).checkpoint(ctx, file, cmd));
  audit
    .command('verify')
    .description('check the hash chain of the whole log (and that it still holds a checkpoint kept elsewhere)')
    .option('--checkpoint <file>', 'a file from `gatehouse audit checkpoint`: finds a cut or re-signed tail')
    .option('--json', 'print raw JSON')
    .action(async (flags: { json?: boolean; checkpoint?: string }, cmd: Command) => (await run()).verify(ctx, flags, cmd));
}
