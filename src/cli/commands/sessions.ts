import type { Command } from 'commander';
import type { Ctx } from '../context.js';

/** The command line only: what runs is in ../actions/sessions.ts, loaded when a command runs. */
const run = () => import('../actions/sessions.js');

export function registerSessions(program: Command, ctx: Ctx): void {
  const sessions = program
    .command('sessions')
    .description('sessions through the gateway (yours; admins: everyone\'s)')
    .option('--live', 'only live sessions')
    .option('--json', 'print raw JSON')
    .action(async (flags: { live?: boolean; json?: boolean }, cmd: Command) => (await run()).list(ctx, flags, cmd));
  sessions
    .command('kill')
    .description('end a live session now (admins, approvers of the resource)')
    .argument('<id>', 'session id')
    .action(async (id: string, _flags: unknown, cmd: Command) => (await run()).kill(ctx, id, cmd));
}
