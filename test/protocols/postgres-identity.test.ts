/**
 * Whether the target is the one the resource names. Without a configured CA the gateway pins
 * the target's TLS certificate on first use (through the broker's one identity policy) and
 * refuses a changed one — right after the TLS handshake, before the startup message or any
 * password could reach the impostor. Two real PostgreSQL servers, each with its own
 * certificate, play the target and the impostor.
 */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { sslRequest } from '../../protocols/postgres/codec.js';
import { startPostgres, type PostgresTarget } from '../targets/index.js';
import { addPgResource, GATEWAY_PASSWORD, pgDoor, type PgDoor, startPgGateway, type PgGateway } from './postgres-harness.js';

let g: PgGateway;
let impostor: PostgresTarget;
/** A listener of an adapter with no upstream CA: targets are pinned on first use. */
let pinning: Listener;
let adapter: PgDoor;

beforeAll(async () => {
  [g, impostor] = await Promise.all([startPgGateway(), startPostgres()]);
  // The defaults, as `gatehouse serve` starts the door: TLS required, no CA, so the target is pinned.
  adapter = await pgDoor();
  pinning = await adapter.listen({
    host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem },
  });
  await addPgResource(g, {}, 'pinned-pg');
});

afterAll(async () => {
  await pinning?.close();
  await g?.close();
  await impostor?.stop();
});

const fingerprint = (t: PostgresTarget): string => `tls-sha256:${new X509Certificate(readFileSync(t.cert)).fingerprint256}`;

async function connect(resource: string): Promise<{ client?: pg.Client; err?: pg.DatabaseError }> {
  const client = new pg.Client({ ...g.pgConfig(`alice:${resource}`, GATEWAY_PASSWORD), port: pinning.address.port });
  return client.connect().then(() => ({ client }), (e: unknown) => ({ err: e as pg.DatabaseError }));
}

async function eventually(check: () => boolean, ms = 5_000): Promise<boolean> {
  const start = performance.now();
  while (performance.now() - start < ms) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 25));
  }
  return check();
}

/** The byte a target answers SSLRequest with ('S' or 'N'). */
function sslAnswer(t: PostgresTarget): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect(t.port, t.host, () => s.write(sslRequest()));
    s.once('data', (d: Buffer) => {
      s.destroy();
      resolve(String.fromCharCode(d[0]!));
    });
    s.once('error', reject);
  });
}

/** What a target's log gained since `from` (its length before). */
const logSince = (t: PostgresTarget, from: number): string => readFileSync(t.log, 'utf8').slice(from);

