/**
 * The PostgreSQL door's native data path (native/pg-relay.c, protocols/postgres/native.ts)
 * against a real PostgreSQL: clients and targets that die at each phase leave no endpoint
 * behind, backpressure holds, a teardown closes every session in time, pipelined and split
 * input is relayed and audited, and the target's identity is checked before any login byte.
 *
 * The door runs in this process with `relay: 'native'` (vitest.config.ts keeps this file out of
 * the workers and node-relay projects), so that the addon's own gauge, NativeLoop.endpoints, is
 * observable; where a crash must not take the test process with it, in a data-path worker.
 *
 * Three of them guard bugs a review found in the first version (bc6ee41 up to 151e03a), each
 * failing there: an unauthenticated client's flood was buffered without bound during the login,
 * a statement flood stalled the process's event loop for seconds, and a target that hung up
 * right after a teardown made the addon free its leg twice.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { connect as tlsConnect, TLSSocket } from 'node:tls';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { createLogger, silentLogger } from '../../src/core/log.js';
import { DataPath } from '../../src/dataplane/pool.js';
import { decodeFields, decodeMessage, message, passwordMessage, sslRequest, startupMessage, type Message } from '../../protocols/postgres/codec.js';
import { PostgresAdapter, type StatementEvent } from '../../protocols/postgres/index.js';
import { NativeRelay, tlsRecordsChoice, type NativeLoop } from '../../protocols/postgres/native.js';
import { startPostgres, type PostgresTarget } from '../targets/index.js';
import { GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from './gateway-harness.js';
import { messagesOf, nativeDoor, queryMessage } from './postgres-harness.js';

/** Bytes of SQL the door keeps per statement here (small, so that truncation is visible). */
const AUDIT_LIMIT = 200;
/** Resources served by a FakeTarget. */
const FAKE_TARGETS = ['streaming-pg', 'elsewhere-pg'];

let gw: GatewayHarness;
let target: PostgresTarget;
/** Who handles live sessions' TLS records in this run (GATEHOUSE_POSTGRES_TLS_RECORDS). */
const RECORDS = tlsRecordsChoice(undefined);
let adapter: PostgresAdapter;
let listener: Listener;
let port: number;
let loop: NativeLoop;
let su: pg.Client;
const statements: StatementEvent[] = [];

beforeAll(async () => {
  [gw, target] = await Promise.all([makeGateway(), startPostgres()]);
  // Hand-made targets (FakeTarget) present the gateway PKI's own certificate.
  const fakes = Object.fromEntries(FAKE_TARGETS.map((n) => [n, gw.pki.caCertPem]));
  ({ adapter, listener, port, loop } = await nativeDoor(gw, target, {
    upstreamCa: { '*': readFileSync(target.ca, 'utf8'), ...fakes }, auditSqlLimit: AUDIT_LIMIT, onStatement: (e) => statements.push(e),
  }));
  su = new pg.Client({ host: target.host, port: target.port, user: target.superuser, password: target.superuserPassword, database: target.database });
  await su.connect();
});

afterEach(() => {
  for (const c of RawClient.opened) c.destroy();
  RawClient.opened.clear();
});

afterAll(async () => {
  await su?.end().catch(() => undefined);
  await listener?.close();
  await gw?.cleanup();
  await target?.stop();
});

// ---- helpers ----

/** Polls `check` (no fixed sleeps) until it holds or `ms` pass; returns whether it held. */
async function until(check: () => boolean | Promise<boolean>, ms = 5_000): Promise<boolean> {
  const start = performance.now();
  while (performance.now() - start < ms) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return check();
}

/** Waits until the addon holds exactly `n` endpoints; returns how long it took (ms), or fails. */
async function endpointsBecome(n: number, ms = 5_000): Promise<number> {
  const t0 = performance.now();
  const ok = await until(() => loop.endpoints === n, ms);
  if (!ok) expect.fail(`the addon holds ${loop.endpoints} endpoints, expected ${n} within ${ms} ms`);
  return performance.now() - t0;
}

const typeOf = (m: Message): string => String.fromCharCode(m.type);
const query = queryMessage;

/**
 * A client by hand: SSLRequest, TLS verified against the gateway's CA, then raw messages.
 * Every message the gateway sends is decoded into `msgs` (unless `discard`).
 */
class RawClient {
  readonly raw: Socket;
  tls!: TLSSocket;
  msgs: Message[] = [];
  bytes = 0;
  private pending = Buffer.alloc(0);
  closed = false;
  readonly whenClosed: Promise<void>;
  private closedResolve!: () => void;
  discard = false;

  /** Every client a test opened, destroyed after it (a failed test must not leave sessions to the next one's quiet()). */
  static readonly opened = new Set<RawClient>();

  private constructor(raw: Socket) {
    RawClient.opened.add(this);
    this.raw = raw;
    this.whenClosed = new Promise((r) => (this.closedResolve = r));
  }

  /** TCP and the SSLRequest, answered 'S' by the addon. */
  static async connect(opts: { allowHalfOpen?: boolean; port?: number } = {}): Promise<RawClient> {
    const raw = netConnect({ port, host: '127.0.0.1', ...opts });
    raw.setNoDelay(true);
    raw.on('error', () => {});
    await new Promise<void>((r) => raw.once('connect', () => r()));
    raw.write(sslRequest());
    const answer = await new Promise<Buffer>((r) => raw.once('data', r));
    expect(answer.toString()).toBe('S');
    return new RawClient(raw);
  }

