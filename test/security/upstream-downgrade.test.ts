/**
 * Finding 5: a target leg downgraded to plaintext. A hostile "target" (or whoever sits on
 * the path to the real one) declines TLS and asks for the password in clear; the gateway must
 * not hand it the vaulted password. Default: TLS required with the target's identity verified
 * (CA) or pinned; cleartext and MD5 only inside that TLS; SCRAM without TLS only for a
 * resource that explicitly allows a plaintext target (`options.allowPlaintextUpstream`),
 * which is audited when set. The MySQL door already refuses mysql_clear_password without TLS:
 * the same attack is kept out there too.
 *
 * The fake targets are small net.Servers speaking just enough of each protocol, recording
 * every byte the gateway sends them.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { applyPolicyDir } from '../../src/workflow/policy-sync.js';
import { Cap, encodeAuthSwitch, encodePacket } from '../../protocols/mysql/codec.js';
import { encodeHandshakeV10 } from '../../protocols/mysql/handshake.js';
import { MysqlAdapter } from '../../protocols/mysql/index.js';
import { CLEAR_PASSWORD, NATIVE_PASSWORD } from '../../protocols/mysql/scramble.js';
import { Auth, EncryptionAnswer, message, Msg, SSL_REQUEST_CODE } from '../../protocols/postgres/codec.js';
import { PostgresAdapter } from '../../protocols/postgres/index.js';
import { GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from '../protocols/gateway-harness.js';
import { makeHarness } from '../unit/workflow/harness.js';
import { CliHarness, FakeApi } from '../unit/cli/harness.js';
import { call, login, startApi } from './harness-api-server.js';

const VAULTED = 'vaulted-Secret-4711';

/** Every byte a fake target received, and the messages it saw after the startup. */
interface FakeTarget {
  port: number;
  bytes(): Buffer;
  /** PostgreSQL: typed messages (type letter) after the StartupMessage; MySQL: packets after the handshake. */
  after: string[];
  close(): Promise<void>;
}

function serve(onSocket: (s: Socket, seen: Buffer[], after: string[]) => void): Promise<FakeTarget> {
  const seen: Buffer[] = [];
  const after: string[] = [];
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onSocket(s, seen, after);
  });
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      resolve({
        port: (server.address() as AddressInfo).port,
        bytes: () => Buffer.concat(seen),
        after,
        close: () => {
          for (const s of sockets) s.destroy();
          return new Promise<void>((r) => server.close(() => r()));
        },
      });
    });
  });
}

const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};

type PgAsk = 'cleartext' | 'md5' | 'scram';

/** A PostgreSQL "target" that answers SSLRequest with N and asks for the password the way given. */
function fakePostgres(ask: PgAsk): Promise<FakeTarget> {
  return serve((s, seen, after) => {
    let buf = Buffer.alloc(0);
    let started = false;
    s.on('data', (d: Buffer) => {
      seen.push(d);
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (!started) {
          if (buf.length < 8) return;
          const len = buf.readInt32BE(0);
          if (buf.length < len) return;
          const code = buf.readInt32BE(4);
          buf = buf.subarray(len);
          if (code === SSL_REQUEST_CODE) {
            s.write(Buffer.from([EncryptionAnswer.Refuse]));
            continue;
          }
          started = true;
          if (ask === 'cleartext') s.write(message(Msg.Authentication, int32(Auth.CleartextPassword)));
          else if (ask === 'md5') s.write(message(Msg.Authentication, Buffer.concat([int32(Auth.MD5Password), Buffer.from([1, 2, 3, 4])])));
          else s.write(message(Msg.Authentication, Buffer.concat([int32(Auth.SASL), Buffer.from('SCRAM-SHA-256\0\0')])));
          continue;
        }
        if (buf.length < 5) return;
        const len = buf.readInt32BE(1);
        if (buf.length < 1 + len) return;
        after.push(String.fromCharCode(buf[0]!));
        buf = buf.subarray(1 + len);
        // Whatever came, this fake cannot go on: hang up rather than keep the gateway waiting.
        s.end(message(Msg.ErrorResponse, Buffer.from('SFATAL\0C28P01\0Mno\0\0')));
      }
    });
  });
}

