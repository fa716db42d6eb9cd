/**
 * Bad input on the MySQL listener: malformed and oversized packets, garbage, bytes where TLS
 * should be, silence, an unreachable target and a target whose certificate changed. Each
 * gets a clean ERR (where the client can still read one) and a close; the listener keeps
 * serving real clients.
 */
import { randomBytes } from 'node:crypto';
import { connect, createServer } from 'node:net';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import type { Listener } from '../../src/broker/adapter.js';
import { Cap, decodeErr, decodePacket, encodePacket, type Packet } from '../../protocols/mysql/codec.js';
import { freePort } from '../targets/index.js';
import { addMyResource, GATEWAY_PASSWORD, myDoor, mariadb, startMyGateway, type MyDoor, type MyGateway } from './mysql-harness.js';

let g: MyGateway;
/** A second listener on the same gateway: small packets, a short handshake, no target CA (pinning). */
let strict: Listener;
let strictAdapter: MyDoor;

beforeAll(async () => {
  g = await startMyGateway();
  await addMyResource(g, {}, 'open-mysql');
  strictAdapter = await myDoor({ maxPacketSize: 1024 * 1024, handshakeTimeoutMs: 400 });
  strict = await strictAdapter.listen({
    host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem },
  });
});

afterAll(async () => {
  await strict?.close();
  await g?.close();
});

/** Polls an asynchronous condition (the audit is written without holding up the client). */
async function until(cond: () => Promise<boolean>, ms = 2000): Promise<void> {
  const start = performance.now();
  while (!(await cond())) {
    if (performance.now() - start > ms) throw new Error('timed out waiting for the audit');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Connects, waits for the HandshakeV10, sends `bytes`, and collects every packet until the gateway closes. */
function exchange(port: number, bytes: (handshake: Buffer) => Buffer, timeoutMs = 5000): Promise<{ packets: Packet[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let sent = false;
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ packets: parse(), closed: false });
    }, timeoutMs);
    const parse = (): Packet[] => {
      const out: Packet[] = [];
      let rest = buf;
      for (let r = decodePacket(rest, 1 << 24); r; r = decodePacket(rest, 1 << 24)) {
        out.push(r.value);
        rest = rest.subarray(r.size);
      }
      return out;
    };
    s.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const first = decodePacket(buf, 1 << 24);
      if (!sent && first) {
        sent = true;
        s.write(bytes(first.value.payload));
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve({ packets: parse(), closed: true });
    });
    s.on('connect', () => {}).once('error', reject);
  });
}

/** The fixed head of a HandshakeResponse41. */
function head(caps: number): Buffer {
  const b = Buffer.alloc(32);
  b.writeUInt32LE(caps >>> 0, 0);
  b.writeUInt32LE(1 << 24, 4);
  b[8] = 45;
  return b;
}

const CAPS = Cap.PROTOCOL_41 | Cap.SECURE_CONNECTION | Cap.PLUGIN_AUTH;

function errOf(r: { packets: Packet[] }) {
  expect(r.packets.length).toBe(2); // the HandshakeV10, then the ERR
  const p = r.packets[1]!;
  expect(p.seq).toBe(2);
  return decodeErr(p.payload);
}

async function stillServes(): Promise<void> {
  const c = await mysql.createConnection(g.my2('alice:open-mysql', GATEWAY_PASSWORD));
  const [rows] = await c.query('select current_user() as u');
  expect(rows).toEqual([{ u: `${g.target.user}@127.0.0.1` }]);
  await c.end();
}

