/**
 * The browser door's connections are timed from accept to the end of their first request head
 * (the listener's handshakeTimeoutMs: TLS and the head), and each later head on a kept-alive
 * connection by headersTimeoutMs: an idle socket, a half-sent head and a slow second head are
 * each closed, under the limit and over it, and audited. (The door's http.Server is handed its
 * connections and never listen()s, so Node's own header check has to be started by the door.)
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { HttpAdapter } from '../../protocols/http/index.js';
import { makeGateway, until, type GatewayHarness } from './gateway-harness.js';

let gw: GatewayHarness;
let l: Listener;
const HANDSHAKE_MS = 1_000;
// Longer than the listener's, so that a first head cut short is the listener's doing, never the server's.
const HEADERS_MS = 3_000;

beforeAll(async () => {
  gw = await makeGateway();
  l = await new HttpAdapter({ maxConnections: 2, handshakeTimeoutMs: HANDSHAKE_MS, headersTimeoutMs: HEADERS_MS }).listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem }, http: { appsDomain: 'apps.localhost' },
  });
});

afterAll(async () => {
  await l?.close();
  await gw?.cleanup();
});

interface Watched { closed: () => boolean; text: () => string }

function watch(s: Socket | TLSSocket): Watched {
  let closed = false;
  let text = '';
  s.on('error', () => undefined);
  s.on('data', (d: Buffer) => (text += d.toString('latin1')));
  s.on('close', () => (closed = true));
  return { closed: () => closed, text: () => text };
}

async function tcp(): Promise<{ s: Socket; w: Watched }> {
  const s = netConnect({ host: '127.0.0.1', port: l.address.port });
  const w = watch(s);
  await new Promise<void>((r) => s.once('connect', () => r()));
  return { s, w };
}

async function tls(): Promise<{ s: TLSSocket; w: Watched }> {
  const s = tlsConnect({ host: '127.0.0.1', port: l.address.port, servername: 'localhost', ca: gw.pki.caCertPem });
  const w = watch(s);
  await new Promise<void>((r, j) => {
    s.once('secureConnect', () => r());
    s.once('close', () => j(new Error('closed during the TLS handshake')));
  });
  return { s, w };
}

async function timeoutRows(): Promise<Array<Record<string, unknown>>> {
  return (await gw.store.listAudit({ action: 'door.refuse' })).map((e) => e.data).filter((d) => d.door === 'http' && d.code === 'handshake_timeout');
}

describe('HTTP door: connection timeouts', () => {
  it('closes a socket that never starts TLS and one that never finishes its first head, and audits both', async () => {
    const before = (await timeoutRows()).length;
    const idle = await tcp();
    const half = await tls();
    half.s.write('GET / HTTP/1.1\r\nHost: x.apps.localhost\r\n');
    await until(() => idle.w.closed() && half.w.closed(), 10 * HANDSHAKE_MS, 'both to be closed');
    expect(idle.w.text()).toBe('');
    // The audit is written asynchronously.
    let rows = await timeoutRows();
    for (const start = performance.now(); rows.length < before + 2 && performance.now() - start < 5_000; rows = await timeoutRows()) {
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(rows.slice(before).map((r) => r.detail)).toEqual([`no whole request head within ${HANDSHAKE_MS} ms`, `no whole request head within ${HANDSHAKE_MS} ms`]);
  });

  it('answers a slow second head on a kept-alive connection with 408 and closes it', async () => {
    const c = await tls();
    c.s.write('GET / HTTP/1.1\r\nHost: x.apps.localhost\r\n\r\n');
    await until(() => /\r\n\r\n/.test(c.w.text()), 10_000, 'the first answer');
    expect(c.w.closed()).toBe(false);
    const first = c.w.text().length;
    c.s.write('GET / HTTP/1.1\r\nHost: x.apps');
    await until(() => c.w.closed(), 10 * HEADERS_MS, 'the slow head to be cut');
    expect(c.w.text().slice(first)).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
  });

  it('frees the place of a connection over the limit that sends nothing, at the same timeout', async () => {
    const holders = [await tls(), await tls()];
    // Both places held by connections that sent a whole head (no longer on the listener's timer).
    for (const h of holders) h.s.write('GET / HTTP/1.1\r\nHost: x.apps.localhost\r\n\r\n');
    await until(() => holders.every((h) => /\r\n\r\n/.test(h.w.text())), 10_000, 'the holders\' answers');
    const over = await tcp();
    await until(() => over.w.closed(), 10 * HANDSHAKE_MS, 'the over-limit connection to be closed');
    expect(over.w.text()).toBe('');
    for (const h of holders) h.s.destroy();
  });
});
