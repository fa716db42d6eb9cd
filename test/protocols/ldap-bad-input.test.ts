/**
 * Hostile and broken LDAP clients against the LDAP door, with a real OpenLDAP slapd behind
 * it: truncated messages, indefinite and 5-octet lengths, messages over the cap before and
 * after the bind, deep filters, wrong first bytes, message ids 0 and 2^31, a response sent
 * as a request, an ExtendedRequest with no name, a StartTLS with a bind pipelined behind it,
 * and random bytes. Each one gets a Notice of Disconnection (protocolError, or unavailable
 * for a handshake that never finished) and a close, is audited as a `door.refuse` with the
 * client's address, and the listener keeps serving a real client (ldapts) afterwards.
 *
 * The hostile client is a raw socket writing bytes by hand (or with the codec's encoders
 * where the bytes may be right); what comes back is read with ldapts's own BER reader.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import fc from 'fast-check';
import { BerReader, Client } from 'ldapts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import { LdapAdapter, LdapsAdapter } from '../../protocols/ldap/index.js';
import { Ber, extendedRequest, message, Oid, Op, resultMessage, simpleBindRequest, tlv, unbindRequest } from '../../protocols/ldap/codec.js';
import { startSlapd, type SlapdTarget } from '../targets/index.js';
import { eventually, within } from './contract-driver.js';
import { GATEWAY_PASSWORD, makeGateway, type GatewayHarness } from './gateway-harness.js';
import { watchedLdapsClient } from './ldap-client.js';

/** Short, so a stalled client is cut off quickly; long enough for a real bind on a busy machine. */
const HANDSHAKE_MS = 1_500;
/** The bound client's cap, smaller than the 4 MiB default (the anonymous cap stays 16 KiB). */
const MESSAGE_LIMIT = 64 * 1024;
const ANONYMOUS_LIMIT = 16 * 1024;
const NOTICE_OID = '1.3.6.1.4.1.1466.20036';
const RESOURCE = 'corp-ldap';
const LOGIN = `alice:${RESOURCE}`;

let target: SlapdTarget;
let gw: GatewayHarness;
/** `ldap` listener: StartTLS, and plaintext binds allowed (loopback) so raw clients reach the bound phase. */
let plain: Listener;
/** `ldaps` listener: TLS from the first byte. */
let ldaps: Listener;

beforeAll(async () => {
  target = await startSlapd();
  gw = await makeGateway();
  await gw.addResource({
    name: RESOURCE, type: 'directory', protocol: 'ldap', host: target.host, port: target.port,
    credentials: { login: target.user, password: target.password },
  });
  const tls = { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem };
  const options = { upstreamTls: 'require' as const, handshakeTimeoutMs: HANDSHAKE_MS, messageLimit: MESSAGE_LIMIT };
  plain = await new LdapAdapter(options).listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls, allowPlaintext: true });
  ldaps = await new LdapsAdapter(options).listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls });
});

afterAll(async () => {
  await plain?.close();
  await ldaps?.close();
  await gw?.cleanup();
  await target?.stop();
});

// ---------------------------------------------------------------------------------------
// The hostile client

/** One LDAPMessage the gateway sent, as ldapts reads it. */
interface Received {
  id: number;
  op: number;
  resultCode?: number;
  diagnostic?: string;
  responseName?: string;
}

const RESULT_OPS: ReadonlySet<number> = new Set([
  Op.BindResponse, Op.SearchResultDone, Op.ModifyResponse, Op.AddResponse, Op.DelResponse, Op.ModifyDNResponse, Op.CompareResponse, Op.ExtendedResponse,
]);

