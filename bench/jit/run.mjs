#!/usr/bin/env node
/**
 * What an ephemeral account costs at connection start (issue 17: at most 50 ms added to the
 * first connection of a grant, p50, on PostgreSQL and MySQL/MariaDB).
 *
 *   npm run build && node bench/jit/run.mjs [--rounds 5] [--connects 10] [--engines postgres,mysql]
 *
 * Per engine, one real target (test/targets) and one in-process gateway (SystemClock,
 * in-memory SQLite), and four ways to reach the target, interleaved round by round:
 *   direct       the client logs in as the vaulted login (TLS)
 *   by-hand      an issuer with a pooled admin connection creates a role with the same grants
 *                and comment, then the client logs in as it (what a secrets engine does)
 *   gateway      through the gateway, vaulted login (single-user resource, checked out)
 *   gateway-jit  through the gateway, ephemeral account: the grant's first connection makes
 *                the account; a second connection of the same grant reuses it
 * Each timing is connect + TLS + login + one `select current_user` round trip. Check-out,
 * check-in and the removal of accounts happen between timings, never inside one.
 * The PostgreSQL door's data path is its default (auto: the native one where it loads) unless
 * GATEHOUSE_POSTGRES_RELAY=native|node says otherwise; it carries one round trip per timing here.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import mysql from 'mysql2/promise';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, connects: { type: 'string', default: '10' }, engines: { type: 'string', default: 'postgres,mysql' } } });
const ROUNDS = Number(values.rounds);
const CONNECTS = Number(values.connects);
const ENGINES = values.engines.split(',');

const [{ ensurePki }, { PostgresAdapter }, { MysqlAdapter }, { benchGateway, silentLogger }] = await Promise.all([
  dist('src/pki/pki.js'), dist('protocols/postgres/index.js'), dist('protocols/mysql/index.js'), import('../lib/gateway.mjs'),
]);

const GATEWAY_PASSWORD = 'bench gateway password';
const ALWAYS = { timezone: 'UTC', schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: '00:00', end: '24:00' }], maxDurationMinutes: 60 };
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fmt = (ms) => `${ms.toFixed(2)} ms`;
const dir = mkdtempSync(join(tmpdir(), 'gh-bench-jit-'));
const cleanups = [() => rmSync(dir, { recursive: true, force: true })];

function startTarget(script) {
  const path = join(root, 'test/targets', script);
  const t = JSON.parse(execFileSync('bash', [path, 'start'], { encoding: 'utf8' }).trim().split('\n').at(-1));
  cleanups.push(() => execFileSync('bash', [path, 'stop', t.dir], { stdio: 'ignore' }));
  return t;
}

async function timed(fn) {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

/** The engine-specific parts: admin SQL, a client that logs in and asks who it is. */
const ENGINE = {
  postgres: {
    script: 'postgres.sh',
    Adapter: PostgresAdapter,
    protocol: 'postgres',
    async prepare(t) {
      const su = new pg.Client({ host: t.host, port: t.port, user: t.superuser, password: t.superuserPassword, database: t.database, ssl: { ca: readFileSync(t.ca, 'utf8') } });
      await su.connect();
      await su.query("CREATE ROLE gh_admin LOGIN PASSWORD 'gh-admin-pw' CREATEROLE");
      await su.query('CREATE ROLE app_read NOLOGIN');
      await su.query(`GRANT CONNECT ON DATABASE ${t.database} TO app_read`);
      await su.query('GRANT app_read TO gh_admin WITH ADMIN OPTION');
      return { admin: { login: 'gh_admin', password: 'gh-admin-pw' }, super: su };
    },
    async whoami(conn) {
      const c = new pg.Client({ ...conn, connectionTimeoutMillis: 10_000 });
      await c.connect();
      const r = await c.query('select current_user');
      await c.end();
      return r.rows[0].current_user;
    },
    direct: (t, login, password) => ({ host: t.host, port: t.port, user: login, password, database: t.database, ssl: { ca: readFileSync(t.ca, 'utf8') } }),
    via: (port, ca, user, database) => ({ host: 'localhost', port, user, password: GATEWAY_PASSWORD, database, ssl: { ca } }),
    async byHand(admin, name, password) {
      await admin.query(`CREATE ROLE ${name} LOGIN PASSWORD '${password}' VALID UNTIL '${new Date(Date.now() + 3_600_000).toISOString()}' IN ROLE app_read`);
      await admin.query(`COMMENT ON ROLE ${name} IS 'by hand'`);
    },
    dropByHand: (admin, name) => admin.query(`DROP ROLE ${name}`),
    adminClient: async (t, a) => {
      const c = new pg.Client({ host: t.host, port: t.port, user: a.login, password: a.password, database: t.database, ssl: { ca: readFileSync(t.ca, 'utf8') } });
      await c.connect();
      return { query: (sql) => c.query(sql), end: () => c.end() };
    },
  },
  mysql: {
    script: 'mariadb.sh',
    Adapter: MysqlAdapter,
    protocol: 'mysql',
    async prepare(t) {
      const su = await mysql.createConnection({ host: t.host, port: t.port, user: t.superuser, password: t.superuserPassword, ssl: { ca: readFileSync(t.ca, 'utf8') } });
      await su.query("CREATE USER 'gh_admin'@'%' IDENTIFIED BY 'gh-admin-pw'");
      // The rights protocols/mysql/README.md lists; UPDATE on mysql.* is the by-hand issuer's
      // (MariaDB's SET DEFAULT ROLE ... FOR another account writes mysql.roles_mapping).
      await su.query("GRANT CREATE USER, PROCESS, CONNECTION ADMIN ON *.* TO 'gh_admin'@'%'");
      await su.query("GRANT SELECT, UPDATE ON mysql.* TO 'gh_admin'@'%'");
      await su.query("GRANT CREATE, SELECT, INSERT, UPDATE ON gatehouse_jit.* TO 'gh_admin'@'%'");
      await su.query(`GRANT SELECT ON \`${t.database}\`.* TO 'gh_admin'@'%'`);
      await su.query('CREATE ROLE app_read');
      await su.query(`GRANT SELECT ON \`${t.database}\`.* TO app_read`);
      await su.query("GRANT app_read TO 'gh_admin'@'%' WITH ADMIN OPTION");
      return { admin: { login: 'gh_admin', password: 'gh-admin-pw' }, super: { end: () => su.end() } };
    },
    async whoami(conn) {
      const c = await mysql.createConnection({ ...conn, connectTimeout: 10_000 });
      const [rows] = await c.query('select current_user() as u');
      await c.end();
      return rows[0].u;
    },
    direct: (t, login, password) => ({ host: t.host, port: t.port, user: login, password, database: t.database, ssl: { ca: readFileSync(t.ca, 'utf8') } }),
    via: (port, ca, user, database) => ({ host: 'localhost', port, user, password: GATEWAY_PASSWORD, database, ssl: { ca } }),
    async byHand(admin, name, password) {
      await admin.query(`CREATE USER '${name}'@'%' IDENTIFIED BY '${password}' WITH MAX_USER_CONNECTIONS 10`);
      await admin.query(`GRANT app_read TO '${name}'@'%'`);
      await admin.query(`SET DEFAULT ROLE app_read FOR '${name}'@'%'`);
    },
    dropByHand: (admin, name) => admin.query(`DROP USER '${name}'@'%'`),
    adminClient: async (t, a) => {
      const c = await mysql.createConnection({ host: t.host, port: t.port, user: a.login, password: a.password, ssl: { ca: readFileSync(t.ca, 'utf8') } });
      return { query: (sql) => c.query(sql), end: () => c.end() };
    },
  },
};

