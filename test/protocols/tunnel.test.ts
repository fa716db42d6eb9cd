/**
 * The tunnel door's own edges, with the door in process and raw WebSocket clients: data
 * sockets without a live tunnel's token, used and foreign tickets, the connection limit,
 * oversized messages, a client that never reads, and half-close. The targets are small TCP
 * servers written here: an echo that answers after the client's end of stream, and a
 * flood — test tools for those behaviours (the real targets are in the e2e and contract tests).
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { silentLogger } from '../../src/core/log.js';
import type { ResourceOptions } from '../../src/core/model.js';
import { CONNECT_PATH, OPEN_PATH, SECRET_SCHEME, type ControlMessage } from '../../protocols/tunnel/codec.js';
import { TunnelDoor } from '../../protocols/tunnel/session.js';
import { eventually, within } from './contract-driver.js';
import { GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from './gateway-harness.js';

let gw: GatewayHarness;
let api: Server;
let base: string;
let door: TunnelDoor;
const targets: NetServer[] = [];

beforeEach(async () => {
  gw = await makeGateway();
  door = new TunnelDoor({ tcp: gw.broker.portFor({ protocol: 'tcp', loginExample: '' }, silentLogger), rdp: gw.broker.portFor({ protocol: 'rdp', loginExample: '' }, silentLogger) });
  api = createHttpServer((_q, r) => r.end());
  api.on('upgrade', (req, socket, head) => void door.upgrade(req, socket, head));
  await new Promise<void>((r) => api.listen(0, '127.0.0.1', r));
  base = `ws://127.0.0.1:${(api.address() as AddressInfo).port}`;
});
/** Every client socket a test opened, closed after it whatever state it is in. */
const clients = new Set<WebSocket>();

afterEach(async () => {
  for (const ws of clients) ws.terminate();
  clients.clear();
  // The broker's shutdown ends the live tunnels, which closes their sockets on the door's side.
  await gw.cleanup();
  api.closeAllConnections();
  api.close();
  for (const t of targets.splice(0)) t.close();
});

/** A TCP target: `onSocket` decides how it behaves. */
async function target(onSocket: (s: Socket) => void): Promise<number> {
  const server = createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    onSocket(s);
  });
  targets.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as AddressInfo).port;
}

/** Echoes everything, and only after the client's end of stream says how much it got, then ends. */
const echoUntilEnd = (s: Socket): void => {
  let n = 0;
  s.on('data', (d: Buffer) => {
    n += d.length;
    s.write(d);
  });
  s.on('end', () => s.end(`\nreceived ${n}\n`));
};

async function resource(name: string, port: number, options: ResourceOptions = {}): Promise<void> {
  await gw.addResource({ name, type: 'machine', protocol: 'tcp', host: '127.0.0.1', port, settings: {}, options });
}

type Opened = { ok: true; control: WebSocket; ready: Extract<ControlMessage, { type: 'ready' }> } | { ok: false; status: number; error: { code: string; message: string } };

function open(login: string, secret: string): Promise<Opened> {
  return new Promise((resolve) => {
    const control = new WebSocket(`${base}${OPEN_PATH}?login=${encodeURIComponent(login)}&protocol=tcp`, { headers: { authorization: `${SECRET_SCHEME} ${secret}` } });
    clients.add(control);
    control.on('error', () => {});
    control.once('unexpected-response', (_q, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ ok: false, status: res.statusCode ?? 0, error: (JSON.parse(body) as { error: { code: string; message: string } }).error }));
    });
    control.once('message', (d) => resolve({ ok: true, control, ready: JSON.parse(String(d)) as Extract<ControlMessage, { type: 'ready' }> }));
  });
}