/** Every complete message in `buf`, and how many bytes they took. */
function parse(buf: Buffer): { messages: Received[]; used: number } {
  const messages: Received[] = [];
  let pos = 0;
  while (buf.length - pos >= 2) {
    const r = new BerReader(buf.subarray(pos));
    if (r.readSequence() === null) break;
    const len = r.length;
    if (len < 0 || r.offset + len > buf.length - pos) break;
    const end = pos + r.offset + len;
    const m: Received = { id: r.readInt() ?? -1, op: r.readSequence() ?? -1 };
    if (RESULT_OPS.has(m.op)) {
      m.resultCode = r.readEnumeration() ?? -1;
      r.readString();
      m.diagnostic = r.readString() ?? '';
      if (m.op === Op.ExtendedResponse && r.offset < end - pos && r.peek() === 0x8a) m.responseName = r.readString(0x8a) ?? '';
    }
    messages.push(m);
    pos = end;
  }
  return { messages, used: pos };
}

/** A raw client connection: bytes out exactly as written, messages in as the gateway sent them. */
class Raw {
  private buf: Buffer = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  readonly t0 = performance.now();
  closedAt: number | undefined;
  client = '';

  constructor(readonly sock: Socket | TLSSocket) {
    sock.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.closedAt = performance.now();
      this.wake();
    });
  }

  /** Connected (TLS: handshake done) to the plain or LDAPS listener. */
  static async open(kind: 'plain' | 'ldaps' = 'plain'): Promise<Raw> {
    const raw = kind === 'plain'
      ? new Raw(netConnect(plain.address.port, '127.0.0.1'))
      : new Raw(tlsConnect({ port: ldaps.address.port, host: '127.0.0.1', ca: gw.pki.caCertPem }));
    await within(new Promise<void>((resolve, reject) => {
      raw.sock.once(kind === 'plain' ? 'connect' : 'secureConnect', () => resolve());
      raw.sock.once('error', reject);
    }), 10_000, 'the connection to the gateway');
    raw.client = `127.0.0.1:${raw.sock.localPort}`;
    return raw;
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  write(...chunks: Buffer[]): void {
    this.sock.write(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks));
  }

  get messages(): Received[] {
    return parse(this.buf).messages;
  }

  /** Waits (at most `ms`) until `cond` holds or the gateway closes. */
  async until(cond: () => boolean, ms: number): Promise<void> {
    const deadline = performance.now() + ms;
    while (!cond() && this.closedAt === undefined && performance.now() < deadline) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(1, deadline - performance.now()));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** Waits for the gateway to close (at most `ms`), then what it sent: every byte parsed as whole messages. */
  async closed(ms = 5_000): Promise<{ closed: boolean; elapsed: number; messages: Received[] }> {
    await this.until(() => false, ms);
    const closed = this.closedAt !== undefined;
    this.sock.destroy();
    const { messages, used } = parse(this.buf);
    expect(used, `the gateway sent ${this.buf.length - used} bytes that are not a whole LDAP message`).toBe(this.buf.length);
    return { closed, elapsed: (this.closedAt ?? performance.now()) - this.t0, messages };
  }

  /** A plaintext simple bind as alice (the listener allows it on loopback): the session is live. */
  async bind(): Promise<void> {
    this.write(simpleBindRequest(1, LOGIN, GATEWAY_PASSWORD));
    await this.until(() => this.messages.some((m) => m.id === 1), 10_000);
    expect(this.messages).toEqual([{ id: 1, op: Op.BindResponse, resultCode: 0, diagnostic: '' }]);
    this.buf = Buffer.alloc(0);
  }
}

/**
 * Sends `bytes` on a fresh connection (the client then stays silent) and waits for the close.
 * The fake clock moves a minute first, so the audit's folding of repeated refusals from one
 * address (20 in a burst, then one a second of workflow time) never hides this one.
 */
async function refused(bytes: Buffer, kind: 'plain' | 'ldaps' = 'plain', ms = 5_000) {
  gw.clock.advance(60_000);
  const raw = await Raw.open(kind);
  raw.write(bytes);
  return { client: raw.client, ...(await raw.closed(ms)) };
}

