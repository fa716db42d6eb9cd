/**
 * The MySQL door's native data path (native/pg-relay.c, its MySQL framing) against a real
 * MariaDB, driven by a hand-written client where a stock one would never send what is tested:
 * bytes pipelined behind the login and behind a held statement, headers and KILLs split into
 * single-byte TLS records, LOCAL INFILE whose sequence ids wrap, teardown in the middle of a
 * result set, refusals after a gateway answer, and an SSLRequest sent in one TCP write with
 * the ClientHello. Each asserts the gateway's own answer: its ERR (code, message and sequence
 * id), its audit rows and the session's end.
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import mysql from 'mysql2/promise';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/core/log.js';
import type { Listener } from '../../src/broker/adapter.js';
import { Cap, Cmd, decodeErr, encodePacket } from '../../protocols/mysql/codec.js';
import { encodeHandshakeResponse, encodeSslRequest } from '../../protocols/mysql/handshake.js';
import { nativeLoop } from '../../protocols/shared/native.js';
import { SERVER_TLS12_CIPHERS, SERVER_TLS13_SUITES } from '../../protocols/shared/server-tls.js';
import { addMyResource, eventually, GATEWAY_PASSWORD, myDoor, rawTlsStart, startMyGateway, type MyDoor, type MyGateway } from './mysql-harness.js';

let g: MyGateway;
/** A second listener on the same gateway with small packets (1 KiB): oversized-packet refusals. */
let small: Listener;
let smallAdapter: MyDoor;

/**
 * `native`: the door refuses to start without its native data path, so these tests test it;
 * in the `mysql node relay` project the same tests hold the relay on Node's streams to them.
 */
const RELAY = process.env.GATEHOUSE_MYSQL_RELAY === 'node' ? 'node' : 'native';

beforeAll(async () => {
  g = await startMyGateway({ relay: RELAY });
  await addMyResource(g, {}, 'open-mysql');
  smallAdapter = await myDoor({ relay: RELAY, maxPacketSize: 1024 });
  small = await smallAdapter.listen({
    host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem },
  });
  await g.superQuery('create table if not exists infile_t (a text)');
});

afterAll(async () => {
  await small?.close();
  await g?.close();
});

interface Pkt { seq: number; payload: Buffer }

/** Whole packets off a stream, as they come; `undefined` once the gateway has closed. */
class Wire {
  private buf = Buffer.alloc(0);
  closed = false;
  private wake: (() => void) | undefined;

  constructor(readonly s: Duplex) {
    s.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake?.();
    });
    s.on('error', () => {});
    s.on('close', () => {
      this.closed = true;
      this.wake?.();
    });
    // A stream a PacketReader detached from is paused.
    s.resume();
  }

  async next(ms = 10_000): Promise<Pkt | undefined> {
    const deadline = performance.now() + ms;
    for (;;) {
      if (this.buf.length >= 4) {
        const len = this.buf.readUIntLE(0, 3);
        if (this.buf.length >= 4 + len) {
          const out = { seq: this.buf[3]!, payload: Buffer.from(this.buf.subarray(4, 4 + len)) };
          this.buf = this.buf.subarray(4 + len);
          return out;
        }
      }
      if (this.closed) return undefined;
      const left = deadline - performance.now();
      if (left <= 0) throw new Error('timed out waiting for a packet');
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      this.wake = undefined;
    }
  }

  /** Every packet of one reply: through the EOF / OK that ends it (an ERR, or the close). */
  async reply(deprecateEof: boolean): Promise<Pkt[]> {
    const got: Pkt[] = [];
    let eofs = 0;
    for (;;) {
      const p = await this.next();
      if (!p) return got;
      got.push(p);
      const first = p.payload[0];
      if (first === 0xff) return got;
      if (got.length === 1 && first === 0x00) return got;
      if (first === 0xfe && p.payload.length < 9) {
        eofs++;
        if (deprecateEof || eofs === 2) return got;
      }
    }
  }

  /** Packets until the gateway closes. */
  async rest(ms = 10_000): Promise<Pkt[]> {
    const got: Pkt[] = [];
    for (let p = await this.next(ms); p; p = await this.next(ms)) got.push(p);
    return got;
  }
}

const BASE_CAPS = Cap.LONG_PASSWORD | Cap.PROTOCOL_41 | Cap.SECURE_CONNECTION | Cap.PLUGIN_AUTH | Cap.PLUGIN_AUTH_LENENC_CLIENT_DATA | Cap.SSL | Cap.TRANSACTIONS;

const query = (sql: string, seq = 0): Buffer => encodePacket(seq, Buffer.concat([Buffer.from([Cmd.Query]), Buffer.from(sql)]));

function loginPacket(seq: number, caps: number, user = 'alice:open-mysql'): Buffer {
  return encodePacket(seq + 1, encodeHandshakeResponse({ capabilities: caps, maxPacket: 1 << 24, charset: 45, user, authResponse: Buffer.from(`${GATEWAY_PASSWORD}\0`), authPlugin: 'mysql_clear_password' }));
}

