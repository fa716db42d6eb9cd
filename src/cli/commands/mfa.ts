import type { Command } from 'commander';
import type { Ctx } from '../context.js';

/** The command line only: what runs is in ../actions/mfa.ts, loaded when a command runs. */
const run = () => import('../actions/mfa.js');

export function registerMfa(program: Command, ctx: Ctx): void {
  const mfa = program.command('mfa').description('TOTP multi-factor authentication');
  mfa
    .command('enroll')
    .description('start TOTP enrolment: prints the secret and an otpauth:// URI for your authenticator app')
    .option('--json', 'print raw JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => (await run()).enroll(ctx, flags, cmd));
  mfa
    .command('verify')
    .description('confirm enrolment with a code from your authenticator app')
    .argument('<code>', 'the current 6-digit code')
    .action(async (code: string, _flags: unknown, cmd: Command) => (await run()).verify(ctx, code, cmd));
}
