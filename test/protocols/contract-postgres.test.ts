/**
 * The PostgreSQL door against the conformance suite, with the `pg` client library and a real
 * PostgreSQL target (one per file). Targets are pinned on first use (no CA configured, TLS
 * required upstream), so the target identity case runs the pin path. Target logins are the
 * server's own `connection authorized: user=...` log lines (log_connections = on).
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, beforeAll } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { pgDoor } from './postgres-harness.js';
import { startPostgres, type PostgresTarget } from '../targets/index.js';
import { doorContract } from './contract.js';
import { refusalCodeIn, startContractGateway, type Closed, type DoorDriver } from './contract-driver.js';

let target: PostgresTarget;
beforeAll(async () => {
  target = await startPostgres();
});
afterAll(async () => {
  await target?.stop();
});

interface PgConn {
  client: pg.Client;
  closed: Promise<Closed>;
}

/** What psql would print for an ErrorResponse: message, DETAIL and HINT. */
function describeError(e: unknown): string {
  const err = e as Partial<pg.DatabaseError> & Error;
  return [err.severity && err.code ? `${err.severity} ${err.code}: ${err.message}` : String(err.message ?? e), err.detail && `DETAIL: ${err.detail}`, err.hint && `HINT: ${err.hint}`]
    .filter(Boolean)
    .join('\n');
}

async function pgDriver(): Promise<DoorDriver<PgConn>> {
  const { gw, auth, stop } = await startContractGateway();
  const adapter = await pgDoor({ upstreamTls: 'require' });
  const listener = await adapter.listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger,
    tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem },
  });
  const port = listener.address.port;
  const clients = new Set<pg.Client>();
  const loginLine = new RegExp(`connection authorized: user=${target.user} `, 'g');

  return {
    door: 'postgres',
    gw,
    auth,
    teardownWire: 'FATAL 57P01',
    bogusPin: 'tls-sha256:00',
    async resource(name, settings = {}, opts = {}) {
      await gw.addResource({
        name, type: 'database', protocol: 'postgres', host: target.host, port: opts.port ?? target.port, database: target.database,
        credentials: { login: target.user, password: target.password }, settings,
      });
    },
    async connect(user, resource, secret) {
      const client = new pg.Client({ host: 'localhost', port, user: `${user}:${resource}`, password: secret, ssl: { ca: gw.pki.caCertPem }, connectionTimeoutMillis: 10_000 });
      clients.add(client);
      // Errors after a refusal or a teardown (the closed socket) are expected; the first one is what counts.
      client.on('error', () => {});
      try {
        await client.connect();
      } catch (e) {
        const message = describeError(e);
        return { ok: false, code: refusalCodeIn(message) ?? 'unknown', message };
      }
      const closed = new Promise<Closed>((resolve) => {
        client.once('error', (e) => resolve({ message: describeError(e), wire: `${(e as pg.DatabaseError).severity ?? '?'} ${(e as pg.DatabaseError).code ?? '?'}`, at: performance.now() }));
        client.once('end', () => resolve({ message: '(the connection ended without an error)', wire: 'end', at: performance.now() }));
      });
      return { ok: true, conn: { client, closed } };
    },
    async run(c) {
      const r = await c.client.query('select 1 as n');
      if (r.rows[0]?.n !== 1) throw new Error(`unexpected result ${JSON.stringify(r.rows)}`);
    },
    waitClosed: (c) => c.closed,
    async close(c) {
      await c.client.end().catch(() => undefined);
    },
    async targetLogins() {
      return (readFileSync(target.log, 'utf8').match(loginLine) ?? []).length;
    },
    async stop() {
      await Promise.all([...clients].map((c) => c.end().catch(() => undefined)));
      await listener.close();
      await stop();
    },
  };
}

doorContract('PostgreSQL', pgDriver);