/** The gateway's last word: exactly one Notice of Disconnection, last, with this result code. */
function expectNotice(r: { closed: boolean; messages: Received[] }, resultCode: number, diagnostic?: RegExp): void {
  expect(r.closed, 'the gateway closes the connection').toBe(true);
  const notices = r.messages.filter((m) => m.id === 0);
  expect(notices).toHaveLength(1);
  expect(r.messages.at(-1)).toEqual({
    id: 0, op: Op.ExtendedResponse, resultCode, responseName: NOTICE_OID, diagnostic: diagnostic ? expect.stringMatching(diagnostic) : expect.any(String),
  });
}

const PROTOCOL_ERROR = 2;
const UNAVAILABLE = 52;

/** The broker audited the door's refusal of this client with this code (and detail). */
async function expectAudited(client: string, code: string, detail: string | RegExp): Promise<void> {
  const find = async () => (await gw.store.listAudit({ action: 'door.refuse' })).find((e) => e.data.client === client && e.data.code === code);
  expect(await eventually(async () => (await find()) !== undefined), `a door.refuse audit entry (${code}) for ${client}`).toBe(true);
  expect((await find())!.data).toMatchObject({ door: 'ldap', client, code, detail: typeof detail === 'string' ? detail : expect.stringMatching(detail) });
}

/** A real client (ldapts) binds and searches through the same listener. */
async function stillServes(kind: 'plain' | 'ldaps' = 'plain'): Promise<void> {
  const dn = `uid=user0001,${target.peopleDn}`;
  if (kind === 'ldaps') {
    const w = watchedLdapsClient(ldaps.address.port, gw.pki.caCertPem);
    try {
      await w.client.bind(LOGIN, GATEWAY_PASSWORD);
      expect((await w.client.search(dn, { scope: 'base' })).searchEntries.map((e) => e.dn)).toEqual([dn]);
    } finally {
      await w.client.unbind().catch(() => undefined);
    }
    return;
  }
  const client = new Client({ url: `ldap://127.0.0.1:${plain.address.port}`, connectTimeout: 10_000, timeout: 10_000 });
  try {
    await client.startTLS({ ca: gw.pki.caCertPem, servername: 'localhost' });
    await client.bind(LOGIN, GATEWAY_PASSWORD);
    expect((await client.search(dn, { scope: 'base' })).searchEntries.map((e) => e.dn)).toEqual([dn]);
  } finally {
    await client.unbind().catch(() => undefined);
  }
}

// ---------------------------------------------------------------------------------------
// Messages, right and wrong

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const str = (tag: number, s: string): Buffer => tlv(tag, Buffer.from(s, 'utf8'));
/** A small (0..127) INTEGER or ENUMERATED. */
const int = (tag: number, n: number): Buffer => tlv(tag, Buffer.from([n]));

/** A SearchRequest (scope base unless told, no alias dereferencing) with this filter and attribute list. */
function search(id: number, base: string, filter: Buffer, attrs: readonly string[] = [], scope = 0): Buffer {
  return message(id, tlv(Op.SearchRequest,
    str(Ber.OctetString, base), int(Ber.Enumerated, scope), int(Ber.Enumerated, 0), int(Ber.Integer, 0), int(Ber.Integer, 0), tlv(Ber.Boolean, Buffer.from([0])),
    filter, tlv(Ber.Sequence, ...attrs.map((a) => str(Ber.OctetString, a)))));
}
const present = (attr: string): Buffer => str(0x87, attr);
const rootDse = (id: number): Buffer => search(id, '', present('objectClass'));

// ---------------------------------------------------------------------------------------

