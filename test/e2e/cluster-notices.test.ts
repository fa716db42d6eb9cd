/**
 * Notices across nodes (issue 13, item 5): what one gateway of a cluster does reaches the
 * WebSocket clients (the vault, `request --wait`, `gatehouse tunnel`) connected to another,
 * through the PostgreSQL bridge that carries revocations; nothing arrives twice where it was
 * made, webhooks fire once for the cluster, and a notice too long for one NOTIFY still arrives.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { rmSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Gateway } from '../../src/gateway.js';
import { startPostgres, type PostgresTarget } from '../targets/index.js';
import { ALWAYS, call, freshDatabase, openEvents, seedPeople, startNode, tempDir, tokenFor, type EventSocket, type NodeOptions } from './cluster-harness.js';

let target: PostgresTarget;
beforeAll(async () => {
  target = await startPostgres();
});
afterAll(async () => {
  await target?.stop();
});

const nodes: Gateway[] = [];
const sockets: EventSocket[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  for (const n of nodes.splice(0)) await n.close();
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** Nodes a and b on a fresh database, with the people seeded. */
async function twoNodes(opts: NodeOptions = {}): Promise<{ a: Gateway; b: Gateway }> {
  const url = await freshDatabase(target);
  const dir = tempDir('gh-cluster-notices-');
  dirs.push(dir);
  const a = await startNode('a', url, dir, opts);
  nodes.push(a);
  const b = await startNode('b', url, dir, opts);
  nodes.push(b);
  await seedPeople(a);
  return { a, b };
}

async function events(gw: Gateway, user: string): Promise<EventSocket> {
  const s = await openEvents(gw, await tokenFor(gw, user));
  sockets.push(s);
  return s;
}

const approval = (extra: Record<string, unknown> = {}) => ({
  limitAccessTime: ALWAYS,
  requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, requireReason: false, requireTicket: false, startOn: 'approval', ...extra },
});

async function addResource(gw: Gateway, name: string, settings: Record<string, unknown>): Promise<void> {
  await gw.engine.directory.addResource('admin', {
    name, type: 'database', protocol: 'postgres', host: '127.0.0.1', port: 5432, owner: 'bob',
    access: [{ team: 'eng' }, { team: 'dba' }], credentials: { login: 'app', password: 'secret' }, settings,
  });
}

