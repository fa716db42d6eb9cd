/**
 * The native data path's lean record layer (native/pg-relay.c): once a session is live, its TLS
 * 1.3 records are sealed and opened by the addon itself, OpenSSL's connection object freed.
 * Stock clients (pg, on each TLS 1.3 suite the door offers, and on TLS 1.2, which stays with
 * OpenSSL) and a client whose records the test seals itself (tls13-records.ts): KeyUpdates both
 * ways, records split and joined, and hostile records, each answered by the gateway's own fatal
 * alert and a closed connection, with the session ended and both legs freed.
 *
 * The door runs in this process (vitest.config.ts keeps this file in one project) with
 * `tlsRecords: 'lean'`, so that the addon's gauges are observable.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { decodeFields, passwordMessage, startupMessage, type Message } from '../../protocols/postgres/codec.js';
import type { NativeLoop } from '../../protocols/postgres/native.js';
import { startPostgres, type PostgresTarget } from '../targets/index.js';
import { GATEWAY_PASSWORD, makeGateway, until, type GatewayHarness } from './gateway-harness.js';
import { messagesOf, nativeDoor, queryMessage } from './postgres-harness.js';
import { ContentType, keyUpdate, TappedTls } from './tls13-records.js';

let gw: GatewayHarness;
let target: PostgresTarget;
let listener: Listener;
let port: number;
let loop: NativeLoop;
const opened = new Set<{ destroy(): void }>();

beforeAll(async () => {
  [gw, target] = await Promise.all([makeGateway(), startPostgres()]);
  ({ listener, port, loop } = await nativeDoor(gw, target, { tlsRecords: 'lean', upstreamCa: { '*': readFileSync(target.ca, 'utf8') } }));
});

afterEach(() => {
  for (const c of opened) c.destroy();
  opened.clear();
});

afterAll(async () => {
  await listener?.close();
  await gw?.cleanup();
  await target?.stop();
});

/** No session, no endpoint: every test starts and ends so. */
async function quiet(): Promise<void> {
  await until(() => gw.broker.live().length === 0 && loop.endpoints === 0, 5_000, 'no session and no addon endpoint');
}

const messages = (data: Buffer): Message[] => messagesOf(data).msgs;
const types = (data: Buffer): string => messages(data).map((m) => String.fromCharCode(m.type)).join('');
const query = queryMessage;
/** Whole messages up to a ReadyForQuery. */
const ready = (data: Buffer): boolean => types(data).endsWith('Z');

/** The DataRow values of an answer. */
function rows(data: Buffer): string[] {
  return messages(data)
    .filter((m) => m.type === 0x44)
    .map((m) => {
      const len = m.body.readInt32BE(2);
      return m.body.subarray(6, 6 + len).toString();
    });
}

/** The session of the last loggedIn(). */
let sessionId = '';

/** Logs in over the TLSSocket (stock TLS), then the test seals and opens the records. */
async function loggedIn(ciphers?: string): Promise<TappedTls> {
  const t = await TappedTls.connect(port, { ca: gw.pki.caCertPem, servername: 'localhost', ...(ciphers ? { ciphers } : {}) });
  opened.add(t);
  let got = Buffer.alloc(0);
  t.tls.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
  t.tls.write(startupMessage(new Map([['user', 'alice:open-pg'], ['database', 'x']])));
  await until(() => types(got).includes('R'), 5_000, 'the password request');
  got = Buffer.alloc(0);
  t.tls.write(passwordMessage(GATEWAY_PASSWORD));
  await until(() => ready(got), 5_000, 'ReadyForQuery');
  // Both legs are on the lean record layer before the test speaks for the client.
  await until(() => loop.leanEndpoints === 2, 5_000, 'both legs lean');
  sessionId = gw.broker.live()[0]!.id;
  t.takeOver();
  return t;
}

/** The last loggedIn() session's record once it has ended. */
async function endedSession(): Promise<{ state?: string; endReason?: string; endMessage?: string }> {
  await quiet();
  return (await gw.store.getSession(sessionId)) ?? {};
}

const SUITES = ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'];

