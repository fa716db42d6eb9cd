/**
 * Hostile and broken clients: truncated, oversized and garbage startup packets, wrong
 * protocol versions, junk after SSLRequest, broken messages after login. Each gets a clean
 * PostgreSQL error (or a silent close where PostgreSQL is silent too), and the listener
 * keeps serving.
 */
import { randomBytes } from 'node:crypto';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import {
  decodeFields, decodeMessage, GSSENC_REQUEST_CODE, passwordMessage, SSL_REQUEST_CODE, startupMessage, type Message,
} from '../../protocols/postgres/codec.js';
import { eventually } from './contract-driver.js';
import { addPgResource, GATEWAY_PASSWORD, pgDoor, psql, startPgGateway, type PgGateway } from './postgres-harness.js';

let g: PgGateway;

beforeAll(async () => {
  g = await startPgGateway({ handshakeTimeoutMs: 1_500, allowPlaintext: true });
  await addPgResource(g, {}, 'open-pg');
});

afterAll(async () => {
  await g?.close();
});

const int32s = (...v: number[]): Buffer => {
  const b = Buffer.alloc(4 * v.length);
  v.forEach((x, i) => b.writeUInt32BE(x >>> 0, 4 * i));
  return b;
};

/** Connects, writes, and collects everything until the gateway closes (or `ms` passes). */
function exchange(writes: Buffer[], ms = 5_000, sock: Socket | TLSSocket = netConnect(g.port, '127.0.0.1')): Promise<{ data: Buffer; closed: boolean; elapsed: number }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const t0 = performance.now();
    const done = (closed: boolean): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), closed, elapsed: performance.now() - t0 });
    };
    const timer = setTimeout(() => done(false), ms);
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('error', () => {});
    sock.on('close', () => done(true));
    for (const w of writes) sock.write(w);
  });
}

function messages(data: Buffer): Message[] {
  const out: Message[] = [];
  let rest = data;
  for (let m = decodeMessage(rest, 1 << 20); m; m = decodeMessage(rest, 1 << 20)) {
    out.push(m.value);
    rest = rest.subarray(m.size);
  }
  return out;
}

function errorOf(data: Buffer): Record<string, string> {
  const e = messages(data).find((m) => m.type === 0x45);
  return e ? decodeFields(e.body) : {};
}

async function stillServes(): Promise<void> {
  const r = await psql(g.conninfo('alice:open-pg'), GATEWAY_PASSWORD, ['-c', 'select 1 as ok']);
  expect(r.stdout.trim()).toBe('1');
}

/** A TLS session logged in through the gateway by hand, ready for raw messages. */
async function rawSession(): Promise<TLSSocket> {
  const raw = netConnect(g.port, '127.0.0.1');
  await new Promise<void>((r) => raw.once('connect', () => r()));
  raw.write(int32s(8, SSL_REQUEST_CODE));
  await new Promise<void>((r) => raw.once('data', () => r()));
  const tls = tlsConnect({ socket: raw, ca: g.gw.pki.caCertPem, servername: 'localhost' });
  await new Promise<void>((r) => tls.once('secureConnect', () => r()));
  let buf = Buffer.alloc(0);
  const until = (type: number): Promise<void> =>
    new Promise((resolve) => {
      const check = (d?: Buffer): void => {
        if (d) buf = Buffer.concat([buf, d]);
        if (messages(buf).some((m) => m.type === type)) {
          tls.off('data', check);
          buf = Buffer.alloc(0);
          resolve();
        }
      };
      tls.on('data', check);
    });
  tls.write(startupMessage(new Map([['user', 'alice:open-pg'], ['database', 'x']])));
  await until(0x52);
  tls.write(passwordMessage(GATEWAY_PASSWORD));
  await until(0x5a);
  return tls;
}