/** A MySQL "target" without CLIENT_SSL that switches to mysql_clear_password after the handshake response. */
function fakeMysql(): Promise<FakeTarget> {
  const caps = Object.values(Cap).reduce((a, c) => a | c, 0) & ~Cap.SSL & ~Cap.COMPRESS & ~Cap.ZSTD_COMPRESSION;
  return serve((s, seen, after) => {
    s.write(encodePacket(0, encodeHandshakeV10({
      serverVersion: '8.0.36-fake', connectionId: 7, scramble: Buffer.alloc(20, 0x41), capabilities: caps >>> 0, charset: 45, status: 2, authPlugin: NATIVE_PASSWORD,
    })));
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      seen.push(d);
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 4) {
        const len = buf.readUIntLE(0, 3);
        if (buf.length < 4 + len) return;
        const seq = buf[3]!;
        buf = buf.subarray(4 + len);
        after.push(`seq ${seq}`);
        // After the HandshakeResponse (seq 1): "send me your password in clear".
        if (seq === 1) s.write(encodePacket(2, encodeAuthSwitch(CLEAR_PASSWORD, Buffer.from([0]))));
      }
    });
  });
}

describe('PostgreSQL: a target leg downgraded to plaintext', () => {
  let gw: GatewayHarness;
  let listener: Listener;
  let fake: FakeTarget | undefined;

  beforeAll(async () => {
    gw = await makeGateway();
    // Defaults only: no upstream CA, no upstreamTls, as `gatehouse serve` starts the door.
    listener = await new PostgresAdapter().listen({
      host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem },
    });
  });
  afterEach(async () => {
    await fake?.close();
    fake = undefined;
  });
  afterAll(async () => {
    await listener?.close();
    await gw?.cleanup();
  });

  let n = 0;
  async function resourceFor(target: FakeTarget, options: Record<string, unknown> = {}): Promise<string> {
    const name = `lab-pg-${++n}`;
    await gw.addResource({
      name, type: 'database', protocol: 'postgres', host: '127.0.0.1', port: target.port, database: 'app',
      credentials: { login: 'app', password: VAULTED }, settings: {}, options,
    });
    return name;
  }

  async function connect(resource: string): Promise<pg.DatabaseError | undefined> {
    const c = new pg.Client({
      host: 'localhost', port: listener.address.port, user: `alice:${resource}`, password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem }, connectionTimeoutMillis: 10_000,
    });
    return c.connect().then(async () => {
      await c.end();
      return undefined;
    }, (e: unknown) => e as pg.DatabaseError);
  }

  async function lastDiscard(resource: string): Promise<Record<string, unknown> | undefined> {
    const rows = await gw.store.listAudit({ action: 'session.discard' });
    return rows.filter((r) => r.data?.resource === resource).at(-1)?.data as Record<string, unknown> | undefined;
  }

  for (const ask of ['cleartext', 'md5', 'scram'] as const) {
    it(`a fake target that declines TLS and asks for a ${ask} password gets nothing of the vaulted login`, async () => {
      fake = await fakePostgres(ask);
      const name = await resourceFor(fake);
      const err = await connect(name);
      expect(fake.after).toEqual([]);
      expect(fake.bytes().includes(VAULTED)).toBe(false);
      expect(err).toMatchObject({ code: '08001', severity: 'FATAL', detail: 'The target could not be used (target_identity).' });
      expect(err?.message).toBe(`Gatehouse: could not open ${name}: the target 127.0.0.1:${fake.port} does not accept TLS, and ${name} requires it`);
      expect(await lastDiscard(name)).toMatchObject({ door: 'postgres', code: 'target_identity' });
    });
  }

  for (const ask of ['cleartext', 'md5'] as const) {
    it(`a resource that allows a plaintext target still never sends a ${ask} password outside TLS`, async () => {
      fake = await fakePostgres(ask);
      const name = await resourceFor(fake, { allowPlaintextUpstream: true });
      const err = await connect(name);
      // It was sent the startup (the resource allows a plaintext target), never a password.
      expect(fake.after).toEqual([]);
      expect(fake.bytes().includes(VAULTED)).toBe(false);
      expect(err).toMatchObject({ code: '08001', detail: 'The target could not be used (target_identity).' });
      expect(err?.message).toBe(`Gatehouse: could not open ${name}: the target asks for ${ask === 'md5' ? 'an MD5' : 'a cleartext'} password without TLS; it is only ever sent inside TLS`);
      expect(await lastDiscard(name)).toMatchObject({ door: 'postgres', code: 'target_identity' });
    });
  }

  it('a plaintext lab target may run SCRAM only because its resource says so (the proof, never the password)', async () => {
    fake = await fakePostgres('scram');
    const name = await resourceFor(fake, { allowPlaintextUpstream: true });
    await connect(name);
    expect(fake.after).toEqual(['p']);
    expect(fake.bytes().includes(VAULTED)).toBe(false);
  });
});

