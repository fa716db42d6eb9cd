/**
 * The connection-phase handshake both ways: the server's HandshakeV10, and the client's
 * SSLRequest / HandshakeResponse41. Decoders throw only MysqlDecodeError.
 */
import { Cap, CLIENT_MYSQL, cstr, lenencBytes, MysqlDecodeError, PayloadReader, PROTOCOL_VERSION, SSL_REQUEST_LENGTH } from './codec.js';

/** Where a client's MariaDB extended capabilities sit: the last four of its 23 reserved bytes. */
const CLIENT_EXT_OFFSET = 28;

export interface HandshakeV10 {
  serverVersion: string;
  connectionId: number;
  /** The 20-byte nonce (both parts, without the trailing NUL). */
  scramble: Buffer;
  capabilities: number;
  /** MariaDB's extended capabilities; only sent (and read) when `capabilities` lacks CLIENT_MYSQL. */
  mariadbCapabilities: number;
  charset: number;
  status: number;
  authPlugin: string;
}

/** What a MySQL server (or a test) writes need not say anything about MariaDB. */
type Encodable<T extends { mariadbCapabilities: number }> = Omit<T, 'mariadbCapabilities'> & { mariadbCapabilities?: number };

export function encodeHandshakeV10(h: Encodable<HandshakeV10>): Buffer {
  const caps = h.capabilities >>> 0;
  const head = Buffer.alloc(4 + 8 + 1 + 2 + 1 + 2 + 2 + 1 + 10);
  let o = head.writeUInt32LE(h.connectionId >>> 0, 0);
  o += h.scramble.copy(head, o, 0, 8);
  o += 1; // filler
  o = head.writeUInt16LE(caps & 0xffff, o);
  o = head.writeUInt8(h.charset & 0xff, o);
  o = head.writeUInt16LE(h.status & 0xffff, o);
  o = head.writeUInt16LE(caps >>> 16, o);
  o = head.writeUInt8(h.scramble.length + 1, o);
  // Six reserved bytes, then MariaDB's extended capabilities (or four more reserved ones).
  if (!(caps & CLIENT_MYSQL)) head.writeUInt32LE((h.mariadbCapabilities ?? 0) >>> 0, o + 6);
  return Buffer.concat([Buffer.from([PROTOCOL_VERSION]), cstr(h.serverVersion), head, cstr(h.scramble.subarray(8)), cstr(h.authPlugin)]);
}

export function decodeHandshakeV10(payload: Buffer): HandshakeV10 {
  const r = new PayloadReader(payload, 'server handshake');
  const version = r.u8();
  if (version !== PROTOCOL_VERSION) throw new MysqlDecodeError('MY_UNSUPPORTED', `server handshake protocol ${version} is not supported`);
  const serverVersion = r.nulString();
  const connectionId = r.u32();
  const part1 = r.bytes(8);
  r.u8();
  let capabilities = r.u16();
  const charset = r.remaining ? r.u8() : 0;
  const status = r.remaining ? r.u16() : 0;
  let authPlugin = 'mysql_native_password';
  let scramble = part1;
  let mariadbCapabilities = 0;
  if (r.remaining) {
    capabilities = (capabilities | (r.u16() << 16)) >>> 0;
    const dataLen = r.u8();
    r.bytes(6);
    const ext = r.u32();
    if (!(capabilities & CLIENT_MYSQL)) mariadbCapabilities = ext;
    if (capabilities & Cap.SECURE_CONNECTION) {
      const part2 = r.bytes(Math.max(13, dataLen - 8));
      // The second part carries a trailing NUL that is not part of the nonce.
      scramble = Buffer.concat([part1, part2.at(-1) === 0 ? part2.subarray(0, -1) : part2]);
    }
    if (capabilities & Cap.PLUGIN_AUTH) authPlugin = r.nulString(true);
  }
  return { serverVersion, connectionId, scramble, capabilities, mariadbCapabilities, charset, status, authPlugin };
}

