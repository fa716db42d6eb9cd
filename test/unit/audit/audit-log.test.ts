import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AUDIT_GENESIS, AUDIT_HEAD_META, AuditLog, canonicalJson, stripSecrets } from '../../../src/audit/audit-log.js';
import { FakeClock } from '../../../src/core/clock.js';
import { Sealer } from '../../../src/secrets/sealer.js';
import { SqliteStore } from '../../../src/store/sqlite/sqlite-store.js';

const key = new Sealer(Buffer.alloc(32, 3)).deriveKey('gatehouse/audit-mac/v1');

async function fill(log: AuditLog, clock: FakeClock, n: number): Promise<void> {
  for (let i = 1; i <= n; i++) {
    await log.record(`user${i}`, 'request.approve', `req-${i}`, { stage: 1, comment: `ok ${i}` });
    clock.advance(1000);
  }
}

describe('AuditLog on an in-memory store', () => {
  let store: SqliteStore;
  let clock: FakeClock;
  let log: AuditLog;

  beforeEach(() => {
    store = SqliteStore.open(':memory:');
    clock = new FakeClock('2026-03-01T10:00:00Z');
    log = new AuditLog({ store, key, clock });
  });
  afterEach(async () => {
    await store.close();
  });

  it('verifies an empty log', async () => {
    expect(await log.verify()).toEqual({ ok: true, count: 0, head: AUDIT_GENESIS });
  });

  it('chains entries from the genesis value, stamps them with the clock and anchors the head', async () => {
    const first = await log.record('alice', 'request.create', 'prod-pg', { reason: 'deploy' });
    clock.advance(5000);
    const second = await log.record('bob', 'request.approve', 'req-1');
    expect(first).toMatchObject({ seq: 1, prev: AUDIT_GENESIS, actor: 'alice', data: { reason: 'deploy' } });
    expect(first.at.toISOString()).toBe('2026-03-01T10:00:00.000Z');
    expect(second).toMatchObject({ seq: 2, prev: first.mac, data: {} });
    expect(second.at.toISOString()).toBe('2026-03-01T10:00:05.000Z');
    expect(first.mac).toMatch(/^[0-9a-f]{64}$/);
    expect(JSON.parse((await store.getMeta(AUDIT_HEAD_META))!)).toEqual({ seq: 2, mac: second.mac });
    expect(await log.verify()).toEqual({ ok: true, count: 2, head: second.mac });
  });

  it('computes the MAC over the canonical entry, independent of key order', async () => {
    const e = await log.record('alice', 'x', 'y', { b: 1, a: { d: [{ z: 1, y: 2 }], c: null } });
    const body = canonicalJson({ seq: 1, at: e.at.toISOString(), actor: 'alice', action: 'x', subject: 'y', data: e.data, prev: AUDIT_GENESIS });
    expect(body).toBe(
      '{"action":"x","actor":"alice","at":"2026-03-01T10:00:00.000Z","data":{"a":{"c":null,"d":[{"y":2,"z":1}]},"b":1},"prev":"genesis","seq":1,"subject":"y"}',
    );
    expect(e.mac).toBe(createHmac('sha256', key).update(body).digest('hex'));
    expect(log.mac({ ...e, data: { a: { c: null, d: [{ y: 2, z: 1 }] }, b: 1 } })).toBe(e.mac);
  });

  it('stores JSON-normalised data, so dates and undefined survive verification', async () => {
    const when = new Date('2026-02-01T00:00:00Z');
    const e = await log.record('alice', 'lease.checkout', 'prod-web', { expiresAt: when, note: undefined, list: [1, undefined] });
    expect(e.data).toEqual({ expiresAt: '2026-02-01T00:00:00.000Z', list: [1, null] });
    expect((await log.verify()).ok).toBe(true);
  });

  it('strips secret-named keys at any depth before sealing', async () => {
    const e = await log.record('alice', 'resource.update', 'prod-pg', {
      login: 'app',
      password: 'hunter2',
      nested: { Token: 'tok-123', keep: 1, deeper: [{ privateKey: '-----BEGIN', secret: 's', ticketId: 'OPS-1' }] },
      ticket: 'launch-ticket-abc',
    });
    expect(e.data).toEqual({ login: 'app', nested: { keep: 1, deeper: [{ ticketId: 'OPS-1' }] } });
    const stored = JSON.stringify(await store.listAudit());
    for (const s of ['hunter2', 'tok-123', '-----BEGIN', 'launch-ticket-abc']) expect(stored).not.toContain(s);
    expect((await log.verify()).ok).toBe(true);
  });

  it('does not loop on cyclic data', () => {
    const a: Record<string, unknown> = { name: 'a' };
    a.self = a;
    expect(stripSecrets(a)).toEqual({ name: 'a', self: '[circular]' });
  });

  it('keeps one chain under concurrent appends', async () => {
    await Promise.all(Array.from({ length: 25 }, (_, i) => log.record('alice', 'session.start', `s${i}`)));
    const result = await log.verify();
    expect(result).toMatchObject({ ok: true, count: 25 });
    expect(JSON.parse((await store.getMeta(AUDIT_HEAD_META))!).seq).toBe(25);
  });

  it('rejects the log under a different key', async () => {
    await fill(log, clock, 3);
    const other = new AuditLog({ store, key: Buffer.alloc(32, 9), clock });
    expect(await other.verify()).toEqual({ ok: false, count: 0, firstBadSeq: 1, problem: 'mac_mismatch' });
  });

  it('accepts an anchor that lags the head, and flags an unreadable one', async () => {
    await fill(log, clock, 3);
    const [, second] = await store.listAudit();
    await store.setMeta(AUDIT_HEAD_META, JSON.stringify({ seq: 2, mac: second!.mac }));
    expect(await log.verify()).toMatchObject({ ok: true, count: 3 });
    await store.setMeta(AUDIT_HEAD_META, 'garbage');
    expect(await log.verify()).toEqual({ ok: false, count: 3, firstBadSeq: 3, problem: 'anchor_mismatch' });
  });

  it('refuses a key shorter than 32 bytes', () => {
    expect(() => new AuditLog({ store, key: Buffer.alloc(16), clock })).toThrow(/at least 32 bytes/);
  });
});

