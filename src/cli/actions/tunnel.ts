/**
 * `gatehouse tunnel RES`: a local listener whose every connection is carried over its own
 * WebSocket through the gateway to the resource (protocols/tunnel/). The tunnel starts with a
 * launch ticket (TOTP asked for when the resource wants MFA), is one broker session, and ends
 * when the gateway says so: every carried connection closes, the listener closes, and the
 * command exits non-zero with the reason. It never reconnects on its own: a lost gateway is a
 * clean failure, and a new tunnel is a new decision.
 */
import { spawn } from 'node:child_process';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { Command } from 'commander';
import WebSocket, { type RawData } from 'ws';
import type { LaunchResponse } from '../../api/wire.js';
import type { ApiClient } from '../client.js';
import { CliError } from '../cli-error.js';
import type { Ctx } from '../context.js';
import { formatLocalTime } from '../format.js';
import { launch } from './launch.js';
import { CONNECT_PATH, OPEN_PATH, SECRET_SCHEME, type ControlMessage } from '../../../protocols/tunnel/codec.js';

export interface TunnelFlags {
  port?: number;
  bind?: string;
  totp?: string;
}

/** Bytes queued towards one side before the other is paused. */
const HIGH_WATER = 1024 * 1024;
/** Largest message the CLI sends (the gateway accepts up to 1 MiB). */
const CHUNK = 64 * 1024;

type Ready = Extract<ControlMessage, { type: 'ready' }>;

/** How a tunnel ended: the gateway ended it (with its reason), the link was lost, or the user closed it. */
export interface TunnelEnd {
  how: 'gateway' | 'lost' | 'user';
  message: string;
}

/** A running tunnel: its listener address, the ready message, and how it ended. */
export interface RunningTunnel {
  address: AddressInfo;
  ready: Ready;
  /** Resolves with the reason when the gateway ends the tunnel, the link to it is lost, or the user closed it. */
  ended: Promise<TunnelEnd>;
  close(): void;
}

const apiPath = (client: ApiClient, path: string): string => client.wsUrl(path.replace(/^\/api\/v1/, ''));

/** The control socket's refusal body, as one line. */
async function refusalText(res: import('node:http').IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res) chunks.push(c as Buffer);
  try {
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { error?: { code?: string; message?: string; hint?: string } };
    const e = body.error ?? {};
    return `${e.message ?? 'refused'} (${e.code ?? res.statusCode})${e.hint ? ` To fix: ${e.hint}` : ''}`;
  } catch {
    return `the gateway refused the tunnel (HTTP ${res.statusCode})`;
  }
}

