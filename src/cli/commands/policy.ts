import type { Command } from 'commander';
import { isGatehouseError } from '../../core/errors.js';
import { loadPolicies, policyJsonSchema } from '../../workflow/policies.js';
import type { ExplainResponse } from '../../api/wire.js';
import { CliError, usageError } from '../cli-error.js';
import type { Ctx } from '../context.js';
import { formatLocalTime } from '../format.js';

export function registerPolicy(program: Command, ctx: Ctx): void {
  const policy = program.command('policy').description('policy files and access explanations');
  policy
    .command('check')
    .description('validate the policy files in a directory (no gateway needed)')
    .argument('[dir]', 'directory or file', 'policies')
    .action(async (dir: string) => {
      try {
        const set = await loadPolicies(dir);
        const n = (k: number, what: string): string => `${k} ${what}${k === 1 ? '' : 's'}`;
        ctx.print(`OK: ${n(set.files.length, 'file')}, ${n(set.teams.length, 'team')}, ${n(set.resources.length, 'resource')}.`);
      } catch (e) {
        // The loader's message already reads "file:line: field: problem".
        if (isGatehouseError(e)) throw new CliError(e.code, e.message);
        throw e;
      }
    });
  policy
    .command('schema')
    .description('print the JSON schema of policy files')
    .action(() => ctx.printJson(policyJsonSchema()));
  policy
    .command('explain')
    .description('why a user may or may not connect to a resource, check by check')
    .requiredOption('--user <user>', 'user name')
    .requiredOption('--resource <resource>', 'resource name')
    .option('--at <iso-time>', 'evaluate at this instant instead of now')
    .option('--json', 'print raw JSON')
    .action(async (flags: { user: string; resource: string; at?: string; json?: boolean }, cmd: Command) => {
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
    });
}
