/**
 * Property tests for the PostgreSQL codec: whatever bytes arrive, decoders return a value,
 * ask for more, or throw PgDecodeError — never anything else, never a hang — and the hot
 * path framer finds the same messages however the stream is cut into chunks.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeFields, decodeMessage, decodeStartup, errorResponse, Framer, MAX_STARTUP_LENGTH, message, Msg, PgDecodeError, readCString, startupMessage,
} from '../../protocols/postgres/codec.js';

const RUNS = { numRuns: 2_000 };

/** Runs `f`; a PgDecodeError counts as a clean refusal, anything else fails the property. */
function clean<T>(f: () => T): T | PgDecodeError {
  try {
    return f();
  } catch (e) {
    if (e instanceof PgDecodeError) return e;
    throw e;
  }
}

const bytes = (max = 4096): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength: max }).map((a) => Buffer.from(a));
/** A random header: type byte and a length anywhere in int32, biased towards edges. */
const header = fc.tuple(fc.integer({ min: 0, max: 255 }), fc.oneof(fc.integer({ min: -10, max: 20 }), fc.integer(), fc.constantFrom(0x7fffffff, -1, 10_000, 10_001, 65_536)));
const paramName = fc.string({ minLength: 1, maxLength: 20 }).filter((s) => !s.includes('\0'));
const paramValue = fc.string({ maxLength: 40 }).filter((s) => !s.includes('\0'));