describe('bad input on the LDAP listener', () => {
  it('a truncated message and then a close: the gateway closes too, says nothing, and keeps serving', async () => {
    const bind = simpleBindRequest(1, LOGIN, GATEWAY_PASSWORD);
    for (const cut of [1, 2, 5, bind.length - 1]) {
      gw.clock.advance(60_000);
      const raw = await Raw.open();
      raw.write(bind.subarray(0, cut));
      raw.sock.end();
      const r = await raw.closed();
      expect(r.closed).toBe(true);
      expect(r.messages).toEqual([]);
    }
    await stillServes();
  });

  it('a truncated message and then silence: closed at the handshake timeout, not before, with a notice, and audited', async () => {
    const bind = simpleBindRequest(1, LOGIN, GATEWAY_PASSWORD);
    const stalls = [
      bind.subarray(0, 1), // the tag alone
      hex('30 84 00 00'), // half the length octets
      bind.subarray(0, bind.length - 1), // all but the last byte
      Buffer.concat([hex(`30 82 ${ANONYMOUS_LIMIT.toString(16).padStart(4, '0')}`), Buffer.alloc(100)]), // exactly the anonymous cap: waits for the rest
    ];
    const results = await Promise.all(stalls.map((b) => refused(b, 'plain', HANDSHAKE_MS + 5_000)));
    for (const r of results) {
      expectNotice(r, UNAVAILABLE, /^Gatehouse: .*\(handshake_timeout\)/);
      // The timer runs from the accept, after the client started its clock: it cannot have fired earlier.
      expect(r.elapsed).toBeGreaterThanOrEqual(HANDSHAKE_MS - 50);
      await expectAudited(r.client, 'handshake_timeout', 'in the anonymous step');
    }
    await stillServes();
  });

  it('indefinite lengths are refused with a notice (protocolError) and a close, and audited', async () => {
    for (const bytes of [hex('30 80 02 01 01 42 00 00 00'), hex('30 80'), hex('30 09 02 01 01 63 80 04 00 00 00')]) {
      const r = await refused(bytes);
      expectNotice(r, PROTOCOL_ERROR, /indefinite lengths are not allowed.*\(protocol_error\)/);
      await expectAudited(r.client, 'protocol_error', 'LDAP_INDEFINITE_LENGTH in the anonymous step');
    }
    await stillServes();
  });

  it('lengths of 5 or more octets are refused before they are read', async () => {
    for (const bytes of [hex('30 85 00 00 00 00 07'), hex('30 85'), hex('30 ff'), hex('30 88 00 00 00 00 00 00 00 07 02 01 01 42 00')]) {
      const r = await refused(bytes);
      expectNotice(r, PROTOCOL_ERROR, /a length of \d+ octets \(at most 4\)/);
      await expectAudited(r.client, 'protocol_error', 'LDAP_LENGTH_OCTETS in the anonymous step');
    }
    await stillServes();
  });

  it('a length over the anonymous cap is refused from the header alone, without waiting for the body', async () => {
    // Only the header is sent, and the client stays: a gateway waiting for the body would
    // end at the handshake timeout (unavailable) instead of refusing it (protocolError).
    const headers = [
      hex(`30 82 ${(ANONYMOUS_LIMIT + 1).toString(16).padStart(4, '0')}`),
      hex('30 83 10 00 00'),
      hex('30 84 ff ff ff ff'), // 4294967295, not -1
    ];
    for (const bytes of headers) {
      const r = await refused(bytes);
      expectNotice(r, PROTOCOL_ERROR, new RegExp(`a message of \\d+ bytes is over the limit of ${ANONYMOUS_LIMIT}`));
      await expectAudited(r.client, 'protocol_error', 'LDAP_TOO_LARGE in the anonymous step');
    }
    const r = await refused(hex('30 84 ff ff ff ff'));
    expect(r.messages.at(-1)?.diagnostic).toContain('4294967295');
    await stillServes();
  });

  it('after the bind the bound cap applies: a message over the anonymous cap is relayed, one over messageLimit ends the session', async () => {
    gw.clock.advance(60_000);
    const raw = await Raw.open();
    await raw.bind();
    expect(gw.broker.live()).toHaveLength(1);
    // 20 KiB: over the anonymous cap, under the bound one. slapd ignores an unknown attribute name.
    const dn = `uid=user0001,${target.peopleDn}`;
    const big = search(2, dn, present('objectClass'), ['uid', `x${'y'.repeat(20 * 1024)}`]);
    expect(big.length).toBeGreaterThan(ANONYMOUS_LIMIT);
    raw.write(big);
    await raw.until(() => raw.messages.some((m) => m.op === Op.SearchResultDone), 10_000);
    expect(raw.messages.map((m) => [m.id, m.op, m.resultCode])).toEqual([[2, Op.SearchResultEntry, undefined], [2, Op.SearchResultDone, 0]]);

    raw.write(hex(`30 83 ${(MESSAGE_LIMIT + 1).toString(16).padStart(6, '0')}`), Buffer.alloc(1000));
    const r = await raw.closed();
    expectNotice(r, PROTOCOL_ERROR, new RegExp(`over the limit of ${MESSAGE_LIMIT}`));
    await expectAudited(raw.client, 'protocol_error', 'LDAP_TOO_LARGE in the bound step');
    expect(await eventually(() => gw.broker.live().length === 0)).toBe(true);
    await stillServes();
  });

  it('a filter nested deeper than 32 after the bind ends the session with a notice; 32 deep is relayed', async () => {
    const dn = `uid=user0001,${target.peopleDn}`;
    const nested = (depth: number): Buffer => {
      let f = present('objectClass');
      for (let k = 0; k < depth; k++) f = tlv(k % 2 ? 0xa0 : 0xa1, f); // (&(|(&...
      return f;
    };
    gw.clock.advance(60_000);
    const raw = await Raw.open();
    await raw.bind();
    raw.write(search(2, dn, nested(32)));
    await raw.until(() => raw.messages.some((m) => m.op === Op.SearchResultDone), 10_000);
    expect(raw.messages.at(-1)).toMatchObject({ id: 2, op: Op.SearchResultDone, resultCode: 0 });

    raw.write(search(3, dn, nested(40)));
    const r = await raw.closed();
    expect(r.messages.filter((m) => m.id === 3)).toEqual([]); // nothing of it reached the directory
    expectNotice(r, PROTOCOL_ERROR, /a filter nested deeper than 32/);
    await expectAudited(raw.client, 'protocol_error', 'LDAP_TOO_DEEP in the bound step');
    expect(await eventually(() => gw.broker.live().length === 0)).toBe(true);
    await stillServes();
  });

  it('a first byte that is not a SEQUENCE is refused at once', async () => {
    for (const bytes of [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), hex('04 00'), hex('16 03 01 00 a5 01 00 00 a1 03 03'), hex('00')]) {
      const r = await refused(bytes);
      expectNotice(r, PROTOCOL_ERROR, /an LDAP message starts with a SEQUENCE/);
      await expectAudited(r.client, 'protocol_error', 'LDAP_BAD_TAG in the anonymous step');
    }
    await stillServes();
  });

  it('message id 0 and message id 2^31 are refused; 2^31-1 is answered', async () => {
    for (const bytes of [rootDse(0), unbindRequest(0), simpleBindRequest(0, LOGIN, GATEWAY_PASSWORD), rootDse(2 ** 31), simpleBindRequest(2 ** 31, LOGIN, GATEWAY_PASSWORD), rootDse(2 ** 32 - 1)]) {
      const r = await refused(bytes);
      expectNotice(r, PROTOCOL_ERROR, /message id .*out of range/);
      expect(r.messages).toHaveLength(1);
      await expectAudited(r.client, 'protocol_error', 'LDAP_BAD_MESSAGE_ID in the anonymous step');
    }
    // A negative id (a 1-byte INTEGER ff) is refused too.
    const negative = await refused(tlv(Ber.Sequence, hex('02 01 ff'), hex('42 00')));
    expectNotice(negative, PROTOCOL_ERROR);
    await expectAudited(negative.client, 'protocol_error', 'LDAP_BAD_MESSAGE_ID in the anonymous step');

    const raw = await Raw.open();
    raw.write(rootDse(2 ** 31 - 1));
    await raw.until(() => raw.messages.some((m) => m.op === Op.SearchResultDone), 5_000);
    expect(raw.messages.map((m) => [m.id, m.op])).toEqual([[2 ** 31 - 1, Op.SearchResultEntry], [2 ** 31 - 1, Op.SearchResultDone]]);
    raw.sock.destroy();
    await stillServes();
  });

  it('a response sent as a request (BindResponse 0x61) is a protocol error', async () => {
    for (const bytes of [resultMessage(1, Op.BindResponse, 0, ''), resultMessage(1, Op.SearchResultDone, 0, ''), message(1, tlv(Op.SearchResultEntry, str(Ber.OctetString, 'cn=x'), tlv(Ber.Sequence)))]) {
      const r = await refused(bytes);
      expectNotice(r, PROTOCOL_ERROR, /protocolOp 0x[0-9a-f]+ is not a request/);
      expect(r.messages).toHaveLength(1);
      await expectAudited(r.client, 'protocol_error', 'LDAP_BAD_MESSAGE in the anonymous step');
    }
    await stillServes();
  });

  it('an ExtendedRequest with no name is a protocol error', async () => {
    for (const bytes of [message(1, tlv(Op.ExtendedRequest)), message(1, tlv(Op.ExtendedRequest, tlv(0x81, Buffer.from('value only'))))]) {
      const r = await refused(bytes);
      expectNotice(r, PROTOCOL_ERROR);
      expect(r.messages).toHaveLength(1);
      await expectAudited(r.client, 'protocol_error', /^LDAP_(TRUNCATED|BAD_MESSAGE) in the anonymous step$/);
    }
    await stillServes();
  });

  it('a StartTLS with a bind pipelined behind it in the same write: a notice and a close, nothing else answered', async () => {
    const r = await refused(Buffer.concat([extendedRequest(1, Oid.startTls), simpleBindRequest(2, LOGIN, GATEWAY_PASSWORD)]));
    expect(r.messages).toHaveLength(1);
    expectNotice(r, PROTOCOL_ERROR, /data was sent after the StartTLS request/);
    await expectAudited(r.client, 'protocol_error', 'pipelined StartTLS');
    await stillServes();
  });

  it('a StartTLS accepted and then no TLS handshake: closed at the handshake timeout, and audited', async () => {
    const r = await refused(extendedRequest(1, Oid.startTls), 'plain', HANDSHAKE_MS + 5_000);
    expect(r.closed).toBe(true);
    expect(r.elapsed).toBeGreaterThanOrEqual(HANDSHAKE_MS - 50);
    // The StartTLS response in clear; the notice would have to travel inside a TLS session that never began.
    expect(r.messages).toEqual([{ id: 1, op: Op.ExtendedResponse, resultCode: 0, diagnostic: '', responseName: Oid.startTls }]);
    await expectAudited(r.client, 'handshake_timeout', 'in the anonymous step');
    await stillServes();
  });

  it('over LDAPS the same refusals arrive inside TLS, and the LDAPS listener keeps serving', async () => {
    const cases: [Buffer, RegExp, string][] = [
      [hex('30 80 02 01 01 42 00 00 00'), /indefinite lengths/, 'LDAP_INDEFINITE_LENGTH in the anonymous step'],
      [hex('30 84 ff ff ff ff'), new RegExp(`over the limit of ${ANONYMOUS_LIMIT}`), 'LDAP_TOO_LARGE in the anonymous step'],
      [rootDse(0), /out of range/, 'LDAP_BAD_MESSAGE_ID in the anonymous step'],
      [resultMessage(1, Op.BindResponse, 0, ''), /is not a request/, 'LDAP_BAD_MESSAGE in the anonymous step'],
    ];
    for (const [bytes, diagnostic, detail] of cases) {
      const r = await refused(bytes, 'ldaps');
      expectNotice(r, PROTOCOL_ERROR, diagnostic);
      await expectAudited(r.client, 'protocol_error', detail);
    }
    await stillServes('ldaps');
  });

  it('random bytes before the bind: a close (with a notice when the door refuses them), and the listener keeps serving', async () => {
    // Garbage that frames as an incomplete message waits for the handshake timeout. Mutated
    // requests are never simple binds: a failed password would count against 127.0.0.1.
    const requests = [rootDse(1), extendedRequest(1, Oid.startTls), extendedRequest(1, Oid.whoAmI), unbindRequest(1), search(1, target.peopleDn, present('uid'))];
    const mutated = fc.tuple(fc.constantFrom(...requests), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 })).map(([m, edits]) => {
      const b = Buffer.from(m);
      for (const [at, v] of edits) b[at % b.length] = v;
      return b;
    });
    const bytes = fc.oneof(
      { weight: 2, arbitrary: fc.uint8Array({ minLength: 1, maxLength: 600 }).map((a) => Buffer.from(a)) },
      { weight: 1, arbitrary: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.concat([Buffer.from([Ber.Sequence]), a])) },
      { weight: 1, arbitrary: mutated },
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(bytes, async (b) => {
        const r = await refused(b, 'plain', HANDSHAKE_MS + 5_000);
        expect(r.closed).toBe(true);
        const notices = r.messages.filter((m) => m.id === 0);
        expect(notices.length).toBeLessThanOrEqual(1);
        if (notices.length) {
          expect(r.messages.at(-1)).toMatchObject({ id: 0, op: Op.ExtendedResponse, responseName: NOTICE_OID });
          expect([PROTOCOL_ERROR, UNAVAILABLE]).toContain(notices[0]!.resultCode);
          await expectAudited(r.client, notices[0]!.resultCode === PROTOCOL_ERROR ? 'protocol_error' : 'handshake_timeout', /./);
        }
        if (b[0] !== Ber.Sequence) expectNotice(r, PROTOCOL_ERROR, /an LDAP message starts with a SEQUENCE/);
        // Every few runs a real client binds and searches; every run the listener answers a rootDSE query.
        if (++run % 10 === 0) await stillServes();
        const probe = await Raw.open();
        probe.write(rootDse(7));
        await probe.until(() => probe.messages.some((m) => m.op === Op.SearchResultDone), 5_000);
        expect(probe.messages.at(-1)).toMatchObject({ id: 7, op: Op.SearchResultDone, resultCode: 0 });
        probe.sock.destroy();
      }),
      { numRuns: 30 },
    );
    await stillServes();
  }, 180_000);
});