  async handshake(opts: { allowHalfOpen?: boolean } = {}): Promise<void> {
    this.tls = tlsConnect({ socket: this.raw, ca: gw.pki.caCertPem, servername: 'localhost', ...opts });
    this.tls.setNoDelay(true);
    this.tls.on('error', () => {});
    this.tls.on('data', (d: Buffer) => this.onData(d));
    this.tls.on('close', () => {
      this.closed = true;
      this.closedResolve();
    });
    await new Promise<void>((r, j) => {
      this.tls.once('secureConnect', () => r());
      this.tls.once('close', () => j(new Error('closed during the TLS handshake')));
    });
  }

  private onData(d: Buffer): void {
    this.bytes += d.length;
    if (this.discard) return;
    const { msgs, rest } = messagesOf(this.pending.length ? Buffer.concat([this.pending, d]) : d);
    this.msgs.push(...msgs);
    this.pending = Buffer.from(rest);
  }

  /** Resolves once a message of `type` arrived (counting from `from`); its index. */
  async next(type: string, from = 0, ms = 10_000): Promise<number> {
    const find = (): number => this.msgs.findIndex((m, i) => i >= from && typeOf(m) === type);
    if (!(await until(() => find() >= 0 || this.closed, ms)) || find() < 0) {
      throw new Error(`no '${type}' from the gateway; got ${this.msgs.map(typeOf).join('')}${this.closed ? ' and a close' : ''}`);
    }
    return find();
  }

  startup(user = 'alice:open-pg'): void {
    this.tls.write(startupMessage(new Map([['user', user], ['database', 'x']])));
  }

  /** A whole login: startup, password (with `after` in the same write), up to ReadyForQuery. */
  static async login(after?: Buffer, at = port): Promise<RawClient> {
    const c = await RawClient.connect({ port: at });
    await c.handshake();
    c.startup();
    await c.next('R');
    c.tls.write(after ? Buffer.concat([passwordMessage(GATEWAY_PASSWORD), after]) : passwordMessage(GATEWAY_PASSWORD));
    await c.next('Z');
    return c;
  }

  error(from = 0): Record<string, string> {
    const e = this.msgs.find((m, i) => i >= from && typeOf(m) === 'E');
    return e ? decodeFields(e.body) : {};
  }

  destroy(): void {
    this.tls?.destroy();
    this.raw.destroy();
  }
}

const liveSessions = (): number => gw.broker.live().length;

async function targetBackends(): Promise<number> {
  const r = await su.query(`select count(*)::int as n from pg_stat_activity where usename = $1`, [target.user]);
  return r.rows[0].n as number;
}

function pgClient(): pg.Client {
  return new pg.Client({ host: 'localhost', port, user: 'alice:open-pg', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem }, connectionTimeoutMillis: 10_000 });
}

/** The baseline: no session, no endpoint (every test leaves it so). */
async function quiet(): Promise<void> {
  expect(await until(() => liveSessions() === 0 && loop.endpoints === 0)).toBe(true);
}

describe('the native PostgreSQL data path', () => {
  it('is the data path this door runs on: a session holds two addon endpoints and a NativeRelay', async () => {
    await quiet();
    const c = pgClient();
    await c.connect();
    try {
      expect(loop.endpoints).toBe(2);
      // Both TLS legs leave OpenSSL once the session is live, unless this run keeps it there.
      expect(loop.leanEndpoints).toBe(RECORDS === 'lean' ? 2 : 0);
      const [s] = gw.broker.live();
      expect(s?.handle).toBeInstanceOf(NativeRelay);
      expect((await c.query('select ssl from pg_stat_ssl where pid = pg_backend_pid()')).rows).toEqual([{ ssl: true }]);
    } finally {
      await c.end();
    }
    await endpointsBecome(0);
    // The session's end reaches JavaScript with the loop's next batch of events.
    expect(await until(() => liveSessions() === 0)).toBe(true);
  });

  it("logs each login's steps at debug level (login timings), their sum within the client's connect, and no secret", async () => {
    await quiet();
    const lines: string[] = [];
    const log = createLogger({ level: 'debug' }, { format: 'json', destination: { write: (line: string) => void lines.push(line) } });
    const door = new PostgresAdapter({ relay: 'native', upstreamCa: { '*': readFileSync(target.ca, 'utf8') } });
    const l = await door.listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem } });
    try {
      const c = new pg.Client({ host: 'localhost', port: l.address.port, user: 'alice:open-pg', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem } });
      const t0 = performance.now();
      await c.connect();
      const connectMs = performance.now() - t0;
      await c.end();
      const timings = lines.map((line) => JSON.parse(line) as { msg: string; session?: string; ms?: Record<string, number> }).filter((e) => e.msg === 'login timings');
      expect(timings).toHaveLength(1);
      const ms = timings[0]!.ms!;
      expect(Object.keys(ms)).toEqual(['tls', 'ask', 'signIn', 'decision', 'target', 'live']);
      for (const v of Object.values(ms)) expect(v).toBeGreaterThanOrEqual(0);
      expect(Object.values(ms).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(connectMs);
      expect(timings[0]!.session).toMatch(/^[0-9a-f-]{36}$/);
      expect(lines.join('\n')).not.toContain(GATEWAY_PASSWORD);
      expect(lines.join('\n')).not.toContain(target.password);
    } finally {
      await l.close();
    }
    await quiet();
  });

  it('offers no TLS session resumption, as PostgreSQL offers none: no session ticket after the handshake', async () => {
    await quiet();
    const c = await RawClient.connect();
    await c.handshake();
    // A TLS 1.3 server sends its tickets once it has the client's Finished, so after this point.
    const tickets: Buffer[] = [];
    c.tls.on('session', (t: Buffer) => tickets.push(t));
    expect(c.tls.getProtocol()).toBe('TLSv1.3');
    c.startup();
    await c.next('R');
    c.tls.write(Buffer.concat([passwordMessage(GATEWAY_PASSWORD), query('select 1')]));
    const z = await c.next('Z');
    await c.next('Z', z + 1);
    expect(tickets).toEqual([]);
    expect(c.tls.isSessionReused()).toBe(false);
    c.tls.end(message(0x58));
    await endpointsBecome(0);
  });

  it("counts a live session against maxConnections after Node's socket for it went: one over the limit is refused with 53300 after its startup, and one more is taken once a session ends", async () => {
    await quiet();
    const small = new PostgresAdapter({ relay: 'native', upstreamCa: { '*': readFileSync(target.ca, 'utf8') }, maxConnections: 2 });
    const l = await small.listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem } });
    try {
      const a = await RawClient.login(undefined, l.address.port);
      await RawClient.login(undefined, l.address.port);
      // Two live sessions: the addon holds both legs of each, Node holds none of their sockets.
      expect(liveSessions()).toBe(2);
      expect(loop.endpoints).toBe(4);

      const over = await RawClient.connect({ port: l.address.port });
      await over.handshake();
      over.startup();
      await over.next('E');
      expect(over.error()).toMatchObject({ S: 'FATAL', C: '53300', M: 'Gatehouse: the gateway has too many connections; try again shortly.' });
      await over.whenClosed;
      // Refused before any password was asked for.
      expect(over.msgs.map(typeOf)).toEqual(['E']);
      expect(liveSessions()).toBe(2);

      a.tls.end(message(0x58));
      expect(await until(() => liveSessions() === 1)).toBe(true);
      const c = await RawClient.login(undefined, l.address.port);
      c.tls.write(query('select 1'));
      await c.next('D', (await c.next('Z')) + 1);
      expect(liveSessions()).toBe(2);
    } finally {
      for (const c of RawClient.opened) c.destroy();
      await l.close();
    }
    await quiet();
  });
});