/** A raw client logged in over TLS (`behind`: bytes sent in the same write as the login packet). */
async function rawLogin(opts: { caps?: number; port?: number; behind?: Buffer } = {}): Promise<{ secure: TLSSocket; wire: Wire }> {
  const caps = opts.caps ?? BASE_CAPS;
  const target = opts.port === undefined ? g : { ...g, port: opts.port };
  const { secure, reader, seq } = await rawTlsStart(target, caps);
  reader.detach();
  const wire = new Wire(secure);
  secure.write(opts.behind ? Buffer.concat([loginPacket(seq, caps), opts.behind]) : loginPacket(seq, caps));
  const ok = await wire.next();
  if (!ok || ok.payload[0] !== 0x00) throw new Error(`login refused: ${ok ? decodeErr(ok.payload).message : 'closed'}`);
  return { secure, wire };
}

const liveIds = (): Set<string> => new Set(g.gw.broker.live().map((s) => s.id));

async function newSession(before: Set<string>): Promise<string> {
  let id: string | undefined;
  await eventually(async () => (id = g.gw.broker.live().find((s) => !before.has(s.id))?.id) !== undefined, 10_000, 'a new live session');
  return id!;
}

async function endOf(id: string): Promise<{ endReason?: string; state?: string } | undefined> {
  await eventually(async () => (await g.gw.store.getSession(id))?.state === 'ended', 10_000, 'the session record to be ended');
  return (await g.gw.store.getSession(id)) as never;
}

/** The statements audited since `from` are exactly `sqls` (they go up in batches, at most 2 ms late). */
async function expectAudited(from: number, sqls: string[]): Promise<void> {
  await eventually(async () => g.statements.length >= from + sqls.length, 2000, 'the audit');
  expect(g.statements.slice(from).map((s) => s.sql)).toEqual(sqls);
}

const errOf = (p: Pkt | undefined): { errno: number; message: string } => {
  expect(p?.payload[0]).toBe(0xff);
  return decodeErr(p!.payload);
};

const NOT_ALLOWED = /^Gatehouse: KILL 999999 is not allowed through the gateway\. \(not_allowed\)/;

describe('the native MySQL relay: bytes behind the login', () => {
  it('a query sent in the same write as the login is run once, and the session goes on without a refusal', async () => {
    const refusals = g.adapter.stats.refusals;
    const audited = g.statements.length;
    const { secure, wire } = await rawLogin({ behind: query("select 'behind-login' as p") });
    const first = await wire.reply(false);
    expect(first.at(-1)!.payload[0]).toBe(0xfe);
    expect(Buffer.concat(first.map((p) => p.payload)).toString('latin1')).toContain('behind-login');
    // The session is still there: a second query is answered, not an ERR 1153 about a packet size.
    secure.write(query('select 2 as two'));
    const second = await wire.reply(false);
    expect(second[0]!.payload[0] === 0xff ? decodeErr(second[0]!.payload).message : 'a result').toBe('a result');
    expect(second.at(-1)!.payload[0]).toBe(0xfe);
    expect(g.adapter.stats.refusals).toBe(refusals);
    await expectAudited(audited, ["select 'behind-login' as p", 'select 2 as two']);
    secure.end();
  });

  it('a KILL sent in the same write as the login is held and refused by the gateway, not run by the target', async () => {
    const { secure, wire } = await rawLogin({ behind: query('KILL 999999') });
    const p = await wire.next();
    expect(p?.seq).toBe(1);
    expect(errOf(p)).toMatchObject({ errno: 1094, message: expect.stringMatching(NOT_ALLOWED) });
    secure.write(query('select 3 as three'));
    expect((await wire.reply(false)).at(-1)!.payload[0]).toBe(0xfe);
    secure.end();
  });
  it("a KILL of another client's thread sent in the same write as the login reaches the target only as the gateway's refusal", async () => {
    const direct = await mysql.createConnection({ host: g.target.host, port: g.target.port, user: g.target.user, password: g.target.password, database: g.target.database });
    const probe = async (): Promise<boolean> =>
      ((await g.superQuery("select id from information_schema.processlist where info like '%native-probe-1%' and id <> connection_id()")) as unknown[]).length > 0;
    const q = direct.query('select sleep(30) as s /* native-probe-1 */').catch((e: unknown) => e);
    try {
      await eventually(probe, 10_000, 'the probe to run on the target');
      // Over 255 bytes of payload: read as a PostgreSQL message too, its length is plausible.
      const kill = `KILL QUERY ${direct.threadId}${' '.repeat(300)}`;
      const { secure, wire } = await rawLogin({ behind: query(kill) });
      const p = await wire.next();
      expect(p?.seq).toBe(1);
      expect(errOf(p).message).toMatch(/^Gatehouse: KILL QUERY \d+ is not allowed through the gateway/);
      await new Promise((r) => setTimeout(r, 300));
      // The target never saw it: the other client's statement runs on.
      expect(await probe()).toBe(true);
      secure.end();
    } finally {
      await g.superQuery(`KILL QUERY ${direct.threadId}`).catch(() => undefined);
      await q;
      await direct.end();
    }
  });
});

