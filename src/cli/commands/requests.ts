import { Option, type Command } from 'commander';
import type { ActFlag, RequestFlags } from '../actions/requests.js';
import type { Ctx } from '../context.js';

/** The command line only: what runs is in ../actions/requests.ts, loaded when a command runs. */
const run = () => import('../actions/requests.js');

export function registerRequests(program: Command, ctx: Ctx): void {
  program
    .command('request')
    .description('ask for access to a resource')
    .argument('<resource>', 'resource name')
    .option('--reason <text>', 'why you need access')
    .option('--ticket <id>', 'change or incident ticket id')
    .option('--wait', 'follow the request live until it is approved or refused (exit 0 only if approved)')
    .option('--json', 'print raw JSON (with --wait: the final request)')
    .action(async (resource: string, flags: RequestFlags, cmd: Command) => (await run()).request(ctx, resource, flags, cmd));

  program
    .command('requests')
    .description('access requests: yours and those waiting for your approval')
    .addOption(new Option('--mine', 'only the ones you made').conflicts(['toApprove', 'all']))
    .addOption(new Option('--to-approve', 'only the ones waiting for you').conflicts('all'))
    .option('--all', 'every request (admin)')
    .option('--json', 'print raw JSON')
    .action(async (flags: { mine?: boolean; toApprove?: boolean; all?: boolean; json?: boolean }, cmd: Command) => (await run()).list(ctx, flags, cmd));

  const act = (verb: string, description: string, done: string, flag?: ActFlag): void => {
    const c = program.command(verb).description(description).argument('<id>', 'request id');
    if (flag) c.option(`--${flag.name} <text>`, flag.help);
    c.action(async (id: string, flags: Record<string, string | undefined>, cmd: Command) => (await run()).act(ctx, { verb, done, flag }, id, flags, cmd));
  };
  act('remind', 'remind the approvers of your pending request', 'Reminded the approvers of');
  act('cancel', 'cancel your request', 'Cancelled');
  act('approve', 'approve a request', 'Approved', { name: 'comment', field: 'comment', help: 'a note for the requester' });
  act('deny', 'deny a request', 'Denied', { name: 'reason', field: 'reason', help: 'why, for the requester' });
}
