#!/usr/bin/env node
/**
 * A Gatehouse PostgreSQL gateway in its own process, as `gatehouse serve` runs it, for the
 * benchmark: SystemClock, in-memory SQLite, two open resources on the one target, user `bench`
 * with a gateway password. Two listeners: target leg in plaintext (`upstreamTls: 'disable'`,
 * which applies to resources that allow a plaintext target, as bench-pg does), and with TLS
 * (the default: TLS required, the target's certificate pinned on first use), each with its own
 * resource: bench-pg (log in as `bench:bench-pg`) on the first, bench-pg-tls on the second. One
 * resource for both would not do: once the TLS listener pinned the target's certificate, the
 * plaintext listener's logins would go over TLS too, as a pinned target must (a plaintext leg
 * to it would be a downgrade), and its figures would be the TLS leg's.
 *
 *   node bench/postgres/gateway.mjs '{"host","port","user","password","database","gatewayPassword","certDir"[,"workers"][,"relay"][,"logLevel"]}'
 *
 * `workers` (a number ≥ 1): both listeners are served by that many data-path worker processes
 * (src/dataplane), as `gatehouse serve --workers N` does; absent, everything is in this process.
 * `relay` (auto, native or node): the door's data path, the PostgresAdapter option `relay`;
 * absent, GATEHOUSE_POSTGRES_RELAY, else auto (native where it loads).
 *
 * The listeners (in this process or in the workers) log at info, as JSON on stderr: a few lines
 * at listen, among them the data path each uses (`"relay":"native"` or `"node"`), and a line
 * per refused connection; nothing per session or per statement. The rest stays silent.
 * `logLevel` "debug" (connect-ab.mjs --timings) adds, among others, each login's `login
 * timings` line (protocols/postgres/session.ts), and the statements' debug lines.
 *
 * Prints one JSON line: { plainPort, tlsPort, plainUser, tlsUser, pid, workers: [pid...] } (the
 * users: the gateway login for each listener's resource); runs until killed.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));
const [{ ensurePki }, { PostgresAdapter }, { DataPath }, { createLogger }, { benchGateway, databaseResource }] = await Promise.all([
  dist('src/pki/pki.js'), dist('protocols/postgres/index.js'), dist('src/dataplane/pool.js'), dist('src/core/log.js'), import('../lib/gateway.mjs'),
]);

const t = JSON.parse(process.argv[2]);
const { broker, stop } = await benchGateway({
  password: t.gatewayPassword,
  resource: databaseResource('bench-pg', 'postgres', t),
  more: [databaseResource('bench-pg-tls', 'postgres', t, { plaintext: false })],
});
const pki = await ensurePki(t.certDir);
const tls = { cert: pki.certPem, key: pki.keyPem, ca: pki.caCertPem };
// The workers log at this logger's level (src/dataplane/pool.ts).
const log = createLogger({ level: t.logLevel ?? 'info' }, { format: 'json' });
const pool = t.workers ? new DataPath(t.workers, log) : undefined;
await pool?.start();
const door = (adapter) => (pool ? pool.door('postgres', adapter) : adapter);
const relay = t.relay ? { relay: t.relay } : {};
const plain = await door(new PostgresAdapter({ upstreamTls: 'disable', ...relay })).listen({ host: '127.0.0.1', port: 0, broker, log: log.child({ listener: 'plain' }), tls });
const withTls = await door(new PostgresAdapter(relay)).listen({ host: '127.0.0.1', port: 0, broker, log: log.child({ listener: 'tls' }), tls });
process.on('SIGTERM', () => {
  void Promise.all([plain.close(), withTls.close()]).then(() => stop()).then(() => pool?.stop()).finally(() => process.exit(0));
});
console.log(JSON.stringify({ plainPort: plain.address.port, tlsPort: withTls.address.port, plainUser: 'bench:bench-pg', tlsUser: 'bench:bench-pg-tls', pid: process.pid, workers: pool ? pool.load().map((w) => w.pid) : [] }));
