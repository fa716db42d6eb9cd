/**
 * The browser door over its listener's maxConnections (protocols/shared/listener.ts takes up
 * to BUSY_HEADROOM connections past the limit, flagged `overLimit`): with the only place held
 * by an idle TLS connection, a request gets the gateway's own 503 page with Retry-After and
 * the connection closes, a WebSocket upgrade gets a bare 503, each is audited as a door.refuse
 * (too_many_connections) with the client's address, and once the holder leaves the same
 * listener serves nginx again.
 */
import { readFileSync } from 'node:fs';
import { Agent, request as httpsRequest } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { HttpAdapter } from '../../protocols/http/index.js';
import { startNginx, type NginxTarget } from '../targets/index.js';
import { eventually, within } from './contract-driver.js';
import { httpsGet, type Reply } from './http-client.js';
import { makeGateway, type GatewayHarness } from './gateway-harness.js';

const APPS = 'apps.localhost';
/** The catalogue's sentence for too_many_connections, as the gateway's page says it. */
const TOO_MANY = 'Gatehouse: the gateway has too many connections; try again shortly.';

let nginx: NginxTarget;
beforeAll(async () => {
  nginx = await startNginx();
});
afterAll(async () => {
  await nginx?.stop();
});

let gw: GatewayHarness;
let listener: Listener;
/** Sockets a test opened, destroyed after it whatever happened. */
const opened: TLSSocket[] = [];
beforeEach(async () => {
  gw = await makeGateway();
  listener = await new HttpAdapter({ maxConnections: 1, upstreamCa: { nginx: readFileSync(nginx.ca, 'utf8') } }).listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem },
    http: { appsDomain: APPS, vaultUrl: 'http://127.0.0.1:8080/' },
  });
  await gw.addResource({
    name: 'nginx', type: 'browser', protocol: 'http', host: '127.0.0.1', port: nginx.port,
    credentials: { login: nginx.user, password: nginx.password }, settings: {}, options: { httpAuth: { kind: 'basic' } },
  });
});
afterEach(async () => {
  for (const s of opened.splice(0)) s.destroy();
  await listener?.close();
  await gw?.cleanup();
});

const hostOf = (name: string): string => `${name}.${APPS}:${listener.address.port}`;
const origin = (name: string): string => `https://${hostOf(name)}`;

/** One HTTPS request to the gateway for `host`, trusting only the gateway's CA (the suite's client). */
const get = (host: string, path: string, headers: Record<string, string> = {}): Promise<Reply> => httpsGet(listener.address.port, gw.pki.caCertPem, host, path, headers);

/** An idle TLS connection to the listener, handshake done: the gateway has taken it (and, first, the only place). */
async function holdThePlace(): Promise<TLSSocket> {
  const s = tlsConnect({ host: '127.0.0.1', port: listener.address.port, servername: 'localhost', ca: gw.pki.caCertPem });
  opened.push(s);
  await within(new Promise<void>((resolve, reject) => {
    s.once('secureConnect', resolve);
    s.once('error', reject);
  }), 10_000, 'the holder\'s TLS handshake');
  s.on('error', () => {});
  return s;
}

/**
 * A request over TLS from a client that leaves the connection open on its side (no FIN):
 * resolves with what came back once the gateway closes it, and the client's address.
 */
function rawRequest(head: string): Promise<{ text: string; client: string }> {
  const s = tlsConnect({ host: '127.0.0.1', port: listener.address.port, servername: 'localhost', ca: gw.pki.caCertPem }, () => s.write(head));
  opened.push(s);
  let text = '';
  s.on('data', (d: Buffer) => (text += d.toString()));
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    // The gateway's FIN: this side never ends the connection.
    s.once('end', () => resolve({ text, client: `127.0.0.1:${s.localPort}` }));
  });
}

/** Audited refusals of the HTTP door for too many connections. */
async function busyRefusals(): Promise<Array<Record<string, unknown>>> {
  const rows = await gw.store.listAudit({ action: 'door.refuse' });
  return rows.map((e) => e.data).filter((d) => d.door === 'http' && d.code === 'too_many_connections');
}