describe('the native MySQL relay: framing across reads', () => {
  it('a query and a KILL delivered one byte per TLS record are framed whole: the query answered, the KILL refused by the gateway', async () => {
    const { secure, wire } = await rawLogin();
    const audited = g.statements.length;
    for (const b of query('select 4 as four')) {
      secure.write(Buffer.from([b]));
      await new Promise((r) => setTimeout(r, 2));
    }
    expect((await wire.reply(false)).at(-1)!.payload[0]).toBe(0xfe);
    for (const b of query('KILL 999999')) {
      secure.write(Buffer.from([b]));
      await new Promise((r) => setTimeout(r, 2));
    }
    const p = await wire.next();
    expect(p?.seq).toBe(1);
    expect(errOf(p).message).toMatch(NOT_ALLOWED);
    await expectAudited(audited, ['select 4 as four', 'KILL 999999']);
    secure.end();
  });

  it('a statement that begins with a comment is held, passed on, and the command pipelined behind it follows in order', async () => {
    const { secure, wire } = await rawLogin();
    const audited = g.statements.length;
    secure.write(Buffer.concat([query("/* who */ select 'held' as h"), query("select 'behind' as b")]));
    const a = await wire.reply(false);
    const b = await wire.reply(false);
    expect(Buffer.concat(a.map((p) => p.payload)).toString('latin1')).toContain('held');
    expect(Buffer.concat(b.map((p) => p.payload)).toString('latin1')).toContain('behind');
    await expectAudited(audited, ["/* who */ select 'held' as h", "select 'behind' as b"]);
    secure.end();
  });

  it('a KILL sent while the target streams a result set is answered after that result: every row, its EOF, then the ERR with sequence id 1', async () => {
    const { secure, wire } = await rawLogin();
    secure.write(query("select repeat('y', 40000) as y, sleep(0.05) as s from seq_1_to_10"));
    // The first row is on its way: the KILL comes while the target is mid-result.
    const got: Pkt[] = [];
    while (!got.some((p) => p.payload.length > 30000)) got.push((await wire.next())!);
    secure.write(query('KILL 999999'));
    for (;;) {
      const p = await wire.next(5000).catch(() => undefined);
      if (!p) throw new Error(`stalled after ${got.map((q) => `${q.seq}:${q.payload[0]}:${q.payload.length}`).join(' ')}`);
      got.push(p);
      if (p.payload[0] === 0xff) break;
    }
    const eofs = got.flatMap((p, at) => (p.payload[0] === 0xfe && p.payload.length < 9 ? [at] : []));
    // Columns' EOF, ten rows, the rows' EOF, and only then the gateway's ERR.
    expect(eofs).toHaveLength(2);
    expect(eofs[1]).toBe(got.length - 2);
    expect(got.filter((p) => p.payload.length > 30000 && p.payload.length < 41000)).toHaveLength(10);
    const err = got.at(-1)!;
    expect(err.seq).toBe(1);
    expect(decodeErr(err.payload).message).toMatch(NOT_ALLOWED);
    secure.write(query('select 6 as six'));
    expect((await wire.reply(false)).at(-1)!.payload[0]).toBe(0xfe);
    secure.end();
  });

  it('a query, a refused KILL and a query in one write are answered in that order: the result, the ERR, the result', async () => {
    const { secure, wire } = await rawLogin();
    const audited = g.statements.length;
    secure.write(Buffer.concat([query("select 'first' as f, sleep(0.2) as s"), query('KILL 999999'), query("select 'third' as t")]));
    const first = await wire.reply(false);
    expect(first.at(-1)!.payload[0]).toBe(0xfe);
    expect(Buffer.concat(first.map((p) => p.payload)).toString('latin1')).toContain('first');
    const err = await wire.next();
    expect(err!.seq).toBe(1);
    expect(errOf(err).message).toMatch(NOT_ALLOWED);
    const third = await wire.reply(false);
    expect(third[0]!.seq).toBe(1);
    expect(Buffer.concat(third.map((p) => p.payload)).toString('latin1')).toContain('third');
    await expectAudited(audited, ["select 'first' as f, sleep(0.2) as s", 'KILL 999999', "select 'third' as t"]);
    secure.end();
  });
});

describe('the native MySQL relay: long held statements', () => {
  it('a comment-led statement over 64 KiB whose first word comes early is passed on whole, audited to 4096 bytes and marked truncated', async () => {
    const { secure, wire } = await rawLogin();
    const audited = g.statements.length;
    const sql = `/* long */ select length('${'x'.repeat(70_000)}') as l`;
    secure.write(query(sql));
    const r = await wire.reply(false);
    expect(r[0]!.payload[0]).not.toBe(0xff);
    expect(Buffer.concat(r.map((p) => p.payload)).toString('latin1')).toContain('70000');
    await eventually(async () => g.statements.length > audited, 2000, 'the audit');
    expect(g.statements[audited]).toMatchObject({ kind: 'query', sql: sql.slice(0, 4096), truncated: true });
    secure.end();
  });

  it('a statement whose first word is not within its first 64 KiB is refused by the gateway after its last byte, and the session goes on', async () => {
    const { secure, wire } = await rawLogin();
    // Far past 64 KiB: on Node's streams a packet that ends in the read that crosses 64 KiB is read whole (and passed).
    secure.write(query(`/*${' '.repeat(200_000)}*/ select 1`));
    const p = await wire.next();
    expect(p?.seq).toBe(1);
    expect(errOf(p).message).toMatch(/^Gatehouse: a statement whose first word is not within its first 64 KiB is not allowed through the gateway/);
    secure.write(query('select 7 as seven'));
    expect((await wire.reply(false)).at(-1)!.payload[0]).toBe(0xfe);
    secure.end();
  });
});