describe('clients that die before the session goes live', () => {
  it('mid TLS handshake (a FIN, and a reset): the endpoint goes with the client', async () => {
    await quiet();
    for (const how of ['fin', 'reset'] as const) {
      const c = await RawClient.connect();
      // Half a ClientHello: a handshake record header announcing 512 bytes, and 2 of them.
      c.raw.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00]));
      // The addon holds the socket from the 'S' on, mid handshake.
      expect(loop.endpoints).toBe(1);
      if (how === 'fin') c.raw.end();
      else c.raw.resetAndDestroy();
      await endpointsBecome(0);
    }
  });

  it('during the login (after the startup, after the password while the target is logged into): no endpoint, no session, no backend left', async () => {
    await quiet();
    const backends = await targetBackends();
    const a = await RawClient.connect();
    await a.handshake();
    a.startup();
    await a.next('R');
    expect(loop.endpoints).toBe(1);
    a.raw.resetAndDestroy();
    await endpointsBecome(0);

    // The password, then gone at once: the door is signing in or logging into the target.
    const b = await RawClient.connect();
    await b.handshake();
    b.startup();
    await b.next('R');
    const connects = adapter.stats.upstreamConnects;
    b.tls.write(passwordMessage(GATEWAY_PASSWORD));
    await until(() => adapter.stats.upstreamConnects > connects);
    b.raw.resetAndDestroy();
    // Whether the door noticed before the target login ended (the attempt is discarded) or
    // after it (the session goes live and ends at once as client_closed), nothing stays.
    expect(await until(async () => loop.endpoints === 0 && liveSessions() === 0 && (await targetBackends()) === backends)).toBe(true);
  });
});

describe('a hostile client during the login', () => {
  it('a client that floods after its password is not buffered without bound: the login keeps backpressure', async () => {
    // While the door checks the password (and for the second it lingers after refusing it),
    // nothing reads the login stream. The Node data path stops reading the socket then (a
    // paused TLSSocket: TCP's own backpressure, about 5 MB accepted here); the addon reads on
    // and pushes every byte into the endpoint's Readable, which buffers it all in this
    // process: a client without a valid password grows the gateway by hundreds of MB.
    await quiet();
    const c = await RawClient.connect({ allowHalfOpen: true });
    await c.handshake({ allowHalfOpen: true });
    c.startup();
    await c.next('R');
    c.tls.write(passwordMessage('not the password'));
    const chunk = Buffer.alloc(1 << 20, 0x41);
    let accepted = 0;
    const t0 = performance.now();
    // Writes as fast as the gateway takes them, ignoring its FATAL, until it closes the socket.
    while (!c.closed && performance.now() - t0 < 3_000) {
      if (!c.tls.write(chunk, (err) => err || (accepted += chunk.length))) {
        await new Promise<void>((r) => {
          const done = (): void => {
            c.tls.off('drain', done);
            c.tls.off('close', done);
            r();
          };
          c.tls.on('drain', done);
          c.tls.on('close', done);
        });
      }
    }
    expect(c.error()).toMatchObject({ S: 'FATAL', C: '28P01' });
    c.destroy();
    await endpointsBecome(0);
    // Kernel buffers on both ends plus the handshake reader's 256 KiB: a few MB, not hundreds.
    expect(accepted).toBeLessThan(32 << 20);
  });
});

