/**
 * SIGKILL chaos (issue 13, item 6): two `gatehouse serve` processes share one PostgreSQL
 * store while workers check resources out and in, request and approve access, and start
 * sessions through the PostgreSQL door. Each round kills one node with SIGKILL at a random
 * moment of that traffic and starts it again. Afterwards the store must hold the contract
 * suite's invariants: at most one held lease per resource, every approval the API answered
 * 200 for recorded (and every check-out and request it answered 200 for), and an audit chain
 * that verifies.
 *
 *   GATEHOUSE_CHAOS_ROUNDS=50 npx vitest run test/e2e/chaos-sigkill.test.ts   (default 8 rounds)
 *   GATEHOUSE_CHAOS_SEED=N replays the random choices of a run (printed in the test name).
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStore } from '../../src/store/open.js';
import type { Store } from '../../src/store/store.js';
import { startPostgres, type PostgresTarget } from '../targets/index.js';
import { ALWAYS, freshDatabase, PASSWORD, seedPeople, startNode, tempDir } from './cluster-harness.js';
import { ensureBuilt, ServeProcess } from './serve-process.js';

const ROUNDS = Number(process.env.GATEHOUSE_CHAOS_ROUNDS ?? 8);
const SEED = Number(process.env.GATEHOUSE_CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
const DESKS = ['desk1', 'desk2', 'desk3'];

/** mulberry32: small, seedable, good enough to pick kill moments and operations. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const random = prng(SEED);
const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;

/** 'interrupted': the node died with the call in flight; 'down': it was already dead. */
type Reply = { status: number; json: Record<string, unknown> } | 'interrupted' | 'down';

/** What the API promised (answered 200 for), and what the kills interrupted. */
const promised = { approvals: [] as Array<{ requestId: string; approver: string }>, checkouts: [] as string[], requests: [] as string[], sessions: 0 };
const interrupted = { checkout: 0, approve: 0, session: 0, request: 0 };
type Aim = 'checkout' | 'approve' | 'session';
/** The operation the current round's kill aims at: the first one sent to the victim starts the countdown. */
let aim: { kind: Aim; node: ServeProcess; fire: () => void } | undefined;
function sending(kind: Aim, node: ServeProcess): void {
  if (aim?.kind === kind && aim.node === node) aim.fire();
}
/** Rounds whose kill came within moments of sending an operation of that kind. */
const aimed = { checkout: 0, approve: 0, session: 0, missed: 0 };
/** When the current round's kill was sent (performance.now()); calls started before it were in flight. */
let killStarted = Infinity;

let target: PostgresTarget;
let url = '';
let dir = '';
const nodes: ServeProcess[] = [];
const tokens = new Map<string, string>();

