import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditLog } from '../../src/audit/audit-log.js';
import { loadConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { startPostgres, type PostgresTarget } from '../targets/index.js';

/**
 * Two gateways sharing state in one PostgreSQL database (DESIGN §8): what one node does,
 * the other sees, and the store's one-holder guarantee holds across nodes.
 */
describe('two gateways on one PostgreSQL store', () => {
  let target: PostgresTarget;
  let dir: string;
  const nodes: Gateway[] = [];

  beforeAll(async () => {
    target = await startPostgres();
    dir = mkdtempSync(join(tmpdir(), 'gh-cluster-'));
  });
  afterAll(async () => {
    for (const n of nodes) await n.close();
    await target?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('shares users, resources and leases; only one node can hand out a check-out', async () => {
    const url = `postgres://${encodeURIComponent(target.superuser)}:${encodeURIComponent(target.superuserPassword)}@${target.host}:${target.port}/${target.database}`;
    // Both nodes share the master key (sealed secrets) and the audit key (the chain spans the cluster).
    const env = process.env.GATEHOUSE_MASTER_KEY;
    const auditEnv = process.env.GATEHOUSE_AUDIT_KEY;
    process.env.GATEHOUSE_MASTER_KEY = Buffer.alloc(32, 7).toString('base64');
    process.env.GATEHOUSE_AUDIT_KEY = Buffer.alloc(32, 8).toString('base64');
    try {
      for (const name of ['a', 'b']) {
        const cfg = loadConfig({ data: join(dir, name), listen: ['api=127.0.0.1:0'], store: url, cwd: dir });
        nodes.push(await startGateway(cfg, { log: silentLogger }));
      }
    } finally {
      if (env === undefined) delete process.env.GATEHOUSE_MASTER_KEY;
      else process.env.GATEHOUSE_MASTER_KEY = env;
      if (auditEnv === undefined) delete process.env.GATEHOUSE_AUDIT_KEY;
      else process.env.GATEHOUSE_AUDIT_KEY = auditEnv;
    }
    const [a, b] = nodes as [Gateway, Gateway];
    expect(a.store.kind).toBe('postgres');
    expect(a.firstRunAdmin?.password).toBeDefined();
    expect(b.firstRunAdmin).toBeUndefined(); // the admin node A created is already there

    await a.engine.directory.addUser('admin', { name: 'alice' });
    await a.engine.directory.addUser('admin', { name: 'carol' });
    await a.engine.directory.addResource('admin', {
      name: 'db', type: 'database', protocol: 'postgres', host: '127.0.0.1', port: 5432, owner: 'admin',
      access: [{ user: 'alice' }, { user: 'carol' }], credentials: { login: 'x', password: 'y' },
      settings: { limitAccessTime: { timezone: 'UTC', schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: '00:00', end: '24:00' }], maxDurationMinutes: 60 }, singleUser: true },
    });
    const results = await Promise.allSettled([a.engine.leases.checkout('alice', 'db'), b.engine.leases.checkout('carol', 'db')]);
    expect(results.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
    const loser = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    expect(loser.reason).toMatchObject({ code: 'CHECKED_OUT' });
    const holder = (await b.store.getHeldLease('db'))?.holder;
    const decision = await b.engine.decide({ user: holder!, resource: 'db', at: new Date(), mfa: { kind: 'none' } });
    expect(decision.allow && decision.credentials).toEqual({ login: 'x', password: 'y' });
    expect((await (a.engine.ctx.audit as unknown as AuditLog).verify()).ok).toBe(true);

    // The holder's live session is on node B; an approver force-checks-in on node A.
    const opened = await b.broker.open({ user: holder!, resource: 'db', protocol: 'postgres', client: 'test', mfa: { kind: 'none' } });
    if (!opened.ok) throw new Error(opened.denial.message);
    const closed = new Promise<{ reason: string; message: string; ms: number }>((resolve) => {
      const t0 = performance.now();
      void opened.session.live({ warn: () => undefined, close: (reason, message) => resolve({ reason, message, ms: performance.now() - t0 }) });
    });
    await a.engine.leases.forceCheckin('admin', 'db', 'incident 9');
    const ended = await closed;
    expect(ended.reason).toBe('force_checked_in');
    expect(ended.message).toContain('incident 9');
    expect(ended.ms).toBeLessThan(1000);
  });
});
