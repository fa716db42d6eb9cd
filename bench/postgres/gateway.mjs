#!/usr/bin/env node
/**
 * A Gatehouse PostgreSQL gateway in its own process, as `gatehouse serve` runs it, for the
 * benchmark: SystemClock, in-memory SQLite, one open resource, user `bench` with a gateway
 * password. Two listeners: target leg in plaintext, and with TLS (when the target offers it).
 *
 *   node bench/postgres/gateway.mjs '{"host","port","user","password","database","gatewayPassword","certDir"}'
 *
 * Prints one JSON line: { plainPort, tlsPort, pid }; runs until killed.
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));
const [{ SystemClock }, { silentLogger }, { EventBus }, { Sealer }, { SqliteStore }, { AuditLog }, { Engine }, { Broker }, { ensurePki }, { hashPassword }, { PostgresAdapter }] =
  await Promise.all([
    dist('src/core/clock.js'), dist('src/core/log.js'), dist('src/events/bus.js'), dist('src/secrets/sealer.js'), dist('src/store/sqlite/sqlite-store.js'),
    dist('src/audit/audit-log.js'), dist('src/workflow/engine.js'), dist('src/broker/broker.js'), dist('src/pki/pki.js'), dist('src/secrets/passwords.js'),
    dist('protocols/postgres/index.js'),
  ]);

const t = JSON.parse(process.argv[2]);
const clock = new SystemClock();
const store = SqliteStore.open(':memory:');
const sealer = new Sealer(randomBytes(32));
const audit = new AuditLog({ store, key: sealer.deriveKey('gatehouse/audit-mac/v1'), clock });
const engine = new Engine({ store, clock, bus: new EventBus(), audit, sealer });
const broker = new Broker({ engine, log: silentLogger, node: 'bench' });
await store.putUser({ id: 'admin', name: 'admin', admin: true, disabled: false, teams: [], totpConfirmed: false, sshKeys: [], createdAt: clock.now() });
await engine.directory.addUser('admin', { name: 'bench', passwordHash: await hashPassword(t.gatewayPassword) });
await engine.directory.addResource('admin', {
  name: 'bench-pg', type: 'database', protocol: 'postgres', host: t.host, port: t.port, database: t.database, owner: 'admin',
  access: [{ user: 'bench' }], credentials: { login: t.user, password: t.password },
});
const pki = await ensurePki(t.certDir);
const tls = { cert: pki.certPem, key: pki.keyPem, ca: pki.caCertPem };
const plain = await new PostgresAdapter({ upstreamTls: 'disable' }).listen({ host: '127.0.0.1', port: 0, broker, log: silentLogger, tls });
const withTls = await new PostgresAdapter({ upstreamTls: 'prefer' }).listen({ host: '127.0.0.1', port: 0, broker, log: silentLogger, tls });
process.on('SIGTERM', () => {
  void Promise.all([plain.close(), withTls.close()]).then(() => broker.shutdown()).finally(() => {
    engine.stop();
    process.exit(0);
  });
});
console.log(JSON.stringify({ plainPort: plain.address.port, tlsPort: withTls.address.port, pid: process.pid }));