describe('PostgreSQL target identity without a CA', () => {
  it("pins the target's TLS certificate on first use, then accepts it again", async () => {
    expect((await g.gw.store.getResource('pinned-pg'))?.hostKeyPin).toBeUndefined();
    const first = await connect('pinned-pg');
    expect(first.err).toBeUndefined();
    expect((await first.client!.query('select current_user as u')).rows).toEqual([{ u: g.target.user }]);
    await first.client!.end();
    expect((await g.gw.store.getResource('pinned-pg'))?.hostKeyPin).toBe(fingerprint(g.target));
    const pins = await g.gw.store.listAudit({ action: 'resource.pin_identity', subject: 'pinned-pg' });
    expect(pins.map((e) => e.data)).toEqual([{ what: 'TLS certificate', fingerprint: fingerprint(g.target) }]);

    const again = await connect('pinned-pg');
    expect(again.err).toBeUndefined();
    await again.client!.end();
    expect(await g.gw.store.listAudit({ action: 'resource.pin_identity', subject: 'pinned-pg' })).toHaveLength(1);
  });

  it('a target with another certificate is refused with the fix, before the startup or the password reaches it', async () => {
    const r = (await g.gw.store.getResource('pinned-pg'))!;
    await g.gw.store.putResource({ ...r, host: impostor.host, port: impostor.port });
    const before = readFileSync(impostor.log, 'utf8').length;
    const connects = adapter.stats.upstreamConnects;

    const { err } = await connect('pinned-pg');
    const now = fingerprint(impostor);
    const pinned = fingerprint(g.target);
    expect(err).toMatchObject({
      code: '08001', severity: 'FATAL',
      message: `Gatehouse: could not open pinned-pg: its TLS certificate changed (now ${now}, pinned ${pinned}); refusing to connect`,
      detail: 'The target could not be used (target_identity).',
      hint: `after verifying the new TLS certificate with the owner of pinned-pg, an administrator re-pins it: set hostKeyPin: ${now} for pinned-pg in its policy file`,
    });
    expect(adapter.stats.upstreamConnects).toBe(connects + 1);
    // The impostor saw a connection and a TLS handshake, and nothing of the login.
    expect(await eventually(() => logSince(impostor, before).includes('connection received'))).toBe(true);
    await new Promise((res) => setTimeout(res, 200));
    const seen = logSince(impostor, before);
    expect(seen).not.toContain(g.target.user);
    expect(seen).not.toMatch(/authentication failed|connection authorized|connection authenticated/);
    // The pin stays; the attempt is discarded with its code, and no session went live.
    expect((await g.gw.store.getResource('pinned-pg'))?.hostKeyPin).toBe(pinned);
    const discards = await g.gw.store.listAudit({ action: 'session.discard' });
    expect(discards.at(-1)?.data).toMatchObject({ resource: 'pinned-pg', door: 'postgres', code: 'target_identity' });
    expect(g.gw.broker.live()).toHaveLength(0);
  });

  it('a pinned target that stops offering TLS is refused instead of being logged into in the clear, even where a plaintext target is allowed', async () => {
    await g.gw.addResource({
      name: 'plain-later', type: 'database', protocol: 'postgres', host: impostor.host, port: impostor.port, database: impostor.database,
      credentials: { login: impostor.user, password: impostor.password }, options: { allowPlaintextUpstream: true },
    });
    await g.gw.addResource({
      name: 'tls-only', type: 'database', protocol: 'postgres', host: impostor.host, port: impostor.port, database: impostor.database,
      credentials: { login: impostor.user, password: impostor.password },
    });
    const first = await connect('plain-later');
    expect(first.err).toBeUndefined();
    await first.client!.end();
    expect((await g.gw.store.getResource('plain-later'))?.hostKeyPin).toBe(fingerprint(impostor));

    const su = new pg.Client({ host: impostor.host, port: impostor.port, user: impostor.superuser, password: impostor.superuserPassword, database: 'postgres' });
    await su.connect();
    await su.query('alter system set ssl = off');
    await su.query('select pg_reload_conf()');
    await su.end();
    for (let i = 0; i < 100 && (await sslAnswer(impostor)) !== 'N'; i++) await new Promise((res) => setTimeout(res, 50));
    expect(await sslAnswer(impostor)).toBe('N');
    const before = readFileSync(impostor.log, 'utf8').length;
    const { err } = await connect('plain-later');
    expect(err).toMatchObject({ code: '08001', detail: 'The target could not be used (target_identity).' });
    expect(err?.message).toMatch(/^Gatehouse: could not open plain-later: the target 127\.0\.0\.1:\d+ no longer accepts TLS while its TLS certificate is pinned; refusing to log in in the clear$/);
    // A resource that does not allow a plaintext target never pinned anything, and still refuses.
    const other = await connect('tls-only');
    expect(other.err).toMatchObject({ code: '08001', detail: 'The target could not be used (target_identity).' });
    expect(other.err?.message).toBe(`Gatehouse: could not open tls-only: the target ${impostor.host}:${impostor.port} does not accept TLS, and tls-only requires it`);
    expect((await g.gw.store.getResource('tls-only'))?.hostKeyPin).toBeUndefined();
    await new Promise((res) => setTimeout(res, 200));
    expect(logSince(impostor, before)).not.toMatch(/authentication failed|connection authorized|connection authenticated/);
  });
});
