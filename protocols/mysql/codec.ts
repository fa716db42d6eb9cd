/**
 * MySQL client/server wire format, as far as the gateway needs it: packet framing,
 * length-encoded values, the auth-phase packets (AuthSwitchRequest, AuthMoreData) and
 * OK/ERR/EOF; the handshake messages are in handshake.ts. Decoders never throw anything
 * but MysqlDecodeError, and every length they read is checked against the bytes present.
 */

/** Capability flags (the low 32 bits of the handshake's capability words). */
export const Cap = {
  LONG_PASSWORD: 1,
  FOUND_ROWS: 1 << 1,
  LONG_FLAG: 1 << 2,
  CONNECT_WITH_DB: 1 << 3,
  NO_SCHEMA: 1 << 4,
  COMPRESS: 1 << 5,
  ODBC: 1 << 6,
  LOCAL_FILES: 1 << 7,
  IGNORE_SPACE: 1 << 8,
  PROTOCOL_41: 1 << 9,
  INTERACTIVE: 1 << 10,
  SSL: 1 << 11,
  IGNORE_SIGPIPE: 1 << 12,
  TRANSACTIONS: 1 << 13,
  /** The old 4.1-protocol bit servers still set. */
  RESERVED: 1 << 14,
  SECURE_CONNECTION: 1 << 15,
  MULTI_STATEMENTS: 1 << 16,
  MULTI_RESULTS: 1 << 17,
  PS_MULTI_RESULTS: 1 << 18,
  PLUGIN_AUTH: 1 << 19,
  CONNECT_ATTRS: 1 << 20,
  PLUGIN_AUTH_LENENC_CLIENT_DATA: 1 << 21,
  CAN_HANDLE_EXPIRED_PASSWORDS: 1 << 22,
  SESSION_TRACK: 1 << 23,
  DEPRECATE_EOF: 1 << 24,
  OPTIONAL_RESULTSET_METADATA: 1 << 25,
  ZSTD_COMPRESSION: 1 << 26,
  QUERY_ATTRIBUTES: 1 << 27,
  MULTI_FACTOR_AUTHENTICATION: 1 << 28,
  /** Client-side option bits some servers echo in their greeting; they mean nothing to a server. */
  SSL_VERIFY_SERVER_CERT: 1 << 30,
  REMEMBER_OPTIONS: 0x80000000,
} as const;

/**
 * The low bit, LONG_PASSWORD, is CLIENT_MYSQL to MariaDB: a server greeting without it (and a
 * client answering without it) has MariaDB's extended capabilities in the last four of the
 * reserved bytes.
 */
export const CLIENT_MYSQL = Cap.LONG_PASSWORD;

/** MariaDB's extended capabilities (bits 32 and up of the capability word, as their own 32 bits). */
export const MariaCap = {
  PROGRESS: 1,
  COM_MULTI: 1 << 1,
  STMT_BULK_OPERATIONS: 1 << 2,
  EXTENDED_METADATA: 1 << 3,
  CACHE_METADATA: 1 << 4,
  BULK_UNIT_RESULTS: 1 << 5,
} as const;

/** Command bytes (the first payload byte of a client command, sequence id 0). */
export const Cmd = {
  Sleep: 0x00,
  Quit: 0x01,
  InitDb: 0x02,
  Query: 0x03,
  FieldList: 0x04,
  CreateDb: 0x05,
  DropDb: 0x06,
  Refresh: 0x07,
  Shutdown: 0x08,
  Statistics: 0x09,
  ProcessInfo: 0x0a,
  ProcessKill: 0x0c,
  Debug: 0x0d,
  Ping: 0x0e,
  ChangeUser: 0x11,
  StmtPrepare: 0x16,
  StmtExecute: 0x17,
  StmtSendLongData: 0x18,
  StmtClose: 0x19,
  StmtReset: 0x1a,
  SetOption: 0x1b,
  StmtFetch: 0x1c,
  ResetConnection: 0x1f,
  /** MariaDB: one prepared statement, many parameter rows. */
  StmtBulkExecute: 0xfa,
} as const;