/**
 * `node -e FLOOD_PARSE port caPath password seconds`: signs in as alice:open-pg over TLS and
 * sends Parse messages as fast as the gateway takes them; prints {"sent": n} at the end.
 */
const FLOOD_PARSE = `
const net = require('net'), tls = require('tls'), fs = require('fs');
const [port, caPath, password, seconds] = [Number(process.argv[1]), process.argv[2], process.argv[3], Number(process.argv[4])];
const msg = (t, body) => { const b = Buffer.alloc(5 + body.length); b[0] = t; b.writeInt32BE(4 + body.length, 1); body.copy(b, 5); return b; };
const cstr = (s) => Buffer.from(s + '\\0');
const params = Buffer.concat([cstr('user'), cstr('alice:open-pg'), Buffer.from([0])]);
const startup = Buffer.alloc(8 + params.length); startup.writeInt32BE(startup.length, 0); startup.writeInt32BE(196608, 4); params.copy(startup, 8);
const raw = net.connect(port, '127.0.0.1', () => raw.write(Buffer.from([0, 0, 0, 8, 4, 210, 22, 47])));
raw.once('data', () => {
  const s = tls.connect({ socket: raw, ca: fs.readFileSync(caPath), servername: 'localhost' }, () => s.write(startup));
  s.on('error', () => {});
  let buf = Buffer.alloc(0), phase = 0;
  s.on('data', (d) => {
    if (phase === 2) return;
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 5 && buf.length >= 1 + buf.readInt32BE(1)) {
      const t = buf[0];
      buf = buf.subarray(1 + buf.readInt32BE(1));
      if (t === 0x52 && phase === 0) { phase = 1; s.write(msg(0x70, cstr(password))); }
      else if (t === 0x5a && phase === 1) { phase = 2; flood(s); return; }
    }
  });
});
function flood(s) {
  const chunk = Buffer.concat([msg(0x50, Buffer.from('\\0selec oops\\0\\0\\0')), ...Array(100000).fill(msg(0x50, Buffer.from('\\0x\\0\\0\\0')))]);
  let sent = 0;
  const t0 = Date.now();
  const go = () => {
    while (Date.now() - t0 < seconds * 1000) {
      sent += 100001;
      if (!s.write(chunk)) return s.once('drain', go);
    }
    process.stdout.write(JSON.stringify({ sent }), () => process.exit(0));
  };
  go();
}
`;

/** The one live session's broker record. */
function theSession(): NonNullable<ReturnType<typeof gw.broker.live>[number]> {
  const live = gw.broker.live();
  expect(live).toHaveLength(1);
  return live[0]!;
}

describe('a live session on the native data path', () => {
  it('answers a query pipelined in the same write as the password, and one sent with the startup and password in a single write', async () => {
    await quiet();
    const c = await RawClient.login(query('select 40 + 2 as answer'));
    const greetingZ = await c.next('Z');
    const d = await c.next('D', greetingZ + 1);
    expect(c.msgs[d]!.body.subarray(6).toString()).toBe('42');
    await c.next('Z', d);
    // The addon reads on while JavaScript audits (up to MAX_UNAUDITED statements behind): the
    // audit may reach the hook a moment after the answer reaches the client.
    expect(await until(() => statements.at(-1)?.sql === 'select 40 + 2 as answer')).toBe(true);
    expect(statements.at(-1)).toMatchObject({ kind: 'query', sql: 'select 40 + 2 as answer', truncated: false });

    // Startup, password and a query in one TLS record, before the gateway asked for anything.
    const b = await RawClient.connect();
    await b.handshake();
    b.tls.write(Buffer.concat([startupMessage(new Map([['user', 'alice:open-pg']])), passwordMessage(GATEWAY_PASSWORD), query('select 6 * 7 as answer')]));
    const z = await b.next('Z');
    const d2 = await b.next('D', z + 1);
    expect(b.msgs[d2]!.body.subarray(6).toString()).toBe('42');
    expect(b.msgs.map(typeOf).join('')).toMatch(/^RR(S)+KZTDCZ$/);
    c.tls.end(message(0x58));
    b.tls.end(message(0x58));
    await endpointsBecome(0);
  });

  it('audits a Query and a Parse that arrive a byte per TLS record, with the limit and the truncated flag, and counts every byte', async () => {
    await quiet();
    const c = await RawClient.login();
    const session = theSession();
    const long = `select 1 as n /* ${'split '.repeat(60)}*/`;
    const short = 'select $1::int + 1 as n';
    const parse = message(0x50, Buffer.concat([Buffer.from('stmt\0'), Buffer.from(`${short}\0`), Buffer.from([0, 0])]));
    const bind = message(0x42, Buffer.concat([Buffer.from('\0stmt\0'), Buffer.from([0, 0, 0, 1, 0, 0, 0, 1, 0x34, 0, 0])]));
    const execute = message(0x45, Buffer.concat([Buffer.from('\0'), Buffer.alloc(4)]));
    const sync = message(0x53);
    let sent = 0;
    for (const m of [query(long), parse, bind, execute, sync]) {
      for (let i = 0; i < m.length; i++) {
        // One record per byte (TLS keeps them apart whatever TCP does); the addon frames each on its own.
        await new Promise<void>((r) => c.tls.write(m.subarray(i, i + 1), () => r()));
        sent++;
      }
    }
    const z0 = await c.next('Z');
    const z1 = await c.next('Z', z0 + 1);
    const z2 = await c.next('Z', z1 + 1);
    expect(c.msgs.slice(z1 + 1, z2 + 1).map(typeOf).join('')).toBe('12DCZ');
    expect(c.msgs.find((m, i) => i > z1 && typeOf(m) === 'D')!.body.subarray(6).toString()).toBe('5');
    const mine = (): StatementEvent[] => statements.filter((e) => e.sessionId === session.id);
    expect(await until(() => mine().length >= 2)).toBe(true);
    expect(mine()).toEqual([
      { sessionId: session.id, user: 'alice', resource: 'open-pg', kind: 'query', sql: long.slice(0, AUDIT_LIMIT), truncated: true },
      { sessionId: session.id, user: 'alice', resource: 'open-pg', kind: 'parse', sql: short, truncated: false },
    ]);
    // Everything the target said after the login, as the client received it (the goodbye is the gateway's own).
    const relayed = c.bytes - (await greetingBytes(c));
    await gw.broker.kill(session.id, 'dave');
    const rec = await gw.store.getSession(session.id);
    expect(rec).toMatchObject({ state: 'ended', endReason: 'killed', bytesIn: sent, bytesOut: relayed });
    await endpointsBecome(0);
  });
});