function data(token: string | undefined): Promise<{ ws: WebSocket; status: number; body?: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${base}${CONNECT_PATH}`, token ? { headers: { authorization: `Bearer ${token}` } } : {});
    clients.add(ws);
    ws.on('error', () => {});
    ws.once('open', () => resolve({ ws, status: 101 }));
    ws.once('unexpected-response', (_q, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ ws, status: res.statusCode ?? 0, body }));
    });
  });
}

async function opened(login: string, secret = GATEWAY_PASSWORD): Promise<Extract<Opened, { ok: true }>> {
  const o = await open(login, secret);
  if (!o.ok) throw new Error(`refused: ${JSON.stringify(o)}`);
  return o;
}

describe('tunnel door: who may carry a connection', () => {
  it('refuses a data socket without a token, with an unknown one, and with the token of an ended tunnel', async () => {
    await resource('echo', await target(echoUntilEnd));
    expect((await data(undefined)).status).toBe(401);
    expect((await data('not-a-token')).status).toBe(401);
    const t = await opened('alice:echo');
    expect((await data(t.ready.token)).status).toBe(101);
    t.control.close(1000);
    expect(await eventually(() => door.live === 0)).toBe(true);
    const after = await data(t.ready.token);
    expect(after.status).toBe(401);
    expect(after.body).toContain('without a live tunnel');
    const audited = await gw.store.listAudit({ action: 'door.refuse' });
    expect(audited.filter((e) => e.data.door === 'tcp').length).toBeGreaterThanOrEqual(3);
  });

  it('refuses a used ticket and a ticket for another resource at the start, and leaves the latter valid', async () => {
    await resource('echo', await target(echoUntilEnd));
    await resource('other', await target(echoUntilEnd));
    const { ticket } = await gw.engine.mfa.issueTicket('alice', 'echo', false);
    const first = await opened('alice:echo', ticket);
    first.control.close(1000);
    const again = await open('alice:echo', ticket);
    expect(again).toMatchObject({ ok: false, status: 401, error: { code: 'bad_ticket' } });
    const foreign = await gw.engine.mfa.issueTicket('alice', 'other', false);
    expect(await open('alice:echo', foreign.ticket)).toMatchObject({ ok: false, error: { code: 'ticket_other_resource' } });
    expect((await gw.engine.mfa.peekTicket(foreign.ticket))?.usedAt).toBeUndefined();
  });

  it('holds the resource connection limit', async () => {
    await resource('limited', await target(echoUntilEnd), { tunnelConnectionLimit: 1 });
    const t = await opened('alice:limited');
    expect(t.ready.connectionLimit).toBe(1);
    const one = await data(t.ready.token);
    expect(one.status).toBe(101);
    const two = await data(t.ready.token);
    expect(two.status).toBe(429);
    expect(two.body).toContain('limit of 1');
    one.ws.close();
    expect(await eventually(async () => (await data(t.ready.token)).status === 101)).toBe(true);
  });
});

describe('tunnel door: the bytes', () => {
  it('carries a half-close: the target sees the end of stream and can still answer', async () => {
    await resource('echo', await target(echoUntilEnd));
    const t = await opened('alice:echo');
    const { ws } = await data(t.ready.token);
    const got: Buffer[] = [];
    let eof = false;
    ws.on('message', (m: Buffer) => {
      if (m.length === 0) eof = true;
      else got.push(m);
    });
    ws.send(Buffer.from('hello tunnel'), { binary: true });
    ws.send(Buffer.alloc(0), { binary: true }); // our end of stream
    expect(await eventually(() => eof)).toBe(true);
    expect(Buffer.concat(got).toString()).toBe('hello tunnel\nreceived 12\n');
  });

  it('closes a data socket that sends a message over the limit (1009), and the other connections carry on', async () => {
    await resource('echo', await target(echoUntilEnd));
    const t = await opened('alice:echo');
    const big = await data(t.ready.token);
    const fine = await data(t.ready.token);
    const closed = new Promise<number>((r) => big.ws.once('close', (code) => r(code)));
    big.ws.send(Buffer.alloc(2 * 1024 * 1024), { binary: true });
    expect(await within(closed, 5_000, 'the oversized socket to close')).toBe(1009);
    const echoed = new Promise<string>((r) => fine.ws.once('message', (m) => r(String(m))));
    fine.ws.send(Buffer.from('still here'), { binary: true });
    expect(await within(echoed, 5_000, 'the echo')).toBe('still here');
  });

  it('does not buffer without bound for a client that never reads', async () => {
    // The target floods 64 MiB as fast as the gateway takes it.
    const chunk = Buffer.alloc(1024 * 1024, 0x61);
    let sent = 0;
    await resource('flood', await target((s) => {
      const pump = (): void => {
        while (sent < 64 * chunk.length) {
          sent += chunk.length;
          if (!s.write(chunk)) return void s.once('drain', pump);
        }
        s.end();
      };
      pump();
    }));
    const before = process.memoryUsage().arrayBuffers;
    const t = await opened('alice:flood');
    const { ws } = await data(t.ready.token);
    // The client stops reading its socket: nothing more leaves the kernel buffers.
    (ws as unknown as { _socket: Socket })._socket.pause();
    let last = -1;
    let still = 0;
    expect(await eventually(async () => {
      await new Promise((r) => setTimeout(r, 100));
      still = sent === last ? still + 1 : 0;
      last = sent;
      return still >= 5;
    }, 30_000)).toBe(true);
    expect(sent, 'the target was held back').toBeLessThan(64 * chunk.length);
    expect(process.memoryUsage().arrayBuffers - before, 'buffer memory the gateway queued').toBeLessThan(32 * 1024 * 1024);
    ws.terminate();
  });
});

describe('tunnel door: teardown', () => {
  it('sends the warning before expiry on the control socket (gatehouse tunnel prints it)', async () => {
    await gw.addResource({
      name: 'jit', type: 'machine', protocol: 'tcp', host: '127.0.0.1', port: await target(echoUntilEnd),
      settings: { limitAccessTime: { timezone: 'Europe/Berlin', schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '18:00' }], maxDurationMinutes: 120 }, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' } },
    });
    await gw.approve('alice', 'jit');
    const t = await opened('alice:jit');
    const warning = new Promise<ControlMessage>((r) => t.control.on('message', (d) => {
      const m = JSON.parse(String(d)) as ControlMessage;
      if (m.type === 'warning') r(m);
    }));
    const s = gw.broker.live()[0]!;
    expect(s.decision.warnAt).toBeDefined();
    gw.clock.set(s.decision.warnAt!);
    const w = await within(warning, 5_000, 'the warning');
    expect(w).toMatchObject({ type: 'warning' });
    expect((w as { message: string }).message).toMatch(/jit/);
  });

  it('closes every carried connection on both sides and the control socket with 1008 and the reason', async () => {
    // Connections open at the target (the door's reachability probe comes and goes first).
    let atTarget = 0;
    await gw.addResource({ name: 'single', type: 'machine', protocol: 'tcp', host: '127.0.0.1', port: await target((s) => {
      atTarget++;
      s.on('close', () => atTarget--);
      s.on('end', () => s.end());
      s.resume();
    }), settings: { limitAccessTime: { timezone: 'Europe/Berlin', schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '08:00', end: '18:00' }], maxDurationMinutes: 120 }, singleUser: true } });
    await gw.engine.leases.checkout('alice', 'single');
    const t = await opened('alice:single');
    const carried = await Promise.all([data(t.ready.token), data(t.ready.token)]);
    expect(await eventually(() => atTarget === 2)).toBe(true);
    const closes = carried.map((c) => new Promise<number>((r) => c.ws.once('close', (code) => r(code))));
    const control = new Promise<{ code: number; reason: string }>((r) => t.control.once('close', (code, reason) => r({ code, reason: reason.toString() })));
    const t0 = performance.now();
    await gw.engine.leases.forceCheckin('bob', 'single', 'incident 5');
    expect(await within(Promise.all(closes), 1_000, 'the carried connections to close')).toEqual([1008, 1008]);
    const c = await within(control, 1_000, 'the control socket to close');
    expect(c).toMatchObject({ code: 1008 });
    expect(c.reason).toContain('single was force checked in by bob: incident 5');
    expect(performance.now() - t0).toBeLessThan(1_000);
    expect(await eventually(() => atTarget === 0, 1_000)).toBe(true);
  });
});