describe('bad input to the PostgreSQL gateway', () => {
  it('oversized, negative and garbage startup lengths are closed without a reply, as PostgreSQL does, and audited', async () => {
    // A Terminate as the very first message (what node-postgres sends on connect() then end()).
    const terminate = Buffer.from([0x58, 0, 0, 0, 4]);
    const cases = [int32s(0x7fffffff, 196608), int32s(0xffffffff, 196608), int32s(4, 196608), Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), terminate];
    for (const bytes of cases) {
      const r = await exchange([bytes]);
      expect(r.closed).toBe(true);
      expect(r.data.length).toBe(0);
    }
    expect(await eventually(async () => (await g.gw.store.listAudit({ action: 'door.refuse' })).filter((a) => String(a.data.detail).includes('closed silently')).length >= 5)).toBe(true);
    await stillServes();
  });

  it('wrong protocol versions get 0A000; a newer 3.x minor gets NegotiateProtocolVersion', async () => {
    const v2 = Buffer.concat([int32s(16, 2 << 16), Buffer.from('user\0a\0\0\0')]);
    const r = await exchange([v2]);
    expect(errorOf(r.data)).toMatchObject({
      C: '0A000', M: 'Gatehouse: frontend protocol 2.0 is not allowed through the gateway.', D: 'Refused by the gateway (not_allowed).',
      H: 'the gateway speaks protocol 3.0, as every client since PostgreSQL 7.4 does',
    });
    const v1234 = Buffer.concat([int32s(8, 1234 << 16)]);
    expect(errorOf((await exchange([v1234])).data)).toMatchObject({ C: '0A000' });

    const v32 = startupMessage(new Map([['user', 'alice:open-pg'], ['_pq_.future', 'on']]));
    v32.writeUInt32BE((3 << 16) | 2, 4);
    const n = await exchange([v32], 500);
    const [first, second] = messages(n.data);
    expect(String.fromCharCode(first!.type)).toBe('v');
    expect(first!.body.readInt32BE(0)).toBe(0);
    expect(first!.body.subarray(8).toString()).toBe('_pq_.future\0');
    expect(second!.body.readInt32BE(0)).toBe(3);
    await stillServes();
  });

  it('truncated startup packets are dropped; a stalled one times out', async () => {
    const cut = await exchange([Buffer.from([0, 0])], 2_000, (() => {
      const s = netConnect(g.port, '127.0.0.1');
      s.once('connect', () => s.end());
      return s;
    })());
    expect(cut.data.length).toBe(0);
    const stalled = await exchange([int32s(100, 196608)], 5_000);
    expect(stalled.closed).toBe(true);
    expect(stalled.elapsed).toBeLessThan(4_000);
    const timeouts = (await g.gw.store.listAudit({ action: 'door.refuse' })).filter((e) => e.data.code === 'handshake_timeout');
    expect(timeouts.at(-1)?.data).toMatchObject({ door: 'postgres', detail: 'in the negotiate step' });
    const badLayout = await exchange([Buffer.concat([int32s(14, 196608), Buffer.from('user\0a')])]);
    expect(errorOf(badLayout.data)).toMatchObject({ C: '08P01', M: expect.stringMatching(/^Gatehouse: invalid startup packet layout/) });
    await stillServes();
  });

  it('junk pipelined after SSLRequest is refused before any TLS (CVE-2021-23214)', async () => {
    const r = await exchange([Buffer.concat([int32s(8, SSL_REQUEST_CODE), startupMessage(new Map([['user', 'alice:open-pg']]))])]);
    expect(r.data[0]).not.toBe(0x53);
    expect(errorOf(r.data)).toMatchObject({ S: 'FATAL', C: '08P01', M: 'Gatehouse: received unencrypted data after SSL request' });
    await stillServes();
  });

  it('GSSENCRequest is answered N, and SSL can follow', async () => {
    const s = netConnect(g.port, '127.0.0.1');
    const got: Buffer[] = [];
    s.on('data', (d: Buffer) => got.push(d));
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write(int32s(8, GSSENC_REQUEST_CODE));
    await new Promise<void>((r) => s.once('data', () => r()));
    s.write(int32s(8, SSL_REQUEST_CODE));
    await new Promise<void>((r) => s.once('data', () => r()));
    expect(Buffer.concat(got).toString()).toBe('NS');
    s.destroy();
  });

  it('a replication connection is refused with 0A000 before any password, and the refusal is audited with the client address', async () => {
    const r = await exchange([startupMessage(new Map([['user', 'alice:open-pg'], ['replication', 'database']]))]);
    const msgs = messages(r.data);
    expect(msgs.map((m) => String.fromCharCode(m.type))).toEqual(['E']);
    expect(errorOf(r.data)).toMatchObject({
      S: 'FATAL', C: '0A000', M: 'Gatehouse: a replication connection is not allowed through the gateway.', D: 'Refused by the gateway (not_allowed).',
    });
    const audited = (await g.gw.store.listAudit({ action: 'door.refuse' })).filter((e) => e.data.code === 'not_allowed');
    expect(audited.at(-1)?.data).toMatchObject({ door: 'postgres', code: 'not_allowed', client: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
  });

  it('an unknown CancelRequest key is ignored and the connection closed silently', async () => {
    const r = await exchange([int32s(16, 80877102, 1234, 5678)]);
    expect(r.closed).toBe(true);
    expect(r.data.length).toBe(0);
  });

  it('a password phase with the wrong message, or an oversized one, gets 08P01', async () => {
    const connects = g.adapter.stats.upstreamConnects;
    for (const bad of [Buffer.concat([Buffer.from('Q'), int32s(9), Buffer.from('boom\0')]), Buffer.concat([Buffer.from('p'), int32s(10_000_000)])]) {
      const start = startupMessage(new Map([['user', 'alice:open-pg']]));
      const r = await exchange([start, bad]);
      const msgs = messages(r.data);
      expect(msgs[0]!.type).toBe(0x52);
      expect(errorOf(r.data)).toMatchObject({ S: 'FATAL', C: '08P01' });
    }
    expect(g.adapter.stats.upstreamConnects).toBe(connects);
    await stillServes();
  });

  it('after login, an impossible message length ends the session with 08P01 and closes the target side', async () => {
    const tls = await rawSession();
    const before = g.gw.broker.live().length;
    expect(before).toBe(1);
    const r = await exchange([Buffer.concat([Buffer.from('Q'), int32s(0x7ffffff0)])], 5_000, tls);
    expect(errorOf(r.data)).toMatchObject({ S: 'FATAL', C: '08P01', M: expect.stringMatching(/^Gatehouse: invalid message length/) });
    expect(r.closed).toBe(true);
    expect(g.gw.broker.live()).toHaveLength(0);
    await stillServes();
  });

  it('a burst of random garbage connections leaves the gateway serving', async () => {
    await Promise.all(Array.from({ length: 40 }, (_, i) => exchange([randomBytes(1 + ((i * 97) % 3000))], 3_000)));
    await stillServes();
  });

  it('plaintext is allowed only where the listener says so, and only on loopback', async () => {
    const r = await psql(`host=127.0.0.1 port=${g.port} user=alice:open-pg sslmode=disable`, GATEWAY_PASSWORD, ['-c', 'select current_user']);
    expect(r.stdout.trim()).toBe(g.target.user);
    const other = await pgDoor();
    await expect(other.listen({
      host: '0.0.0.0', port: 0, broker: g.gw.broker, log: silentLogger, allowPlaintext: true,
      tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem },
    })).rejects.toMatchObject({ code: 'VALIDATION', field: 'allowPlaintext' });
  });
});