describe('notices across the nodes of a cluster', () => {
  it('a request created on node A reaches its approver on node B, and its approval reaches the requester on node B, each within 1 s', async () => {
    const { a, b } = await twoNodes();
    await addResource(a, 'db', approval());
    const daveOnB = await events(b, 'dave');
    const aliceOnB = await events(b, 'alice');
    const [alice, dave] = [await tokenFor(a, 'alice'), await tokenFor(a, 'dave')];

    const created = performance.now();
    const r = await call(a, alice, 'POST', '/api/v1/requests', { resource: 'db', reason: 'deploy 42' });
    expect(r.status).toBe(200);
    const heard = await daveOnB.next((m) => m.type === 'request_created');
    expect(heard.request).toMatchObject({ id: r.json.id, requester: 'alice', resource: 'db', reason: 'deploy 42', state: 'pending' });
    expect(heard.receivedAt - created).toBeLessThan(1000);

    const approved = performance.now();
    expect((await call(a, dave, 'POST', `/api/v1/requests/${String(r.json.id)}/approve`, { comment: 'go' })).status).toBe(200);
    const grant = await aliceOnB.next((m) => m.type === 'request_approved');
    expect(grant.request).toMatchObject({ id: r.json.id, state: 'approved', reviews: [{ approver: 'dave', decision: 'approve', comment: 'go' }] });
    expect(grant.receivedAt - approved).toBeLessThan(1000);
  });

  it('a force check-in on node A reaches the holder and the owner on node B', async () => {
    const { a, b } = await twoNodes();
    await addResource(a, 'desk', { limitAccessTime: ALWAYS, singleUser: true });
    const aliceOnB = await events(b, 'alice');
    const bobOnB = await events(b, 'bob');
    expect((await call(b, await tokenFor(b, 'alice'), 'POST', '/api/v1/resources/desk/checkout')).status).toBe(200);

    const forced = performance.now();
    expect((await call(a, await tokenFor(a, 'bob'), 'POST', '/api/v1/resources/desk/force-checkin', { reason: 'incident 7' })).status).toBe(200);
    for (const s of [aliceOnB, bobOnB]) {
      const m = await s.next((x) => x.type === 'lease_force_checked_in');
      expect(m.lease).toMatchObject({ resource: 'desk', holder: 'alice', state: 'force_checked_in', endedBy: 'bob', endReason: 'incident 7' });
      expect(m.receivedAt - forced).toBeLessThan(1000);
    }
  });

  it('the node that made a notice delivers it to its own clients once, and the cluster sends its webhook once', async () => {
    const hooks: Array<{ type: string }> = [];
    const hookWaiters = new Set<() => void>();
    const receiver: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        hooks.push(JSON.parse(body) as { type: string });
        for (const w of [...hookWaiters]) w();
        res.end('ok');
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const hookUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    const hookArrived = (type: string): Promise<void> =>
      new Promise((resolve) => {
        const check = (): void => {
          if (hooks.some((h) => h.type === type)) {
            hookWaiters.delete(check);
            resolve();
          }
        };
        hookWaiters.add(check);
        check();
      });
    try {
      const { a, b } = await twoNodes({ configure: (cfg) => void (cfg.webhooks = [{ url: hookUrl, secret: 'a-secret-of-16+chars' }]) });
      await addResource(a, 'db', approval());
      await addResource(a, 'desk', { limitAccessTime: ALWAYS, singleUser: true });
      const aliceOnA = await events(a, 'alice');
      const aliceOnB = await events(b, 'alice');
      const r = await call(a, await tokenFor(a, 'alice'), 'POST', '/api/v1/requests', { resource: 'db' });
      await call(a, await tokenFor(a, 'dave'), 'POST', `/api/v1/requests/${String(r.json.id)}/approve`, {});
      await aliceOnB.next((m) => m.type === 'request_approved');

      // A marker made on node B after B heard the approval: node A's listener receives in commit
      // order, so a copy of A's own approval coming back would be in front of it.
      expect((await call(b, await tokenFor(b, 'alice'), 'POST', '/api/v1/resources/desk/checkout')).status).toBe(200);
      const marker = await aliceOnA.next((m) => m.type === 'lease_checked_out');
      const before = aliceOnA.messages.slice(0, aliceOnA.messages.indexOf(marker));
      expect(before.map((m) => m.type)).toEqual(['hello', 'request_approved']);

      await hookArrived('lease_checked_out');
      expect(hooks.map((h) => h.type).sort()).toEqual(['lease_checked_out', 'request_approved', 'request_created']);
    } finally {
      await new Promise((r) => receiver.close(r));
    }
  });

  it('a notice larger than one NOTIFY payload (8000 bytes) arrives whole on the other node', async () => {
    const { a, b } = await twoNodes();
    await addResource(a, 'vault', approval({ secondStage: { approvers: [{ team: 'dba' }], approvals: 1 } }));
    const aliceOnB = await events(b, 'alice');
    // The API's limits (1000 characters) in a three-byte character: reason and two comments, 9 kB.
    const [reason, first, second] = ['€'.repeat(1000), '→'.repeat(999) + '1', '✓'.repeat(999) + '2'];
    const r = await call(a, await tokenFor(a, 'alice'), 'POST', '/api/v1/requests', { resource: 'vault', reason });
    expect(r.status).toBe(200);
    expect((await call(a, await tokenFor(a, 'dave'), 'POST', `/api/v1/requests/${String(r.json.id)}/approve`, { comment: first })).status).toBe(200);
    expect((await call(a, await tokenFor(a, 'erin'), 'POST', `/api/v1/requests/${String(r.json.id)}/approve`, { comment: second })).status).toBe(200);

    const m = await aliceOnB.next((x) => x.type === 'request_approved');
    expect(m.request).toMatchObject({ reason, reviews: [{ approver: 'dave', comment: first }, { approver: 'erin', comment: second }] });
    expect(Buffer.byteLength(JSON.stringify(m), 'utf8')).toBeGreaterThan(8000);
  });
});