/** Opens the tunnel: launch, control socket, local listener. */
export async function openTunnel(ctx: Ctx, cmd: Command, resource: string, flags: TunnelFlags, log: (line: string) => void, launched?: LaunchResponse): Promise<RunningTunnel> {
  const client = await ctx.client(cmd);
  const res = launched ?? (await launch(ctx, cmd, resource, flags.totp));
  if (res.protocol !== 'tcp' && res.protocol !== 'rdp') throw new CliError('USAGE', `${res.resource} is a ${res.protocol} resource: connect to it with gatehouse connect ${res.resource}`, { exitCode: 2 });
  const user = (await client.get<{ name: string }>('/me')).name;
  const tls = client.caPem !== undefined ? { ca: client.caPem } : {};
  const control = new WebSocket(`${apiPath(client, OPEN_PATH)}?login=${encodeURIComponent(`${user}:${res.resource}`)}&protocol=${res.protocol}`, {
    headers: { authorization: `${SECRET_SCHEME} ${res.ticket}` }, ...tls, perMessageDeflate: false,
  });
  const ready = await new Promise<Ready>((resolve, reject) => {
    control.once('unexpected-response', (_req, r) => void refusalText(r).then((t) => reject(new CliError('TUNNEL_REFUSED', t, { ...(r.statusCode ? { status: r.statusCode } : {}) }))));
    control.once('error', (e) => reject(new CliError('NETWORK', `cannot reach the gateway for the tunnel: ${e.message}`)));
    control.once('message', (data: RawData) => {
      const m = JSON.parse(String(data)) as ControlMessage;
      if (m.type === 'ready') resolve(m);
      else reject(new CliError('FORBIDDEN', m.type === 'ended' ? m.message : 'unexpected message from the gateway'));
    });
  });
  const carried = new Set<{ local: Socket; ws: WebSocket }>();
  const server: Server = createServer({ allowHalfOpen: true, noDelay: true }, (local) => carry(local));
  let endedBy: ((v: TunnelEnd) => void) | undefined;
  const ended = new Promise<TunnelEnd>((r) => (endedBy = r));
  let finished = false;
  let closing = false;
  const finish = (how: TunnelEnd['how'], message: string): void => {
    if (finished) return;
    finished = true;
    server.close();
    for (const c of carried) {
      c.local.destroy();
      c.ws.terminate();
    }
    endedBy?.({ how, message });
  };
  control.on('message', (data: RawData) => {
    const m = JSON.parse(String(data)) as ControlMessage;
    if (m.type === 'warning') log(m.message);
    // A gateway that stops ends its tunnels too: this one must be started again, by the user.
    else if (m.type === 'ended') finish('gateway', m.reason === 'shutdown' ? `${m.message} Start it again with: gatehouse tunnel ${res.resource}` : m.message);
  });
  control.on('close', (code, reason) => {
    if (closing) finish('user', 'the tunnel was closed');
    else if (code === 1008) finish('gateway', reason.toString() || 'the tunnel was ended by the gateway.');
    // Never a silent reconnect: a lost gateway ends the tunnel, and a new one is a new decision.
    else finish('lost', `the connection to the gateway was lost (${code}); the tunnel is closed. Start it again with: gatehouse tunnel ${res.resource}`);
  });
  control.on('error', () => {});

  function carry(local: Socket): void {
    if (finished) return void local.destroy();
    const c = carryConnection(local, apiPath(client, CONNECT_PATH), ready.token, tls, log);
    carried.add(c);
    c.ws.once('close', () => carried.delete(c));
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) => reject(new CliError('USAGE', `cannot listen on ${flags.bind ?? '127.0.0.1'}:${flags.port ?? 0}: ${e.message}`, { exitCode: 2 })));
    server.listen(flags.port ?? 0, flags.bind ?? '127.0.0.1', () => resolve());
  }).catch((e: unknown) => {
    control.close(1000);
    throw e;
  });
  return {
    address: server.address() as AddressInfo, ready, ended,
    close: () => {
      closing = true;
      control.close(1000);
    },
  };
}

/**
 * One local connection carried over its own data WebSocket: bytes both ways with
 * backpressure, a zero-length message for an end of stream (half-close), and the gateway's
 * refusal of the connection (a limit, an ended tunnel) printed through `log`.
 */
export function carryConnection(local: Socket, url: string, token: string, tls: { ca?: string }, log: (line: string) => void): { local: Socket; ws: WebSocket } {
  local.on('error', () => {});
  const ws = new WebSocket(url, { headers: { authorization: `Bearer ${token}` }, ...tls, perMessageDeflate: false });
  const c = { local, ws };
  local.pause();
  ws.on('error', () => {});
  ws.once('unexpected-response', (_req, r) => {
    void refusalText(r).then((t) => log(`Gatehouse: ${t}`));
    local.destroy();
  });
  ws.once('open', () => local.resume());
  let localEnded = false;
  let remoteEnded = false;
  local.on('data', (chunk: Buffer) => {
    for (let i = 0; i < chunk.length; i += CHUNK) {
      ws.send(chunk.subarray(i, i + CHUNK), { binary: true }, () => {
        if (ws.bufferedAmount < HIGH_WATER && local.isPaused()) local.resume();
      });
    }
    if (ws.bufferedAmount >= HIGH_WATER) local.pause();
  });
  local.on('end', () => {
    localEnded = true;
    if (ws.readyState === WebSocket.OPEN) ws.send(Buffer.alloc(0), { binary: true });
    if (remoteEnded) ws.close(1000);
  });
  ws.on('message', (data: RawData) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    if (buf.length === 0) {
      remoteEnded = true;
      local.end();
      if (localEnded) ws.close(1000);
      return;
    }
    if (!local.write(buf)) ws.pause();
  });
  local.on('drain', () => ws.resume());
  local.on('close', () => {
    ws.resume();
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close(1000);
  });
  ws.on('close', () => local.destroy());
  return c;
}

