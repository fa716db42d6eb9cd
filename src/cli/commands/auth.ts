import type { Command } from 'commander';
import type { LoginFlags } from '../actions/auth.js';
import { intArg, type Ctx } from '../context.js';

/** The command line only: what runs is in ../actions/auth.ts, loaded when a command runs. */
const run = () => import('../actions/auth.js');

export function registerAuth(program: Command, ctx: Ctx): void {
  program
    .command('login')
    .description('sign in; the session token is saved under GATEHOUSE_HOME (mode 0600)')
    .requiredOption('--user <name>', 'your user name')
    .option('--password-stdin', 'read the password from stdin instead of prompting')
    .option('--totp <code>', 'current TOTP code, once MFA is enrolled')
    .action(async (flags: LoginFlags, cmd: Command) => (await run()).login(ctx, flags, cmd));

  program
    .command('logout')
    .description('revoke the session token and forget it')
    .action(async (_flags: unknown, cmd: Command) => (await run()).logout(ctx, cmd));

  program
    .command('whoami')
    .description('who the gateway thinks you are')
    .option('--json', 'print raw JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => (await run()).whoami(ctx, flags, cmd));

  const token = program.command('token').description('API tokens for automation');
  token
    .command('create')
    .description('create an API token; it is shown once')
    .requiredOption('--label <label>', 'what the token is for')
    .option('--ttl-days <n>', 'expire after this many days', intArg(1, 3650))
    .option('--json', 'print raw JSON')
    .action(async (flags: { label: string; ttlDays?: number; json?: boolean }, cmd: Command) => (await run()).createToken(ctx, flags, cmd));
}
