#!/usr/bin/env node
/**
 * The gateway of bench/postgres/sessions.mjs: what `gatehouse serve` runs (startGateway:
 * SystemClock, the SQLite store in a data directory, the API listener, the PostgreSQL door),
 * in its own process, forked with IPC and `--expose-gc`. One single-user resource `bench-pg`
 * (every day, all day, 60 min), checked out by `bench`, whose gateway password every session
 * signs in with; `admin` holds the API token the force check-in is sent with.
 *
 *   node --expose-gc bench/postgres/sessions-gateway.mjs '{"host","port","user","password","database","dataDir","gatewayPassword","plainUpstream"[,"workers"][,"relay"][,"tlsRecords"]}'
 *
 * `workers` > 1: the door is served by that many data-path workers (`gatehouse serve --workers`);
 * RSS is then the gateway's and its workers' together. `relay` (native or node): the door's data
 * path, its PostgresAdapter option `relay` (absent: GATEHOUSE_POSTGRES_RELAY, else auto);
 * `tlsRecords` (lean or openssl) its option of that name (absent: GATEHOUSE_POSTGRES_TLS_RECORDS). The
 * gateway logs at info, JSON on stderr: a few lines at start, among them the data path of the
 * door in each process serving it (`"relay":"native"` or `"node"`), nothing per session.
 *
 * Sends { ready, pid, pgPort, apiPort, token } once listening. Commands (IPC messages):
 *   { cmd: 'mem' }        after three GCs: VmRSS and process.memoryUsage() (bytes), live sessions,
 *                         and on the native data path in this process the sockets its addon
 *                         holds (`nativeEndpoints`: two per session, client and target leg) and
 *                         those on the lean record layer (`leanEndpoints`)
 *   { cmd: 'checkout' }   bench checks bench-pg out again (after a force check-in)
 *   { cmd: 'recorded', t0, expect }  waits for `expect` session_ended notices (each is published
 *                         once the session's record and audit row are written); → ms from t0 to
 *                         the last, the live records left and the session.end audit rows
 *   { cmd: 'snapshot', path }  writes a heap snapshot
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeHeapSnapshot } from 'node:v8';
import { loadAddon } from '../lib/native-addon.mjs';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));
const [{ startGateway }, { loadConfig }, { createLogger }, { PostgresAdapter }, { hashPassword }] = await Promise.all([
  dist('src/gateway.js'), dist('src/core/config.js'), dist('src/core/log.js'), dist('protocols/postgres/index.js'), dist('src/secrets/passwords.js'),
]);

const t = JSON.parse(process.argv[2]);
const ALWAYS = { timezone: 'UTC', schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'], start: '00:00', end: '24:00' }], maxDurationMinutes: 60 };

const cfg = loadConfig({ data: t.dataDir, listen: ['api=127.0.0.1:0', 'postgres=127.0.0.1:0'], cwd: t.dataDir, ...(t.workers ? { workers: String(t.workers) } : {}) });
cfg.nodeName = 'bench';
const adapter = new PostgresAdapter({
  maxConnections: 5000, ...(t.plainUpstream ? { upstreamTls: 'disable' } : {}), ...(t.relay ? { relay: t.relay } : {}), ...(t.tlsRecords ? { tlsRecords: t.tlsRecords } : {}),
});
const gw = await startGateway(cfg, { log: createLogger({ level: 'info' }, { format: 'json' }), adapters: { postgres: adapter } });
// The addon's own count of the sockets it holds, where this process runs the native data path
// (loaded already by then: the door loaded it at listen).
const native = t.relay === 'native' && !gw.dataPath ? (await dist('protocols/postgres/native.js')).nativeLoop().loop : undefined;
const d = gw.engine.directory;
await d.addUser('admin', { name: 'bench', passwordHash: await hashPassword(t.gatewayPassword) });
await d.addResource('admin', {
  name: 'bench-pg', type: 'database', protocol: 'postgres', host: t.host, port: t.port, database: t.database,
  credentials: { login: t.user, password: t.password }, options: t.plainUpstream ? { allowPlaintextUpstream: true } : {},
  owner: 'admin', access: [{ user: 'bench' }],
});
await d.setWorkflow('admin', 'bench-pg', { limitAccessTime: ALWAYS, singleUser: true });
await gw.engine.leases.checkout('bench', 'bench-pg');
const { token } = await gw.api.credentials.createApiToken('admin', 'bench');

// session_ended is published once a session's record and audit row are written.
const ended = { count: 0, lastAt: 0n };
gw.engine.ctx.bus.on('notice', (n) => {
  if (n.kind !== 'session_ended') return;
  ended.count++;
  ended.lastAt = process.hrtime.bigint();
});

// glibc's bytes in use in this process (bench/native/mallinfo.c), touched or not.
const malloc = loadAddon('mallinfo');

/** glibc's arenas (malloc_info: one <heap> each, 0 the main one, the others a thread's): bytes free and in use. */
function arenas() {
  return [...malloc.arenas().matchAll(/<heap nr="(\d+)">([\s\S]*?)<\/heap>/g)].map(([, nr, body]) => {
    const free = [...body.matchAll(/<total type="(?:fast|rest)" count="\d+" size="(\d+)"\/>/g)].reduce((a, x) => a + Number(x[1]), 0);
    const current = Number(/<system type="current" size="(\d+)"\/>/.exec(body)?.[1] ?? 0);
    return { nr: Number(nr), free, inUse: current - free };
  });
}

const rssOf = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
const rss = () => rssOf('self') + (gw.dataPath?.load() ?? []).reduce((sum, w) => sum + rssOf(w.pid), 0);
const settle = () => new Promise((r) => setTimeout(r, 50));

const commands = {
  async mem() {
    for (let i = 0; i < 3; i++) {
      globalThis.gc?.();
      await settle();
    }
    const workers = (gw.dataPath?.load() ?? []).map((w) => rssOf(w.pid));
    // After the spread: memoryUsage() has an rss of its own, this process's only.
    const m = malloc.info();
    return {
      ...process.memoryUsage(), mallocInUse: m.inUse, mallocFree: m.free, arenas: arenas(), rss: rss(), primaryRss: rssOf('self'), workersRss: workers, fds: readdirSync('/proc/self/fd').length,
      live: gw.broker.live().length, gc: typeof globalThis.gc === 'function', nativeEndpoints: native?.endpoints, leanEndpoints: native?.leanEndpoints,
    };
  },
  async checkout() {
    await gw.engine.leases.checkout('bench', 'bench-pg');
    return {};
  },
  async recorded(m) {
    const t0 = BigInt(m.t0);
    while (ended.count < m.expect) await new Promise((r) => setTimeout(r, 5));
    const live = (await gw.store.listSessions({ state: 'live' })).length;
    const audits = (await gw.store.listAudit({ action: 'session.end' })).length;
    const at = ended.lastAt;
    ended.count = 0;
    return { recordedMs: Number(at - t0) / 1e6, liveRecords: live, sessionEndAudits: audits };
  },
  async snapshot(m) {
    globalThis.gc?.();
    return { path: writeHeapSnapshot(m.path) };
  },
};

process.on('message', (m) => {
  Promise.resolve()
    .then(() => commands[m.cmd](m))
    .then((r) => process.send({ ok: true, ...r }), (e) => process.send({ ok: false, error: String(e?.stack ?? e) }));
});
process.on('SIGTERM', () => {
  void gw.close().finally(() => process.exit(0));
});
process.send({ ok: true, ready: true, pid: process.pid, pgPort: gw.addresses.postgres.port, apiPort: gw.addresses.api.port, token });