describe('the native MySQL relay: LOCAL INFILE', () => {
  it('after a LOAD DATA LOCAL INFILE whose packets wrap to sequence id 255, the next command is still a command: a KILL is refused, a query audited', async () => {
    const caps = BASE_CAPS | Cap.LOCAL_FILES;
    const { secure, wire } = await rawLogin({ caps });
    const audited = g.statements.length;
    secure.write(query("LOAD DATA LOCAL INFILE 'x.txt' INTO TABLE infile_t"));
    const ask = await wire.next();
    expect(ask).toMatchObject({ seq: 1 });
    expect(ask!.payload[0]).toBe(0xfb);
    // Data packets with sequence ids 2..254, then the empty one with 255: the OK comes back as 0.
    const parts: Buffer[] = [];
    for (let seq = 2; seq <= 254; seq++) parts.push(encodePacket(seq, Buffer.from(`row${seq}\n`)));
    parts.push(encodePacket(255, Buffer.alloc(0)));
    secure.write(Buffer.concat(parts));
    const ok = await wire.next();
    expect(ok).toMatchObject({ seq: 0 });
    expect(ok!.payload[0]).toBe(0x00);
    // A new command, sequence id 0: the gateway must read it as one.
    secure.write(query('KILL 999999'));
    const p = await wire.next();
    expect(p?.seq).toBe(1);
    expect(errOf(p).message).toMatch(NOT_ALLOWED);
    await expectAudited(audited, ["LOAD DATA LOCAL INFILE 'x.txt' INTO TABLE infile_t", 'KILL 999999']);
    secure.end();
  });
});

describe('the native MySQL relay: teardown and refusals', () => {
  it('a session ended while the target streams a result set gets its ERR 1927 with the sequence id after the last row', async () => {
    const before = liveIds();
    const { secure, wire } = await rawLogin();
    const id = await newSession(before);
    secure.write(query("select repeat('x', 40000) as x, sleep(0.3) as s from seq_1_to_20"));
    // Column count, two definitions, EOF, and the first rows.
    const seen: Pkt[] = [];
    while (seen.filter((p) => p.payload.length > 30000).length < 2) seen.push((await wire.next())!);
    expect(await g.gw.broker.kill(id, 'dave')).toBe(true);
    const rest = await wire.rest();
    const all = [...seen, ...rest];
    const last = all.at(-1)!;
    expect(errOf(last)).toMatchObject({ errno: 1927, message: 'Gatehouse: this session was ended by dave. (killed)' });
    expect(last.seq).toBe((all.at(-2)!.seq + 1) & 0xff);
    expect(await endOf(id)).toMatchObject({ endReason: 'killed' });
  });

  it('a session ended while idle after a result set gets its ERR 1927 with the sequence id after the last server packet', async () => {
    const before = liveIds();
    const { secure, wire } = await rawLogin();
    const id = await newSession(before);
    secure.write(query('select 1 as one'));
    const r = await wire.reply(false);
    expect(await g.gw.broker.kill(id, 'dave')).toBe(true);
    const p = await wire.next();
    expect(errOf(p).errno).toBe(1927);
    // What the relay on Node's streams says (session.ts close(): the server spoke last).
    expect(p!.seq).toBe((r.at(-1)!.seq + 1) & 0xff);
  });

  it('an oversized packet right after a refused KILL is refused with ERR 1153 and sequence id 1, and the session ends with the error', async () => {
    const live = liveIds();
    const { secure, wire } = await rawLogin({ port: small.address.port });
    const id = await newSession(live);
    secure.write(query('KILL 999999'));
    expect(errOf(await wire.next()).message).toMatch(NOT_ALLOWED);
    secure.write(Buffer.concat([Buffer.from([0xd0, 0x07, 0x00, 0x00, Cmd.Query]), Buffer.alloc(100, 0x20)]));
    const p = await wire.next();
    expect(errOf(p)).toMatchObject({ errno: 1153, message: "Gatehouse: Got a packet bigger than the gateway's limit of 1024 bytes (protocol_error)" });
    expect(p!.seq).toBe(1);
    expect(await wire.next()).toBeUndefined();
    expect(await endOf(id)).toMatchObject({ endReason: 'error' });
  });

  it('an oversized packet after a query and its result is refused with sequence id 1', async () => {
    const { secure, wire } = await rawLogin({ port: small.address.port });
    secure.write(query('select 1 as one'));
    await wire.reply(false);
    secure.write(Buffer.concat([Buffer.from([0xd0, 0x07, 0x00, 0x00, Cmd.Query]), Buffer.alloc(100, 0x20)]));
    const p = await wire.next();
    expect(errOf(p).errno).toBe(1153);
    expect(p!.seq).toBe(1);
  });

  it('COM_CHANGE_USER after a refused KILL is refused by name with sequence id 1; not a byte reaches the target', async () => {
    const live = liveIds();
    const { secure, wire } = await rawLogin();
    const id = await newSession(live);
    secure.write(query('KILL 999999'));
    expect(errOf(await wire.next()).message).toMatch(NOT_ALLOWED);
    secure.write(encodePacket(0, Buffer.concat([Buffer.from([Cmd.ChangeUser]), Buffer.from('root\0\0')])));
    const p = await wire.next();
    expect(errOf(p).message).toMatch(/COM_CHANGE_USER is not allowed through the gateway/);
    expect(p!.seq).toBe(1);
    expect(await wire.next()).toBeUndefined();
    expect(await endOf(id)).toMatchObject({ endReason: 'error' });
  });
});