describe('bad input on the MySQL listener', () => {
  it('a malformed handshake response (unterminated user name) gets ERR 1043 and a close', async () => {
    const r = await exchange(g.port, () => encodePacket(1, Buffer.concat([head(CAPS), Buffer.from('alice:open-mysql')])));
    expect(r.closed).toBe(true);
    expect(errOf(r)).toEqual({ errno: 1043, sqlstate: '08S01', message: 'Gatehouse: handshake response has an unterminated string (protocol_error)' });
    await stillServes();
  });

  it('a pre-4.1 handshake response is refused by name', async () => {
    const r = await exchange(g.port, () => encodePacket(1, Buffer.concat([Buffer.from([0x05, 0x80, 0, 0, 0]), Buffer.from('alice\0')])));
    expect(errOf(r).message).toBe('Gatehouse: Clients older than protocol 4.1 are not supported by Gatehouse (protocol_error)');
  });

  it('an oversized packet is refused from its header alone, before its bytes are buffered', async () => {
    const t0 = performance.now();
    const r = await exchange(g.port, () => Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 1]), randomBytes(1000)]));
    expect(r.closed).toBe(true);
    expect(errOf(r)).toEqual({ errno: 1153, sqlstate: '08S01', message: "Gatehouse: Got a packet bigger than the gateway's limit of 65536 bytes (protocol_error)" });
    expect(performance.now() - t0).toBeLessThan(2000);
    await stillServes();
  });

  it('an HTTP request, and random garbage, get an ERR and a close', async () => {
    const http = await exchange(g.port, () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(http.closed).toBe(true);
    expect(http.packets.length).toBe(2);
    expect(decodeErr(http.packets[1]!.payload).errno).toBe(1153); // "GET" read as a length is 5.5 MB
    for (let i = 0; i < 20; i++) {
      // Garbage that frames as a short, incomplete packet leaves the gateway waiting: the handshake timeout ends it.
      const r = await exchange(strict.address.port, () => randomBytes(1 + ((i * 37) % 300)));
      expect(r.closed).toBe(true);
      expect(r.packets.length).toBe(2);
      expect(decodeErr(r.packets[1]!.payload).message).toMatch(/^Gatehouse: /);
    }
    await stillServes();
  });

  it('plaintext where the TLS handshake should be ends the connection without an answer in clear', async () => {
    const r = await exchange(g.port, () => Buffer.concat([encodePacket(1, head(CAPS | Cap.SSL)), Buffer.from('alice:open-mysql\0 plaintext after SSLRequest')]));
    expect(r.closed).toBe(true);
    expect(r.packets.length).toBe(1); // only the HandshakeV10: the rest went to (and was refused by) the TLS layer
    await stillServes();
  });

  it('a client that says nothing is closed at the handshake timeout with an ERR, and the refusal is audited', async () => {
    const audited = (await g.gw.store.listAudit({ action: 'door.refuse' })).length;
    const t0 = performance.now();
    const r = await exchange(strict.address.port, () => Buffer.alloc(0));
    expect(r.closed).toBe(true);
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(r.packets.length).toBe(2);
    expect(r.packets[1]!.seq).toBe(1); // the answer to our HandshakeV10 (seq 0) never came
    expect(decodeErr(r.packets[1]!.payload)).toEqual({ errno: 1043, sqlstate: '08S01', message: 'Gatehouse: the handshake took too long. (handshake_timeout)' });
    await until(async () => (await g.gw.store.listAudit({ action: 'door.refuse' })).slice(audited).some((e) => e.data.code === 'handshake_timeout' && e.data.door === 'mysql'));
  });

  it('a command bigger than the limit gets ERR 1153 and a close; the listener keeps serving', async () => {
    const c = await mysql.createConnection({ ...g.my2('alice:open-mysql', GATEWAY_PASSWORD), port: strict.address.port });
    await expect(c.query('select length(?) as n', ['x'.repeat(2 * 1024 * 1024)])).rejects.toMatchObject({
      errno: 1153, message: "Gatehouse: Got a packet bigger than the gateway's limit of 1048576 bytes (protocol_error)",
    });
    await expect(c.query('select 1')).rejects.toThrow();
    const ok = await mysql.createConnection({ ...g.my2('alice:open-mysql', GATEWAY_PASSWORD), port: strict.address.port });
    const [rows] = await ok.query('select length(?) as n', ['x'.repeat(512 * 1024)]);
    expect(rows).toEqual([{ n: 512 * 1024 }]);
    await ok.end();
  });

  it('an unreachable target is a clean ERR 1429 naming the resource and the cause; the attempt is discarded as target_unreachable', async () => {
    await g.gw.addResource({ name: 'dead-mysql', type: 'database', protocol: 'mysql', host: '127.0.0.1', port: await freePort(), credentials: { login: 'x', password: 'y' } });
    const r = await mariadb([...g.cli('alice:dead-mysql', GATEWAY_PASSWORD), '-e', 'select 1']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/^ERROR 1429 \(HY000\): Gatehouse: could not open dead-mysql: cannot reach 127\.0\.0\.1:\d+ \(ECONNREFUSED\) \(target_unreachable\) To fix: try again; if it persists, tell the owner of dead-mysql$/m);
    await until(async () => (await g.gw.store.listAudit({ action: 'session.discard' })).some((e) => e.data.resource === 'dead-mysql' && e.data.code === 'target_unreachable' && e.data.door === 'mysql'));
  });

  it('a target that never greets is cut off by the handshake timer: the client gets ERR 1043 and the attempt is discarded', async () => {
    let upstreamClosed = false;
    const silent = createServer((s) => {
      s.on('error', () => {});
      s.on('close', () => (upstreamClosed = true));
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    try {
      await g.gw.addResource({ name: 'silent-mysql', type: 'database', protocol: 'mysql', host: '127.0.0.1', port: (silent.address() as { port: number }).port, credentials: { login: 'x', password: 'y' } });
      const t0 = performance.now();
      await expect(mysql.createConnection({ ...g.my2('alice:silent-mysql', GATEWAY_PASSWORD), port: strict.address.port })).rejects.toMatchObject({
        errno: 1043, message: 'Gatehouse: the handshake took too long. (handshake_timeout)',
      });
      expect(performance.now() - t0).toBeLessThan(3000); // the handshake timer (400 ms), not the 10 s upstream timeout
      await until(async () => upstreamClosed);
      await until(async () => (await g.gw.store.listAudit({ action: 'session.discard' })).some((e) => e.data.resource === 'silent-mysql' && e.data.code === 'handshake_timeout'));
    } finally {
      await new Promise((r) => silent.close(r));
    }
  });

  it('without a CA the target certificate is pinned on first use, and a different one is refused', async () => {
    const port = String(strict.address.port);
    const viaStrict = (sql: string) => mariadb([...g.cli('alice:open-mysql', GATEWAY_PASSWORD, ['-N', '-B']).map((a, i, all) => (all[i - 1] === '-P' ? port : a)), '-e', sql]);
    const first = await viaStrict('select 1');
    expect(first.stdout.trim()).toBe('1');
    const pinned = (await g.gw.store.getResource('open-mysql'))!;
    expect(pinned.hostKeyPin).toMatch(/^tls-sha256:([0-9A-F]{2}:){31}[0-9A-F]{2}$/);
    expect((await viaStrict('select 2')).stdout.trim()).toBe('2');
    // The third login resumes the pinned TLS session; the pin still holds.
    const resumed = strictAdapter.stats.upstreamTlsResumed;
    expect((await viaStrict('select 22')).stdout.trim()).toBe('22');
    expect(strictAdapter.stats.upstreamTlsResumed).toBe(resumed + 1);

    const other = `tls-sha256:${'00:'.repeat(31)}00`;
    await g.gw.store.putResource({ ...pinned, hostKeyPin: other });
    const refused = await viaStrict('select 3');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`ERROR 1429 (HY000): Gatehouse: could not open open-mysql: its TLS certificate changed (now ${pinned.hostKeyPin}, pinned ${other}); refusing to connect (target_identity) To fix: after verifying the new TLS certificate`);
    // The pin stays as it was: only an administrator changes it.
    expect((await g.gw.store.getResource('open-mysql'))!.hostKeyPin).toBe(other);
    await g.gw.store.putResource({ ...pinned, hostKeyPin: undefined });
  });
});