describe('backpressure and teardown', () => {
  it('a client that stops reading a 500 MB result pauses the target (ClientWrite) with the gateway holding little; a kill still closes both legs within 1 s and cancels the statement', async () => {
    await quiet();
    const c = await RawClient.login();
    c.discard = true;
    const session = theSession();
    const sql = `select repeat('x', 1000) as big from generate_series(1, 500000) /* slow reader */`;
    const rss = process.memoryUsage().rss;
    c.tls.write(query(sql));
    c.tls.pause();
    const backend = async (): Promise<{ state: string; wait_event: string | null } | undefined> =>
      (await su.query(`select state, wait_event from pg_stat_activity where query = $1`, [sql])).rows[0];
    // The target blocks writing to the gateway: the gateway stopped reading it.
    expect(await until(async () => (await backend())?.wait_event === 'ClientWrite', 10_000)).toBe(true);
    // The counts the addon reports once a second: what the gateway took from the target so far.
    expect(await until(() => session.bytesOut > 0, 3_000)).toBe(true);
    const taken = session.bytesOut;
    expect(taken).toBeLessThan(32 << 20);
    expect(c.bytes).toBeLessThan(32 << 20);
    expect(process.memoryUsage().rss - rss).toBeLessThan(100 << 20);
    expect(loop.endpoints).toBe(2);
    expect((await backend())?.wait_event).toBe('ClientWrite');

    const t0 = performance.now();
    await gw.broker.kill(session.id, 'dave');
    // No boundary within 250 ms (the client reads nothing), the client's 100 ms, the target's 250 ms.
    await endpointsBecome(0, 2_000);
    expect(performance.now() - t0).toBeLessThan(1_000);
    // A busy target is cancelled on teardown: the statement does not outlive the session.
    expect(await until(async () => (await backend())?.state !== 'active', 5_000)).toBe(true);
    expect(await gw.store.getSession(session.id)).toMatchObject({ state: 'ended', endReason: 'killed' });
    // What the gateway had queued still reaches the client, then its close.
    c.tls.resume();
    await c.whenClosed;
  });

  it("a client flooding the audit with statements is read only as fast as they are audited: the gateway's memory and event loop hold", async () => {
    // Parse messages the target skips (an error first: it discards up to a Sync), 10 bytes
    // each, from another process so that this process's event loop is the gateway's alone.
    // relay.ts audits in line with its reading, so it reads no faster than it audits. The addon
    // hands every statement up as an event and reads on: here 2 s of flood held the event loop
    // for 9 s in one stretch (4 s: 12 to 30 s, and 1 GB more resident; every login, timer and
    // teardown of the process waits); read at the audit's pace it stays near 20 ms and 50 MB.
    await quiet();
    let audited = 0;
    const counting = new PostgresAdapter({ relay: 'native', upstreamCa: { '*': readFileSync(target.ca, 'utf8') }, onStatement: () => void audited++ });
    const l = await counting.listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem } });
    const delay = monitorEventLoopDelay({ resolution: 10 });
    try {
      const rss = process.memoryUsage().rss;
      let peak = 0;
      delay.enable();
      const flooder = spawn(process.execPath, ['-e', FLOOD_PARSE, String(l.address.port), gw.pki.caPath, GATEWAY_PASSWORD, '2'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      flooder.stdout.on('data', (d: Buffer) => (out += d.toString()));
      let exited = false;
      flooder.on('exit', () => (exited = true));
      while (!exited) {
        peak = Math.max(peak, process.memoryUsage().rss - rss);
        await new Promise((r) => setTimeout(r, 20));
      }
      delay.disable();
      const { sent } = JSON.parse(out) as { sent: number };
      expect(sent).toBeGreaterThan(200_000);
      expect(audited).toBeGreaterThan(100_000);
      expect(delay.max / 1e6).toBeLessThan(1_000);
      expect(peak).toBeLessThan(160 << 20);
    } finally {
      delay.disable();
      await Promise.all(gw.broker.live().map((s) => gw.broker.kill(s.id, 'dave')));
      await l.close();
    }
    await endpointsBecome(0);
  });

  it('50 sessions torn down at once, 10 of them running a statement: every client gets FATAL 57P01 within 1 s, every endpoint and backend goes', async () => {
    await quiet();
    const backends = await targetBackends();
    const clients = await Promise.all(Array.from({ length: 50 }, async () => {
      const c = pgClient();
      await c.connect();
      c.on('error', () => {});
      return c;
    }));
    expect(loop.endpoints).toBe(100);
    const stamp = (e: unknown): { err: pg.DatabaseError; at: number } => ({ err: e as pg.DatabaseError, at: performance.now() });
    // A busy client hears the FATAL as its query's error, an idle one as the client's.
    const busy = clients.slice(0, 10).map((c) => c.query('select pg_sleep(30) /* mass teardown */').then(() => stamp(undefined), stamp));
    const idle = clients.slice(10).map((c) => new Promise<{ err: pg.DatabaseError; at: number }>((r) => c.once('error', (e) => r(stamp(e)))));
    const sleeping = async (): Promise<number> =>
      (await su.query(`select count(*)::int as n from pg_stat_activity where query = 'select pg_sleep(30) /* mass teardown */' and state = 'active'`)).rows[0].n as number;
    expect(await until(async () => (await sleeping()) === 10, 10_000)).toBe(true);

    const t0 = performance.now();
    await Promise.all(gw.broker.live().map((s) => gw.broker.kill(s.id, 'dave')));
    const got = await Promise.all([...busy, ...idle]);
    expect(got.map(({ err }) => `${err?.severity} ${err?.code} ${err?.message}`)).toEqual(Array(50).fill('FATAL 57P01 Gatehouse: this session was ended by dave.'));
    expect(Math.max(...got.map(({ at }) => at - t0))).toBeLessThan(1_000);
    await endpointsBecome(0, 3_000);
    expect(await until(async () => (await sleeping()) === 0 && (await targetBackends()) === backends, 5_000)).toBe(true);
    expect(adapter.stats.cancelKeys).toBe(0);
    await Promise.all(clients.map((c) => c.end().catch(() => undefined)));
  });

  it('a target that dies mid-session ends it as target_closed, its last words reaching the client', async () => {
    await quiet();
    const c = pgClient();
    await c.connect();
    const failed = new Promise<pg.DatabaseError>((r) => c.once('error', (e) => r(e as pg.DatabaseError)));
    // After the target's FATAL, pg also reports the closed socket.
    c.on('error', () => {});
    const session = theSession();
    const pid = (await c.query('select pg_backend_pid() as pid')).rows[0].pid as number;
    await su.query('select pg_terminate_backend($1)', [pid]);
    expect(await failed).toMatchObject({ code: '57P01', message: 'terminating connection due to administrator command' });
    await endpointsBecome(0);
    expect(await until(async () => (await gw.store.getSession(session.id))?.state === 'ended')).toBe(true);
    expect(await gw.store.getSession(session.id)).toMatchObject({ endReason: 'target_closed' });
  });
});