describe('stock clients on the lean record layer', () => {
  for (const suite of SUITES) {
    it(`${suite}: pg logs in and queries with both legs lean; a teardown reaches it as FATAL 57P01`, async () => {
      await quiet();
      const c = new pg.Client({ host: 'localhost', port, user: 'alice:open-pg', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem, ciphers: suite, minVersion: 'TLSv1.3' } });
      opened.add({ destroy: () => void c.end().catch(() => undefined) });
      const errors: Error[] = [];
      c.on('error', (e) => errors.push(e));
      await c.connect();
      expect(loop.leanEndpoints).toBe(2);
      const big = await c.query("select repeat('x', 100000) as v, $1::text as s", ['á'.repeat(3)]);
      expect(big.rows[0]).toEqual({ v: 'x'.repeat(100_000), s: 'ááá' });
      await c.query('create temp table t (v text)');
      await c.query('insert into t select repeat($1, 70000)', ['y']);
      expect((await c.query('select length(v)::int as n from t')).rows).toEqual([{ n: 70_000 }]);
      const [s] = gw.broker.live();
      await gw.broker.kill(s!.id, 'dave');
      await until(() => errors.length > 0, 5_000, 'the client hears the teardown');
      expect(errors[0]).toMatchObject({ code: '57P01' });
      await quiet();
    });
  }

  it("more directions than the loop's 256 AEAD contexts: 70 sessions queried in turn, three rounds, every answer right", async () => {
    await quiet();
    const clients = Array.from({ length: 70 }, () => new pg.Client({ host: 'localhost', port, user: 'alice:open-pg', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem } }));
    for (const c of clients) opened.add({ destroy: () => void c.end().catch(() => undefined) });
    await Promise.all(clients.map((c) => c.connect()));
    expect(loop.leanEndpoints).toBe(140);
    let afterFirst = 0;
    for (let round = 0; round < 3; round++) {
      for (const [i, c] of clients.entries()) {
        const { rows: r } = await c.query('select $1::int * 2 as v, repeat($2, 20000) as pad', [i + round * 100, 'p']);
        expect(r[0]).toEqual({ v: (i + round * 100) * 2, pad: 'p'.repeat(20_000) });
      }
      if (round === 0) afterFirst = loop.aeadKeyings;
    }
    // After the first round all 280 directions had been keyed, so at least 280 - 256 of them
    // lost their context to another and were keyed again when next used, answers still right.
    // (How many more depends on the order the loop met them in: 70 to 280 in six runs here.)
    expect(loop.aeadKeyings - afterFirst).toBeGreaterThanOrEqual(280 - 256);
    await Promise.all(clients.map((c) => c.end()));
    await quiet();
  });

  it('a client on TLS 1.2 keeps OpenSSL for its leg and the target leg goes lean: queries and a teardown work', async () => {
    await quiet();
    const c = new pg.Client({ host: 'localhost', port, user: 'alice:open-pg', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem, maxVersion: 'TLSv1.2' } });
    opened.add({ destroy: () => void c.end().catch(() => undefined) });
    const errors: Error[] = [];
    c.on('error', (e) => errors.push(e));
    await c.connect();
    expect(loop.endpoints).toBe(2);
    expect(loop.leanEndpoints).toBe(1);
    expect((await c.query("select repeat('z', 50000) as v")).rows[0].v).toHaveLength(50_000);
    const [s] = gw.broker.live();
    await gw.broker.kill(s!.id, 'dave');
    await until(() => errors.length > 0, 5_000, 'the client hears the teardown');
    expect(errors[0]).toMatchObject({ code: '57P01' });
    await quiet();
  });
});

