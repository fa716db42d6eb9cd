/**
 * PostgreSQL wire format, both directions, as far as the gateway needs it: frontend startup
 * packets, length-prefixed typed messages (with bounded lengths), and builders for the few
 * messages the gateway writes itself. Decoders never throw anything but PgDecodeError.
 */

export const PROTOCOL_3_0 = 3 << 16;
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** The type byte of every message after the startup packet, by the protocol's own names. */
export const Msg = {
  // Frontend (client to server).
  Query: 0x51, // Q
  Parse: 0x50, // P
  /** PasswordMessage, SASLInitialResponse and SASLResponse share it. */
  Password: 0x70, // p
  Terminate: 0x58, // X
  /** Sync and FunctionCall, like Query, are each answered with one ReadyForQuery. */
  Sync: 0x53, // S
  FunctionCall: 0x46, // F
  // Backend (server to client).
  Authentication: 0x52, // R
  BackendKeyData: 0x4b, // K
  ParameterStatus: 0x53, // S
  NoticeResponse: 0x4e, // N
  ErrorResponse: 0x45, // E
  ReadyForQuery: 0x5a, // Z
  NegotiateProtocolVersion: 0x76, // v
} as const;
export type MsgType = (typeof Msg)[keyof typeof Msg];

/** The Int32 that says which authentication request an Authentication message is. */
export const Auth = {
  Ok: 0,
  CleartextPassword: 3,
  MD5Password: 5,
  SASL: 10,
  SASLContinue: 11,
  SASLFinal: 12,
} as const;

/** The single byte a server answers SSLRequest and GSSENCRequest with. */
export const EncryptionAnswer = {
  Accept: 0x53, // S
  Refuse: 0x4e, // N
} as const;

/** PostgreSQL's own MAX_STARTUP_PACKET_LENGTH. */
export const MAX_STARTUP_LENGTH = 10_000;
/** Client to server: PostgreSQL allows 1 GiB; a gateway has no business buffering that much trust. */
export const MAX_CLIENT_MESSAGE = 64 * 1024 * 1024;
/** Server to client: PostgreSQL's limit (MaxAllocSize). The relay only counts, never buffers. */
export const MAX_SERVER_MESSAGE = 1024 * 1024 * 1024 - 1;
/** Handshake messages the gateway buffers whole (password, SASL, ParameterStatus...). */
export const MAX_HANDSHAKE_MESSAGE = 64 * 1024;

export type DecodeErrorCode = 'PG_BAD_LENGTH' | 'PG_BAD_STARTUP' | 'PG_BAD_MESSAGE';

/** A malformed or oversized packet: the peer broke the protocol (the session says `protocol_error`). */
export class PgDecodeError extends Error {
  readonly code: DecodeErrorCode;
  constructor(code: DecodeErrorCode, message: string) {
    super(message);
    this.name = 'PgDecodeError';
    this.code = code;
  }
}

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; key: Buffer }
  | { kind: 'startup'; major: number; minor: number; params: Map<string, string> }
  /** A well-framed startup packet of a protocol major other than 3: its body is not read. */
  | { kind: 'unsupported'; major: number; minor: number };

/**
 * Decodes one startup-phase packet from the front of `buf`: undefined while incomplete,
 * else the packet and how many bytes it took.
 */
export function decodeStartup(buf: Buffer): { value: StartupPacket; size: number } | undefined {
  if (buf.length < 4) return undefined;
  const len = buf.readInt32BE(0);
  if (len < 8 || len > MAX_STARTUP_LENGTH) throw new PgDecodeError('PG_BAD_LENGTH', 'invalid length of startup packet');
  if (buf.length < len) return undefined;
  const code = buf.readUInt32BE(4);
  const fixed = (want: number): void => {
    if (len !== want) throw new PgDecodeError('PG_BAD_LENGTH', 'invalid length of startup packet');
  };
  switch (code) {
    case SSL_REQUEST_CODE:
      fixed(8);
      return { value: { kind: 'ssl' }, size: 8 };
    case GSSENC_REQUEST_CODE:
      fixed(8);
      return { value: { kind: 'gssenc' }, size: 8 };
    case CANCEL_REQUEST_CODE:
      fixed(16);
      return { value: { kind: 'cancel', key: Buffer.from(buf.subarray(8, 16)) }, size: 16 };
    default: {
      const major = code >>> 16;
      const minor = code & 0xffff;
      if (major !== 3) return { value: { kind: 'unsupported', major, minor }, size: len };
      return { value: { kind: 'startup', major, minor, params: decodeParams(buf.subarray(8, len)) }, size: len };
    }
  }
}

