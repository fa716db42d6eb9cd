import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { SERVED_PROTOCOLS } from '../../../protocols/registry.js';
import { ProtocolsByType, RecordTypes, type Protocol, type RecordType } from '../../core/model.js';
import type { ResourceView } from '../../api/wire.js';
import { CliError, usageError } from '../cli-error.js';
import { intArg, seg, type Ctx } from '../context.js';
import { describeResourceState, formatTable } from '../format.js';
import { readStdinSecret } from '../io.js';

interface AddFlags {
  type: RecordType;
  protocol: Protocol;
  host: string;
  port: number;
  database?: string;
  owner?: string;
  login?: string;
  passwordStdin?: boolean;
  key?: string;
  allowPlaintextUpstream?: boolean;
}

export function registerResources(program: Command, ctx: Ctx): void {
  const resource = program.command('resource').description('manage resources (admin, owner)');
  resource
    .command('add')
    .description('add a resource; its credentials are vaulted and never shown again')
    .argument('<name>', 'resource name, as users will address it')
    .addOption(new Option('--type <type>', 'record type').choices(RecordTypes).makeOptionMandatory())
    .addOption(new Option('--protocol <protocol>', 'protocol (one a gateway door serves)').choices(SERVED_PROTOCOLS).makeOptionMandatory())
    .requiredOption('--host <host>', 'target host')
    .requiredOption('--port <port>', 'target port', intArg(1, 65535))
    .option('--database <db>', 'database name (database resources)')
    .option('--owner <user>', 'owner (default: you)')
    .option('--login <user>', 'the account the gateway signs in to the target as')
    .addOption(new Option('--password-stdin', "read the target account's password from stdin").conflicts('key'))
    .option('--key <file>', "private key file for the target account (SSH)")
    .option('--allow-plaintext-upstream', 'database lab targets only: allow a target without TLS (SCRAM only; audited)')
    .action(async (name: string, flags: AddFlags, cmd: Command) => {
      const allowed = ProtocolsByType[flags.type];
      if (!allowed.includes(flags.protocol)) {
        throw usageError(`--protocol: a ${flags.type} resource speaks ${allowed.join(' or ')}, not ${flags.protocol}`);
      }
      if ((flags.passwordStdin || flags.key) && !flags.login) throw usageError('--login is needed with --password-stdin or --key');
      const body: Record<string, unknown> = { name, type: flags.type, protocol: flags.protocol, host: flags.host, port: flags.port };
      if (flags.database !== undefined) body.database = flags.database;
      if (flags.owner !== undefined) body.owner = flags.owner;
      if (flags.login !== undefined) body.login = flags.login;
      if (flags.passwordStdin) body.password = await readStdinSecret(ctx.io, 'password');
      if (flags.key !== undefined) body.privateKey = await readKeyFile(flags.key);
      if (flags.allowPlaintextUpstream) body.options = { allowPlaintextUpstream: true };
      const created = await (await ctx.client(cmd)).post<ResourceView>('/resources', body);
      ctx.print(`Added ${created.type} resource ${created.name} (${created.protocol} ${created.host}:${created.port}), owner ${created.owner}.`);
    });
  resource
    .command('share')
    .description('put a user or a team on the access list')
    .argument('<name>', 'resource name')
    .addOption(new Option('--user <user>', 'user to add').conflicts('team'))
    .option('--team <team>', 'team to add')
    .action(async (name: string, flags: { user?: string; team?: string }, cmd: Command) => {
      if (flags.user === undefined && flags.team === undefined) throw usageError('give --user NAME or --team NAME');
      const body = flags.user !== undefined ? { user: flags.user } : { team: flags.team };
      const updated = await (await ctx.client(cmd)).post<ResourceView>(`/resources/${seg(name)}/share`, body);
      const who = flags.user !== undefined ? flags.user : `team ${flags.team}`;
      ctx.print(`Shared ${updated.name} with ${who}.`);
    });
  resource
    .command('remove')
    .description('remove a resource; its live sessions end at once')
    .argument('<name>', 'resource name')
    .action(async (name: string, _flags: unknown, cmd: Command) => {
      await (await ctx.client(cmd)).delete(`/resources/${seg(name)}`);
      ctx.print(`Removed ${name}.`);
    });

  program
    .command('resources')
    .description('the resources you can reach, each with its workflow state for you')
    .option('--json', 'print raw JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => {
      const views = await (await ctx.client(cmd)).get<ResourceView[]>('/resources');
      if (flags.json) return ctx.printJson(views);
      if (views.length === 0) return ctx.print('No resources you can reach.');
      const now = ctx.now();
      const rows = views.map((v) => [v.name, v.type, v.protocol, describeResourceState(v, now, ctx.zone)]);
      ctx.print(formatTable(['NAME', 'TYPE', 'PROTOCOL', 'STATE'], rows));
    });
}

async function readKeyFile(path: string): Promise<string> {
  try {
    const key = await readFile(path, 'utf8');
    if (!/-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----/.test(key)) throw new Error('not a PEM or OpenSSH private key');
    return key;
  } catch (e) {
    throw new CliError('USAGE', `--key: cannot use ${path}: ${(e as Error).message}`, { exitCode: 2 });
  }
}