describe('the native MySQL relay: the client TLS hand-over', () => {
  /**
   * A client whose SSLRequest and ClientHello leave in one TCP write (`split`: only the first
   * bytes of the ClientHello go with the SSLRequest, the rest 50 ms later, so OpenSSL holds part
   * of a record when the memory BIO runs dry and the socket takes over).
   */
  async function corkedLogin(split?: number): Promise<void> {
    const socket: Socket = connect(g.port, '127.0.0.1');
    await once(socket, 'connect');
    // The greeting, read off the plain socket.
    let buf = Buffer.alloc(0);
    while (buf.length < 4 || buf.length < 4 + buf.readUIntLE(0, 3)) buf = Buffer.concat([buf, (await once(socket, 'data'))[0] as Buffer]);
    socket.pause();
    const caps = BASE_CAPS;
    const sslRequest = encodePacket(1, encodeSslRequest({ capabilities: caps, maxPacket: 1 << 24, charset: 45 }));
    let first = true;
    // TLS over a stream of our own: its first write (the ClientHello) goes out with the SSLRequest, in one segment.
    const wireSide: Duplex = new Duplex({
      read() {},
      write(chunk: Buffer, _enc, cb) {
        if (first) {
          first = false;
          if (split === undefined) return void socket.write(Buffer.concat([sslRequest, chunk]), cb);
          socket.write(Buffer.concat([sslRequest, chunk.subarray(0, split)]));
          setTimeout(() => socket.write(chunk.subarray(split), cb), 50);
        } else socket.write(chunk, cb);
      },
      final(cb) {
        socket.end();
        cb();
      },
    });
    socket.on('data', (d: Buffer) => wireSide.push(d));
    socket.on('end', () => wireSide.push(null));
    socket.resume();
    const secure = tlsConnect({ socket: wireSide as never, ca: g.gw.pki.caCertPem, checkServerIdentity: () => undefined });
    await once(secure, 'secureConnect');
    const wire = new Wire(secure);
    secure.write(loginPacket(1, caps));
    const ok = await wire.next();
    expect(ok?.payload[0]).toBe(0x00);
    secure.write(query("select 'corked' as c"));
    const r = await wire.reply(false);
    expect(Buffer.concat(r.map((p) => p.payload)).toString('latin1')).toContain('corked');
    secure.end();
    socket.destroy();
  }

  it('an SSLRequest and the ClientHello in one TCP write: the addon reads what Node read past the SSLRequest', async () => {
    await corkedLogin();
  });

  it('an SSLRequest with the first 10 bytes of the ClientHello, the rest later: the handshake reads on from the socket', async () => {
    await corkedLogin(10);
  });

  it('an SSLRequest with the ClientHello but for its last byte, the rest later', async () => {
    await corkedLogin(-1);
  });
});

