/** What `gatehouse launch`, `connect`, `key add` do; loaded only when one of them runs (../commands/launch.ts declares them). */
import { spawn } from 'node:child_process';
import { closeSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { LaunchResponse } from '../../api/wire.js';
import { CliError, usageError } from '../cli-error.js';
import type { Ctx } from '../context.js';
import { formatLocalTime } from '../format.js';
import { promptHidden } from '../io.js';
import { stockClient } from '../stock-client.js';

export async function launchTicket(ctx: Ctx, resource: string, flags: { totp?: string; json?: boolean }, cmd: Command): Promise<void> {
  const res = await launch(ctx, cmd, resource, flags.totp);
  if (flags.json) return ctx.printJson(res);
  ctx.print(`Ticket for ${res.resource} (single use, valid until ${formatLocalTime(res.expiresAt, ctx.now(), ctx.zone)}):`);
  ctx.print(`  ${res.ticket}`);
  ctx.print('Connect with (give the ticket as the password):');
  ctx.print(`  ${res.command}`);
}

export async function connect(ctx: Ctx, resource: string, flags: { totp?: string }, cmd: Command): Promise<void> {
  const res = await launch(ctx, cmd, resource, flags.totp);
  // A desktop: a tunnel started with this very ticket, then the local RDP client at it.
  if (res.protocol === 'rdp') return (await import('./tunnel.js')).connectRdp(ctx, resource, flags, cmd, res);
  if (res.protocol === 'tcp') throw new CliError('USAGE', `${res.resource} is reached through a tunnel: gatehouse tunnel ${res.resource} --port N, then point your client at it`, { exitCode: 2 });
  if (!res.invocation) {
    ctx.print(`Open: ${res.command}`);
    return;
  }
  // What runs is decided here, not by the gateway's answer (stock-client.ts). The ticket
  // travels in the client's environment or on its standard input, never on its command line.
  const inv = stockClient(res);
  if (res.protocol === 'http') return openInBrowser(ctx, inv.args[0]!);
  const stdin = inv.stdin !== undefined ? ticketInput(inv.stdin) : 'inherit';
  const code = await new Promise<number>((resolve, reject) => {
    const child = spawn(inv.program, inv.args, { stdio: [stdin, 'inherit', 'inherit'], env: { ...ctx.io.env, ...inv.env } });
    if (typeof stdin === 'number') closeSync(stdin);
    child.once('error', (e: NodeJS.ErrnoException) =>
      reject(new CliError('CLIENT_MISSING', e.code === 'ENOENT' ? `${inv.program} is not installed (it is the client for ${res.protocol} resources)` : e.message)),
    );
    child.once('exit', (c, signal) => resolve(c ?? (signal ? 128 : 1)));
  });
  if (code !== 0) throw new CliError('CLIENT_EXIT', `${inv.program} exited with status ${code}`);
}

/** The enter link of a browser resource: xdg-open where there is a desktop, else printed to open by hand. */
async function openInBrowser(ctx: Ctx, url: string): Promise<void> {
  const opened = await new Promise<boolean>((resolve) => {
    const child = spawn('xdg-open', [url], { stdio: 'ignore', env: ctx.io.env });
    child.once('error', () => resolve(false));
    child.once('exit', (code) => resolve(code === 0));
  });
  if (!opened) ctx.print(`Open in your browser (single use): ${url}`);
  else ctx.print('Opened in your browser.');
}

/**
 * A file descriptor whose contents are `text`, for a client that reads its password from
 * /dev/stdin (OpenLDAP's -y). Node's stdio pipes are sockets, which /dev/stdin cannot be
 * opened on; a file can. It lives in a private directory and is unlinked before the client
 * starts, so the ticket is never left on disk.
 */
function ticketInput(text: string): number {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-ticket-'));
  try {
    const file = join(dir, 'ticket');
    writeFileSync(file, text, { mode: 0o600 });
    return openSync(file, 'r');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function addKey(ctx: Ctx, file: string, cmd: Command): Promise<void> {
  const publicKey = await readPublicKey(file);
  const res = await (await ctx.client(cmd)).post<{ keys: string[] }>('/keys', { publicKey });
  ctx.print(`Added ${publicKey.split(' ')[0]} key from ${file}; you have ${res.keys.length} key${res.keys.length === 1 ? '' : 's'}.`);
}

export async function listKeys(ctx: Ctx, flags: { json?: boolean }, cmd: Command): Promise<void> {
  const res = await (await ctx.client(cmd)).get<{ keys: string[] }>('/keys');
  if (flags.json) return ctx.printJson(res);
  if (res.keys.length === 0) return ctx.print('No SSH keys; add one with gatehouse key add FILE.');
  for (const k of res.keys) ctx.print(k);
}

/** POST /launch, asking for a TOTP code on a terminal when the resource wants one. */
export async function launch(ctx: Ctx, cmd: Command, resource: string, totp: string | undefined): Promise<LaunchResponse> {
  const client = await ctx.client(cmd);
  const body: { resource: string; totp?: string } = { resource };
  if (totp) body.totp = totp;
  try {
    return await client.post<LaunchResponse>('/launch', body);
  } catch (e) {
    if (!(e instanceof CliError && e.code === 'MFA_REQUIRED' && !totp && ctx.io.stdin.isTTY)) throw e;
    body.totp = await promptHidden(ctx.io, 'TOTP code: ', '--totp CODE');
    return client.post<LaunchResponse>('/launch', body);
  }
}

async function readPublicKey(file: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw usageError(`cannot read ${file}: ${(e as Error).message}`);
  }
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  if (lines.length !== 1 || !/^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+( .*)?$/.test(lines[0]!)) {
    const hint = text.includes('PRIVATE KEY') ? ' (that is a private key: give the .pub file)' : '';
    throw usageError(`${file} is not a one-line OpenSSH public key${hint}`);
  }
  return lines[0]!;
}
