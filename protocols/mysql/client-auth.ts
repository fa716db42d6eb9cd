/**
 * The client leg of a connection, the gateway in the server's role: HandshakeV10, the TLS
 * upgrade on the client's SSLRequest, and an auth dance that ends with the password in clear
 * (the gateway must check it against its own store, so a scramble is of no use to it).
 *
 * We advertise caching_sha2_password and always ask for its full authentication: over TLS
 * every stock client (libmysqlclient, MariaDB Connector/C, mysql2) then sends the password
 * as is, with no flag, and without TLS (loopback only) it sends it RSA-encrypted with the
 * gateway's key. A client that answers with mysql_clear_password (`--default-auth`) is
 * taken at its word; any other plugin is switched to caching_sha2_password.
 */
import type { Socket } from 'node:net';
import type { KeyObject } from 'node:crypto';
import { TLSSocket, type SecureContext } from 'node:tls';
import { Cap, CHARSET_UTF8MB4_GENERAL_CI, encodeAuthMoreData, encodeAuthSwitch, MysqlDecodeError, SERVER_STATUS_AUTOCOMMIT } from './codec.js';
import { decodeClientHandshake, encodeHandshakeV10, type HandshakeResponse } from './handshake.js';
import { refusals, type MysqlRefusal } from './errors.js';
import { PacketReader, PeerClosedError } from './reader.js';
import { CACHING_SHA2, CLEAR_PASSWORD, clearPasswordFrom, makeScramble, rsaDecryptPassword, Sha2 } from './scramble.js';

/**
 * What we offer clients. Deliberately conservative: only flags every MySQL >= 5.7 and MariaDB
 * >= 10.2 target also has, so that what a client negotiates with us can be negotiated
 * upstream unchanged (server bytes are relayed untouched, so both legs must agree on
 * everything that shapes them). No compression, no query attributes, no optional metadata,
 * and no MariaDB extended capabilities (LONG_PASSWORD set = "a MySQL server").
 */
export const OFFERED_CAPABILITIES =
  Cap.LONG_PASSWORD | Cap.FOUND_ROWS | Cap.LONG_FLAG | Cap.CONNECT_WITH_DB | Cap.LOCAL_FILES | Cap.IGNORE_SPACE |
  Cap.PROTOCOL_41 | Cap.INTERACTIVE | Cap.TRANSACTIONS | Cap.SECURE_CONNECTION | Cap.MULTI_STATEMENTS |
  Cap.MULTI_RESULTS | Cap.PS_MULTI_RESULTS | Cap.PLUGIN_AUTH | Cap.CONNECT_ATTRS | Cap.PLUGIN_AUTH_LENENC_CLIENT_DATA |
  Cap.SESSION_TRACK | Cap.DEPRECATE_EOF;

export interface ClientAuthOptions {
  secureContext: SecureContext;
  allowPlaintext: boolean;
  serverVersion: string;
  connectionId: number;
  /** For caching_sha2 full authentication without TLS. */
  rsa: { privateKey: KeyObject; publicKeyPem: string };
}

export interface ClientLogin {
  reader: PacketReader;
  tls: boolean;
  /** The login as typed, e.g. `alice:prod-mysql`. */
  login: string;
  password: string;
  /** The client's flags, limited to what we offered. */
  capabilities: number;
  charset: number;
  maxPacket: number;
  database?: string;
}

/** A refusal to send the client before closing; thrown by the handshake. */
export class ClientRefused extends Error {
  constructor(readonly refusal: MysqlRefusal) {
    super(refusal.message);
    this.name = 'ClientRefused';
  }
}