async function benchEngine(name) {
  const e = ENGINE[name];
  const t = startTarget(e.script);
  const { admin, super: su } = await e.prepare(t);
  const pki = await ensurePki(join(dir, name));
  const base = { type: 'database', protocol: e.protocol, host: t.host, port: t.port, database: t.database, credentials: admin };
  const { engine, broker, store, stop } = await benchGateway({ password: GATEWAY_PASSWORD, resource: { ...base, name: 'vaulted', settings: { limitAccessTime: ALWAYS, singleUser: true } } });
  await engine.directory.addResource('admin', { ...base, name: 'jit', owner: 'admin', access: [{ user: 'bench' }], settings: { limitAccessTime: ALWAYS, singleUser: true } });
  await engine.directory.setJit('admin', 'jit', { ephemeral: { grants: ['app_read'] } });
  const adapter = new e.Adapter({ upstreamCa: { '*': readFileSync(t.ca, 'utf8') } });
  const listener = await adapter.listen({ host: '127.0.0.1', port: 0, broker, log: silentLogger, tls: { cert: pki.certPem, key: pki.keyPem, ca: pki.caCertPem } });
  broker.jit.register(adapter.provisioner(broker.portFor({ protocol: e.protocol, loginExample: '' })));
  await broker.jit.start();
  const issuer = await e.adminClient(t, admin);
  const port = listener.address.port;

  const samples = { direct: [], byHand: [], gateway: [], jitFirst: [], jitReuse: [] };
  const variants = {
    direct: async () => samples.direct.push(await timed(() => e.whoami(e.direct(t, t.user, t.password)))),
    byHand: async () => {
      const n = `bh_${randomBytes(4).toString('hex')}`;
      const pw = randomBytes(12).toString('hex');
      samples.byHand.push(await timed(async () => {
        await e.byHand(issuer, n, pw);
        await e.whoami(e.direct(t, n, pw));
      }));
      await e.dropByHand(issuer, n);
    },
    gateway: async () => {
      await engine.leases.checkout('bench', 'vaulted');
      samples.gateway.push(await timed(() => e.whoami(e.via(port, pki.caCertPem, 'bench:vaulted', t.database))));
      await engine.leases.checkin('bench', 'vaulted');
    },
    jit: async () => {
      await engine.leases.checkout('bench', 'jit');
      let who = '';
      samples.jitFirst.push(await timed(async () => (who = await e.whoami(e.via(port, pki.caCertPem, 'bench:jit', t.database)))));
      if (!who.startsWith('gh_bench_')) throw new Error(`the ephemeral connection ran as ${who}`);
      samples.jitReuse.push(await timed(() => e.whoami(e.via(port, pki.caCertPem, 'bench:jit', t.database))));
      await engine.leases.checkin('bench', 'jit');
      await broker.jit.drain();
    },
  };
  const order = Object.keys(variants);
  // Warm-up: first connections pay for TLS session setup, the password cache, JIT code paths.
  for (const k of order) await variants[k]();
  for (const s of Object.values(samples)) s.length = 0;
  for (let round = 0; round < ROUNDS; round++) {
    const rotated = [...order.slice(round % order.length), ...order.slice(0, round % order.length)];
    for (let i = 0; i < CONNECTS; i++) for (const k of rotated) await variants[k]();
  }
  const left = (await store.listJitAccounts({ states: ['planned', 'provisioning', 'active', 'revoking'] })).length;
  // The manager's own measure of each creation (record planned → account active), from the audit.
  const created = (await store.listAudit({ action: 'jit.create' })).map((e) => e.data.ms);
  const removed = (await store.listAudit({ action: 'jit.remove' })).map((e) => e.data.ms);
  await issuer.end();
  await listener.close();
  await stop();
  await su.end();
  const p = Object.fromEntries(Object.entries(samples).map(([k, v]) => [k, median(v)]));
  console.log(`\n${name} (${ROUNDS} rounds x ${CONNECTS} connects each, interleaved; p50 of connect + login + select current_user)`);
  console.log(`  direct, vaulted login              ${fmt(p.direct)}`);
  console.log(`  by hand: create role, then log in  ${fmt(p.byHand)}  (+${fmt(p.byHand - p.direct)} vs direct)`);
  console.log(`  gateway, vaulted login             ${fmt(p.gateway)}  (+${fmt(p.gateway - p.direct)} vs direct)`);
  console.log(`  gateway, ephemeral, first of grant ${fmt(p.jitFirst)}  (+${fmt(p.jitFirst - p.gateway)} vs gateway vaulted; goal <= 50 ms)`);
  console.log(`  gateway, ephemeral, reused         ${fmt(p.jitReuse)}  (+${fmt(p.jitReuse - p.gateway)} vs gateway vaulted)`);
  console.log(`  ratio first-of-grant / by hand     ${(p.jitFirst / p.byHand).toFixed(2)}x; accounts left live after the run: ${left}`);
  console.log(`  provisioning alone (audit jit.create ms) p50 ${fmt(median(created))}; removal (jit.remove ms) p50 ${fmt(median(removed))}`);
}

try {
  for (const name of ENGINES) await benchEngine(name);
} finally {
  for (const c of cleanups.reverse()) {
    try {
      c();
    } catch {
      // best effort
    }
  }
}