/** A request on `agent` (a keep-alive one), with whether it went over a connection already open. */
function viaAgent(agent: Agent, host: string, path: string, headers: Record<string, string> = {}): Promise<Reply & { reused: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest({ host: '127.0.0.1', port: listener.address.port, path, servername: 'localhost', ca: gw.pki.caCertPem, headers: { host, ...headers }, agent }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, reused: req.reusedSocket }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('HTTP door: over maxConnections', () => {
  it('answers a request with its own 503 page and Retry-After, closes the connection, and audits the refusal with the client', async () => {
    await holdThePlace();

    const r = await within(get(hostOf('nginx'), '/private/'), 10_000, 'the over-limit answer');
    expect(r.status).toBe(503);
    expect(r.headers['retry-after']).toBe('1');
    expect(r.headers.connection).toBe('close');
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(r.body).toContain(TOO_MANY);
    expect(r.body).toContain('(too_many_connections)');
    // The gateway's page, never the app's: nginx was not reached.
    expect(r.body).not.toContain(nginx.password);
    expect(r.body).toContain('http://127.0.0.1:8080/');

    // A client that would keep the connection (HTTP/1.1, no Connection header): the gateway closes it after the 503.
    const kept = await within(rawRequest(`GET / HTTP/1.1\r\nHost: ${hostOf('nginx')}\r\n\r\n`), 10_000, 'the gateway to close the over-limit connection');
    expect(kept.text).toMatch(/^HTTP\/1\.1 503 Service Unavailable\r\n/);
    expect(kept.text).toMatch(/\r\nconnection: close\r\n/i);
    expect(kept.text).toMatch(/\r\nretry-after: 1\r\n/i);
    expect(kept.text).toContain(TOO_MANY);

    expect(await eventually(async () => (await busyRefusals()).length >= 2)).toBe(true);
    const rows = await busyRefusals();
    expect(rows).toHaveLength(2);
    for (const d of rows) {
      expect(d.client).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(d.detail).toBe('over maxConnections');
    }
    expect(rows.map((d) => d.client)).toContain(kept.client);
    // Nobody was signed in on them.
    expect(gw.broker.live()).toHaveLength(0);
  });

  it('answers the first of three pipelined requests with the 503 and closes: one answer on the wire, one audit row', async () => {
    await holdThePlace();
    const one = `GET / HTTP/1.1\r\nHost: ${hostOf('nginx')}\r\n\r\n`;
    const r = await within(rawRequest(one.repeat(3)), 10_000, 'the gateway to close the over-limit connection');
    expect(r.text.match(/HTTP\/1\.1 503 /g)).toHaveLength(1);
    expect(await eventually(async () => (await busyRefusals()).length >= 1)).toBe(true);
    // The pipelined two were never answered: not audited either.
    expect((await busyRefusals()).map((d) => d.client)).toEqual([r.client]);
  });

  it('answers a WebSocket upgrade with a bare 503 and audits it', async () => {
    await holdThePlace();

    const answer = await within(new Promise<{ status: number; retryAfter: unknown; client: string }>((resolve, reject) => {
      const ws = new WebSocket(`wss://127.0.0.1:${listener.address.port}/ws`, {
        headers: { host: hostOf('nginx') }, origin: origin('nginx'), ca: gw.pki.caCertPem, servername: 'localhost',
      } as WebSocket.ClientOptions);
      ws.once('open', () => reject(new Error('the WebSocket opened over maxConnections')));
      ws.once('error', reject);
      ws.once('unexpected-response', (req, res) => {
        resolve({ status: res.statusCode ?? 0, retryAfter: res.headers['retry-after'], client: `127.0.0.1:${res.socket.localPort}` });
        req.destroy();
      });
    }), 10_000, 'the over-limit upgrade answer');
    expect(answer.status).toBe(503);
    expect(answer.retryAfter).toBe('1');

    // The same upgrade from a client that keeps its side open: the bare 503, then the gateway's FIN.
    const kept = await within(rawRequest(`GET /ws HTTP/1.1\r\nHost: ${hostOf('nginx')}\r\nOrigin: ${origin('nginx')}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`
      + 'Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'), 10_000, 'the gateway to close the over-limit upgrade');
    expect(kept.text).toBe('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n');

    expect(await eventually(async () => (await busyRefusals()).length >= 2)).toBe(true);
    const rows = await busyRefusals();
    expect(rows).toHaveLength(2);
    expect(rows.map((d) => d.client).sort()).toEqual([answer.client, kept.client].sort());
    for (const d of rows) expect(d.detail).toBe('over maxConnections');
  });

  it('serves through the same listener again once the holder leaves', async () => {
    const holder = await holdThePlace();
    expect((await get(hostOf('nginx'), '/')).status).toBe(503);
    holder.destroy();

    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const { ticket } = await gw.engine.mfa.issueTicket('alice', 'nginx', false);
      // The gateway learns of the holder's close on its own time: a connection before that is still over the limit
      // (a 503 does not look at the ticket, so it is still good for the next try).
      let entered: (Reply & { reused: boolean }) | undefined;
      expect(await eventually(async () => {
        entered = await viaAgent(agent, hostOf('nginx'), `/.gatehouse/enter?user=alice&ticket=${encodeURIComponent(ticket)}`);
        return entered.status !== 503;
      })).toBe(true);
      expect(entered!.status, entered!.body).toBe(302);
      const cookie = String(entered!.headers['set-cookie']?.[0] ?? '').split(';', 1)[0]!;
      expect(cookie).toMatch(/^__Host-gatehouse=/);

      // The same connection, kept: the app behind it, signed in with the injected basic auth.
      const page = await viaAgent(agent, hostOf('nginx'), '/private/', { cookie });
      expect(page.status, page.body).toBe(200);
      expect(page.reused).toBe(true);
      expect(page.headers['retry-after']).toBeUndefined();
      expect(JSON.stringify(page.headers) + page.body).not.toContain(nginx.password);
      expect(gw.broker.live().filter((s) => s.resource.name === 'nginx')).toHaveLength(1);
    } finally {
      agent.destroy();
    }
  });
});
