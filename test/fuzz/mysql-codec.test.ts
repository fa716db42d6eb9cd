/**
 * The MySQL codec and relay framers under random, truncated and oversized input: decoders
 * either decode, say "incomplete", or throw a typed MysqlDecodeError; never another error,
 * never a hang. Valid packets survive a round trip and any chunking.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  Cap,
  decodeAuthPacket,
  decodeErr,
  decodeOkStatus,
  decodePacket,
  encodeErr,
  encodeOk,
  encodePacket,
  lenencInt,
  MAX_PHYSICAL_PAYLOAD,
  MysqlDecodeError,
  PayloadReader,
} from '../../protocols/mysql/codec.js';
import { decodeClientHandshake, decodeHandshakeV10, encodeHandshakeResponse, encodeHandshakeV10 } from '../../protocols/mysql/handshake.js';
import { MysqlRefusal } from '../../protocols/mysql/errors.js';
import { ClientFramer, ServerFramer } from '../../protocols/mysql/relay.js';

/** A client framer whose streams carry no KILL. */
function framer(maxPacket: number, sqlLimit: number, onStatement?: (kind: 'query' | 'prepare', sql: string) => void): ClientFramer {
  return new ClientFramer(maxPacket, sqlLimit, {
    onStatement: onStatement ? (kind, sql) => onStatement(kind, sql) : undefined,
    onCommand: () => {},
    onKill: () => {
      throw new Error('no KILL in this stream');
    },
  });
}

/** Feeds one chunk: the bytes passed on to the server, or the refusal. */
function feed(f: ClientFramer, chunk: Buffer): Buffer | MysqlRefusal {
  const out: Buffer[] = [];
  const refusal = f.feed(chunk, { server: (b) => out.push(b), client: () => expect.unreachable('no answer from the gateway') });
  return refusal ?? Buffer.concat(out);
}

const bytes = (max = 512) => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));

/** Runs `fn`; only MysqlDecodeError may escape. */
function typed(fn: () => unknown): void {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(MysqlDecodeError);
    expect((err as MysqlDecodeError).code).toMatch(/^MY_/);
  }
}

/** Splits a buffer at random cut points. */
const chunked = (buf: Buffer) =>
  fc.array(fc.nat({ max: Math.max(0, buf.length) }), { maxLength: 12 }).map((cuts) => {
    const at = [...new Set(cuts)].sort((a, b) => a - b);
    const out: Buffer[] = [];
    let prev = 0;
    for (const c of at) {
      out.push(buf.subarray(prev, c));
      prev = c;
    }
    out.push(buf.subarray(prev));
    return out;
  });

