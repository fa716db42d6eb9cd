/**
 * A MySQL target that ends the session right behind its login: a relay in front of the real
 * MariaDB (a test tool for this hostile timing) passes the login through, then sends an ERR
 * (1927, "Connection was killed") and closes, in the same write as the login's OK or a moment
 * later. Whatever the timing, on every data path, the client reads the target's ERR rather than
 * a bare close, and no session is left live: each ends on record as the target's doing.
 */
import type { Socket } from 'node:net';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import type { AuditEntry } from '../../src/core/model.js';
import { encodeErr, encodePacket } from '../../protocols/mysql/codec.js';
import { eventually as eventuallyTrue } from './contract-driver.js';
import { sayLastWords, type Timing } from './last-words.js';
import { GATEWAY_PASSWORD, until, type MyGateway } from './mysql-harness.js';
import { LoginRelay, startBehindRelay } from './mysql-login-relay.js';

const MY_TIMINGS: readonly Timing[] = ['same write', 'setImmediate', '1 ms', '10 ms'];
const CONNECTS = 10;
const LAST_WORDS = 'Connection was killed';

/** After the target's login OK, lets the target go and says its last words for it at `timing`. */
class LastWordsRelay extends LoginRelay {
  timing: Timing = 'same write';

  protected connection(client: Socket, up: Socket): (ok: Buffer) => void {
    let done = false;
    const end = (): void => {
      client.destroy();
      up.destroy();
    };
    client.on('error', end).on('close', end);
    up.on('error', () => done || end()).on('close', () => done || end());
    // What the client sends once the login is over is not passed on: the target is gone.
    client.on('data', (d: Buffer) => done || up.write(d));
    return (ok) => {
      done = true;
      up.destroy();
      this.lastWords(client, ok);
    };
  }

  /** The ERR goes unasked, so with sequence id 0, as a server's own goodbye does (MySQL 8's ER_CLIENT_INTERACTION_TIMEOUT). */
  private lastWords(client: Socket, ok: Buffer): void {
    const err = encodePacket(0, encodeErr({ errno: 1927, sqlstate: '70100', message: LAST_WORDS }));
    sayLastWords(client, this.timing, ok, () => void client.end(err), err);
  }
}

let g: MyGateway;
let relay: LastWordsRelay;
let listener: Listener;
let close: (() => Promise<void>) | undefined;

beforeAll(async () => {
  // mysql2 complains on the console when the unasked ERR meets a query already on its way (it
  // then takes the ERR as the query's answer): expected here, so kept out of the output.
  const error = console.error.bind(console);
  vi.spyOn(console, 'error').mockImplementation((...a: unknown[]) => (String(a[0]).startsWith('Warning: got packets out of order') ? undefined : error(...a)));
  ({ g, relay, listener, close } = await startBehindRelay('last-words-mysql', (port) => new LastWordsRelay(port)));
});

afterAll(async () => {
  await close?.();
});

/** What the client heard first: the error its connect, its connection (unasked) or its first query ended with. */
async function connectOnce(): Promise<{ code?: string; message: string }> {
  let first: (Error & { code?: string }) | undefined;
  const c = await mysql.createConnection({ ...g.my2('alice:last-words-mysql', GATEWAY_PASSWORD), port: listener.address.port }).catch((e: Error) => {
    first = e;
    return undefined;
  });
  if (c) {
    c.on('error', (e: Error) => void (first ??= e));
    await c.query('select 1').catch((e: Error) => void (first ??= e));
    c.destroy();
  }
  return { code: first?.code, message: first?.message ?? 'no error' };
}

describe('a MySQL target that closes right behind its login', () => {
  for (const timing of MY_TIMINGS) {
    it(`${timing}: the client reads the target's ERR ("${LAST_WORDS}"), and the session ends as target_closed`, async () => {
      relay.timing = timing;
      const startsBefore = (await g.gw.store.listAudit({ action: 'session.start' })).length;
      const endsBefore = (await g.gw.store.listAudit({ action: 'session.end' })).length;
      for (let i = 0; i < CONNECTS; i++) {
        // Taken as its first query's answer the ERR comes with its code; before it, as mysql2
        // reports an unasked one, with its message only.
        const heard = await connectOnce();
        expect(heard.message).toBe(LAST_WORDS);
        expect([undefined, 'ER_CONNECTION_KILLED']).toContain(heard.code);
      }
      await until(() => g.gw.broker.live().length === 0, 10_000, 'every session to end');
      const started = (await g.gw.store.listAudit({ action: 'session.start' })).length - startsBefore;
      const endsNow = async (): Promise<AuditEntry[]> => (await g.gw.store.listAudit({ action: 'session.end' })).slice(endsBefore);
      expect(await eventuallyTrue(async () => (await endsNow()).length === started)).toBe(true);
      // As the target's doing, or now and then (1 run in about 11, in data-path workers) as the
      // client's: mysql2 hangs up the moment it reads the ERR, and its FIN can reach the gateway
      // before the target's is read. Never anything else, and never still live.
      const reasons = (await endsNow()).map((a) => a.data.reason);
      expect(reasons.every((r) => r === 'target_closed' || r === 'client_closed')).toBe(true);
      expect(reasons.filter((r) => r === 'target_closed').length).toBeGreaterThan(started / 2);
    });
  }
});