/** Runs the client handshake up to a cleartext password. `onReader` sees each reader as it is created. */
export async function acceptClient(socket: Socket, opts: ClientAuthOptions, onReader: (r: PacketReader) => void): Promise<ClientLogin> {
  const scramble = makeScramble();
  let reader = new PacketReader(socket, 'client');
  onReader(reader);
  reader.resetSeq();
  reader.write(
    encodeHandshakeV10({
      serverVersion: opts.serverVersion, connectionId: opts.connectionId, scramble, capabilities: OFFERED_CAPABILITIES | Cap.SSL,
      charset: CHARSET_UTF8MB4_GENERAL_CI, status: SERVER_STATUS_AUTOCOMMIT, authPlugin: CACHING_SHA2,
    }),
  );
  let first = decodeClientHandshake((await reader.read()).payload);
  let tls = false;
  if (first.kind === 'ssl') {
    const seq = reader.seq;
    const ahead = reader.detach();
    // The ClientHello often arrives in the same segment as the SSLRequest; the TLS layer reads it from here.
    if (ahead.length) socket.unshift(ahead);
    const secure = await upgrade(socket, opts.secureContext);
    reader = new PacketReader(secure, 'client');
    onReader(reader);
    reader.seq = seq;
    tls = true;
    first = decodeClientHandshake((await reader.read()).payload);
    if (first.kind !== 'response') throw new MysqlDecodeError('MY_BAD_HANDSHAKE', 'Bad handshake', 1043, '08S01');
  } else if (!opts.allowPlaintext) {
    throw new ClientRefused(refusals.tlsRequired());
  }
  const password = await authenticate(reader, first, scramble, tls, opts);
  const login: ClientLogin = {
    reader, tls, login: first.user, password,
    capabilities: first.capabilities & (OFFERED_CAPABILITIES | Cap.SSL), charset: first.charset, maxPacket: first.maxPacket,
  };
  if (first.database) login.database = first.database;
  return login;
}

function upgrade(socket: Socket, secureContext: SecureContext): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = new TLSSocket(socket, { isServer: true, secureContext });
    // Later errors (a reset after a failed handshake) are reported through 'close'.
    secure.on('error', () => {});
    const fail = (err: Error): void => reject(new PeerClosedError(`client TLS handshake failed: ${err.message}`, err));
    const closed = (): void => fail(new Error('closed'));
    secure.once('error', fail);
    secure.once('close', closed);
    secure.once('secure', () => {
      secure.off('error', fail);
      secure.off('close', closed);
      resolve(secure);
    });
  });
}

async function authenticate(reader: PacketReader, resp: HandshakeResponse, scramble: Buffer, tls: boolean, opts: ClientAuthOptions): Promise<string> {
  const plugin = resp.capabilities & Cap.PLUGIN_AUTH ? (resp.authPlugin ?? '') : '';
  if (plugin === CLEAR_PASSWORD) return nonEmpty(clearPasswordFrom(resp.authResponse));
  if (plugin !== CACHING_SHA2) {
    if (!(resp.capabilities & Cap.PLUGIN_AUTH)) throw new ClientRefused(refusals.unsupportedAuth(plugin || 'pre-plugin authentication'));
    reader.write(encodeAuthSwitch(CACHING_SHA2, Buffer.concat([scramble, Buffer.from([0])])));
    const answer = (await reader.read()).payload;
    // A client that cannot load caching_sha2 closes or answers with nothing usable.
    if (answer.length !== 0 && answer.length !== 32) throw new ClientRefused(refusals.unsupportedAuth(plugin));
  }
  // Whatever scramble the client computed is useless to us: ask for the password itself.
  reader.write(encodeAuthMoreData(Buffer.from([Sha2.PERFORM_FULL_AUTH])));
  const reply = (await reader.read()).payload;
  if (tls || !(reply.length === 1 && reply[0] === Sha2.REQUEST_PUBLIC_KEY)) return nonEmpty(clearPasswordFrom(reply));
  reader.write(encodeAuthMoreData(Buffer.from(opts.rsa.publicKeyPem)));
  const blob = (await reader.read()).payload;
  const password = rsaDecryptPassword(blob, scramble, opts.rsa.privateKey);
  if (password === undefined) throw new MysqlDecodeError('MY_BAD_PACKET', 'the RSA-encrypted password does not decrypt', 1045, '28000');
  return nonEmpty(password);
}

function nonEmpty(password: string): string {
  if (!password) throw new ClientRefused(refusals.noPassword());
  return password;
}