describe("the target's identity on the native data path", () => {
  it('a target whose certificate does not chain to the configured CA is refused with target_identity', async () => {
    await quiet();
    const wrong = new PostgresAdapter({ relay: 'native', upstreamCa: { 'open-pg': gw.pki.caCertPem } });
    const l = await wrong.listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem } });
    try {
      const c = new pg.Client({ host: 'localhost', port: l.address.port, user: 'alice:open-pg', password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem } });
      const err = await c.connect().then(() => undefined, (e: unknown) => e as pg.DatabaseError);
      expect(err).toMatchObject({
        code: '08001', severity: 'FATAL', detail: 'The target could not be used (target_identity).',
        hint: 'check the CA configured for open-pg and the certificate the target presents',
      });
      expect(err?.message).toMatch(/^Gatehouse: could not open open-pg: its TLS certificate does not verify against the configured CA \((UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|SELF_SIGNED_CERT_IN_CHAIN|DEPTH_ZERO_SELF_SIGNED_CERT)\)$/);
      expect(wrong.stats.upstreamConnects).toBe(1);
      await endpointsBecome(0);
      expect(liveSessions()).toBe(0);
    } finally {
      await l.close();
    }
  });

  it('an impostor (a certificate of another CA) and a target whose certificate names another address are refused before a byte inside TLS: no startup, no password', async () => {
    await quiet();
    // impostor-pg: its certificate is the gateway PKI's, the door expects the target CA's.
    // elsewhere-pg: the right CA, but the certificate covers 127.0.0.1 and localhost, not 127.0.0.2.
    for (const [name, host, code] of [['impostor-pg', '127.0.0.1', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY'], ['elsewhere-pg', '127.0.0.2', 'ERR_TLS_CERT_ALTNAME_INVALID']] as const) {
      const fake = new FakeTarget();
      await fake.start(name, host);
      try {
        const c = new pg.Client({ host: 'localhost', port, user: `alice:${name}`, password: GATEWAY_PASSWORD, ssl: { ca: gw.pki.caCertPem } });
        const err = await c.connect().then(() => undefined, (e: unknown) => e as pg.DatabaseError);
        expect(err).toMatchObject({ code: '08001', detail: 'The target could not be used (target_identity).' });
        expect(err?.message).toBe(`Gatehouse: could not open ${name}: its TLS certificate does not verify against the configured CA (${code})`);
        // The target saw its TLS handshake, then the gateway's close: nothing inside TLS.
        expect(await until(() => fake.closed)).toBe(true);
        expect(Buffer.concat(fake.received).length).toBe(0);
        await endpointsBecome(0);
      } finally {
        fake.close();
      }
    }
  });
});

