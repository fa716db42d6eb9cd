#!/usr/bin/env node
/**
 * A Gatehouse MySQL gateway in its own process, for connect-ab.mjs: SystemClock, in-memory
 * SQLite, one open resource `bench-mysql` (log in as `bench:bench-mysql` with the gateway
 * password), one listener with client TLS and the target leg in plaintext
 * (`upstreamTls: 'disable'`, as run.mjs's `--no-target-tls` cases).
 *
 *   node bench/mysql/gateway.mjs '{"host","port","user","password","database","gatewayPassword","certDir"[,"relay"]}'
 *
 * `relay` (native or node): the door's data path, the MysqlAdapter option `relay`; absent, the
 * build's default. It reads only what a build from before the data-path work (issue 18) has too,
 * so a copy of it (with this checkout's bench/lib/gateway.mjs) runs in such a build's worktree:
 * the A of an A/B.
 *
 * Prints one JSON line: { port, pid, ca } (ca: the PEM its clients verify it with); runs until killed.
 */
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));
const [{ ensurePki }, { MysqlAdapter }, { benchGateway, databaseResource, silentLogger }] = await Promise.all([
  dist('src/pki/pki.js'), dist('protocols/mysql/index.js'), import('../lib/gateway.mjs'),
]);

const t = JSON.parse(process.argv[2]);
const { broker, stop } = await benchGateway({ password: t.gatewayPassword, resource: databaseResource('bench-mysql', 'mysql', t) });
const pki = await ensurePki(t.certDir);
const adapter = new MysqlAdapter({ upstreamTls: 'disable', ...(t.relay ? { relay: t.relay } : {}) });
const listener = await adapter.listen({ host: '127.0.0.1', port: 0, broker, log: silentLogger, tls: { cert: pki.certPem, key: pki.keyPem, ca: pki.caCertPem } });
process.on('SIGTERM', () => {
  void listener.close().then(() => stop()).finally(() => process.exit(0));
});
console.log(JSON.stringify({ port: listener.address.port, pid: process.pid, ca: pki.caCertPem }));
