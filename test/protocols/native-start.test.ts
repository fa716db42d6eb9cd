/**
 * A relay the native data path will not take. Once a login is done, each database door hands
 * its two legs to the addon (`splice`); the addon refuses a splice only with a throw (arguments
 * it cannot read, a call from a thread other than the one that started it), which no client or
 * target can cause today. Should one come, the door must fail closed, as for any other failure
 * at the start of a session: the client told and disconnected, the target logged out, the
 * session ended on record as an error, the listener's count given back and no socket left in
 * the addon. Both doors, in this process (the addon's `splice` is wrapped here to throw), with
 * real clients (pg, mysql2) against real targets.
 */
import { readFileSync } from 'node:fs';
import mysql from 'mysql2/promise';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { MysqlAdapter } from '../../protocols/mysql/index.js';
import { PostgresAdapter } from '../../protocols/postgres/index.js';
import { nativeLoop, START_FAILED, type NativeLoop } from '../../protocols/shared/native.js';
import { startMariadb, startPostgres, type MariadbTarget, type PostgresTarget } from '../targets/index.js';
import { eventually } from './contract-driver.js';
import { GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from './gateway-harness.js';

let gw: GatewayHarness;
let pgTarget: PostgresTarget;
let myTarget: MariadbTarget;
let pgListener: Listener;
let myListener: Listener;
let loop: NativeLoop;

beforeAll(async () => {
  [gw, pgTarget, myTarget] = await Promise.all([makeGateway(), startPostgres(), startMariadb()]);
  const n = nativeLoop();
  if (!('loop' in n)) throw new Error(`the native data path did not load: ${n.reason}`);
  loop = n.loop;
  const tls = { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem };
  // One connection each: the next session starts only if the failed one gave its count back.
  pgListener = await new PostgresAdapter({ relay: 'native', upstreamCa: { '*': readFileSync(pgTarget.ca, 'utf8') }, maxConnections: 1 })
    .listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls });
  myListener = await new MysqlAdapter({ relay: 'native', upstreamCa: { '*': readFileSync(myTarget.ca, 'utf8') }, maxConnections: 1 })
    .listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { ...tls, rsaKey: gw.pki.rsaKeyPem } });
  await gw.addResource({
    name: 'open-pg', type: 'database', protocol: 'postgres', host: pgTarget.host, port: pgTarget.port, database: pgTarget.database,
    credentials: { login: pgTarget.user, password: pgTarget.password }, settings: {},
  });
  await gw.addResource({
    name: 'open-mysql', type: 'database', protocol: 'mysql', host: myTarget.host, port: myTarget.port, database: myTarget.database,
    credentials: { login: myTarget.user, password: myTarget.password }, settings: {},
  });
});

afterAll(async () => {
  await pgListener?.close();
  await myListener?.close();
  await gw?.cleanup();
  await Promise.all([pgTarget?.stop(), myTarget?.stop()]);
});

/** Runs `body` with the addon refusing every splice, as it would with arguments it cannot read; counts the refusals. */
async function refusingSplice<T>(body: () => Promise<T>): Promise<{ result: T; refused: number }> {
  // The addon's functions are read-only properties: the loop gets a stand-in that has the addon
  // behind every other one.
  const holder = loop as unknown as { addon: object };
  const addon = holder.addon;
  let refused = 0;
  const splice = (): never => {
    refused++;
    throw new Error('splice(client, target, greeting, clientRest, targetRest, limit, capture, lean)');
  };
  holder.addon = Object.create(addon, { splice: { value: splice } }) as object;
  try {
    return { result: await body(), refused };
  } finally {
    holder.addon = addon;
  }
}

/** The one session of `resource` on record: it ended, as an error, with what the client was told. */
async function endedAsError(resource: string): Promise<void> {
  expect(await eventually(async () => (await gw.store.listSessions({ resource })).every((s) => s.state === 'ended'))).toBe(true);
  const sessions = await gw.store.listSessions({ resource });
  expect(sessions).toHaveLength(1);
  expect(sessions[0]).toMatchObject({ state: 'ended', endReason: 'error', endMessage: START_FAILED });
}

