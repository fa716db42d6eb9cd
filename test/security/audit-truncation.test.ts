/**
 * Finding 15: the audit chain's anchor lives in the same database as the chain, and the
 * chain's key came from the same data directory. Someone who can write the database could
 * cut the tail together with the anchor row, or rewrite and re-sign the whole chain.
 */
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AUDIT_HEAD_META, AuditLog, canonicalJson, type AuditCheckpoint } from '../../src/audit/audit-log.js';
import { FakeClock } from '../../src/core/clock.js';
import { loadConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { startGateway } from '../../src/gateway.js';
import { AuthService } from '../../src/api/auth.js';
import { CliHarness } from '../unit/cli/harness.js';
import { Sealer } from '../../src/secrets/sealer.js';
import { loadOrCreateMasterKey } from '../../src/secrets/master-key.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { loadAuditKey } from '../../src/audit/audit-key.js';

const KEY = Buffer.alloc(32, 7);

describe('audit chain against a database writer', () => {
  let dir: string;
  let store: SqliteStore;
  let raw: Database.Database;
  let clock: FakeClock;
  let log: AuditLog;
  const shipped: AuditCheckpoint[] = [];

  beforeEach(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-sec-audit-'));
    store = SqliteStore.open(join(dir, 'gatehouse.db'));
    clock = new FakeClock('2026-03-01T10:00:00Z');
    shipped.length = 0;
    log = new AuditLog({ store, key: KEY, clock, node: 'gw-1', checkpointEvery: 5, onCheckpoint: (c) => shipped.push(c) });
    for (let i = 1; i <= 12; i++) await log.record(`user${i}`, 'request.approve', `req-${i}`, { n: i });
    raw = new Database(join(dir, 'gatehouse.db'));
  });
  afterEach(async () => {
    raw.close();
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('ships a signed checkpoint off the database every N entries', () => {
    expect(shipped.map((c) => c.seq)).toEqual([5, 10]);
    expect(shipped[1]).toMatchObject({ v: 1, node: 'gw-1', sig: expect.stringMatching(/^[0-9a-f]{64}$/) });
  });

  it('deleting the tail together with the head row no longer verifies clean', async () => {
    raw.prepare('DELETE FROM audit WHERE seq >= 9').run();
    raw.prepare('DELETE FROM meta WHERE key = ?').run(AUDIT_HEAD_META);
    expect(await log.verify()).toEqual({ ok: false, count: 8, firstBadSeq: 8, problem: 'anchor_missing' });
  });

  it('a truncation that rewrites the anchor too is caught by a checkpoint kept elsewhere', async () => {
    const cp = await log.checkpoint();
    expect(cp.seq).toBe(12);
    raw.prepare('DELETE FROM audit WHERE seq >= 9').run();
    const head = raw.prepare('SELECT seq, mac FROM audit WHERE seq = 8').get() as { seq: number; mac: string };
    raw.prepare('UPDATE meta SET value = ? WHERE key = ?').run(JSON.stringify(head), AUDIT_HEAD_META);
    expect(await log.verify()).toMatchObject({ ok: true, count: 8 });
    expect(await log.verify({ checkpoint: cp })).toEqual({ ok: false, count: 8, firstBadSeq: 9, problem: 'checkpoint_truncated' });
  });

  it('a chain rewritten and re-signed with the stolen key is caught by an earlier checkpoint', async () => {
    const cp = shipped[1]!; // seq 10, shipped to a webhook receiver before the attack
    // The attacker has the key: rewrites entry 3 and re-signs every entry after it, and the anchor.
    const rows = raw.prepare('SELECT * FROM audit ORDER BY seq').all() as Array<Record<string, any>>;
    let prev = rows[1]!.mac as string;
    for (const r of rows.slice(2)) {
      const data = r.seq === 3 ? { n: 3, note: 'nothing happened' } : JSON.parse(r.data);
      const body = canonicalJson({ seq: r.seq, at: new Date(r.at).toISOString(), actor: r.actor, action: r.action, subject: r.subject, data, prev });
      const mac = createHmac('sha256', KEY).update(body).digest('hex');
      raw.prepare('UPDATE audit SET data = ?, prev = ?, mac = ? WHERE seq = ?').run(JSON.stringify(data), prev, mac, r.seq);
      prev = mac;
    }
    raw.prepare('UPDATE meta SET value = ? WHERE key = ?').run(JSON.stringify({ seq: 12, mac: prev }), AUDIT_HEAD_META);
    expect(await log.verify()).toMatchObject({ ok: true, count: 12 });
    expect(await log.verify({ checkpoint: cp })).toEqual({ ok: false, count: 9, firstBadSeq: 10, problem: 'checkpoint_mismatch' });
  });

  it('a forged or altered checkpoint is refused as such', async () => {
    const cp = await log.checkpoint();
    expect(await log.verify({ checkpoint: { ...cp, seq: 3 } })).toMatchObject({ ok: false, problem: 'checkpoint_signature' });
    const other = new AuditLog({ store, key: Buffer.alloc(32, 9), clock });
    expect(await other.verify({ checkpoint: cp })).toMatchObject({ ok: false, problem: 'checkpoint_signature' });
    expect(await log.verify({ checkpoint: cp })).toMatchObject({ ok: true, count: 12 });
  });
});

describe('the audit key comes from its own file', () => {
  let dir: string | undefined;
  afterEach(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('a new gateway writes audit.key (0600) apart from the master key, and can be pointed elsewhere', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-sec-akey-'));
    const elsewhere = join(dir, 'keys', 'chain.key');
    const { mkdirSync, writeFileSync } = await import('node:fs');
    mkdirSync(join(dir, 'keys'));
    writeFileSync(join(dir, 'cfg.yaml'), `auditKeyFile: ${elsewhere}\n`);
    const cfg = loadConfig({ configFile: join(dir, 'cfg.yaml'), data: join(dir, 'data'), listen: ['api=127.0.0.1:0', 'ssh=off', 'postgres=off', 'mysql=off'], cwd: dir });
    const gw = await startGateway(cfg, { log: silentLogger });
    try {
      expect(existsSync(elsewhere)).toBe(true);
      expect(statSync(elsewhere).mode & 0o777).toBe(0o600);
      expect(existsSync(join(dir, 'data', 'audit.key'))).toBe(false);
      const master = loadOrCreateMasterKey({ dataDir: join(dir, 'data'), env: {} });
      const fromMaster = new Sealer(master).deriveKey('gatehouse/audit-mac/v1');
      expect(Buffer.from(readFileSync(elsewhere, 'utf8').trim(), 'base64').equals(fromMaster)).toBe(false);
      expect(await (gw.engine.ctx.audit as AuditLog).verify()).toMatchObject({ ok: true });
    } finally {
      await gw.close();
    }
  });

  it('gatehouse audit checkpoint FILE, then audit verify --checkpoint FILE finds a tail cut with the anchor rewritten', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-sec-akey-'));
    const data = join(dir, 'data');
    const gw = await startGateway(loadConfig({ data, listen: ['api=127.0.0.1:0', 'ssh=off', 'postgres=off', 'mysql=off'], cwd: dir }), { log: silentLogger });
    const cli = new CliHarness();
    try {
      const auth = new AuthService(gw.engine);
      const { token } = await auth.issue('admin', 'api', 3_600_000, 'test');
      cli.env = { ...cli.env, GATEHOUSE_SERVER: `http://127.0.0.1:${gw.addresses.api!.port}`, GATEHOUSE_TOKEN: token };
      for (let i = 0; i < 3; i++) await gw.engine.ctx.audit.record('admin', 'test.before', String(i));
      const file = join(dir, 'checkpoint.json');
      const saved = await cli.run(['audit', 'checkpoint', file]);
      expect(saved.code, saved.stderr).toBe(0);
      expect(statSync(file).mode & 0o777).toBe(0o600);
      const cp = JSON.parse(readFileSync(file, 'utf8')) as AuditCheckpoint;
      for (let i = 0; i < 5; i++) await gw.engine.ctx.audit.record('admin', 'test.entry', String(i));
      expect((await cli.run(['audit', 'verify', '--checkpoint', file])).stdout).toContain('checkpoint found in it');
      // Someone with the database cuts everything from the checkpointed entry on, and moves the anchor back.
      const raw = new Database(join(data, 'gatehouse.db'));
      raw.prepare('DELETE FROM audit WHERE seq >= ?').run(cp.seq);
      const head = raw.prepare('SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1').get();
      raw.prepare('UPDATE meta SET value = ? WHERE key = ?').run(JSON.stringify(head), AUDIT_HEAD_META);
      raw.close();
      expect((await cli.run(['audit', 'verify'])).code).toBe(0);
      const caught = await cli.run(['audit', 'verify', '--checkpoint', file]);
      expect(caught.code).not.toBe(0);
      expect(caught.stderr).toContain(`audit log verification FAILED at entry ${cp.seq} (checkpoint_truncated)`);
    } finally {
      cli.cleanup();
      await gw.close();
    }
  });

  it('a node that lost the audit key refuses to start rather than extend the chain with a new one', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-sec-akey-'));
    const cfg = loadConfig({ data: join(dir, 'data'), listen: ['api=127.0.0.1:0', 'ssh=off', 'postgres=off', 'mysql=off'], cwd: dir });
    await (await startGateway(cfg, { log: silentLogger })).close();
    rmSync(join(dir, 'data', 'audit.key'));
    await expect(startGateway(cfg, { log: silentLogger })).rejects.toMatchObject({ code: 'CONFIG_INVALID', message: expect.stringContaining('copy audit.key from the node that wrote them, or set GATEHOUSE_AUDIT_KEY') });
    expect(existsSync(join(dir, 'data', 'audit.key'))).toBe(false);
    const key = await loadAuditKey({ file: join(dir, 'x.key'), store: SqliteStore.open(':memory:'), legacyKey: () => KEY, env: { GATEHOUSE_AUDIT_KEY: Buffer.alloc(32, 5).toString('base64') } });
    expect(key.equals(Buffer.alloc(32, 5))).toBe(true);
  });

  it('a data dir whose chain was keyed from the master key keeps verifying after the upgrade', async () => {
    dir = mkdtempSync(join(tmpdir(), 'gh-sec-akey-'));
    const data = join(dir, 'data');
    const { mkdirSync } = await import('node:fs');
    mkdirSync(data, { mode: 0o700 });
    const master = loadOrCreateMasterKey({ dataDir: data, env: {} });
    const old = SqliteStore.open(join(data, 'gatehouse.db'));
    const legacy = new AuditLog({ store: old, key: new Sealer(master).deriveKey('gatehouse/audit-mac/v1'), clock: new FakeClock('2026-01-01T00:00:00Z') });
    await legacy.record('system', 'user.create', 'admin');
    await old.close();
    const gw = await startGateway(loadConfig({ data, listen: ['api=127.0.0.1:0', 'ssh=off', 'postgres=off', 'mysql=off'], cwd: dir }), { log: silentLogger });
    try {
      expect(existsSync(join(data, 'audit.key'))).toBe(true);
      expect(await (gw.engine.ctx.audit as AuditLog).verify()).toMatchObject({ ok: true });
    } finally {
      await gw.close();
    }
  });
});