describe('MySQL codec fuzz', () => {
  it('decodePacket: random input decodes, waits, or fails typed; a result never exceeds the limit', () => {
    fc.assert(
      fc.property(bytes(2048), fc.integer({ min: 0, max: 4096 }), (buf, max) => {
        try {
          const r = decodePacket(buf, max);
          if (r) {
            expect(r.size).toBeLessThanOrEqual(buf.length);
            expect(r.value.payload.length).toBeLessThanOrEqual(max);
          }
        } catch (err) {
          expect(err).toBeInstanceOf(MysqlDecodeError);
          expect((err as MysqlDecodeError).errno).toBe(1153);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('a declared length over the limit is refused before the bytes arrive', () => {
    fc.assert(
      fc.property(fc.integer({ min: 65_537, max: MAX_PHYSICAL_PAYLOAD }), fc.nat({ max: 255 }), (len, seq) => {
        const head = Buffer.from([len & 0xff, (len >> 8) & 0xff, len >> 16, seq]);
        expect(() => decodePacket(head, 65_536)).toThrow(MysqlDecodeError);
      }),
    );
  });

  it('every payload decoder fails typed on random and truncated input', () => {
    fc.assert(
      fc.property(bytes(600), (buf) => {
        typed(() => decodeClientHandshake(buf));
        typed(() => decodeHandshakeV10(buf));
        typed(() => decodeAuthPacket(buf));
        typed(() => decodeErr(buf));
        typed(() => decodeOkStatus(buf));
        typed(() => new PayloadReader(buf, 'x').lenencBytes());
      }),
      { numRuns: 3000 },
    );
  });

  const versionArb = fc.string({ minLength: 1, maxLength: 40 }).filter((s) => !s.includes('\0'));
  const nameArb = fc.string({ maxLength: 40 }).filter((s) => !s.includes('\0'));
  const scrambleArb = fc.uint8Array({ minLength: 20, maxLength: 20 }).map((a) => Buffer.from(a.map((b) => b || 1)));

  it('HandshakeV10 round-trips, and every truncation of it fails typed', () => {
    fc.assert(
      fc.property(versionArb, fc.nat(), scrambleArb, fc.nat(), fc.nat({ max: 255 }), fc.nat({ max: 0xffff }), nameArb, (v, id, s, caps, cs, st, plugin) => {
        const capabilities = (caps | Cap.SECURE_CONNECTION | Cap.PLUGIN_AUTH | Cap.PROTOCOL_41) >>> 0;
        // MariaDB's extended flags travel only when CLIENT_MYSQL (LONG_PASSWORD) is unset.
        const mariadbCapabilities = capabilities & Cap.LONG_PASSWORD ? 0 : (id * 7) >>> 0;
        const h = { serverVersion: v, connectionId: id >>> 0, scramble: s, capabilities, mariadbCapabilities, charset: cs, status: st, authPlugin: plugin };
        const enc = encodeHandshakeV10(h);
        expect(decodeHandshakeV10(enc)).toEqual(h);
        for (let n = 0; n < enc.length; n += 7) typed(() => decodeHandshakeV10(enc.subarray(0, n)));
      }),
      { numRuns: 300 },
    );
  });

  it('HandshakeResponse41 round-trips with every auth-data encoding, and truncations fail typed', () => {
    fc.assert(
      fc.property(nameArb.filter((s) => s.length > 0), bytes(300), fc.option(nameArb.filter((s) => s.length > 0)), nameArb, fc.boolean(), (user, auth, db, plugin, lenenc) => {
        let caps = Cap.PROTOCOL_41 | Cap.SECURE_CONNECTION | Cap.PLUGIN_AUTH;
        if (lenenc) caps |= Cap.PLUGIN_AUTH_LENENC_CLIENT_DATA;
        if (db !== null) caps |= Cap.CONNECT_WITH_DB;
        const authResponse = lenenc ? auth : auth.subarray(0, 255);
        const r = { capabilities: caps, maxPacket: 1 << 24, charset: 45, user, authResponse, authPlugin: plugin, ...(db !== null ? { database: db } : {}) };
        const dec = decodeClientHandshake(encodeHandshakeResponse(r));
        expect(dec).toMatchObject({ kind: 'response', user, capabilities: caps, ...(db !== null ? { database: db } : {}) });
        if (dec.kind === 'response') expect(dec.authResponse.equals(authResponse)).toBe(true);
        const enc = encodeHandshakeResponse(r);
        for (let n = 0; n < enc.length; n += 5) typed(() => decodeClientHandshake(enc.subarray(0, n)));
      }),
      { numRuns: 300 },
    );
  });

  it('length-encoded integers round-trip', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (n) => {
        expect(new PayloadReader(lenencInt(n), 'x').lenenc()).toBe(n);
      }),
    );
  });

  it('ERR and OK packets round-trip', () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffff }), fc.stringMatching(/^[0-9A-Z]{5}$/), fc.string({ maxLength: 200 }), fc.nat({ max: 0xffff }), fc.boolean(), (errno, sqlstate, message, status, track) => {
        expect(decodeErr(encodeErr({ errno, sqlstate, message }))).toEqual({ errno, sqlstate, message });
        expect(decodeOkStatus(encodeOk({ status, sessionTrack: track }))).toBe(status);
      }),
    );
  });

  it('packets of 16 MiB and more are split and joined back', () => {
    const payload = Buffer.alloc(MAX_PHYSICAL_PAYLOAD + 10, 7);
    const framed = encodePacket(3, payload);
    expect(framed.length).toBe(payload.length + 8);
    const r = decodePacket(framed, 32 * 1024 * 1024)!;
    expect(r.value.seq).toBe(3);
    expect(r.value.payload.equals(payload)).toBe(true);
    expect(() => decodePacket(framed, MAX_PHYSICAL_PAYLOAD)).toThrow(MysqlDecodeError);
  });
});