/** `name\0value\0 ... \0`: the body of a StartupMessage. */
function decodeParams(body: Buffer): Map<string, string> {
  const params = new Map<string, string>();
  let i = 0;
  for (;;) {
    if (i >= body.length) throw new PgDecodeError('PG_BAD_STARTUP', 'invalid startup packet layout: expected terminator as last byte');
    if (body[i] === 0) {
      if (i !== body.length - 1) throw new PgDecodeError('PG_BAD_STARTUP', 'invalid startup packet layout: data after terminator');
      return params;
    }
    const nameEnd = body.indexOf(0, i);
    const valueEnd = nameEnd < 0 ? -1 : body.indexOf(0, nameEnd + 1);
    if (valueEnd < 0) throw new PgDecodeError('PG_BAD_STARTUP', 'invalid startup packet layout: expected terminator as last byte');
    params.set(body.toString('utf8', i, nameEnd), body.toString('utf8', nameEnd + 1, valueEnd));
    i = valueEnd + 1;
  }
}

export interface Message {
  type: number;
  /** The body after the 5-byte header (a view into the received bytes). */
  body: Buffer;
  /** Header and body, as received. */
  raw: Buffer;
}

/**
 * Decodes one typed message from the front of `buf` (handshake phases, where messages are
 * small and wanted whole): undefined while incomplete. A length above `max` is refused
 * before anything more is buffered.
 */
export function decodeMessage(buf: Buffer, max = MAX_HANDSHAKE_MESSAGE): { value: Message; size: number } | undefined {
  if (buf.length < 5) return undefined;
  const len = buf.readInt32BE(1);
  if (len < 4 || len > max) throw new PgDecodeError('PG_BAD_LENGTH', `invalid message length ${len}`);
  if (buf.length < len + 1) return undefined;
  const raw = buf.subarray(0, len + 1);
  return { value: { type: raw[0]!, body: raw.subarray(5), raw }, size: len + 1 };
}

/**
 * What a Framer's owner learns at message boundaries: `types` runs at every message start and
 * returns true to have the first `limit` bytes of that message's body handed to `done` when
 * the message ends (the SQL of Query and Parse, for the audit).
 */
export interface FrameHooks {
  types(type: number): boolean;
  limit: number;
  done(type: number, prefix: Buffer, bodyLength: number): void;
}

const noHooks: FrameHooks = { types: () => false, limit: 0, done: () => undefined };

/**
 * Follows message boundaries in a byte stream without buffering it, for the hot path: it
 * keeps a 5-byte header carry and a count of body bytes left.
 */
export class Framer {
  private readonly hdr = Buffer.alloc(5);
  private hdrLen = 0;
  private remaining = 0;
  private type = 0;
  private bodyLen = 0;
  private parts: Buffer[] | undefined;
  private want = 0;

  constructor(
    private readonly max: number,
    private readonly hooks: FrameHooks = noHooks,
  ) {}

  /** True between messages: a message of our own may be written here. */
  get atBoundary(): boolean {
    return this.hdrLen === 0 && this.remaining === 0;
  }

  /**
   * Walks `chunk`. With `stopAtBoundary`, returns as soon as a message ends (the bytes
   * consumed so far); otherwise consumes it all and returns its length.
   */
  feed(chunk: Buffer, stopAtBoundary = false): number {
    const n = chunk.length;
    let i = 0;
    if (!stopAtBoundary && this.hdrLen === 0 && this.remaining === 0) {
      // The usual chunk, from a boundary: whole messages are stepped over header to header,
      // with no state kept between them; a message cut by the chunk's end goes the long way.
      const hooks = this.hooks;
      while (n - i >= 5) {
        const type = chunk[i]!;
        const len = (chunk[i + 1]! << 24) | (chunk[i + 2]! << 16) | (chunk[i + 3]! << 8) | chunk[i + 4]!;
        if (len < 4 || len > this.max) throw badLength(len);
        const end = i + 1 + len;
        if (end > n) break;
        if (hooks.types(type)) hooks.done(type, chunk.subarray(i + 5, i + 5 + Math.min(len - 4, hooks.limit)), len - 4);
        i = end;
      }
      if (i === n) return n;
    }
    while (i < n) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - i);
        if (this.parts && this.want > 0) {
          const c = Math.min(take, this.want);
          this.parts.push(chunk.subarray(i, i + c));
          this.want -= c;
        }
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) {
          this.finish();
          if (stopAtBoundary) return i;
        }
        continue;
      }
      if (this.hdrLen === 0 && n - i >= 5) {
        this.start(chunk[i]!, chunk.readInt32BE(i + 1));
        i += 5;
      } else {
        const c = Math.min(5 - this.hdrLen, n - i);
        chunk.copy(this.hdr, this.hdrLen, i, i + c);
        this.hdrLen += c;
        i += c;
        if (this.hdrLen < 5) continue;
        this.hdrLen = 0;
        this.start(this.hdr[0]!, this.hdr.readInt32BE(1));
      }
      if (this.remaining === 0) {
        this.finish();
        if (stopAtBoundary) return i;
      }
    }
    return i;
  }

  private start(type: number, len: number): void {
    if (len < 4 || len > this.max) throw badLength(len);
    this.type = type;
    this.bodyLen = len - 4;
    this.remaining = this.bodyLen;
    if (this.hooks.types(type)) {
      this.parts = [];
      this.want = Math.min(this.bodyLen, this.hooks.limit);
    }
  }

  private finish(): void {
    if (!this.parts) return;
    const prefix = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts);
    this.parts = undefined;
    this.hooks.done(this.type, prefix, this.bodyLen);
  }
}