describe('a client that seals its own records', () => {
  for (const suite of SUITES) {
    it(`${suite}: a KeyUpdate each way; one asked for is answered before the next data, under the old key`, async () => {
      await quiet();
      const t = await loggedIn(suite);
      // Asked: the gateway's own KeyUpdate comes first, then the answer under its next key.
      t.send(ContentType.Handshake, keyUpdate(true));
      t.tx!.update();
      t.send(ContentType.ApplicationData, query('select 1 as one'));
      const first = await t.read();
      expect(first).toMatchObject({ type: ContentType.Handshake });
      expect([...first!.content]).toEqual([...keyUpdate(false)]);
      t.rx!.update();
      const a = await t.readUntil(ready);
      expect(a.others).toEqual([]);
      expect(rows(a.data)).toEqual(['1']);
      // Not asked: no KeyUpdate back; the gateway's key stays.
      t.send(ContentType.Handshake, keyUpdate(false));
      t.tx!.update();
      t.send(ContentType.ApplicationData, query('select 2'));
      const b = await t.readUntil(ready);
      expect(b.others).toEqual([]);
      expect(rows(b.data)).toEqual(['2']);
      expect(gw.broker.live()).toHaveLength(1);
    });
  }

  it('a record a byte per TCP segment, two records in one segment, an empty and a padded record: each query answered once', async () => {
    await quiet();
    const t = await loggedIn();
    const rec = t.tx!.seal(ContentType.ApplicationData, query('select 10'));
    for (const byte of rec) {
      t.sendRaw(Buffer.from([byte]));
      await new Promise((r) => setImmediate(r));
    }
    expect(rows((await t.readUntil(ready)).data)).toEqual(['10']);
    const half = query('select 11');
    const joined = Buffer.concat([
      t.tx!.seal(ContentType.ApplicationData, Buffer.alloc(0)),
      t.tx!.seal(ContentType.ApplicationData, half.subarray(0, 3)),
      t.tx!.seal(ContentType.ApplicationData, half.subarray(3), { padding: 200 }),
      t.tx!.seal(ContentType.ApplicationData, query('select 12')),
    ]);
    t.sendRaw(joined);
    const both = await t.readUntil((d) => types(d).split('Z').length === 3);
    expect(rows(both.data)).toEqual(['11', '12']);
    expect(gw.broker.live()).toHaveLength(1);
  });

  for (const [part, what] of [[3, 'part of a record header'], [5, 'a whole record header and none of its body']] as const) {
    it(`a hand-over waits while OpenSSL holds ${what}: the client leg goes lean once the rest has come`, async () => {
      await quiet();
      const t = await TappedTls.connect(port, { ca: gw.pki.caCertPem, servername: 'localhost' });
      opened.add(t);
      let got = Buffer.alloc(0);
      t.tls.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
      t.tls.write(startupMessage(new Map([['user', 'alice:open-pg'], ['database', 'x']])));
      await until(() => types(got).includes('R'), 5_000, 'the password request');
      // The password in one record and the first bytes of the next in the same segment: the
      // login reads them into OpenSSL, which holds them at the relay's start.
      t.takeOver();
      const password = t.tx!.seal(ContentType.ApplicationData, passwordMessage(GATEWAY_PASSWORD));
      const q = t.tx!.seal(ContentType.ApplicationData, query('select 42'));
      t.sendRaw(Buffer.concat([password, q.subarray(0, part)]));
      expect(types((await t.readUntil(ready)).data)).toMatch(/^R.*Z$/);
      await until(() => gw.broker.live().length === 1 && loop.leanEndpoints === 1, 5_000, 'the target leg lean');
      expect(loop.leanEndpoints).toBe(1);
      t.sendRaw(q.subarray(part));
      expect(rows((await t.readUntil(ready)).data)).toEqual(['42']);
      expect(loop.leanEndpoints).toBe(2);
      t.send(ContentType.ApplicationData, query('select 43'));
      expect(rows((await t.readUntil(ready)).data)).toEqual(['43']);
    });
  }

  it("a query and the client's close_notify in one segment, no FIN (the client waits for ours): the session ends", async () => {
    await quiet();
    const t = await loggedIn();
    t.sendRaw(Buffer.concat([t.tx!.seal(ContentType.ApplicationData, query('select 7')), t.tx!.seal(ContentType.Alert, Buffer.from([1, 0]))]));
    expect(await endedSession()).toMatchObject({ endReason: 'client_closed' });
    await until(() => t.closed, 5_000, 'the gateway closes the connection');
  });

  const hostile: [string, (t: TappedTls) => void, number, string][] = [
    ['a record whose tag does not authenticate', (t) => t.send(ContentType.ApplicationData, query('select 1'), { tamper: true }), 20, 'bad_record_mac'],
    ['a record longer than 2^14 + 256 bytes', (t) => t.sendRaw(Buffer.concat([Buffer.from([23, 3, 3, 0x41, 0x01]), Buffer.alloc(64)])), 22, 'record_overflow'],
    ['a record too short to hold a tag', (t) => t.sendRaw(Buffer.concat([Buffer.from([23, 3, 3, 0, 16]), Buffer.alloc(16)])), 20, 'bad_record_mac'],
    ['a zero-length handshake record', (t) => t.send(ContentType.Handshake, Buffer.alloc(0)), 10, 'unexpected_message'],
    ['a record of an outer type other than application data', (t) => t.sendRaw(Buffer.from([22, 3, 3, 0, 4, 1, 0, 0, 0])), 10, 'unexpected_message'],
    ['an inner plaintext of padding only', (t) => t.send(0, Buffer.alloc(0), { padding: 8 }), 10, 'unexpected_message'],
    ['a handshake message a client may not send after the handshake', (t) => t.send(ContentType.Handshake, Buffer.from([4, 0, 0, 0])), 10, 'unexpected_message'],
    ['a KeyUpdate with a request value out of range', (t) => t.send(ContentType.Handshake, Buffer.from([24, 0, 0, 1, 7])), 47, 'illegal_parameter'],
    ['a KeyUpdate of the wrong length', (t) => t.send(ContentType.Handshake, Buffer.from([24, 0, 0, 2, 0, 0])), 50, 'decode_error'],
    ['a KeyUpdate with data after it in its record', (t) => t.send(ContentType.Handshake, Buffer.concat([keyUpdate(false), Buffer.from([24, 0, 0, 1, 0])])), 10, 'unexpected_message'],
    ['a handshake message cut short', (t) => t.send(ContentType.Handshake, Buffer.from([24, 0, 0, 1])), 10, 'unexpected_message'],
    ['an alert record of the wrong length', (t) => t.send(ContentType.Alert, Buffer.from([1])), 50, 'decode_error'],
  ];
  for (const [what, send, alert, name] of hostile) {
    it(`${what}: the gateway's fatal alert ${name} (${alert}), a closed connection, the session ended with the reason`, async () => {
      await quiet();
      const t = await loggedIn();
      send(t);
      const r = await t.read();
      expect(r).toEqual({ type: ContentType.Alert, content: Buffer.from([2, alert]) });
      await until(() => t.closed, 5_000, 'the gateway closes the connection');
      const s = await endedSession();
      expect(s).toMatchObject({ endReason: 'error' });
      expect(s.endMessage).toMatch(/^client TLS: /);
    });
  }

  it("the client's close_notify ends the session as a close does (client_closed)", async () => {
    await quiet();
    const t = await loggedIn();
    t.send(ContentType.Alert, Buffer.from([1, 0]));
    await until(() => t.closed, 5_000, 'the gateway closes the connection');
    expect(await endedSession()).toMatchObject({ endReason: 'client_closed' });
  });

  it("another alert of the client's ends the session with an error and no alert back", async () => {
    await quiet();
    const t = await loggedIn();
    t.send(ContentType.Alert, Buffer.from([2, 40]));
    expect(await t.read()).toBeUndefined();
    const s = await endedSession();
    expect(s).toMatchObject({ endReason: 'error', endMessage: 'client TLS: the peer sent a fatal alert' });
  });

  it('a teardown seals FATAL 57P01 and close_notify under the current key (after a KeyUpdate), then closes', async () => {
    await quiet();
    const t = await loggedIn();
    t.send(ContentType.Handshake, keyUpdate(true));
    t.tx!.update();
    t.send(ContentType.ApplicationData, query('select 3'));
    expect((await t.read())?.type).toBe(ContentType.Handshake);
    t.rx!.update();
    expect(rows((await t.readUntil(ready)).data)).toEqual(['3']);
    const [s] = gw.broker.live();
    await gw.broker.kill(s!.id, 'dave');
    const bye = await t.readUntil((d) => types(d) === 'E');
    const fields = decodeFields(messages(bye.data)[0]!.body);
    expect(fields).toMatchObject({ S: 'FATAL', C: '57P01' });
    expect(await t.read()).toEqual({ type: ContentType.Alert, content: Buffer.from([1, 0]) });
    await until(() => t.closed, 5_000, 'the gateway closes the connection');
    expect(await endedSession()).toMatchObject({ endReason: 'killed' });
  });
});
