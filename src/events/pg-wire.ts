import { randomUUID } from 'node:crypto';
import type { Notice, RevokeEvent } from './bus.js';

/** What one node tells the others. */
export type ClusterMessage = { kind: 'revoke'; event: RevokeEvent } | { kind: 'notice'; notice: Notice };

/** A message as received: who sent it (a node's bridge id) and what. */
export interface Received {
  origin: string;
  message: ClusterMessage;
}

/**
 * PostgreSQL refuses a NOTIFY payload of 8000 bytes or more. A message that does not fit goes
 * out as chunks: base64 pieces of its one-message payload (ASCII, so a piece's size in bytes
 * is its length and JSON adds no escapes), all sent in one transaction so they arrive
 * together or not at all.
 */
export const MAX_PAYLOAD_BYTES = 7999;
const CHUNK_CHARS = 6000;
/** A message larger than this is refused by the sender and dropped by the receiver. */
export const MAX_MESSAGE_BYTES = 1024 * 1024;
const MAX_CHUNKS = Math.ceil((MAX_MESSAGE_BYTES * 4) / 3 / CHUNK_CHARS) + 1;
/** Chunks of a message whose other chunks never came (the listener dropped mid-way) are forgotten after this. */
const CHUNK_TTL_MS = 30_000;

/*
 * The payloads on the channel, as JSON:
 *   { origin, event }   a revoke event (the shape the previous release sends and reads, so
 *                       revocations keep flowing during a rolling upgrade)
 *   { origin, notice }  a notice for people
 *   { origin, chunk: { id, i, n, data } }  piece i of n of a message too long for one NOTIFY
 * Dates travel as { "$date": ISO } and come back as Date objects.
 */

interface Chunk {
  id: string;
  i: number;
  n: number;
  data: string;
}

export class MessageTooLargeError extends Error {
  constructor(bytes: number) {
    super(`a cluster message of ${bytes} bytes exceeds the ${MAX_MESSAGE_BYTES}-byte limit`);
  }
}

/** The NOTIFY payloads that carry `message`: one, or the chunks of it. */
export function encodeMessage(origin: string, message: ClusterMessage): string[] {
  const body = message.kind === 'revoke' ? { origin, event: message.event } : { origin, notice: message.notice };
  const whole = JSON.stringify(body, tagDates);
  const bytes = Buffer.byteLength(whole, 'utf8');
  if (bytes <= MAX_PAYLOAD_BYTES) return [whole];
  if (bytes > MAX_MESSAGE_BYTES) throw new MessageTooLargeError(bytes);
  const b64 = Buffer.from(whole, 'utf8').toString('base64');
  const n = Math.ceil(b64.length / CHUNK_CHARS);
  const id = randomUUID();
  return Array.from({ length: n }, (_, i) => JSON.stringify({ origin, chunk: { id, i, n, data: b64.slice(i * CHUNK_CHARS, (i + 1) * CHUNK_CHARS) } }));
}

/** The origin named by a payload, read cheaply, so a node can skip its own messages before reassembling them. */
export function originOf(payload: string): string | undefined {
  const m = /^\{"origin":"([^"]+)"/.exec(payload);
  return m?.[1];
}

interface Pending {
  parts: Array<string | undefined>;
  got: number;
  firstAt: number;
}

/**
 * Turns payloads back into messages, putting chunked ones together. Returns undefined for a
 * chunk that does not complete its message yet, and throws on anything malformed.
 */
export class Reassembler {
  private readonly pending = new Map<string, Pending>();

  constructor(private readonly now: () => number = () => performance.now()) {}

  accept(payload: string): Received | undefined {
    const env = JSON.parse(payload, reviveDates) as { origin?: unknown; event?: unknown; notice?: unknown; chunk?: unknown };
    if (typeof env.origin !== 'string') throw new Error('no origin');
    if (env.chunk !== undefined) return this.piece(env.origin, env.chunk);
    if (hasKind(env.event)) return { origin: env.origin, message: { kind: 'revoke', event: env.event as RevokeEvent } };
    if (hasKind(env.notice)) return { origin: env.origin, message: { kind: 'notice', notice: env.notice as Notice } };
    throw new Error('neither an event, a notice nor a chunk');
  }

  /** Drops every half-received message (the listening connection was replaced). */
  reset(): void {
    this.pending.clear();
  }

  /** Messages waiting for more chunks. */
  get waiting(): number {
    return this.pending.size;
  }

  private piece(origin: string, raw: unknown): Received | undefined {
    const c = raw as Partial<Chunk>;
    const valid =
      typeof c.id === 'string' && typeof c.data === 'string' && Number.isInteger(c.i) && Number.isInteger(c.n) &&
      c.n! > 1 && c.n! <= MAX_CHUNKS && c.i! >= 0 && c.i! < c.n!;
    if (!valid) throw new Error('malformed chunk');
    this.forgetStale();
    const key = `${origin}/${c.id!}`;
    let p = this.pending.get(key);
    if (!p) {
      p = { parts: new Array<string | undefined>(c.n!).fill(undefined), got: 0, firstAt: this.now() };
      this.pending.set(key, p);
    }
    if (p.parts.length !== c.n) throw new Error('chunk count changed');
    if (p.parts[c.i!] === undefined) {
      p.parts[c.i!] = c.data;
      p.got++;
    }
    if (p.got < p.parts.length) return undefined;
    this.pending.delete(key);
    const whole = Buffer.from(p.parts.join(''), 'base64').toString('utf8');
    const r = this.accept(whole);
    if (!r || r.origin !== origin) throw new Error('chunked message names another origin');
    return r;
  }

  private forgetStale(): void {
    const cutoff = this.now() - CHUNK_TTL_MS;
    for (const [key, p] of this.pending) if (p.firstAt < cutoff) this.pending.delete(key);
  }
}

function hasKind(v: unknown): boolean {
  return typeof v === 'object' && v !== null && typeof (v as { kind?: unknown }).kind === 'string';
}

// JSON.stringify has already called Date#toJSON when a replacer sees the value; the holder still has the Date.
function tagDates(this: Record<string, unknown>, key: string, value: unknown): unknown {
  return this[key] instanceof Date ? { $date: value } : value;
}

function reviveDates(_key: string, value: unknown): unknown {
  if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const keys = Object.keys(value);
    const tagged = (value as { $date?: unknown }).$date;
    if (keys.length === 1 && typeof tagged === 'string') return new Date(tagged);
  }
  return value;
}