describe('a client that writes and never reads', () => {
  it('is not read either: the gateway does not queue answers without bound (a rootDSE flood before the bind)', async () => {
    // Its own listener, with the default handshake timeout: the flood must be stopped by backpressure, not by the timer.
    const tls = { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem };
    const patient = await new LdapAdapter({ upstreamTls: 'require' }).listen({ host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls });
    const sock = netConnect(patient.address.port, '127.0.0.1');
    sock.on('error', () => {});
    try {
      await new Promise<void>((r) => sock.once('connect', () => r()));
      sock.pause();
      // 64 MiB of requests; each answer is about four times the size of its request. The kernel
      // holds some MiB each way on loopback; whatever the gateway does not read stays with the client.
      const batch = Buffer.concat(Array.from({ length: 10_000 }, (_, i) => rootDse(i + 1)));
      const total = 64 * 1024 * 1024;
      const buffersBefore = process.memoryUsage().arrayBuffers;
      let written = 0;
      for (; written < total; written += batch.length) sock.write(batch);
      // Settled: the client's unsent bytes did not move for half a second.
      let last = -1;
      let still = 0;
      const settled = await eventually(async () => {
        await new Promise((r) => setTimeout(r, 100));
        const now = sock.writableLength;
        still = now === last ? still + 1 : 0;
        last = now;
        return still >= 5;
      }, 40_000);
      expect(settled).toBe(true);
      // The gateway is in this process: the answers it queued would show as buffer memory. Reading on
      // regardless, it had queued about 250 MB here by the time the client's side settled; now it stops
      // reading once the client's socket wants draining.
      const grown = process.memoryUsage().arrayBuffers - buffersBefore;
      expect(grown, 'buffer memory the gateway queued for a client that does not read').toBeLessThan(32 * 1024 * 1024);
      expect(sock.destroyed).toBe(false);
    } finally {
      sock.destroy();
      await patient.close();
    }
  }, 60_000);
});