/** The first payload byte of the server packets the gateway writes or reads itself. */
export const Reply = {
  Ok: 0x00,
  AuthMoreData: 0x01,
  /** An AuthSwitchRequest during authentication, an EOF afterwards. */
  AuthSwitch: 0xfe,
  Eof: 0xfe,
  Err: 0xff,
} as const;

/** The HandshakeV10's protocol version byte. */
export const PROTOCOL_VERSION = 10;

export const SERVER_STATUS_AUTOCOMMIT = 0x0002;
/** Another result set follows this one (multi-statements, CALL). */
export const SERVER_MORE_RESULTS_EXISTS = 0x0008;
/** COM_STMT_EXECUTE opened a cursor: rows come on COM_STMT_FETCH, not now. */
export const SERVER_STATUS_CURSOR_EXISTS = 0x0040;
/** The errno of a MariaDB progress report: an ERR-shaped packet in the middle of a reply, not its end. */
export const PROGRESS_REPORT_ERRNO = 0xffff;
/** A LOCAL INFILE request's first byte (never a valid column count). */
export const LOCAL_INFILE_REQUEST = 0xfb;
export const CHARSET_UTF8MB4_GENERAL_CI = 45;
/** One physical packet carries at most this many payload bytes; a full one is continued. */
export const MAX_PHYSICAL_PAYLOAD = 0xffffff;
/** Handshake-phase packets the gateway buffers whole (attributes included, MySQL caps them at 64 KiB). */
export const MAX_HANDSHAKE_PACKET = 64 * 1024;
export const SCRAMBLE_LENGTH = 20;
/** The SSLRequest is exactly the fixed head of a HandshakeResponse41. */
export const SSL_REQUEST_LENGTH = 32;

export type DecodeErrorCode = 'MY_PACKET_TOO_LARGE' | 'MY_TRUNCATED' | 'MY_BAD_HANDSHAKE' | 'MY_UNSUPPORTED' | 'MY_BAD_PACKET';

/** A malformed or oversized packet; `errno`/`sqlstate` are what the peer is told in the ERR packet. */
export class MysqlDecodeError extends Error {
  readonly code: DecodeErrorCode;
  readonly errno: number;
  readonly sqlstate: string;
  constructor(code: DecodeErrorCode, message: string, errno = 1043, sqlstate = '08S01') {
    super(message);
    this.name = 'MysqlDecodeError';
    this.code = code;
    this.errno = errno;
    this.sqlstate = sqlstate;
  }
}

/** A packet over the limit: ER_NET_PACKET_TOO_LARGE, as a server says it. */
export const packetTooLarge = (max: number): MysqlDecodeError =>
  new MysqlDecodeError('MY_PACKET_TOO_LARGE', `Got a packet bigger than the gateway's limit of ${max} bytes`, 1153, '08S01');

export interface Packet {
  seq: number;
  payload: Buffer;
}

/**
 * One logical packet from the front of `buf` (physical packets of 0xffffff bytes are joined
 * with their continuations): undefined while incomplete. A declared length beyond `max`
 * throws at once, before the bytes arrive, so a peer cannot make the gateway buffer them.
 */
export function decodePacket(buf: Buffer, max: number): { value: Packet; size: number } | undefined {
  let offset = 0;
  let total = 0;
  const parts: Buffer[] = [];
  let seq = 0;
  for (;;) {
    if (buf.length < offset + 4) return undefined;
    const len = buf.readUIntLE(offset, 3);
    if (total + len > max) throw packetTooLarge(max);
    if (parts.length === 0) seq = buf[offset + 3]!;
    if (buf.length < offset + 4 + len) return undefined;
    parts.push(buf.subarray(offset + 4, offset + 4 + len));
    total += len;
    offset += 4 + len;
    if (len < MAX_PHYSICAL_PAYLOAD) break;
  }
  const payload = parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
  return { value: { seq, payload }, size: offset };
}

