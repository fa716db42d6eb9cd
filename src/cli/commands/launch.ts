import type { Command } from 'commander';
import { intArg, type Ctx } from '../context.js';

/** The command line only: what runs is in ../actions/launch.ts, loaded when a command runs. */
const run = () => import('../actions/launch.js');
const tunnelRun = () => import('../actions/tunnel.js');

/** Launch tickets and SSH keys: what a user needs to connect with a stock client. */
export function registerLaunch(program: Command, ctx: Ctx): void {
  program
    .command('launch')
    .description('get a one-time launch ticket and the exact client command for a resource')
    .argument('<resource>', 'resource name')
    .option('--totp <code>', 'current TOTP code (MFA resources)')
    .option('--json', 'print raw JSON')
    .action(async (resource: string, flags: { totp?: string; json?: boolean }, cmd: Command) => (await run()).launchTicket(ctx, resource, flags, cmd));

  program
    .command('connect')
    .description('launch and start the stock client (psql, mysql, ssh) with the one-time ticket')
    .argument('<resource>', 'resource name')
    .option('--totp <code>', 'current TOTP code (MFA resources)')
    .action(async (resource: string, flags: { totp?: string }, cmd: Command) => (await run()).connect(ctx, resource, flags, cmd));

  program
    .command('tunnel')
    .description('carry local TCP connections through the gateway to a tcp or rdp resource (RDP, Redis, SQL Server...)')
    .argument('<resource>', 'resource name')
    .option('--port <port>', 'local port to listen on (0 = pick one and print it)', intArg(0, 65535), 0)
    .option('--bind <host>', 'local address to listen on', '127.0.0.1')
    .option('--totp <code>', 'current TOTP code (MFA resources)')
    .action(async (resource: string, flags: { port?: number; bind?: string; totp?: string }, cmd: Command) => (await tunnelRun()).tunnel(ctx, resource, flags, cmd));

  const key = program.command('key').description('your SSH public keys, for ssh through the gateway');
  key
    .command('add')
    .description('add an OpenSSH public key (e.g. ~/.ssh/id_ed25519.pub)')
    .argument('<file>', 'public key file')
    .action(async (file: string, _flags: unknown, cmd: Command) => (await run()).addKey(ctx, file, cmd));
  key
    .command('list')
    .description('your SSH public keys')
    .option('--json', 'print raw JSON')
    .action(async (flags: { json?: boolean }, cmd: Command) => (await run()).listKeys(ctx, flags, cmd));
}