async function http(node: ServeProcess, user: string, method: string, path: string, body?: unknown): Promise<Reply> {
  const started = performance.now();
  try {
    const res = await fetch(`${node.api}${path}`, {
      method,
      headers: { authorization: `Bearer ${tokens.get(user)!}`, 'content-type': 'application/json' },
      ...(method === 'GET' ? {} : { body: JSON.stringify(body ?? {}) }),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, json: (await res.json()) as Record<string, unknown> };
  } catch {
    return started < killStarted ? 'interrupted' : 'down';
  }
}

/** True when the call got no answer; counts it when the kill caught it in flight. */
function noteInterrupted(r: Reply, what: keyof typeof interrupted): r is 'interrupted' | 'down' {
  if (r === 'interrupted') interrupted[what]++;
  return typeof r === 'string';
}

/** The open request of `user` for `resource`, created if there is none. */
async function openRequest(node: ServeProcess, user: string, resource: string): Promise<string | undefined> {
  const r = await http(node, user, 'POST', '/api/v1/requests', { resource, reason: 'chaos' });
  if (noteInterrupted(r, 'request')) return undefined;
  if (r.status === 200) {
    promised.requests.push(String(r.json.id));
    return String(r.json.id);
  }
  const details = (r.json.error as { details?: { requestId?: string } } | undefined)?.details;
  return details?.requestId;
}

async function approveIfPending(node: ServeProcess, id: string): Promise<void> {
  const got = await http(node, 'dave', 'GET', `/api/v1/requests/${id}`);
  if (typeof got === 'string' || got.status !== 200 || got.json.state !== 'pending') return;
  const approver = pick(['dave', 'erin']);
  sending('approve', node);
  const r = await http(node, approver, 'POST', `/api/v1/requests/${id}/approve`, { comment: 'chaos' });
  if (noteInterrupted(r, 'approve')) return;
  if (r.status === 200) promised.approvals.push({ requestId: id, approver });
}

/** Check out a desk and check it in again. */
async function leaseOp(node: ServeProcess): Promise<void> {
  const user = pick(['alice', 'carol']);
  const desk = pick(DESKS);
  sending('checkout', node);
  const r = await http(node, user, 'POST', `/api/v1/resources/${desk}/checkout`);
  if (noteInterrupted(r, 'checkout') || r.status !== 200) return;
  promised.checkouts.push(String(r.json.id));
  await http(node, user, 'POST', `/api/v1/resources/${desk}/checkin`);
}

/** Request the vault, have it approved, cancel the grant (so the next request can be made). */
async function approvalOp(node: ServeProcess): Promise<void> {
  const user = pick(['alice', 'carol']);
  const id = await openRequest(node, user, 'vault');
  if (!id) return;
  await approveIfPending(node, id);
  await http(node, user, 'POST', `/api/v1/requests/${id}/cancel`);
}

/** Request db, have it approved, check it out, open a session through the door, check it in. */
async function sessionOp(node: ServeProcess): Promise<void> {
  const user = 'alice';
  const id = await openRequest(node, user, 'db');
  if (!id) return;
  await approveIfPending(node, id);
  sending('checkout', node);
  const lease = await http(node, user, 'POST', '/api/v1/resources/db/checkout');
  if (noteInterrupted(lease, 'checkout') || lease.status !== 200) return;
  promised.checkouts.push(String(lease.json.id));
  const client = new pg.Client({
    host: 'localhost', port: node.postgresPort, user: `${user}:db`, password: PASSWORD, database: target.database,
    ssl: { ca: readFileSync(node.caPath, 'utf8') }, connectionTimeoutMillis: 10_000,
  });
  client.on('error', () => undefined);
  const connecting = performance.now();
  sending('session', node);
  try {
    await client.connect();
    await client.query('select 1');
    promised.sessions++;
  } catch {
    if (connecting < killStarted && performance.now() >= killStarted) interrupted.session++;
  } finally {
    await client.end().catch(() => undefined);
  }
  await http(node, user, 'POST', '/api/v1/resources/db/checkin');
}

/** Runs `op` against `node` until `until` resolves. */
async function loop(node: ServeProcess, op: (n: ServeProcess) => Promise<void>, until: Promise<void>): Promise<void> {
  let done = false;
  void until.then(() => (done = true));
  while (!done) await op(node);
}

beforeAll(async () => {
  ensureBuilt();
  target = await startPostgres();
  url = await freshDatabase(target);
  dir = tempDir('gh-chaos-');
  // The organisation, written once by an in-process node that then leaves.
  const seeder = await startNode('seed', url, dir);
  const adminPassword = seeder.firstRunAdmin!.password!;
  await seedPeople(seeder);
  const d = seeder.engine.directory;
  const base = { type: 'database' as const, protocol: 'postgres' as const, owner: 'bob', access: [{ team: 'eng' }, { team: 'dba' }] };
  const approval = { approvers: [{ team: 'dba' }], approvals: 1, requireReason: false, requireTicket: false, startOn: 'first_connection' };
  for (const desk of DESKS) await d.addResource('admin', { ...base, name: desk, host: '127.0.0.1', port: 5432, credentials: { login: 'x', password: 'y' }, settings: { limitAccessTime: ALWAYS, singleUser: true } });
  await d.addResource('admin', { ...base, name: 'vault', host: '127.0.0.1', port: 5432, credentials: { login: 'x', password: 'y' }, settings: { limitAccessTime: ALWAYS, requireApproval: approval } });
  await d.addResource('admin', {
    ...base, name: 'db', host: target.host, port: target.port, database: target.database, credentials: { login: target.user, password: target.password },
    settings: { limitAccessTime: ALWAYS, singleUser: true, requireApproval: approval },
  });
  await seeder.close();

  const passwordFile = join(dir, 'admin-password');
  writeFileSync(passwordFile, adminPassword, { mode: 0o600 });
  for (const name of ['a', 'b']) {
    const node = new ServeProcess({ name, storeUrl: url, dataDir: join(dir, name), adminPasswordFile: passwordFile });
    nodes.push(node);
    await node.start();
  }
  for (const [user, password] of [['admin', adminPassword], ...['alice', 'carol', 'dave', 'erin'].map((u) => [u, PASSWORD])] as Array<[string, string]>) {
    const res = await fetch(`${nodes[0]!.api}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user, password }) });
    tokens.set(user, ((await res.json()) as { token: string }).token);
  }
}, 300_000);

afterAll(async () => {
  for (const n of nodes) await n.kill();
  await target?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe(`SIGKILL chaos on a two-node cluster (${ROUNDS} rounds, seed ${SEED})`, () => {
  it(
    'leaves at most one held lease per resource, every approval, check-out and request the API confirmed, and a verifying audit chain',
    async () => {
      const [a, b] = nodes as [ServeProcess, ServeProcess];
      for (let round = 0; round < ROUNDS; round++) {
        const victim = random() < 0.5 ? a : b;
        const other = victim === a ? b : a;
        let killed!: () => void;
        const kill = new Promise<void>((resolve) => (killed = resolve));
        const work = [
          loop(victim, leaseOp, kill), loop(victim, approvalOp, kill), loop(victim, sessionOp, kill),
          loop(other, leaseOp, kill), loop(other, approvalOp, kill), loop(other, sessionOp, kill),
        ];
        // The kill aims at one kind of operation: it lands at a random moment after the first
        // one is sent to the victim (these take some tens of milliseconds on the node).
        const kind = pick(['checkout', 'approve', 'session'] as const);
        let fire!: () => void;
        const sent = new Promise<boolean>((resolve) => (fire = () => resolve(true)));
        aim = { kind, node: victim, fire };
        const hit = await Promise.race([sent, new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
        aim = undefined;
        aimed[hit ? kind : 'missed']++;
        await new Promise((r) => setTimeout(r, random() * (kind === 'session' ? 150 : 60)));
        killStarted = performance.now();
        await victim.kill();
        killed();
        await Promise.all(work);
        killStarted = Infinity;
        await victim.start();
      }

      let stale: number | undefined;
      let unaudited: number | undefined;
      const store: Store = await openStore({ kind: 'postgres', url });
      try {
        const raw = new pg.Client({ connectionString: url });
        await raw.connect();
        const doubles = await raw.query('SELECT resource, count(*)::int AS held FROM leases WHERE state = $1 GROUP BY resource HAVING count(*) > 1', ['held']);
        await raw.end();
        expect(doubles.rows).toEqual([]);

        const lostApprovals: string[] = [];
        for (const { requestId, approver } of promised.approvals) {
          const r = await store.getRequest(requestId);
          if (!r?.reviews.some((v) => v.approver === approver && v.decision === 'approve')) lostApprovals.push(`${requestId} by ${approver}`);
        }
        expect(lostApprovals).toEqual([]);
        const lostLeases = (await Promise.all(promised.checkouts.map(async (id) => ((await store.getLease(id)) ? undefined : id)))).filter(Boolean);
        expect(lostLeases).toEqual([]);
        const lostRequests = (await Promise.all(promised.requests.map(async (id) => ((await store.getRequest(id)) ? undefined : id)))).filter(Boolean);
        expect(lostRequests).toEqual([]);
        // A client is told its session is open only once the node recorded and audited it.
        expect((await store.listSessions({ resource: 'db' })).length).toBeGreaterThanOrEqual(promised.sessions);
        expect((await store.listAudit({ action: 'session.start' })).length).toBeGreaterThanOrEqual(promised.sessions);
        stale = (await store.listSessions({ state: 'live' })).length;
        // Not an invariant (the state write and its audit row are two transactions), but worth knowing.
        const audited = new Set((await store.listAudit({ action: 'lease.checkout' })).map((e) => (e.data as { leaseId?: string }).leaseId));
        unaudited = (await store.listLeases()).filter((l) => !audited.has(l.id)).length;
      } finally {
        await store.close();
      }

      const verify = await http(a, 'admin', 'GET', '/api/v1/audit/verify');
      expect(typeof verify !== 'string' && verify.json).toMatchObject({ ok: true });

      process.stderr.write(
        `[chaos] ${ROUNDS} rounds, seed ${SEED}: confirmed ${promised.approvals.length} approvals, ${promised.checkouts.length} check-outs, ` +
          `${promised.requests.length} requests, ${promised.sessions} sessions; kills aimed at ${JSON.stringify(aimed)}; calls interrupted in flight: ${JSON.stringify(interrupted)}; ` +
          `session records a killed node left 'live': ${stale}; leases without their lease.checkout audit row: ${unaudited}\n`,
      );
      // The run did what it claims: traffic was confirmed and kills interrupted it.
      expect(promised.approvals.length).toBeGreaterThan(0);
      expect(promised.checkouts.length).toBeGreaterThan(0);
      expect(promised.sessions).toBeGreaterThan(0);
    },
    ROUNDS * 15_000 + 60_000,
  );
});
