/**
 * Every refusal over maxConnections gives its slot back: a client refused BUSY_HEADROOM + 8
 * times in a row is refused on the wire every time (never closed unanswered), on the HTTP,
 * PostgreSQL and MySQL doors, while one silent connection holds the only place.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { HttpAdapter } from '../../protocols/http/index.js';
import { MysqlAdapter } from '../../protocols/mysql/index.js';
import { PostgresAdapter } from '../../protocols/postgres/index.js';
import { BUSY_HEADROOM } from '../../protocols/shared/listener.js';
import { GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from './gateway-harness.js';

const ROUNDS = BUSY_HEADROOM + 8;

async function silent(port: number): Promise<Socket> {
  const socket = netConnect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  await new Promise<void>((r) => socket.once('connect', () => r()));
  return socket;
}

let gw: GatewayHarness;
const listeners: Listener[] = [];
beforeAll(async () => {
  gw = await makeGateway();
});
afterAll(async () => {
  for (const l of listeners) await l.close();
  await gw?.cleanup();
});
const tls = (): { cert: string; key: string; ca: string } => ({ cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem });

/** One HTTPS request that keeps its side open; what came back before the gateway closed. */
function httpOnce(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca: gw.pki.caCertPem }, () => s.write('GET / HTTP/1.1\r\nHost: x.apps.localhost\r\n\r\n'));
    let text = '';
    s.on('data', (d: Buffer) => (text += d.toString()));
    s.on('error', () => undefined);
    s.once('close', () => resolve(text));
  });
}

/**
 * With one silent connection holding `l`'s only place, `attempt` ROUNDS times in a row: what
 * each attempt read that was not `refused` (so the test expects none).
 */
async function notRefused<T>(l: Listener, attempt: (port: number) => Promise<T>, refused: T): Promise<T[]> {
  listeners.push(l);
  const holder = await silent(l.address.port);
  const got: T[] = [];
  for (let i = 0; i < ROUNDS; i++) got.push(await attempt(l.address.port));
  holder.destroy();
  return got.filter((g) => g !== refused);
}

describe('over-limit refusals give their slot back', () => {
  it(`HTTP: ${ROUNDS} over-limit requests in a row each get the 503`, async () => {
    const l = await new HttpAdapter({ maxConnections: 1 }).listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: tls(), http: { appsDomain: 'apps.localhost' } });
    const statusLine = async (port: number): Promise<string> => (await httpOnce(port)).split('\r\n', 1)[0]!;
    expect(await notRefused(l, statusLine, 'HTTP/1.1 503 Service Unavailable')).toEqual([]);
  });

  it(`PostgreSQL: ${ROUNDS} over-limit pg clients in a row each read 53300`, async () => {
    const l = await new PostgresAdapter({ maxConnections: 1 }).listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: tls() });
    const code = async (port: number): Promise<string> => {
      const c = new pg.Client({ host: 'localhost', port, user: 'alice:x', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem }, connectionTimeoutMillis: 5_000 });
      c.on('error', () => undefined);
      return c.connect().then(() => 'connected', (e: { code?: string; message?: string }) => e.code ?? e.message ?? '?');
    };
    expect(await notRefused(l, code, '53300')).toEqual([]);
  });

  it(`MySQL: ${ROUNDS} over-limit mysql2 clients in a row each read 1040`, async () => {
    const l = await new MysqlAdapter({ maxConnections: 1 }).listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: tls() });
    const errno = (port: number): Promise<number | string> =>
      mysql.createConnection({ host: '127.0.0.1', port, user: 'alice:x', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem }, connectTimeout: 5_000 })
        .then(async (c) => (await c.end(), 'connected'), (e: { errno?: number; code?: string }) => e.errno ?? e.code ?? '?');
    expect(await notRefused(l, errno, 1040)).toEqual([]);
  });
});
