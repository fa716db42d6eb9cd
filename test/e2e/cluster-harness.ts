/**
 * Gateways sharing one PostgreSQL store, in this process: each test gets a fresh database on
 * the file's PostgreSQL server and its own nodes, so no test leans on another's state.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import WebSocket from 'ws';
import { loadConfig, type GatewayConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { startGateway, type Gateway, type GatewayOptions } from '../../src/gateway.js';
import { hashPassword } from '../../src/secrets/passwords.js';
import type { PostgresTarget } from '../targets/index.js';

/** Every node of a cluster shares these (sealed secrets and the audit chain span the cluster). */
export const MASTER_KEY = Buffer.alloc(32, 7).toString('base64');
export const AUDIT_KEY = Buffer.alloc(32, 8).toString('base64');
export const PASSWORD = 'correct horse battery';

export function pgUrl(t: PostgresTarget, database: string = t.database): string {
  return `postgres://${encodeURIComponent(t.superuser)}:${encodeURIComponent(t.superuserPassword)}@${t.host}:${t.port}/${database}`;
}

/** A new empty database on the server; returns its connection string. */
export async function freshDatabase(t: PostgresTarget): Promise<string> {
  const name = `gh_cluster_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: pgUrl(t, 'postgres') });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  return pgUrl(t, name);
}

export interface NodeOptions extends GatewayOptions {
  /** Extra listeners besides the API, as NAME=HOST:PORT. */
  listen?: string[];
  configure?: (cfg: GatewayConfig) => void;
}

/** Starts one node named `name` on the store at `url`, with its own data directory under `dir`. */
export async function startNode(name: string, url: string, dir: string, opts: NodeOptions = {}): Promise<Gateway> {
  const { listen = [], configure, ...gatewayOpts } = opts;
  const cfg = loadConfig({ data: join(dir, name), listen: ['api=127.0.0.1:0', ...listen], store: url, cwd: dir });
  cfg.nodeName = name;
  configure?.(cfg);
  const saved = { master: process.env.GATEHOUSE_MASTER_KEY, audit: process.env.GATEHOUSE_AUDIT_KEY };
  process.env.GATEHOUSE_MASTER_KEY = MASTER_KEY;
  process.env.GATEHOUSE_AUDIT_KEY = AUDIT_KEY;
  try {
    return await startGateway(cfg, { log: silentLogger, ...gatewayOpts });
  } finally {
    restore('GATEHOUSE_MASTER_KEY', saved.master);
    restore('GATEHOUSE_AUDIT_KEY', saved.audit);
  }
}

function restore(key: string, value: string | undefined): void {
  if (value === undefined) delete process.env[key];
  else process.env[key] = value;
}

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/**
 * The people: bob owns the resources, dave and erin (team dba) approve, alice and carol
 * (team eng) use them. Everyone's gateway password is PASSWORD.
 */
export async function seedPeople(gw: Gateway): Promise<void> {
  const d = gw.engine.directory;
  const passwordHash = await hashPassword(PASSWORD);
  await d.addTeam('admin', 'dba');
  await d.addTeam('admin', 'eng');
  for (const [u, teams] of [['bob', []], ['dave', ['dba']], ['erin', ['dba']], ['alice', ['eng']], ['carol', ['eng']]] as const) {
    await d.addUser('admin', { name: u, teams: [...teams], passwordHash });
  }
}

/** Every day, all day: the schedule a workflow needs before it may use approvals or check-outs. */
export const ALWAYS = { timezone: 'UTC', schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: '00:00', end: '24:00' }], maxDurationMinutes: 60 };

export function apiUrl(gw: Gateway): string {
  return `http://127.0.0.1:${gw.addresses.api!.port}`;
}

export async function tokenFor(gw: Gateway, user: string): Promise<string> {
  return (await gw.api.credentials.createApiToken(user, 'cluster test')).token;
}

export interface Reply {
  status: number;
  json: Record<string, unknown>;
}

export async function call(gw: Gateway, token: string, method: string, path: string, body?: unknown): Promise<Reply> {
  const res = await fetch(`${apiUrl(gw)}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

export type Message = Record<string, unknown> & { type: string; receivedAt: number };

export interface EventSocket {
  messages: Message[];
  /** The first message (already received or still to come) matching `pred`; rejects after `timeoutMs`. */
  next(pred: (m: Message) => boolean, timeoutMs?: number): Promise<Message>;
  close(): void;
}

/** A WebSocket client on a node's /api/v1/events, as the vault, `request --wait` or `tunnel` holds one. */
export async function openEvents(gw: Gateway, token: string): Promise<EventSocket> {
  const ws = new WebSocket(`${apiUrl(gw).replace(/^http/, 'ws')}/api/v1/events`, { headers: { authorization: `Bearer ${token}` } });
  const messages: Message[] = [];
  const waiters = new Set<() => void>();
  ws.on('message', (data: Buffer) => {
    messages.push({ ...(JSON.parse(data.toString()) as { type: string }), receivedAt: performance.now() });
    for (const w of [...waiters]) w();
  });
  const next = (pred: (m: Message) => boolean, timeoutMs = 5000): Promise<Message> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = messages.find(pred);
        if (!m) return;
        waiters.delete(check);
        clearTimeout(timer);
        resolve(m);
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no matching message within ${timeoutMs} ms; got ${messages.map((m) => m.type).join(', ')}`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  await new Promise<void>((resolve, reject) => {
    ws.once('error', reject);
    ws.once('open', () => resolve());
  });
  await next((m) => m.type === 'hello');
  return { messages, next, close: () => ws.close() };
}

/** Resolves when the node's event feed reports `state` (at once if it already is). */
export function feedState(gw: Gateway, state: 'up' | 'down'): Promise<void> {
  const feed = gw.eventFeed;
  if (!feed) throw new Error('not a clustered node');
  if (feed.feed === state) return Promise.resolve();
  return new Promise((resolve) => {
    const off = feed.onFeed((s) => {
      if (s !== state) return;
      off();
      resolve();
    });
  });
}

/** Terminates the listening connection of a node's event feed; returns how many backends were ended. */
export async function terminateListener(url: string, node: string): Promise<number> {
  const admin = new pg.Client({ connectionString: url });
  await admin.connect();
  try {
    const r = await admin.query<{ ended: boolean }>('SELECT pg_terminate_backend(pid) AS ended FROM pg_stat_activity WHERE application_name = $1', [`gatehouse-events ${node}`]);
    return r.rows.filter((x) => x.ended).length;
  } finally {
    await admin.end();
  }
}