/** Frames a payload as one or more physical packets starting at `seq`. */
export function encodePacket(seq: number, payload: Buffer): Buffer {
  if (payload.length < MAX_PHYSICAL_PAYLOAD) {
    const out = Buffer.allocUnsafe(4 + payload.length);
    out.writeUIntLE(payload.length, 0, 3);
    out[3] = seq & 0xff;
    payload.copy(out, 4);
    return out;
  }
  const chunks: Buffer[] = [];
  let s = seq;
  for (let i = 0; ; i += MAX_PHYSICAL_PAYLOAD) {
    const part = payload.subarray(i, i + MAX_PHYSICAL_PAYLOAD);
    const head = Buffer.alloc(4);
    head.writeUIntLE(part.length, 0, 3);
    head[3] = s++ & 0xff;
    chunks.push(head, part);
    if (part.length < MAX_PHYSICAL_PAYLOAD) break;
  }
  return Buffer.concat(chunks);
}

/** A bounds-checked cursor over one payload. */
export class PayloadReader {
  pos = 0;
  constructor(private readonly buf: Buffer, private readonly what: string) {}

  get remaining(): number {
    return this.buf.length - this.pos;
  }

  private need(n: number): void {
    if (n < 0 || this.pos + n > this.buf.length) throw new MysqlDecodeError('MY_TRUNCATED', `${this.what} is truncated`);
  }

  u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  u16(): number {
    this.need(2);
    const v = this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }

  u32(): number {
    this.need(4);
    const v = this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }

  bytes(n: number): Buffer {
    this.need(n);
    const v = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return v;
  }

  rest(): Buffer {
    return this.bytes(this.remaining);
  }

  /** Bytes up to a NUL (consumed, not returned); `optional` accepts the end of the payload instead. */
  nulBytes(optional = false): Buffer {
    const end = this.buf.indexOf(0, this.pos);
    if (end < 0) {
      if (optional) return this.rest();
      throw new MysqlDecodeError('MY_TRUNCATED', `${this.what} has an unterminated string`);
    }
    const v = this.buf.subarray(this.pos, end);
    this.pos = end + 1;
    return v;
  }

  nulString(optional = false): string {
    return this.nulBytes(optional).toString('utf8');
  }

  lenenc(): number {
    const first = this.u8();
    if (first < 0xfb) return first;
    switch (first) {
      case 0xfc:
        return this.u16();
      case 0xfd: {
        this.need(3);
        const v = this.buf.readUIntLE(this.pos, 3);
        this.pos += 3;
        return v;
      }
      case 0xfe: {
        this.need(8);
        const v = this.buf.readBigUInt64LE(this.pos);
        this.pos += 8;
        if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new MysqlDecodeError('MY_BAD_PACKET', `${this.what} has an absurd length`);
        return Number(v);
      }
      default:
        throw new MysqlDecodeError('MY_BAD_PACKET', `${this.what} has an invalid length-encoded integer`);
    }
  }

  lenencBytes(): Buffer {
    return this.bytes(this.lenenc());
  }
}

export function lenencInt(n: number): Buffer {
  if (n < 0xfb) return Buffer.from([n]);
  if (n <= 0xffff) return Buffer.from([0xfc, n & 0xff, n >>> 8]);
  if (n <= 0xffffff) return Buffer.from([0xfd, n & 0xff, (n >>> 8) & 0xff, n >>> 16]);
  const b = Buffer.alloc(9);
  b[0] = 0xfe;
  b.writeBigUInt64LE(BigInt(n), 1);
  return b;
}

export function lenencBytes(b: Buffer): Buffer {
  return Buffer.concat([lenencInt(b.length), b]);
}

export interface OkFields {
  affectedRows?: number;
  lastInsertId?: number;
  status: number;
  warnings?: number;
  /** With CLIENT_SESSION_TRACK the info string is length-encoded. */
  sessionTrack?: boolean;
}