/**
 * A PostgreSQL-speaking target by hand (TLS with the gateway PKI's certificate, a cleartext
 * password), for what a real server will not do on cue. A Query makes it stream 16 KiB records
 * of four whole 4 KiB DataRows each (TLS records are read one at a time, so the addon is at a
 * message boundary after each), as fast as the gateway takes them, until `stop()`.
 */
class FakeTarget {
  readonly server = createServer((sock) => this.accept(sock));
  /** The session's connection (the last one that sent a startup packet). */
  conn: TLSSocket | undefined;
  /** Everything it was sent inside TLS, on any connection. */
  received: Buffer[] = [];
  /** A session's connection closed (CancelRequest connections aside). */
  closed = false;
  /** CancelRequests received (each on a connection of its own, inside TLS). */
  cancels = 0;
  private streaming = false;

  async start(name: string, host = '127.0.0.1'): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, host, () => r()));
    await gw.addResource({
      name, type: 'database', protocol: 'postgres', host, port: (this.server.address() as { port: number }).port, database: 'db',
      credentials: { login: 'app', password: 'app-pw' }, settings: {},
    });
  }

  private accept(sock: Socket): void {
    sock.on('error', () => {});
    sock.once('data', () => {
      sock.write('S');
      const tls = new TLSSocket(sock, { isServer: true, cert: gw.pki.certPem, key: gw.pki.keyPem });
      tls.on('error', () => {});
      let cancel = false;
      tls.on('close', () => cancel || (this.closed = true));
      let buf = Buffer.alloc(0);
      let started = false;
      tls.on('data', (d: Buffer) => {
        this.received.push(d);
        if (cancel) return;
        buf = Buffer.concat([buf, d]);
        if (!started) {
          if (buf.length < 8 || buf.length < buf.readInt32BE(0)) return;
          if (buf.readInt32BE(4) === 80877102) {
            cancel = true;
            this.cancels++;
            tls.end();
            return;
          }
          this.conn = tls;
          buf = buf.subarray(buf.readInt32BE(0));
          started = true;
          tls.write(message(0x52, Buffer.from([0, 0, 0, 3])));
        }
        for (let m = decodeMessage(buf); m; m = decodeMessage(buf)) {
          buf = buf.subarray(m.size);
          if (m.value.type === 0x70) {
            tls.write(Buffer.concat([message(0x52, Buffer.alloc(4)), message(0x4b, Buffer.alloc(8, 7)), message(0x5a, Buffer.from('I'))]));
          } else if (m.value.type === 0x51) {
            this.streaming = true;
            this.pump();
          }
        }
      });
      tls.on('drain', () => this.pump());
    });
  }

  private readonly row = (() => {
    const one = Buffer.alloc(4096, 0x78);
    one[0] = 0x44;
    one.writeInt32BE(4095, 1);
    one.writeInt16BE(1, 5);
    one.writeInt32BE(4096 - 11, 7);
    // 16 records of 16 KiB a write: the target leg stays readable across turns of the addon's loop.
    return Buffer.concat(Array(64).fill(one));
  })();

  private pump(): void {
    const tls = this.conn!;
    while (this.streaming && !tls.destroyed) {
      if (!tls.write(this.row)) return;
    }
  }

  stop(): void {
    this.streaming = false;
  }

  close(): void {
    this.conn?.destroy();
    this.server.close();
  }
}

