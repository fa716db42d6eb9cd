import { Option, type Command } from 'commander';
import { SERVED_PROTOCOLS } from '../../../protocols/registry.js';
import { DirectoryAccessModes, RecordTypes } from '../../core/model.js';
import type { AddFlags } from '../actions/resources.js';
import { collect, intArg, type Ctx } from '../context.js';
import type { JitFlags } from '../jit-flags.js';

/** The command line only: what runs is in ../actions/resources.ts, loaded when a command runs. */
const run = () => import('../actions/resources.js');
const runJit = () => import('../actions/jit.js');

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
    .option('--allow-plaintext-upstream', 'lab targets only: allow a target without TLS (databases: SCRAM only; audited)')
    .addOption(new Option('--directory-access <mode>', 'ldap resources: what users may do (default read-only: search and compare)').choices(DirectoryAccessModes))
    .option('--base-dn <dn>', 'ldap resources: every operation must stay at or below this DN')
    .option('--ldaps', 'ldap resources: the directory speaks LDAPS (TLS from the first byte) rather than StartTLS (default for port 636)')
    .option('--tunnel-connection-limit <n>', 'tcp and rdp resources: connections one tunnel carries at once', intArg(1, 10_000))
    .option('--hand-out-credentials', "rdp resources: give the vaulted login to the user's RDP client at tunnel start (its stdin; audited)")
    .action(async (name: string, flags: AddFlags, cmd: Command) => (await run()).add(ctx, name, flags, cmd));
  resource
    .command('share')
    .description('put a user or a team on the access list')
    .argument('<name>', 'resource name')
    .addOption(new Option('--user <user>', 'user to add').conflicts('team'))
    .option('--team <team>', 'team to add')
    .action(async (name: string, flags: { user?: string; team?: string }, cmd: Command) => (await run()).share(ctx, name, flags, cmd));
  resource
    .command('remove')
    .description('remove a resource; its live sessions end at once')
    .argument('<name>', 'resource name')
    .action(async (name: string, _flags: unknown, cmd: Command) => (await run()).remove(ctx, name, cmd));
  resource
    .command('jit')
    .description('ephemeral accounts and privilege elevation of a resource: show them, or change them (flags merge onto the current settings)')
    .argument('<name>', 'resource name')
    .addOption(new Option('--ephemeral <on|off>', 'every grant logs in upstream as its own temporary account, removed when the grant ends').choices(['on', 'off']))
    .option('--grant <role>', 'a role (PostgreSQL, MySQL), group (Linux) or group DN (LDAP) the temporary account gets (repeatable; replaces the list)', collect)
    .option('--sudo <commands>', 'ssh: sudo for the temporary account: ALL, or absolute command paths separated by commas')
    .option('--ou <dn>', 'ldap: the OU temporary entries are made under')
    .option('--inheritor <role>', 'postgres: the role that inherits what the temporary account created (default gatehouse_inheritor)')
    .option('--max-connections <n>', 'mysql: MAX_USER_CONNECTIONS of the temporary account (default 10)', intArg(1, 1000))
    .option('--elevate <role>', "a role or group added to the vaulted account for the grant only (repeatable; replaces the list); 'off' stops elevating", collect)
    .option('--json', 'print raw JSON')
    .action(async (name: string, flags: JitFlags, cmd: Command) => (await runJit()).jit(ctx, name, flags, cmd));

  program
    .command('resources')
    .description('the resources you can reach, each with its workflow state for you')
    .option('--json', 'print raw JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => (await run()).list(ctx, flags, cmd));
}