/** The head shared by the SSLRequest and the HandshakeResponse41. */
export interface ClientHello {
  capabilities: number;
  /** MariaDB's extended capabilities; 0 unless the client left CLIENT_MYSQL unset. */
  mariadbCapabilities: number;
  maxPacket: number;
  charset: number;
}

export interface HandshakeResponse extends ClientHello {
  user: string;
  authResponse: Buffer;
  database?: string;
  authPlugin?: string;
}

export type ClientFirstPacket = ({ kind: 'ssl' } & ClientHello) | ({ kind: 'response' } & HandshakeResponse);

/** Decodes what a client sends after our HandshakeV10: an SSLRequest or its HandshakeResponse41. */
export function decodeClientHandshake(payload: Buffer): ClientFirstPacket {
  const r = new PayloadReader(payload, 'handshake response');
  if (payload.length < 4) throw new MysqlDecodeError('MY_BAD_HANDSHAKE', 'Bad handshake', 1043, '08S01');
  const capabilities = r.u32();
  if (!(capabilities & Cap.PROTOCOL_41)) {
    throw new MysqlDecodeError('MY_UNSUPPORTED', 'Clients older than protocol 4.1 are not supported by Gatehouse', 1043, '08S01');
  }
  const maxPacket = r.u32();
  const charset = r.u8();
  r.bytes(19);
  const ext = r.u32();
  const mariadbCapabilities = capabilities & CLIENT_MYSQL ? 0 : ext;
  if (payload.length === SSL_REQUEST_LENGTH) {
    if (!(capabilities & Cap.SSL)) throw new MysqlDecodeError('MY_BAD_HANDSHAKE', 'Bad handshake', 1043, '08S01');
    return { kind: 'ssl', capabilities, mariadbCapabilities, maxPacket, charset };
  }
  const user = r.nulString();
  let authResponse: Buffer;
  if (capabilities & Cap.PLUGIN_AUTH_LENENC_CLIENT_DATA) authResponse = r.lenencBytes();
  else if (capabilities & Cap.SECURE_CONNECTION) authResponse = r.bytes(r.u8());
  else authResponse = r.nulBytes();
  const out: ClientFirstPacket = { kind: 'response', capabilities, mariadbCapabilities, maxPacket, charset, user, authResponse };
  if (capabilities & Cap.CONNECT_WITH_DB && r.remaining) {
    const db = r.nulString(true);
    if (db) out.database = db;
  }
  if (capabilities & Cap.PLUGIN_AUTH && r.remaining) out.authPlugin = r.nulString(true);
  if (capabilities & Cap.CONNECT_ATTRS && r.remaining) r.lenencBytes(); // validated, not used
  return out;
}

export function encodeSslRequest(h: Encodable<ClientHello>): Buffer {
  const b = Buffer.alloc(SSL_REQUEST_LENGTH);
  b.writeUInt32LE(h.capabilities >>> 0, 0);
  b.writeUInt32LE(h.maxPacket >>> 0, 4);
  b[8] = h.charset & 0xff;
  if (!(h.capabilities & CLIENT_MYSQL)) b.writeUInt32LE((h.mariadbCapabilities ?? 0) >>> 0, CLIENT_EXT_OFFSET);
  return b;
}

export function encodeHandshakeResponse(h: Encodable<HandshakeResponse>): Buffer {
  const parts = [encodeSslRequest(h), cstr(h.user)];
  if (h.capabilities & Cap.PLUGIN_AUTH_LENENC_CLIENT_DATA) parts.push(lenencBytes(h.authResponse));
  else parts.push(Buffer.from([h.authResponse.length]), h.authResponse);
  if (h.capabilities & Cap.CONNECT_WITH_DB) parts.push(cstr(h.database ?? ''));
  if (h.capabilities & Cap.PLUGIN_AUTH) parts.push(cstr(h.authPlugin ?? ''));
  return Buffer.concat(parts);
}