describe('the native MySQL relay: TLS session resumption', () => {
  /** A raw login offering `session`; the gateway's answer to one query on it, and what its TLS did. */
  async function loginAndQuery(word: string, session?: Buffer, maxVersion?: 'TLSv1.2'): Promise<{ reused: boolean; tickets: Buffer[]; answer: string }> {
    const { secure, reader, seq, tickets } = await rawTlsStart(g, BASE_CAPS, { ...(session ? { session } : {}), ...(maxVersion ? { maxVersion } : {}) });
    reader.detach();
    const wire = new Wire(secure);
    secure.write(loginPacket(seq, BASE_CAPS));
    expect((await wire.next())?.payload[0]).toBe(0x00);
    // A reply of many TLS records; the OK before it is the first record the relay writes (on the
    // lean record layer, the first it seals, after the ticket's).
    secure.write(query(`select '${word}' as w, repeat('x', 100000) as pad`));
    const answer = Buffer.concat((await wire.reply(false)).map((p) => p.payload)).toString('latin1');
    const reused = secure.isSessionReused();
    secure.end();
    return { reused, tickets, answer };
  }

  it('a full handshake ends with a session ticket; a login that offers it resumes, and both relay a reply of many records', async () => {
    const first = await loginAndQuery('first');
    expect(first.reused).toBe(false);
    expect(first.answer).toContain('first');
    expect(first.answer).toContain('x'.repeat(100_000));
    // The native data path issues one; Node's TLS server (the node relay project) its own default.
    if (RELAY === 'native') expect(first.tickets).toHaveLength(1);
    else expect(first.tickets.length).toBeGreaterThan(0);
    const second = await loginAndQuery('second', first.tickets.at(-1));
    expect(second.reused).toBe(true);
    expect(second.answer).toContain('second');
    expect(second.answer).toContain('x'.repeat(100_000));
    // A resumed handshake ends with no new ticket, on either data path (Node's TLS server renews
    // none): the ticket the client has stays good, and the relay's first record is record 0.
    expect(second.tickets).toHaveLength(0);
    const third = await loginAndQuery('third', first.tickets.at(-1));
    expect(third.reused).toBe(true);
    expect(third.tickets).toHaveLength(0);
    expect(third.answer).toContain('x'.repeat(100_000));
  });

  // In the data-path workers project the second connection is served by the other worker (the
  // pool hands a connection to the worker with the fewest, in turn among equals): the listener's
  // ticket key is the same in both.
  it('mysql2 resumes its second connection with the session of its first (its cache is per ssl options)', async () => {
    const ssl = { ca: g.gw.pki.caCertPem };
    const reused: boolean[] = [];
    for (const word of ['one', 'two']) {
      const c = await mysql.createConnection({ host: '127.0.0.1', port: g.port, user: 'alice:open-mysql', password: GATEWAY_PASSWORD, ssl });
      const [rows] = await c.query(`select '${word}' as w`);
      expect(rows).toEqual([{ w: word }]);
      // mysql2's promise wrapper keeps its connection, whose stream is the TLS socket once secured.
      reused.push((c as unknown as { connection: { stream: TLSSocket } }).connection.stream.isSessionReused());
      await c.end();
    }
    expect(reused).toEqual([false, true]);
  });

  it('a TLS 1.2 client is given nothing to resume on the native data path: its resumption would reuse the master secret a ticket carries', async () => {
    const first = await loginAndQuery('older', undefined, 'TLSv1.2');
    expect(first.reused).toBe(false);
    expect(first.answer).toContain('older');
    if (RELAY === 'native') {
      // No ticket, and no session id the server would know again: Node's client reports no session.
      expect(first.tickets).toHaveLength(0);
    } else {
      // Node's TLS server (the node relay project) resumes TLS 1.2 from its tickets.
      const second = await loginAndQuery('older again', first.tickets.at(-1), 'TLSv1.2');
      expect(second.reused).toBe(true);
      expect(second.answer).toContain('older again');
    }
  });

  it('a ticket key that is not 80 bytes is refused before the addon sees it', () => {
    const n = nativeLoop();
    if (!('loop' in n)) throw new Error(`the native data path did not load: ${n.reason}`);
    const tls = { certPem: g.gw.pki.certPem, keyPem: g.gw.pki.keyPem, tls13: SERVER_TLS13_SUITES, tls12: SERVER_TLS12_CIPHERS, tickets: 1 };
    expect(() => n.loop.serverContext({ ...tls, ticketKey: randomBytes(48).toString('base64') })).toThrow('tls.ticketKey: must be 80 bytes, not 48');
    expect(n.loop.serverContext({ ...tls, ticketKey: randomBytes(80).toString('base64') })).toBeTypeOf('object');
  });

  it('a ticket from another gateway is not taken: the login runs a full handshake and goes on', async () => {
    const other = await startMyGateway({ relay: RELAY });
    try {
      await addMyResource(other, {}, 'open-mysql');
      const { secure, tickets } = await rawTlsStart(other, BASE_CAPS);
      await eventually(async () => tickets.length > 0, 5000, 'a ticket from the other gateway');
      secure.destroy();
      const r = await loginAndQuery('foreign', tickets[0]);
      expect(r.reused).toBe(false);
      expect(r.answer).toContain('foreign');
      // The full handshake ends with a ticket of this gateway's own.
      expect(r.tickets.length).toBeGreaterThan(0);
    } finally {
      await other.close();
    }
  });
});

