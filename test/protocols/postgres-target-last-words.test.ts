/**
 * A target that ends the session right behind its login: it answers the startup, then sends a
 * FATAL and closes, in the same write or a moment later. Whatever the timing, on every data
 * path, the client reads the target's FATAL (not a bare close), and the session ends on record
 * as the target's doing instead of staying live. The target is a hand-made one (a test tool for
 * this hostile timing), reached in the clear as a resource that allows a plaintext leg.
 */
import { createServer, type Server, type Socket } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { authenticationOk, backendKeyData, errorResponse, message, Msg } from '../../protocols/postgres/codec.js';
import type { AuditEntry } from '../../src/core/model.js';
import { eventually } from './contract-driver.js';
import { GATEWAY_PASSWORD, makeGateway, until, type GatewayHarness } from './gateway-harness.js';
import { sayLastWords, TIMINGS, type Timing } from './last-words.js';
import { pgDoor } from './postgres-harness.js';

/** Connects per timing: the races these timings aim at go either way from one connect to the next. */
const CONNECTS = 12;
const LAST_WORDS = 'terminating connection due to administrator command';

const parameterStatus = (k: string, v: string): Buffer => message(Msg.ParameterStatus, Buffer.from(`${k}\0${v}\0`));
const readyForQuery = (): Buffer => message(Msg.ReadyForQuery, Buffer.from('I'));
const GREETING = Buffer.concat([
  authenticationOk(),
  ...Object.entries({ server_version: '15.0', server_encoding: 'UTF8', client_encoding: 'UTF8', DateStyle: 'ISO, MDY', integer_datetimes: 'on', standard_conforming_strings: 'on' })
    .map(([k, v]) => parameterStatus(k, v)),
  backendKeyData(Buffer.from([0, 0, 0, 42, 1, 2, 3, 4])),
  readyForQuery(),
]);
const FATAL = errorResponse({ severity: 'FATAL', code: '57P01', message: LAST_WORDS });

/** Trusts every login (no password asked), then says its last words at `timing`. */
class LastWordsTarget {
  readonly server: Server = createServer((s) => this.accept(s));
  timing: Timing = 'same write';
  /** Instead of the FATAL and a FIN: a reset (TCP RST), with no last words. */
  reset = false;

  private accept(sock: Socket): void {
    sock.on('error', () => {});
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 4 || buf.length < buf.readInt32BE(0)) return;
      sock.off('data', onData);
      this.answer(sock);
    };
    sock.on('data', onData);
  }

  private answer(sock: Socket): void {
    const bye = (): void => void (this.reset ? sock.resetAndDestroy() : sock.end(FATAL));
    sayLastWords(sock, this.timing, GREETING, bye, this.reset ? undefined : FATAL);
  }
}

let gw: GatewayHarness;
let target: LastWordsTarget;
let listener: Listener;

beforeAll(async () => {
  gw = await makeGateway();
  target = new LastWordsTarget();
  await new Promise<void>((r) => target.server.listen(0, '127.0.0.1', () => r()));
  await gw.addResource({
    name: 'last-words-pg', type: 'database', protocol: 'postgres', host: '127.0.0.1', port: (target.server.address() as { port: number }).port,
    database: 'db', credentials: { login: 'app', password: 'app-pw' }, settings: {}, options: { allowPlaintextUpstream: true },
  });
  const door = await pgDoor({ upstreamTls: 'disable' });
  listener = await door.listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem },
  });
});

afterAll(async () => {
  await listener?.close();
  await new Promise((r) => target?.server.close(r));
  await gw?.cleanup();
});

/** What the client heard: the error its connect or its session ended with. */
async function connectOnce(): Promise<Error & { code?: string }> {
  const c = new pg.Client({ host: 'localhost', port: listener.address.port, user: 'alice:last-words-pg', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem }, connectionTimeoutMillis: 10_000 });
  const heard = new Promise<Error>((resolve) => c.on('error', resolve));
  const failed = await c.connect().then(() => undefined, (e: Error) => e);
  return failed ?? (await heard);
}

describe('a target that closes right behind its login', () => {
  for (const timing of TIMINGS) {
    it(`${timing}: the client reads the target's FATAL, and the session ends as target_closed`, async () => {
      target.timing = timing;
      const endsBefore = (await gw.store.listAudit({ action: 'session.end' })).length;
      for (let i = 0; i < CONNECTS; i++) {
        const e = await connectOnce();
        expect({ code: e.code, message: e.message }).toEqual({ code: '57P01', message: LAST_WORDS });
      }
      // No session is left live: each ended, on record, as the target's doing.
      await until(() => gw.broker.live().length === 0, 10_000, 'every session to end');
      const endsNow = async (): Promise<AuditEntry[]> => (await gw.store.listAudit({ action: 'session.end' })).slice(endsBefore);
      expect(await eventually(async () => (await endsNow()).length === CONNECTS)).toBe(true);
      const ends = await endsNow();
      expect(ends.map((a) => a.data.reason)).toEqual(Array(CONNECTS).fill('target_closed'));
    });
  }

  for (const timing of ['same write', 'setImmediate', '1 ms'] as const) {
    it(`${timing}, a reset instead: no session is left live, and every one that started ended as target_closed`, async () => {
      target.timing = timing;
      target.reset = true;
      try {
        const startsBefore = (await gw.store.listAudit({ action: 'session.start' })).length;
        const endsBefore = (await gw.store.listAudit({ action: 'session.end' })).length;
        for (let i = 0; i < CONNECTS; i++) {
          // The reset may reach the gateway during the login (then it refuses) or after it.
          expect(await connectOnce()).toBeInstanceOf(Error);
        }
        await until(() => gw.broker.live().length === 0, 10_000, 'every session to end');
        const started = (await gw.store.listAudit({ action: 'session.start' })).length - startsBefore;
        const endsNow = async (): Promise<AuditEntry[]> => (await gw.store.listAudit({ action: 'session.end' })).slice(endsBefore);
        expect(await eventually(async () => (await endsNow()).length === started)).toBe(true);
        expect((await endsNow()).every((a) => a.data.reason === 'target_closed')).toBe(true);
      } finally {
        target.reset = false;
      }
    });
  }
});