describe('AuditLog tamper detection (raw SQL on the database file)', () => {
  let dir: string;
  let store: SqliteStore;
  let raw: Database.Database;
  let log: AuditLog;

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-audit-'));
    const path = join(dir, 'gatehouse.db');
    store = SqliteStore.open(path);
    const clock = new FakeClock('2026-03-01T10:00:00Z');
    log = new AuditLog({ store, key, clock });
    await fill(log, clock, 5);
    expect(await log.verify()).toMatchObject({ ok: true, count: 5 });
    raw = new Database(path);
  });
  afterEach(async () => {
    raw.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const row = (seq: number) => raw.prepare('SELECT * FROM audit WHERE seq = ?').get(seq) as Record<string, string | number>;

  it('detects an edited data column', async () => {
    raw.prepare(`UPDATE audit SET data = '{"stage":2,"comment":"ok 3"}' WHERE seq = 3`).run();
    expect(await log.verify()).toEqual({ ok: false, count: 2, firstBadSeq: 3, problem: 'mac_mismatch' });
  });

  it('detects an edited actor even when the attacker recomputes the MAC with a guessed key', async () => {
    const e = row(2);
    raw.prepare(`UPDATE audit SET actor = 'mallory' WHERE seq = 2`).run();
    const forged = createHmac('sha256', Buffer.alloc(32)).update(JSON.stringify({ ...e, actor: 'mallory' })).digest('hex');
    raw.prepare('UPDATE audit SET mac = ? WHERE seq = 2').run(forged);
    expect(await log.verify()).toEqual({ ok: false, count: 1, firstBadSeq: 2, problem: 'mac_mismatch' });
  });

  it('detects a deleted middle entry', async () => {
    raw.prepare('DELETE FROM audit WHERE seq = 3').run();
    expect(await log.verify()).toEqual({ ok: false, count: 2, firstBadSeq: 4, problem: 'sequence_gap' });
  });

  it('detects a deleted entry even when later entries are renumbered to close the gap', async () => {
    raw.prepare('DELETE FROM audit WHERE seq = 3').run();
    raw.prepare('UPDATE audit SET seq = seq - 1 WHERE seq > 3').run();
    expect(await log.verify()).toEqual({ ok: false, count: 2, firstBadSeq: 3, problem: 'broken_link' });
  });

  it('detects a forged entry inserted in the middle with a plausible seq and prev', async () => {
    const before = row(2);
    // Shift 3..5 up by one in two steps so the primary key never collides.
    raw.prepare('UPDATE audit SET seq = seq + 100 WHERE seq >= 3').run();
    raw.prepare('UPDATE audit SET seq = seq - 99 WHERE seq >= 100').run();
    raw
      .prepare('INSERT INTO audit (seq, at, actor, action, subject, data, prev, mac) VALUES (3, ?, ?, ?, ?, ?, ?, ?)')
      .run(before.at, 'alice', 'request.approve', 'req-9', '{}', before.mac, 'f'.repeat(64));
    expect(await log.verify()).toEqual({ ok: false, count: 2, firstBadSeq: 3, problem: 'mac_mismatch' });
  });

  it('detects a forged entry appended after the head', async () => {
    const head = row(5);
    raw
      .prepare('INSERT INTO audit (seq, at, actor, action, subject, data, prev, mac) VALUES (6, ?, ?, ?, ?, ?, ?, ?)')
      .run(head.at, 'alice', 'request.approve', 'req-9', '{}', head.mac, '0'.repeat(64));
    expect(await log.verify()).toEqual({ ok: false, count: 5, firstBadSeq: 6, problem: 'mac_mismatch' });
  });

  it('detects a rewritten genesis link', async () => {
    raw.prepare(`UPDATE audit SET prev = 'something-else' WHERE seq = 1`).run();
    expect(await log.verify()).toEqual({ ok: false, count: 0, firstBadSeq: 1, problem: 'bad_genesis' });
  });

  it('detects a deleted first entry', async () => {
    raw.prepare('DELETE FROM audit WHERE seq = 1').run();
    expect(await log.verify()).toEqual({ ok: false, count: 0, firstBadSeq: 2, problem: 'sequence_gap' });
  });

  it('detects a truncated tail through the head anchor', async () => {
    raw.prepare('DELETE FROM audit WHERE seq >= 4').run();
    expect(await log.verify()).toEqual({ ok: false, count: 3, firstBadSeq: 4, problem: 'truncated' });
  });

  it('detects an anchor that disagrees with the entry it names', async () => {
    raw.prepare('UPDATE meta SET value = ? WHERE key = ?').run(JSON.stringify({ seq: 5, mac: 'a'.repeat(64) }), AUDIT_HEAD_META);
    expect(await log.verify()).toEqual({ ok: false, count: 4, firstBadSeq: 5, problem: 'anchor_mismatch' });
  });
});

describe('AuditLog paging', () => {
  it('verifies and locates tampering beyond the first page', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gh-audit-'));
    const path = join(dir, 'gatehouse.db');
    const store = SqliteStore.open(path);
    try {
      const clock = new FakeClock();
      const log = new AuditLog({ store, key, clock });
      for (let i = 0; i < 2100; i++) await log.record('system', 'tick', 'gateway', { i });
      expect(await log.verify()).toMatchObject({ ok: true, count: 2100 });
      const raw = new Database(path);
      raw.prepare(`UPDATE audit SET subject = 'other' WHERE seq = 1500`).run();
      raw.close();
      expect(await log.verify()).toEqual({ ok: false, count: 1499, firstBadSeq: 1500, problem: 'mac_mismatch' });
    } finally {
      await store.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