/** `gatehouse tunnel RES`: runs until the gateway ends the tunnel (exit 1 with the reason) or Ctrl-C (exit 0). */
export async function tunnel(ctx: Ctx, resource: string, flags: TunnelFlags, cmd: Command): Promise<void> {
  const t = await openTunnel(ctx, cmd, resource, flags, (line) => ctx.io.stderr(`${line}\n`));
  const until = t.ready.deadline ? ` until ${formatLocalTime(t.ready.deadline, ctx.now(), ctx.zone)}` : '';
  ctx.print(`Tunnel to ${t.ready.resource} (${t.ready.protocol}) listening on ${t.address.address}:${t.address.port}${until}. Ctrl-C ends it.`);
  const stop = (): void => t.close();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  const end = await t.ended;
  process.off('SIGINT', stop);
  process.off('SIGTERM', stop);
  if (end.how !== 'user') throw new CliError('TUNNEL_ENDED', withoutPrefix(end.message), { exitCode: 1 });
}

/** The CLI prints `gatehouse: ` before an error; the gateway's own sentences start with `Gatehouse: `. */
const withoutPrefix = (m: string): string => m.replace(/^Gatehouse: /, '');

/**
 * `gatehouse connect` for an RDP resource: a tunnel on a free local port, then the local
 * FreeRDP client pointed at it. The vaulted login goes to FreeRDP's standard input
 * (`/from-stdin`), never its command line, and only where the resource hands it out.
 */
export async function connectRdp(ctx: Ctx, resource: string, flags: { totp?: string }, cmd: Command, launched?: LaunchResponse): Promise<void> {
  const t = await openTunnel(ctx, cmd, resource, { ...flags, port: 0 }, (line) => ctx.io.stderr(`${line}\n`), launched);
  const target = `127.0.0.1:${t.address.port}`;
  const creds = t.ready.credentials;
  const args = [`/v:${target}`, '/cert:ignore', ...(creds ? [`/u:${creds.login}`, '/from-stdin'] : [])];
  let endedFirst: TunnelEnd | undefined;
  const code = await new Promise<number | 'missing'>((resolve) => {
    const child = spawn('xfreerdp', args, { stdio: [creds ? 'pipe' : 'inherit', 'inherit', 'inherit'], env: ctx.io.env });
    if (creds) child.stdin?.end(`${creds.password ?? ''}\n`);
    child.once('error', () => resolve('missing'));
    child.once('exit', (c) => resolve(c ?? 1));
    // The gateway ended the tunnel: the RDP client goes too, and the reason is what the user reads.
    void t.ended.then((e) => {
      endedFirst = e;
      child.kill('SIGTERM');
    });
  });
  if (code === 'missing') {
    ctx.print(`No xfreerdp here: point your RDP client at ${target} (mstsc: full address:s:${target}). The tunnel stays open until Ctrl-C.`);
    const end = await t.ended;
    if (end.how !== 'user') throw new CliError('TUNNEL_ENDED', withoutPrefix(end.message), { exitCode: 1 });
    return;
  }
  if (endedFirst && endedFirst.how !== 'user') throw new CliError('TUNNEL_ENDED', withoutPrefix(endedFirst.message), { exitCode: 1 });
  t.close();
  if (code !== 0) throw new CliError('CLIENT_EXIT', `xfreerdp exited with status ${code}`);
}
