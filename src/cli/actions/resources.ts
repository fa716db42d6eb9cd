/** What `gatehouse resource add|share|remove`, `resources` do; loaded only when one of them runs (../commands/resources.ts declares them). */
import { readFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { ProtocolsByType, type DirectoryAccess, type Protocol, type RecordType } from '../../core/model.js';
import type { ResourceView } from '../../api/wire.js';
import { CliError, usageError } from '../cli-error.js';
import { seg, type Ctx } from '../context.js';
import { describeResourceState, formatTable } from '../format.js';
import { readStdinSecret } from '../io.js';

export interface AddFlags {
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
  directoryAccess?: DirectoryAccess;
  baseDn?: string;
  ldaps?: boolean;
  tunnelConnectionLimit?: number;
  handOutCredentials?: boolean;
}

export async function add(ctx: Ctx, name: string, flags: AddFlags, cmd: Command): Promise<void> {
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
  const options: Record<string, unknown> = {};
  if (flags.allowPlaintextUpstream) options.allowPlaintextUpstream = true;
  if (flags.directoryAccess !== undefined) options.directoryAccess = flags.directoryAccess;
  if (flags.baseDn !== undefined) options.baseDn = flags.baseDn;
  if (flags.ldaps) options.ldaps = true;
  if ((flags.directoryAccess !== undefined || flags.baseDn !== undefined || flags.ldaps) && flags.protocol !== 'ldap') {
    throw usageError('--directory-access, --base-dn and --ldaps are for ldap resources');
  }
  if (flags.tunnelConnectionLimit !== undefined) options.tunnelConnectionLimit = flags.tunnelConnectionLimit;
  if (flags.handOutCredentials) options.handOutCredentials = true;
  if (flags.tunnelConnectionLimit !== undefined && flags.protocol !== 'tcp' && flags.protocol !== 'rdp') throw usageError('--tunnel-connection-limit is for tcp and rdp resources');
  if (flags.handOutCredentials && flags.protocol !== 'rdp') throw usageError('--hand-out-credentials is for rdp resources');
  if (Object.keys(options).length > 0) body.options = options;
  const created = await (await ctx.client(cmd)).post<ResourceView>('/resources', body);
  ctx.print(`Added ${created.type} resource ${created.name} (${created.protocol} ${created.host}:${created.port}), owner ${created.owner}.`);
}

export async function share(ctx: Ctx, name: string, flags: { user?: string; team?: string }, cmd: Command): Promise<void> {
  if (flags.user === undefined && flags.team === undefined) throw usageError('give --user NAME or --team NAME');
  const body = flags.user !== undefined ? { user: flags.user } : { team: flags.team };
  const updated = await (await ctx.client(cmd)).post<ResourceView>(`/resources/${seg(name)}/share`, body);
  const who = flags.user !== undefined ? flags.user : `team ${flags.team}`;
  ctx.print(`Shared ${updated.name} with ${who}.`);
}

export async function remove(ctx: Ctx, name: string, cmd: Command): Promise<void> {
  await (await ctx.client(cmd)).delete(`/resources/${seg(name)}`);
  ctx.print(`Removed ${name}.`);
}

export async function list(ctx: Ctx, flags: { json?: boolean }, cmd: Command): Promise<void> {
  const views = await (await ctx.client(cmd)).get<ResourceView[]>('/resources');
  if (flags.json) return ctx.printJson(views);
  if (views.length === 0) return ctx.print('No resources you can reach.');
  const now = ctx.now();
  const rows = views.map((v) => [v.name, v.type, v.protocol, describeResourceState(v, now, ctx.zone)]);
  ctx.print(formatTable(['NAME', 'TYPE', 'PROTOCOL', 'STATE'], rows));
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