describe('postgres codec (fuzz)', () => {
  it('decodeStartup on arbitrary bytes: a packet, "need more", or PgDecodeError', () => {
    fc.assert(
      fc.property(fc.oneof(bytes(), fc.tuple(fc.integer(), fc.integer(), bytes(64)).map(([a, b, rest]) => {
        const h = Buffer.alloc(8);
        h.writeInt32BE(a, 0);
        h.writeInt32BE(b, 4);
        return Buffer.concat([h, rest]);
      })), (buf) => {
        const r = clean(() => decodeStartup(buf));
        if (r instanceof PgDecodeError) {
          expect(['PG_BAD_LENGTH', 'PG_BAD_STARTUP']).toContain(r.code);
        } else if (r) {
          expect(r.size).toBeGreaterThanOrEqual(8);
          expect(r.size).toBeLessThanOrEqual(Math.min(buf.length, MAX_STARTUP_LENGTH));
          // Another protocol major is reported, never parsed as 3.0.
          if (r.value.kind === 'unsupported') expect(r.value.major).not.toBe(3);
          if (r.value.kind === 'startup') expect(r.value.major).toBe(3);
        }
      }),
      RUNS,
    );
  });

  it('a StartupMessage round-trips, and every strict prefix of it asks for more', () => {
    fc.assert(
      fc.property(fc.uniqueArray(fc.tuple(paramName, paramValue), { selector: ([k]) => k, maxLength: 12 }), fc.nat(), (pairs, cut) => {
        const params = new Map(pairs);
        const wire = startupMessage(params);
        fc.pre(wire.length <= MAX_STARTUP_LENGTH);
        const r = decodeStartup(wire);
        expect(r?.value).toEqual({ kind: 'startup', major: 3, minor: 0, params });
        expect(r?.size).toBe(wire.length);
        expect(decodeStartup(wire.subarray(0, cut % wire.length))).toBeUndefined();
      }),
      RUNS,
    );
  });

  it('startup lengths beyond the bound are refused before the body arrives', () => {
    fc.assert(
      fc.property(fc.integer({ min: MAX_STARTUP_LENGTH + 1, max: 0x7fffffff }), (len) => {
        const h = Buffer.alloc(8);
        h.writeInt32BE(len, 0);
        h.writeInt32BE(196608, 4);
        expect(clean(() => decodeStartup(h))).toMatchObject({ code: 'PG_BAD_LENGTH' });
      }),
      RUNS,
    );
  });

  it('decodeMessage on arbitrary bytes and bounds never throws anything but PgDecodeError', () => {
    fc.assert(
      fc.property(header, bytes(512), fc.integer({ min: 4, max: 1 << 20 }), ([type, len], body, max) => {
        const h = Buffer.alloc(5);
        h[0] = type;
        h.writeInt32BE(len, 1);
        const buf = Buffer.concat([h, body]);
        const r = clean(() => decodeMessage(buf, max));
        if (r instanceof PgDecodeError) expect(len < 4 || len > max).toBe(true);
        else if (r) expect(r.size).toBe(len + 1);
        else expect(buf.length).toBeLessThan(len + 1);
      }),
      RUNS,
    );
  });

  it('field and string readers accept any bytes', () => {
    fc.assert(
      fc.property(bytes(1024), fc.nat(), (buf, at) => {
        expect(typeof decodeFields(buf)).toBe('object');
        const s = readCString(buf, buf.length ? at % buf.length : 0);
        expect(s.next).toBeLessThanOrEqual(buf.length);
      }),
      RUNS,
    );
    const e = errorResponse({ severity: 'FATAL', code: '57P01', message: 'bye', hint: 'h' });
    expect(decodeFields(decodeMessage(e)!.value.body)).toEqual({ S: 'FATAL', V: 'FATAL', C: '57P01', M: 'bye', H: 'h' });
  });

  it('the framer finds the same messages and captures wherever the chunks are cut', () => {
    const msg = fc.tuple(fc.constantFrom('Q', 'P', 'B', 'E', 'S', 'd', 'X').map((c) => c.charCodeAt(0)), bytes(300));
    fc.assert(
      fc.property(fc.array(msg, { maxLength: 30 }), fc.array(fc.nat({ max: 400 }), { maxLength: 40 }), fc.integer({ min: 1, max: 64 }), (msgs, cuts, limit) => {
        const wire = Buffer.concat(msgs.map(([t, b]) => message(t, b)));
        const expected = msgs.filter(([t]) => t === Msg.Query || t === Msg.Parse).map(([t, b]) => [t, b.subarray(0, limit).toString('hex'), b.length]);
        const got: unknown[] = [];
        const f = new Framer(1 << 20, { types: (t) => t === Msg.Query || t === Msg.Parse, limit, done: (t, p, len) => got.push([t, p.toString('hex'), len]) });
        let at = 0;
        for (const c of cuts) {
          const next = Math.min(wire.length, at + c);
          expect(f.feed(wire.subarray(at, next))).toBe(next - at);
          at = next;
        }
        f.feed(wire.subarray(at));
        expect(got).toEqual(expected);
        expect(f.atBoundary).toBe(true);
      }),
      { numRuns: 500 },
    );
  });

  it('stopAtBoundary stops exactly at each message end', () => {
    fc.assert(
      fc.property(fc.array(bytes(100), { minLength: 1, maxLength: 10 }), (bodies) => {
        const wire = Buffer.concat(bodies.map((b) => message(0x44 /* D: DataRow */, b)));
        const f = new Framer(1 << 20);
        const ends: number[] = [];
        let at = 0;
        while (at < wire.length) {
          at += f.feed(wire.subarray(at), true);
          expect(f.atBoundary).toBe(true);
          ends.push(at);
        }
        let acc = 0;
        expect(ends).toEqual(bodies.map((b) => (acc += 5 + b.length)));
      }),
      RUNS,
    );
  });

  it('the framer on arbitrary bytes: consumes or refuses with PgDecodeError, in bounded time', () => {
    fc.assert(
      fc.property(fc.array(bytes(2048), { maxLength: 8 }), fc.integer({ min: 4, max: 1 << 16 }), (chunks, max) => {
        const f = new Framer(max, { types: () => true, limit: 16, done: () => {} });
        for (const c of chunks) {
          const r = clean(() => f.feed(c));
          if (r instanceof PgDecodeError) {
            expect(r.code).toBe('PG_BAD_LENGTH');
            return;
          }
          expect(r).toBe(c.length);
        }
      }),
      RUNS,
    );
  });
});