export function encodeOk(f: OkFields): Buffer {
  const tail = Buffer.alloc(4);
  tail.writeUInt16LE(f.status & 0xffff, 0);
  tail.writeUInt16LE((f.warnings ?? 0) & 0xffff, 2);
  const parts = [Buffer.from([Reply.Ok]), lenencInt(f.affectedRows ?? 0), lenencInt(f.lastInsertId ?? 0), tail];
  if (f.sessionTrack) parts.push(lenencInt(0));
  return Buffer.concat(parts);
}

/** The status flags of an OK packet. */
export function decodeOkStatus(payload: Buffer): number {
  const r = new PayloadReader(payload, 'OK packet');
  if (r.u8() !== Reply.Ok) throw new MysqlDecodeError('MY_BAD_PACKET', 'not an OK packet');
  r.lenenc();
  r.lenenc();
  return r.u16();
}

export interface ErrFields {
  errno: number;
  sqlstate: string;
  message: string;
}

export function encodeErr(e: ErrFields): Buffer {
  const head = Buffer.alloc(9);
  head[0] = Reply.Err;
  head.writeUInt16LE(e.errno & 0xffff, 1);
  head.write(`#${(e.sqlstate + '00000').slice(0, 5)}`, 3, 'latin1');
  return Buffer.concat([head, Buffer.from(e.message, 'utf8')]);
}

export function decodeErr(payload: Buffer): ErrFields {
  const r = new PayloadReader(payload, 'ERR packet');
  if (r.u8() !== Reply.Err) throw new MysqlDecodeError('MY_BAD_PACKET', 'not an ERR packet');
  const errno = r.u16();
  let sqlstate = 'HY000';
  if (r.remaining >= 6 && payload[3] === 0x23) {
    r.u8();
    sqlstate = r.bytes(5).toString('latin1');
  }
  return { errno, sqlstate, message: r.rest().toString('utf8') };
}

export function encodeEof(status: number, warnings = 0): Buffer {
  const b = Buffer.alloc(5);
  b[0] = Reply.Eof;
  b.writeUInt16LE(warnings & 0xffff, 1);
  b.writeUInt16LE(status & 0xffff, 3);
  return b;
}

/** A string as the protocol's NUL-terminated string. */
export const cstr = (s: string | Buffer): Buffer => Buffer.concat([typeof s === 'string' ? Buffer.from(s, 'utf8') : s, Buffer.from([0])]);

export function encodeAuthSwitch(plugin: string, data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([Reply.AuthSwitch]), cstr(plugin), data]);
}

export function encodeAuthMoreData(data: Buffer): Buffer {
  return Buffer.concat([Buffer.from([Reply.AuthMoreData]), data]);
}

/** What a server may send during authentication. */
export type AuthPacket =
  | { kind: 'ok'; status: number }
  | { kind: 'err'; err: ErrFields }
  | { kind: 'switch'; plugin: string; data: Buffer }
  | { kind: 'more'; data: Buffer };

export function decodeAuthPacket(payload: Buffer): AuthPacket {
  switch (payload[0]) {
    case Reply.Ok:
      return { kind: 'ok', status: decodeOkStatus(payload) };
    case Reply.Err:
      return { kind: 'err', err: decodeErr(payload) };
    case Reply.AuthSwitch: {
      const r = new PayloadReader(payload, 'auth switch request');
      r.u8();
      const plugin = r.nulString(true);
      const data = r.rest();
      // The nonce is sent NUL-terminated; the terminator is not part of it.
      return { kind: 'switch', plugin, data: data.at(-1) === 0 ? data.subarray(0, -1) : data };
    }
    case Reply.AuthMoreData:
      return { kind: 'more', data: payload.subarray(1) };
    default:
      throw new MysqlDecodeError('MY_BAD_PACKET', `unexpected packet 0x${(payload[0] ?? 0).toString(16)} during authentication`);
  }
}