/** A valid client→server stream: commands with seq 0 and random payloads. */
const commandStream = fc.array(fc.tuple(fc.constantFrom(0x03, 0x16, 0x17, 0x19, 0x0e, 0x02), bytes(300)), { minLength: 1, maxLength: 8 }).map((cmds) => ({
  cmds,
  wire: Buffer.concat(cmds.map(([c, body]) => encodePacket(0, Buffer.concat([Buffer.from([c]), body])))),
}));

describe('relay framers fuzz', () => {
  it('the client framer forwards every byte unchanged whatever the chunking, and reports each statement once', () => {
    fc.assert(
      fc.property(commandStream.chain((s) => chunked(s.wire).map((chunks) => ({ ...s, chunks }))), ({ cmds, wire, chunks }) => {
        const seen: string[] = [];
        const f = framer(1 << 20, 64, (_k, sql) => seen.push(sql));
        const out: Buffer[] = [];
        for (const c of chunks) {
          const r = feed(f, c);
          expect(r).not.toBeInstanceOf(MysqlRefusal);
          out.push(r as Buffer);
          f.serverSpoke = true;
        }
        expect(Buffer.concat(out).equals(wire)).toBe(true);
        expect(f.forwardedWhole).toBe(true);
        const want = cmds.filter(([c]) => c === 0x03 || c === 0x16).map(([, b]) => b.subarray(0, 64).toString('utf8'));
        expect(seen).toEqual(want);
      }),
      { numRuns: 500 },
    );
  });

  it('a KILL split across any chunking is held back whole and replaced in place; the commands around it pass unchanged', () => {
    const REWRITTEN = Buffer.from('\x03KILL QUERY 4242', 'latin1');
    const kill = fc
      .tuple(fc.constantFrom('KILL QUERY', 'kill', '/* mine */ KILL CONNECTION', '  kill\n\tquery', '-- c\nKILL'), fc.nat())
      .map(([words, id]) => ({ id, sent: encodePacket(0, Buffer.from(`\x03${words} ${id}`, 'latin1')), forwarded: encodePacket(0, REWRITTEN) }));
    const other = fc
      .tuple(fc.constantFrom(0x03, 0x16, 0x0e), fc.nat())
      .map(([cmd, n]) => {
        const p = encodePacket(0, Buffer.concat([Buffer.from([cmd]), cmd === 0x0e ? Buffer.alloc(0) : Buffer.from(`select ${n} /* killer */`)]));
        return { id: undefined, sent: p, forwarded: p };
      });
    const stream = fc.array(fc.oneof(kill, other), { minLength: 1, maxLength: 8 });
    fc.assert(
      fc.property(stream.chain((cmds) => chunked(Buffer.concat(cmds.map((c) => c.sent))).map((chunks) => ({ cmds, chunks }))), ({ cmds, chunks }) => {
        const ids: number[] = [];
        const f = new ClientFramer(1 << 20, 64, {
          onStatement: undefined,
          onCommand: () => {},
          onKill: (k) => {
            if (!('id' in k)) throw new Error(`unreadable: ${k.what}`);
            ids.push(k.id);
            return { forward: REWRITTEN };
          },
        });
        const out: Buffer[] = [];
        for (const c of chunks) {
          expect(f.feed(c, { server: (b) => out.push(b), client: () => expect.unreachable('every KILL here is mapped') })).toBeUndefined();
          f.serverSpoke = true;
        }
        expect(Buffer.concat(out).equals(Buffer.concat(cmds.map((c) => c.forwarded)))).toBe(true);
        expect(ids).toEqual(cmds.flatMap((c) => (c.id === undefined ? [] : [c.id])));
      }),
      { numRuns: 500 },
    );
  });

  it('the client framer refuses COM_CHANGE_USER and oversized commands, and never throws on garbage', () => {
    const change = encodePacket(0, Buffer.from([0x11, 0x61, 0x00]));
    expect(feed(framer(1 << 20, 64), change)).toMatchObject({ code: 'not_allowed', errno: 1227, sqlstate: '42000' });
    const big = encodePacket(0, Buffer.alloc(5000, 0x03));
    expect(feed(framer(4096, 64), big)).toMatchObject({ code: 'protocol_error', errno: 1153, sqlstate: '08S01' });
    fc.assert(
      fc.property(fc.array(bytes(400), { maxLength: 10 }), (chunks) => {
        // Garbage may look like a KILL: answer it like the session would.
        const f = new ClientFramer(1 << 16, 64, { onStatement: () => {}, onCommand: () => {}, onKill: () => ({ answer: Buffer.from([0xff, 0x46, 0x04]) }) });
        for (const c of chunks) {
          const r = f.feed(c, { server: () => {}, client: () => {} });
          if (r instanceof MysqlRefusal) break;
          expect(r).toBeUndefined();
        }
      }),
      { numRuns: 1000 },
    );
  });

  it('a refused KILL whose reply is owed waits, with everything behind it, until the target settles: nothing overtakes it, however the stream is cut', () => {
    const q = (sql: string): Buffer => encodePacket(0, Buffer.from(`\x03${sql}`, 'latin1'));
    const cmds = [q('select 1'), q('KILL 5'), q('select 2'), q('KILL 6'), q('select 3')];
    const expected = [cmds[0]!.toString('hex'), cmds[2]!.toString('hex'), cmds[4]!.toString('hex')].join('|');
    fc.assert(
      fc.property(chunked(Buffer.concat(cmds)), fc.array(fc.boolean(), { minLength: 12, maxLength: 12 }), (chunks, settleAfter) => {
        // The target owes a reply from each command passed on until the test says it has settled.
        let owed = false;
        const log: string[] = [];
        const f = new ClientFramer(1 << 20, 64, {
          onStatement: undefined,
          onCommand: () => void (owed = true),
          onKill: () => ({ answer: Buffer.from([0xff, 0x46, 0x04]) }),
          replyOwed: () => owed,
        });
        const out = { server: (b: Buffer) => log.push(b.toString('hex')), client: () => log.push('|') };
        const settle = (): void => {
          owed = false;
          const before = log.length;
          expect(f.settle(out)).toBeUndefined();
          // The ERR goes first.
          if (log.length > before) expect(log[before]).toBe('|');
        };
        chunks.forEach((c, k) => {
          const waiting = f.waiting;
          const before = log.length;
          expect(f.feed(c, out)).toBeUndefined();
          if (waiting) expect(log.length).toBe(before);
          if (settleAfter[k]) settle();
        });
        while (f.waiting) settle();
        expect(log.join('')).toBe(expected);
      }),
      { numRuns: 500 },
    );
  });

  it('LOAD DATA LOCAL INFILE packets whose sequence id wraps to 0 are data, not a new command', () => {
    const f = framer(1 << 20, 64, () => {});
    const query = encodePacket(0, Buffer.from("\x03load data local infile 'f' into table t"));
    expect(feed(f, query)).toBeInstanceOf(Buffer);
    f.serverSpoke = true; // the server's LOCAL INFILE request (seq 1)
    // File content: seq 2..255, then 0, 1, ... with no server reply in between. A chunk
    // starting with 0x11 at seq 0 would look like COM_CHANGE_USER if taken for a command.
    for (let seq = 2; seq < 256 + 5; seq++) {
      const r = feed(f, encodePacket(seq & 0xff, Buffer.from([0x11, 0x41, 0x42])));
      expect(r).toBeInstanceOf(Buffer);
    }
    expect(f.commands).toBe(1);
    // After the server answered, a real COM_CHANGE_USER is caught again.
    f.serverSpoke = true;
    expect(feed(f, encodePacket(0, Buffer.from([0x11, 0x00])))).toMatchObject({ code: 'not_allowed' });
  });

  it('the server framer tracks boundaries and sequence ids whatever the chunking', () => {
    const stream = fc.array(fc.tuple(fc.nat({ max: 255 }), bytes(200)), { minLength: 1, maxLength: 10 });
    fc.assert(
      fc.property(stream.chain((pkts) => {
        const wire = Buffer.concat(pkts.map(([seq, b]) => encodePacket(seq, b)));
        return chunked(wire).map((chunks) => ({ pkts, chunks }));
      }), ({ pkts, chunks }) => {
        const f = new ServerFramer();
        for (const c of chunks) f.observe(c);
        expect(f.atBoundary).toBe(true);
        expect(f.lastSeq).toBe(pkts.at(-1)![0]);
      }),
      { numRuns: 500 },
    );
  });
});