describe('a relay the addon will not take', () => {
  it('PostgreSQL: the client gets a FATAL and is closed, the target backend goes, the session ends as an error, and the next client is taken', async () => {
    const su = new pg.Client({ host: pgTarget.host, port: pgTarget.port, user: pgTarget.superuser, password: pgTarget.superuserPassword, database: pgTarget.database });
    await su.connect();
    const backends = async (): Promise<number> =>
      (await su.query(`select count(*)::int as n from pg_stat_activity where usename = $1`, [pgTarget.user])).rows[0].n as number;
    const client = (): pg.Client => new pg.Client({
      host: 'localhost', port: pgListener.address.port, user: 'alice:open-pg', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem }, connectionTimeoutMillis: 10_000,
    });
    try {
      const before = await backends();
      const { result: err, refused } = await refusingSplice(async () => {
        const c = client();
        c.on('error', () => {});
        return c.connect().then(() => undefined, (e: unknown) => e as Error & { code?: string; severity?: string });
      });
      expect(refused).toBe(1);
      expect(err).toMatchObject({ severity: 'FATAL', message: START_FAILED });
      await endedAsError('open-pg');
      expect(await eventually(async () => loop.endpoints === 0 && gw.broker.live().length === 0 && (await backends()) === before)).toBe(true);

      // The listener's one connection is given back (once the goodbye's linger is over): the
      // next client is taken and served.
      const served = async (): Promise<boolean> => {
        const next = client();
        next.on('error', () => {});
        try {
          await next.connect();
          return (await next.query('select 41 + 1 as n')).rows[0]?.n === 42;
        } catch {
          return false;
        } finally {
          await next.end().catch(() => undefined);
        }
      };
      expect(await eventually(served)).toBe(true);
    } finally {
      await su.end();
    }
  });

  it('MySQL: the client, which has its OK, gets an ERR and is closed, the target thread goes, the session ends as an error, and the next client is taken', async () => {
    const root = await mysql.createConnection({ host: myTarget.host, port: myTarget.port, user: myTarget.superuser, password: myTarget.superuserPassword });
    const threads = async (): Promise<number> => {
      const [rows] = await root.query('select count(*) as n from information_schema.processlist where user = ?', [myTarget.user]);
      return Number((rows as { n: number }[])[0]!.n);
    };
    const config = { host: '127.0.0.1', port: myListener.address.port, user: 'alice:open-mysql', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem }, connectTimeout: 10_000 };
    try {
      const before = await threads();
      const { result, refused } = await refusingSplice(async () => {
        // The login succeeds (the OK goes out before the relay starts); the ERR comes unasked.
        const c = await mysql.createConnection(config);
        const stream = (c as unknown as { connection: { stream: NodeJS.EventEmitter } }).connection.stream;
        const closed = new Promise<void>((r) => stream.once('close', () => r()));
        const err = await new Promise<Error & { code?: unknown; fatal?: boolean }>((r) => c.once('error', r));
        await closed;
        return err;
      });
      expect(refused).toBe(1);
      // ER_CONNECTION_KILLED (mysql2 reports an unasked ERR's errno as its code), as MariaDB says when it ends a connection itself.
      expect(result).toMatchObject({ fatal: true, code: 1927, message: `${START_FAILED} (error)` });
      await endedAsError('open-mysql');
      expect(await eventually(async () => loop.endpoints === 0 && gw.broker.live().length === 0 && (await threads()) === before)).toBe(true);

      const next = await mysql.createConnection(config);
      const [rows] = await next.query('select 41 + 1 as n');
      expect(rows).toEqual([{ n: 42 }]);
      await next.end();
    } finally {
      await root.end();
    }
  });
});