describe('MySQL: a target leg downgraded to plaintext', () => {
  let gw: GatewayHarness;
  let fake: FakeTarget;

  beforeAll(async () => {
    gw = await makeGateway();
    fake = await fakeMysql();
    await gw.addResource({
      name: 'lab-my', type: 'database', protocol: 'mysql', host: '127.0.0.1', port: fake.port, database: 'app',
      credentials: { login: 'app', password: VAULTED }, settings: {},
    });
  });
  afterAll(async () => {
    await fake?.close();
    await gw?.cleanup();
  });

  async function through(adapter: MysqlAdapter): Promise<{ err: (Error & { errno?: number; sqlMessage?: string }) | undefined }> {
    const l = await adapter.listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem } });
    try {
      const err = await mysql
        .createConnection({ host: '127.0.0.1', port: l.address.port, user: 'alice:lab-my', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem }, connectTimeout: 10_000 })
        .then(async (c) => {
          await c.end();
          return undefined;
        }, (e: unknown) => e as Error & { errno?: number; sqlMessage?: string });
      return { err };
    } finally {
      await l.close();
    }
  }

  it('a fake target that offers no TLS and asks for mysql_clear_password does not receive the password (defaults)', async () => {
    const { err } = await through(new MysqlAdapter());
    expect(err?.sqlMessage).toMatch(/^Gatehouse: could not open lab-my: /);
    expect(fake.bytes().includes(VAULTED)).toBe(false);
    const discards = await gw.store.listAudit({ action: 'session.discard' });
    expect(discards.at(-1)?.data).toMatchObject({ resource: 'lab-my', door: 'mysql' });
  });

  it("nor with the target leg in plaintext on purpose (upstreamTls 'disable'): the clear password needs TLS", async () => {
    const before = fake.after.length;
    const { err } = await through(new MysqlAdapter({ upstreamTls: 'disable' }));
    // The handshake response went out (a scrambled token), then the switch to clear text was refused.
    expect(fake.after.slice(before)).toEqual(['seq 1']);
    expect(err?.sqlMessage).toMatch(/^Gatehouse: could not open lab-my: the target asked for the password in clear over a connection without TLS/);
    expect(fake.bytes().includes(VAULTED)).toBe(false);
    const discards = await gw.store.listAudit({ action: 'session.discard' });
    expect(discards.at(-1)?.data).toMatchObject({ resource: 'lab-my', door: 'mysql', code: 'target_protocol' });
  });

  it('with serve\'s defaults, a MySQL target without TLS is reached only when its resource allows it, and the clear password still needs TLS', async () => {
    const refused = await through(new MysqlAdapter());
    expect(refused.err?.sqlMessage).toContain('the target does not offer TLS, and TLS is required for it');
    expect(refused.err?.sqlMessage).toContain('allowPlaintextUpstream');
    await gw.store.putResource({ ...(await gw.store.getResource('lab-my'))!, options: { allowPlaintextUpstream: true } });
    const before = fake.after.length;
    const allowed = await through(new MysqlAdapter());
    // Past the TLS step now: the handshake response went out, the switch to clear text was refused.
    expect(fake.after.slice(before)).toEqual(['seq 1']);
    expect(allowed.err?.sqlMessage).toMatch(/the target asked for the password in clear over a connection without TLS/);
    expect(fake.bytes().includes(VAULTED)).toBe(false);
    // A target whose TLS certificate was pinned cannot drop TLS later, whatever the option says.
    await gw.store.putResource({ ...(await gw.store.getResource('lab-my'))!, hostKeyPin: `tls-sha256:${'AB:'.repeat(31)}AB` });
    const downgraded = await through(new MysqlAdapter());
    expect(downgraded.err?.sqlMessage).toContain('the target does not offer TLS, and TLS is required for it');
  });
});

