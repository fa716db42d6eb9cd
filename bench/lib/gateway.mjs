/**
 * The workflow engine and broker the benchmarks put in front of a target, built from dist/
 * (run `npm run build` first): SystemClock, in-memory SQLite, user `bench` on the access list
 * of one resource with no workflow, so every connection is allowed and the benchmark prices
 * the decision, the audit and the relay, nothing else. `user` renames `bench` (the LDAP bench
 * signs in as alice).
 */
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const dist = (p) => import(join(root, 'dist', p));

const [{ SystemClock }, { silentLogger }, { EventBus }, { Sealer }, { SqliteStore }, { AuditLog }, { Engine }, { Broker }, { hashPassword }] = await Promise.all([
  dist('src/core/clock.js'), dist('src/core/log.js'), dist('src/events/bus.js'), dist('src/secrets/sealer.js'), dist('src/store/sqlite/sqlite-store.js'),
  dist('src/audit/audit-log.js'), dist('src/workflow/engine.js'), dist('src/broker/broker.js'), dist('src/secrets/passwords.js'),
]);

export { silentLogger };

/**
 * A database resource on the target a bench gateway script was given (its argument: host, port,
 * user, password, database), with a plaintext target leg allowed.
 * @param {string} name
 * @param {'postgres' | 'mysql'} protocol
 * @param {{ host: string, port: number, user: string, password: string, database: string }} t
 * @param {{ plaintext?: boolean }} [o] plaintext: false leaves the target leg to TLS only
 */
export function databaseResource(name, protocol, t, { plaintext = true } = {}) {
  return {
    name, type: 'database', protocol, host: t.host, port: t.port, database: t.database,
    credentials: { login: t.user, password: t.password },
    ...(plaintext ? { options: { allowPlaintextUpstream: true } } : {}),
  };
}

/**
 * @param {{ resource: object, more?: object[], user?: string, password?: string, sshKeys?: string[] }} o  resource: the
 *   fields of `directory.addResource` except owner and access; more: further resources of the same
 *   kind, on the same access list; user: the user's name (default `bench`); password / sshKeys: how
 *   that user signs in.
 * @returns {Promise<{ engine: any, broker: any, store: any, stop(): Promise<void> }>}
 */
export async function benchGateway(o) {
  const clock = new SystemClock();
  const store = SqliteStore.open(':memory:');
  const sealer = new Sealer(randomBytes(32));
  const audit = new AuditLog({ store, key: sealer.deriveKey('gatehouse/audit-mac/v1'), clock });
  const engine = new Engine({ store, clock, bus: new EventBus(), audit, sealer });
  const broker = new Broker({ engine, log: silentLogger, node: 'bench' });
  await store.putUser({ id: 'admin', name: 'admin', admin: true, disabled: false, teams: [], totpConfirmed: false, sshKeys: [], createdAt: clock.now() });
  const user = o.user ?? 'bench';
  await engine.directory.addUser('admin', { name: user, ...(o.password ? { passwordHash: await hashPassword(o.password) } : {}) });
  if (o.sshKeys) await engine.directory.updateUser('admin', user, { sshKeys: o.sshKeys });
  for (const r of [o.resource, ...(o.more ?? [])]) await engine.directory.addResource('admin', { ...r, owner: 'admin', access: [{ user }] });
  return {
    engine,
    broker,
    store,
    async stop() {
      await broker.shutdown();
      engine.stop();
    },
  };
}