describe('a hostile or dying target', () => {
  it('a socket its peer closed before the addon took it: open() returns the endpoint\'s own id (it once read it from freed memory), and the endpoint reports its close', async () => {
    await quiet();
    const server = createServer((s) => s.end());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    try {
      const ids: number[] = [];
      for (let i = 0; i < 200; i++) {
        // Half open on our side: Node reads the FIN and keeps the descriptor for the addon.
        const sock = netConnect({ host: '127.0.0.1', port: (server.address() as { port: number }).port, allowHalfOpen: true });
        sock.resume();
        await new Promise((r) => sock.once('end', r));
        const ep = loop.plain(sock);
        ids.push(ep.id);
        // The addon reads the FIN at once and frees the endpoint: its close reaches this id.
        const closed = await Promise.race([
          new Promise<boolean>((r) => (ep.destroyed ? r(true) : ep.once('close', () => r(true)))),
          new Promise<boolean>((r) => setTimeout(() => r(false), 5_000).unref()),
        ]);
        expect({ i, id: ep.id, closed }).toEqual({ i, id: ep.id, closed: true });
      }
      expect(ids.every((id, i) => i === 0 || id === ids[i - 1]! + 1)).toBe(true);
      await quiet();
    } finally {
      server.close();
    }
  });

  it('a login endpoint that reads nothing (stopped for its splice) still sees its peer go: a reset closes it, a FIN alone does not, a FIN once it ended its own side does, and so does a reset after a FIN', async () => {
    // Its login runs in Node's loop, where libuv reports a hang-up only as UV_DISCONNECT (also
    // a bare FIN): the endpoint must tell the two apart, as epoll's EPOLLHUP did on the addon's thread.
    await quiet();
    const peers: Socket[] = [];
    const server = createServer((s) => void peers.push(s));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const endpoint = async (): Promise<{ ep: ReturnType<NativeLoop['plain']>; peer: Socket; closed: Promise<boolean> }> => {
      const sock = netConnect({ host: '127.0.0.1', port: (server.address() as { port: number }).port });
      await new Promise((r) => sock.once('connect', r));
      expect(await until(() => peers.length > 0)).toBe(true);
      const ep = loop.plain(sock);
      expect((await ep.stop()).length).toBe(0);
      const closed = new Promise<boolean>((r) => ep.once('close', () => r(true)));
      return { ep, peer: peers.shift()!, closed };
    };
    const within = (p: Promise<boolean>): Promise<boolean> => Promise.race([p, new Promise<boolean>((r) => setTimeout(() => r(false), 5_000).unref())]);
    try {
      const reset = await endpoint();
      reset.peer.resetAndDestroy();
      expect(await within(reset.closed)).toBe(true);

      const fin = await endpoint();
      fin.peer.end('late');
      await new Promise((r) => fin.peer.once('finish', r));
      // Still open after the FIN: what it writes reaches the peer, which keeps reading.
      const heard = new Promise<string>((r) => fin.peer.once('data', (d: Buffer) => r(d.toString())));
      fin.ep.write(Buffer.from('still here'));
      expect(await heard).toBe('still here');
      expect(fin.ep.destroyed).toBe(false);
      // Its own FIN after the peer's: the connection is over, and the endpoint goes.
      fin.ep.end();
      expect(await within(fin.closed)).toBe(true);

      // Past the peer's FIN it waits for nothing, and a reset still reaches it.
      const late = await endpoint();
      late.peer.end();
      await new Promise((r) => late.peer.once('finish', r));
      const back = new Promise<string>((r) => late.peer.once('data', (d: Buffer) => r(d.toString())));
      late.ep.write(Buffer.from('after your FIN'));
      expect(await back).toBe('after your FIN');
      late.peer.resetAndDestroy();
      expect(await within(late.closed)).toBe(true);
      await quiet();
    } finally {
      for (const p of peers) p.destroy();
      server.close();
    }
  });

  it('a target that hangs up right after a teardown, while the client still lingers, does not bring the process down (it once freed the target leg twice)', async () => {
    // The door in a data-path worker process of its own: were the addon to crash, the worker
    // dies (and is replaced) instead of this test process; the pool's log says so, with the signal.
    await quiet();
    const said: string[] = [];
    const pool = new DataPath(1, pino({ level: 'error' }, { write: (line: string) => void said.push(line) }));
    const exits = (): Array<{ msg: string; signal?: string }> => said.map((l) => JSON.parse(l) as { msg: string; signal?: string }).filter((l) => l.msg.includes('worker exited'));
    await pool.start();
    const fake = new FakeTarget();
    await fake.start('streaming-pg');
    const door = pool.door('postgres', new PostgresAdapter({ relay: 'native', upstreamCa: { 'streaming-pg': gw.pki.caCertPem } }));
    const l = await door.listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem } });
    const pid = pool.load()[0]!.pid;
    try {
      for (let round = 0; round < 10; round++) {
        // A client that keeps its socket open after the goodbye: the addon lingers its 100 ms.
        const c = await RawClient.connect({ allowHalfOpen: true, port: l.address.port });
        await c.handshake({ allowHalfOpen: true });
        c.startup('alice:streaming-pg');
        await c.next('R');
        c.tls.write(passwordMessage(GATEWAY_PASSWORD));
        await c.next('Z');
        c.discard = true;
        const session = theSession();
        c.tls.write(query('stream'));
        // Streaming at full speed, whole messages per record: at a boundary after every read,
        // and the target leg readable at every turn of the addon's loop.
        expect(await until(() => c.bytes > 8 << 20, 10_000)).toBe(true);
        const target = fake.conn!;
        await gw.broker.kill(session.id, 'dave');
        // The target goes away while the client lingers: its leg must be ended once, by the addon's grace.
        fake.stop();
        target.end();
        expect(await until(() => fake.closed, 3_000)).toBe(true);
        c.destroy();
        expect(await gw.store.getSession(session.id)).toMatchObject({ state: 'ended', endReason: 'killed' });
        // The addon ends the kept target leg 100 + 250 ms after the teardown; a crash comes by then.
        await until(() => exits().length > 0, 400);
        expect(exits()).toEqual([]);
        // The target was busy (a Query without its ReadyForQuery): the teardown cancelled it.
        expect(await until(() => fake.cancels === round + 1)).toBe(true);
        fake.closed = false;
      }
      // And the worker still serves.
      const c = await RawClient.connect({ port: l.address.port });
      await c.handshake();
      c.startup('alice:streaming-pg');
      await c.next('R');
      c.tls.write(passwordMessage(GATEWAY_PASSWORD));
      await c.next('Z');
      c.destroy();
      expect(pool.load()[0]!.pid).toBe(pid);
    } finally {
      await Promise.all(gw.broker.live().map((s) => gw.broker.kill(s.id, 'dave')));
      await l.close();
      await pool.stop();
      fake.close();
    }
  });
});

/** The bytes of a raw client's login answer (AuthenticationCleartextPassword up to the first ReadyForQuery). */
async function greetingBytes(c: RawClient): Promise<number> {
  const z = await c.next('Z');
  return c.msgs.slice(0, z + 1).reduce((n, m) => n + 5 + m.body.length, 0);
}