describe('the native MySQL relay: a refused KILL whose ERR waits for the replies before it', () => {
  const text = (ps: Pkt[]): string => Buffer.concat(ps.map((p) => p.payload)).toString('latin1');
  const prepare = (sql: string): Buffer => encodePacket(0, Buffer.concat([Buffer.from([Cmd.StmtPrepare]), Buffer.from(sql)]));

  it('two queries pipelined before a refused KILL: both results, then the ERR, then the query behind it', async () => {
    const { secure, wire } = await rawLogin();
    secure.write(Buffer.concat([query("select 'first' as f"), query("select 'second' as s, sleep(0.3) as z"), query('KILL 999999'), query("select 'fourth' as t")]));
    const got: string[] = [];
    for (let k = 0; k < 4; k++) {
      const r = await wire.reply(false);
      if (r[0]!.payload[0] === 0xff) {
        expect(errOf(r[0]).message).toMatch(NOT_ALLOWED);
        got.push(`ERR seq ${r[0]!.seq}`);
      } else got.push(['first', 'second', 'fourth'].find((w) => text(r).includes(w)) ?? text(r));
    }
    expect(got).toEqual(['first', 'second', 'ERR seq 1', 'fourth']);
    secure.end();
  });

  it('a multi-row INSERT and a COM_STMT_PREPARE pipelined before a refused KILL: the ERR still comes, and the session goes on', async () => {
    const { secure, wire } = await rawLogin();
    secure.write(Buffer.concat([query("insert into infile_t values ('a'), ('b')"), prepare('select ? as p'), query('KILL 999999')]));
    const ok = await wire.next();
    expect(ok!.payload[0]).toBe(0x00);
    // The prepare's OK, its parameter definitions and their EOF, its column definitions and their EOF.
    const prep = await wire.next();
    expect(prep!.payload[0]).toBe(0x00);
    const params = prep!.payload.readUInt16LE(7);
    const columns = prep!.payload.readUInt16LE(5);
    for (let k = 0; k < (params ? params + 1 : 0) + (columns ? columns + 1 : 0); k++) await wire.next();
    const err = await wire.next(3000).catch((e: unknown) => e);
    expect(err instanceof Error ? err.message : errOf(err as Pkt).message).toMatch(NOT_ALLOWED);
    secure.write(query("select 'after' as a"));
    expect(text(await wire.reply(false))).toContain('after');
    secure.end();
  });

  it("LOCAL INFILE: the file's last packet and a refused KILL in one write: the LOAD's OK first, then the ERR", async () => {
    const caps = BASE_CAPS | Cap.LOCAL_FILES;
    // Each row takes the target 0.2 s: its OK comes well after the gateway's verdict on the KILL.
    await g.superQuery('create table if not exists infile_slow (a text)');
    await g.superQuery('create trigger if not exists infile_slow_t before insert on infile_slow for each row do sleep(0.2)');
    const { secure, wire } = await rawLogin({ caps });
    secure.write(query("LOAD DATA LOCAL INFILE 'y.txt' INTO TABLE infile_slow"));
    const ask = await wire.next();
    expect(ask!.payload[0]).toBe(0xfb);
    secure.write(Buffer.concat([encodePacket(2, Buffer.from('row\n')), encodePacket(3, Buffer.alloc(0)), query('KILL 999999'), query("select 'after' as a")]));
    const first = await wire.next();
    const second = await wire.next();
    expect([first!.payload[0], first!.seq, second!.payload[0], second!.seq]).toEqual([0x00, 4, 0xff, 1]);
    expect(errOf(second).message).toMatch(NOT_ALLOWED);
    expect(text(await wire.reply(false))).toContain('after');
    secure.end();
  });

  it('several refused KILLs pipelined behind a query: the result, then each ERR with sequence id 1, then the query behind them', async () => {
    const { secure, wire } = await rawLogin();
    const audited = g.statements.length;
    secure.write(Buffer.concat([query("select 'first' as f, sleep(0.2) as s"), query('KILL 999999'), query('KILL 999999'), query('KILL QUERY 999999'), query("select 'last' as l")]));
    expect(text(await wire.reply(false))).toContain('first');
    for (const re of [NOT_ALLOWED, NOT_ALLOWED, /^Gatehouse: KILL QUERY 999999 is not allowed/]) {
      const p = await wire.next();
      expect(p!.seq).toBe(1);
      expect(errOf(p).message).toMatch(re);
    }
    expect(text(await wire.reply(false))).toContain('last');
    await expectAudited(audited, ["select 'first' as f, sleep(0.2) as s", 'KILL 999999', 'KILL 999999', 'KILL QUERY 999999', "select 'last' as l"]);
    secure.end();
  });

  it("a KILL of the client's own other session behind a waiting refused KILL goes to the target after the ERR: the result, the ERR, the target's OK, the result", async () => {
    const b = await rawLogin();
    b.secure.write(query('select connection_id() as id'));
    const row = (await b.wire.reply(false)).at(-2)!;
    const thread = Number(row.payload.subarray(1, 1 + row.payload[0]!).toString('latin1'));
    expect(thread).toBeGreaterThan(0);
    const { secure, wire } = await rawLogin();
    secure.write(Buffer.concat([query("select 'first' as f, sleep(0.2) as s"), query('KILL 999999'), query(`KILL QUERY ${thread}`), query("select 'last' as l")]));
    expect(text(await wire.reply(false))).toContain('first');
    const err = await wire.next();
    expect(err!.seq).toBe(1);
    expect(errOf(err).message).toMatch(NOT_ALLOWED);
    const ok = await wire.next();
    expect([ok!.seq, ok!.payload[0]]).toEqual([1, 0x00]);
    expect(text(await wire.reply(false))).toContain('last');
    secure.end();
    b.secure.end();
  });

  it('COM_CHANGE_USER behind a waiting refused KILL: the result, the KILL ERR, the refusal with sequence id 1, and the session ends; not a byte reaches the target', async () => {
    const live = liveIds();
    const { secure, wire } = await rawLogin();
    const id = await newSession(live);
    secure.write(Buffer.concat([query("select 'first' as f, sleep(0.2) as s"), query('KILL 999999'), encodePacket(0, Buffer.concat([Buffer.from([Cmd.ChangeUser]), Buffer.from('root\0\0')]))]));
    expect(text(await wire.reply(false))).toContain('first');
    const kill = await wire.next();
    expect(kill!.seq).toBe(1);
    expect(errOf(kill).message).toMatch(NOT_ALLOWED);
    const p = await wire.next();
    expect(errOf(p).message).toMatch(/COM_CHANGE_USER is not allowed through the gateway/);
    expect(p!.seq).toBe(1);
    expect(await wire.next()).toBeUndefined();
    expect(await endOf(id)).toMatchObject({ endReason: 'error' });
  });

  it('an oversized packet behind a waiting refused KILL: the result, the KILL ERR, ERR 1153 with sequence id 1, and the session ends', async () => {
    const live = liveIds();
    const { secure, wire } = await rawLogin({ port: small.address.port });
    const id = await newSession(live);
    secure.write(Buffer.concat([query("select 'first' as f, sleep(0.2) as s"), query('KILL 999999'), Buffer.from([0xd0, 0x07, 0x00, 0x00, Cmd.Query]), Buffer.alloc(100, 0x20)]));
    expect(text(await wire.reply(false))).toContain('first');
    expect(errOf(await wire.next()).message).toMatch(NOT_ALLOWED);
    const p = await wire.next();
    expect(errOf(p).errno).toBe(1153);
    expect(p!.seq).toBe(1);
    expect(await wire.next()).toBeUndefined();
    expect(await endOf(id)).toMatchObject({ endReason: 'error' });
  });

  it('a session ended while a refused KILL waits for a streaming result: the rows, then ERR 1927 after the last packet, and the session ends killed', async () => {
    const before = liveIds();
    const { secure, wire } = await rawLogin();
    const id = await newSession(before);
    secure.write(Buffer.concat([query("select repeat('x', 40000) as x, sleep(0.2) as s from seq_1_to_10"), query('KILL 999999'), query("select 'never' as n")]));
    const seen: Pkt[] = [];
    while (seen.filter((p) => p.payload.length > 30000).length < 2) seen.push((await wire.next())!);
    expect(await g.gw.broker.kill(id, 'dave')).toBe(true);
    const all = [...seen, ...(await wire.rest())];
    const last = all.at(-1)!;
    expect(errOf(last)).toMatchObject({ errno: 1927 });
    expect(last.seq).toBe((all.at(-2)!.seq + 1) & 0xff);
    expect(text(all)).not.toContain('never');
    expect(await endOf(id)).toMatchObject({ endReason: 'killed' });
  });

  it('a session ended while a refused KILL waits for a statement that has not answered yet: ERR 1927 with sequence id 1, the session ends killed', async () => {
    const before = liveIds();
    const { secure, wire } = await rawLogin();
    const id = await newSession(before);
    const audited = g.statements.length;
    secure.write(Buffer.concat([query('select sleep(5) as s'), query('KILL 999999')]));
    // Both statements read (the KILL judged) before the session is ended.
    await expectAudited(audited, ['select sleep(5) as s', 'KILL 999999']);
    expect(await g.gw.broker.kill(id, 'dave')).toBe(true);
    const rest = await wire.rest(3000);
    expect(rest).toHaveLength(1);
    expect(errOf(rest[0])).toMatchObject({ errno: 1927 });
    expect(rest[0]!.seq).toBe(1);
    expect(await endOf(id)).toMatchObject({ endReason: 'killed' });
  });

  it('a client that closes while its refused KILL waits for a long statement: the session ends client_closed without waiting for the statement', async () => {
    const before = liveIds();
    const { secure } = await rawLogin();
    const id = await newSession(before);
    const audited = g.statements.length;
    secure.write(Buffer.concat([query('select sleep(4) as s'), query('KILL 999999')]));
    await expectAudited(audited, ['select sleep(4) as s', 'KILL 999999']);
    const t0 = performance.now();
    secure.end();
    await eventually(async () => (await g.gw.store.getSession(id))?.state === 'ended', 10_000, 'the session record to be ended');
    // The statement runs 4 s on the target; the session ended when the client went.
    expect(performance.now() - t0).toBeLessThan(2000);
    expect(await g.gw.store.getSession(id)).toMatchObject({ endReason: 'client_closed' });
  });

  async function backpressure(behindLogin: boolean): Promise<void> {
    const first = Buffer.concat([query('select sleep(2) as s'), query('KILL 999999')]);
    const audited = g.statements.length;
    const { secure, wire } = behindLogin ? await rawLogin({ behind: first }) : await rawLogin();
    if (!behindLogin) secure.write(first);
    await expectAudited(audited, ['select sleep(2) as s', 'KILL 999999']);
    // 32 MiB behind the waiting KILL: the gateway leaves them in the client's socket, it does not read them all.
    const big = query(`select length('${'z'.repeat(4 << 20)}') as l`);
    for (let k = 0; k < 8; k++) secure.write(big);
    await new Promise((r) => setTimeout(r, 1000));
    expect(secure.writableLength).toBeGreaterThan(8 << 20);
    expect((await wire.reply(false)).at(-1)!.payload[0]).toBe(0xfe);
    expect(errOf(await wire.next()).message).toMatch(NOT_ALLOWED);
    for (let k = 0; k < 8; k++) expect(text(await wire.reply(false))).toContain(String(4 << 20));
    secure.end();
  }

  it('the client is not read behind a refused KILL whose ERR waits (32 MiB stay in its socket)', async () => {
    await backpressure(false);
  });

  it('the client is not read behind a refused KILL whose ERR waits, sent in the same write as the login', async () => {
    await backpressure(true);
  });

  it('a plaintext target whose reply is one write of exactly one full read (17408 bytes): the ERR behind it still comes', async () => {
    // The target leg in plaintext, and the target writes a reply under 32 KiB in one send().
    const plainDoor = await myDoor({ relay: RELAY, upstreamTls: 'disable' });
    const plain = await plainDoor.listen({
      host: '127.0.0.1', port: 0, broker: g.gw.broker, log: silentLogger, tls: { cert: g.gw.pki.certPem, key: g.gw.pki.keyPem, ca: g.gw.pki.caCertPem },
    });
    await g.superQuery('set global net_buffer_length = 32768');
    try {
      const { secure, wire } = await rawLogin({ port: plain.address.port });
      const sql = (n: number): string => `select sleep(0.05) as s, repeat('a', ${n}) as a`;
      secure.write(query(sql(1000)));
      const probe = await wire.reply(false);
      const n = 16384 + 1024 - (probe.reduce((sum, p) => sum + 4 + p.payload.length, 0) - 1000);
      secure.write(Buffer.concat([query(sql(n)), query('KILL 999999')]));
      const r = await wire.reply(false);
      expect(r.reduce((sum, p) => sum + 4 + p.payload.length, 0)).toBe(16384 + 1024);
      const err = await wire.next(3000).catch((e: unknown) => e);
      expect(err instanceof Error ? err.message : errOf(err as Pkt).message).toMatch(NOT_ALLOWED);
      secure.end();
    } finally {
      await g.superQuery('set global net_buffer_length = 16384');
      await plain.close();
    }
  });
});