const badLength = (len: number): PgDecodeError => new PgDecodeError('PG_BAD_LENGTH', `invalid message length ${len}`);

/** A NUL-terminated string at `offset`; the text and the offset after its NUL (or the end). */
export function readCString(buf: Buffer, offset: number): { value: string; next: number } {
  const end = buf.indexOf(0, offset);
  const stop = end < 0 ? buf.length : end;
  return { value: buf.toString('utf8', offset, stop), next: end < 0 ? buf.length : end + 1 };
}

/** The fields of an ErrorResponse or NoticeResponse body, keyed by their one-letter codes. */
export function decodeFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const key = String.fromCharCode(body[i]!);
    const s = readCString(body, i + 1);
    out[key] = s.value;
    i = s.next;
  }
  return out;
}

export function message(type: number, body: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type;
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstr(s: string): Buffer {
  return Buffer.from(`${s.replace(/\0/g, '')}\0`, 'utf8');
}

export interface ErrorFields {
  severity: 'FATAL' | 'ERROR' | 'WARNING' | 'NOTICE';
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

function fields(f: ErrorFields): Buffer {
  const parts = [Buffer.from('S'), cstr(f.severity), Buffer.from('V'), cstr(f.severity), Buffer.from('C'), cstr(f.code), Buffer.from('M'), cstr(f.message)];
  if (f.detail) parts.push(Buffer.from('D'), cstr(f.detail));
  if (f.hint) parts.push(Buffer.from('H'), cstr(f.hint));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export const errorResponse = (f: ErrorFields): Buffer => message(Msg.ErrorResponse, fields(f));
export const noticeResponse = (f: ErrorFields): Buffer => message(Msg.NoticeResponse, fields(f));

function int32(...values: number[]): Buffer {
  const b = Buffer.allocUnsafe(4 * values.length);
  values.forEach((v, i) => b.writeInt32BE(v, i * 4));
  return b;
}

export const authenticationOk = (): Buffer => message(Msg.Authentication, int32(Auth.Ok));
export const authenticationCleartextPassword = (): Buffer => message(Msg.Authentication, int32(Auth.CleartextPassword));
export const backendKeyData = (key: Buffer): Buffer => message(Msg.BackendKeyData, key);

/** Tells a client asking for 3.x (x > 0) or `_pq_.` options what we speak instead. */
export function negotiateProtocolVersion(minor: number, unsupported: string[]): Buffer {
  return message(Msg.NegotiateProtocolVersion, Buffer.concat([int32(minor, unsupported.length), ...unsupported.map(cstr)]));
}

// Frontend messages, for the gateway's own upstream connections.

export const sslRequest = (): Buffer => int32(8, SSL_REQUEST_CODE);
export const cancelRequest = (key: Buffer): Buffer => Buffer.concat([int32(16, CANCEL_REQUEST_CODE), key]);
export const terminate = (): Buffer => message(Msg.Terminate);
export const passwordMessage = (password: string): Buffer => message(Msg.Password, cstr(password));

export function startupMessage(params: Map<string, string>): Buffer {
  const body = Buffer.concat([...[...params].flatMap(([k, v]) => [cstr(k), cstr(v)]), Buffer.from([0])]);
  return Buffer.concat([int32(8 + body.length, PROTOCOL_3_0), body]);
}

export function saslInitialResponse(mechanism: string, data: Buffer): Buffer {
  return message(Msg.Password, Buffer.concat([cstr(mechanism), int32(data.length), data]));
}

export const saslResponse = (data: Buffer): Buffer => message(Msg.Password, data);
