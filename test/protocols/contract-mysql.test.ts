/**
 * The MySQL door against the conformance suite, with the `mysql2` client library and a real
 * MariaDB target (one per file). Targets are pinned on first use (no CA configured, TLS
 * required upstream). Target logins are MariaDB's own per-account count
 * (information_schema.USER_STATISTICS.TOTAL_CONNECTIONS, with userstat switched on).
 */
import mysql from 'mysql2/promise';
import { afterAll, beforeAll } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import { myDoor } from './mysql-harness.js';
import { startMariadb, type MariadbTarget } from '../targets/index.js';
import { doorContract } from './contract.js';
import { refusalCodeIn, startContractGateway, type Closed, type DoorDriver } from './contract-driver.js';

let target: MariadbTarget;
let root: mysql.Connection;
beforeAll(async () => {
  target = await startMariadb();
  root = await mysql.createConnection({ host: target.host, port: target.port, user: target.superuser, password: target.superuserPassword });
  await root.query('SET GLOBAL userstat = 1');
});
afterAll(async () => {
  await root?.end();
  await target?.stop();
});

interface MyConn {
  conn: mysql.Connection;
  closed: Promise<Closed>;
}

type MysqlError = Error & { errno?: number; sqlState?: string; code?: unknown };

/** What the mariadb CLI would print for an ERR packet. */
function describeError(e: unknown): string {
  const err = e as MysqlError;
  return err.errno ? `ERROR ${err.errno} (${err.sqlState ?? '?'}): ${err.message}` : String(err.message ?? e);
}

async function myDriver(): Promise<DoorDriver<MyConn>> {
  const { gw, auth, stop } = await startContractGateway();
  const adapter = await myDoor({ upstreamTls: 'require' });
  const listener = await adapter.listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger,
    tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem },
  });
  const port = listener.address.port;
  const conns = new Set<mysql.Connection>();

  return {
    door: 'mysql',
    gw,
    auth,
    teardownWire: 'ERR 1927',
    bogusPin: 'tls-sha256:00',
    async resource(name, settings = {}, opts = {}) {
      await gw.addResource({
        name, type: 'database', protocol: 'mysql', host: target.host, port: opts.port ?? target.port, database: target.database,
        credentials: { login: target.user, password: target.password }, settings,
      });
    },
    async connect(user, resource, secret) {
      let conn: mysql.Connection;
      try {
        conn = await mysql.createConnection({ host: '127.0.0.1', port, user: `${user}:${resource}`, password: secret, ssl: { ca: gw.pki.caCertPem }, connectTimeout: 10_000 });
      } catch (e) {
        const message = describeError(e);
        return { ok: false, code: refusalCodeIn(message) ?? 'unknown', message };
      }
      conns.add(conn);
      const closed = new Promise<Closed>((resolve) => {
        // An ERR outside a command reaches mysql2's 'error' with the errno as `code` (and no SQLSTATE).
        conn.on('error', (e: MysqlError) => resolve({ message: describeError(e), wire: `ERR ${e.errno ?? (typeof e.code === 'number' ? e.code : '?')}`, at: performance.now() }));
        conn.once('end', () => resolve({ message: '(the connection ended without an ERR)', wire: 'end', at: performance.now() }));
      });
      return { ok: true, conn: { conn, closed } };
    },
    async run(c) {
      const [rows] = await c.conn.query('select 1 as one');
      if ((rows as Array<{ one: number }>)[0]?.one !== 1) throw new Error(`unexpected result ${JSON.stringify(rows)}`);
    },
    waitClosed: (c) => c.closed,
    async close(c) {
      await c.conn.end().catch(() => c.conn.destroy());
    },
    async targetLogins() {
      const [rows] = await root.query('select TOTAL_CONNECTIONS as n from information_schema.USER_STATISTICS where USER = ?', [target.user]);
      return Number((rows as Array<{ n: number }>)[0]?.n ?? 0);
    },
    async stop() {
      for (const c of conns) c.destroy();
      await listener.close();
      await stop();
    },
  };
}

doorContract('MySQL', myDriver);
