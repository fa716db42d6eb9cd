import type { Command } from 'commander';
import type { Ctx } from '../context.js';

/** The command line only: what runs is in ../actions/policy.ts, loaded when a command runs. */
const run = () => import('../actions/policy.js');

export function registerPolicy(program: Command, ctx: Ctx): void {
  const policy = program.command('policy').description('policy files and access explanations');
  policy
    .command('check')
    .description('validate the policy files in a directory (no gateway needed)')
    .argument('[dir]', 'directory or file', 'policies')
    .action(async (dir: string) => (await run()).check(ctx, dir));
  policy
    .command('schema')
    .description('print the JSON schema of policy files')
    .action(async () => (await run()).schema(ctx));
  policy
    .command('explain')
    .description('why a user may or may not connect to a resource, check by check')
    .requiredOption('--user <user>', 'user name')
    .requiredOption('--resource <resource>', 'resource name')
    .option('--at <iso-time>', 'evaluate at this instant instead of now')
    .option('--json', 'print raw JSON')
    .action(async (flags: { user: string; resource: string; at?: string; json?: boolean }, cmd: Command) => (await run()).explain(ctx, flags, cmd));
}