describe('a plaintext target is allowed only explicitly, and audited', () => {
  it('a resource created through the API that allows a plaintext target says so in its audit row', async () => {
    const c = await startApi();
    try {
      const token = await login(c, 'admin');
      const r = await call(c, 'POST', '/api/v1/resources', {
        token,
        body: { name: 'lab-pg', type: 'database', protocol: 'postgres', host: '10.0.0.9', port: 5432, options: { allowPlaintextUpstream: true } },
      });
      expect(r.status).toBe(200);
      expect((await c.h.store.getResource('lab-pg'))?.options).toEqual({ allowPlaintextUpstream: true });
      const rows = await c.h.store.listAudit({ action: 'resource.create', subject: 'lab-pg' });
      expect(rows.map((e) => ({ actor: e.actor, options: e.data?.options }))).toEqual([{ actor: 'admin', options: { allowPlaintextUpstream: true } }]);
      // A string is not an explicit yes.
      const bad = await call(c, 'POST', '/api/v1/resources', {
        token,
        body: { name: 'lab-pg2', type: 'database', protocol: 'postgres', host: '10.0.0.9', port: 5432, options: { allowPlaintextUpstream: 'yes' } },
      });
      expect(bad.status).toBe(400);
    } finally {
      await c.close();
    }
  });

  it('a policy file that allows a plaintext target says so in the audit row of its sync', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-policies-'));
    try {
      const h = makeHarness();
      writeFileSync(join(dir, 'lab.yaml'), [
        'resources:',
        '  - name: lab-pg', '    type: database', '    protocol: postgres', '    host: 10.0.0.9', '    port: 5432', '    owner: bob',
        '    options: { allowPlaintextUpstream: true }', '',
      ].join('\n'));
      await applyPolicyDir(h.engine, dir);
      expect((await h.store.getResource('lab-pg'))?.options).toEqual({ allowPlaintextUpstream: true });
      const rows = await h.store.listAudit({ action: 'resource.create', subject: 'lab-pg' });
      expect(rows.map((e) => e.data?.options)).toEqual([{ allowPlaintextUpstream: true }]);

      writeFileSync(join(dir, 'lab.yaml'), [
        'resources:',
        '  - name: lab-pg', '    type: database', '    protocol: postgres', '    host: 10.0.0.9', '    port: 5432', '    owner: bob', '',
      ].join('\n'));
      await applyPolicyDir(h.engine, dir);
      const updates = await h.store.listAudit({ action: 'resource.update', subject: 'lab-pg' });
      expect(updates.map((e) => e.data?.options)).toEqual([{}]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('gatehouse resource add --allow-plaintext-upstream asks for it explicitly; without the flag nothing is asked', async () => {
    const api = await new FakeApi().start();
    const cli = new CliHarness();
    try {
      cli.env.GATEHOUSE_SERVER = api.url;
      cli.env.GATEHOUSE_TOKEN = 'tok-admin';
      api.on('POST /resources', (c) => ({ body: { ...(c.body as object), owner: 'admin', access: [], settings: {}, state: { canConnect: true } } }));
      const args = ['resource', 'add', 'lab-pg', '--type', 'database', '--protocol', 'postgres', '--host', 'db1', '--port', '5432'];
      expect((await cli.run([...args, '--allow-plaintext-upstream'])).code).toBe(0);
      expect(api.calls[0]!.body).toEqual({ name: 'lab-pg', type: 'database', protocol: 'postgres', host: 'db1', port: 5432, options: { allowPlaintextUpstream: true } });
      expect((await cli.run(args)).code).toBe(0);
      expect(api.calls[1]!.body).toEqual({ name: 'lab-pg', type: 'database', protocol: 'postgres', host: 'db1', port: 5432 });
    } finally {
      await api.stop();
      cli.cleanup();
    }
  });
});
