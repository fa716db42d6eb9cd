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
import type { Duplex } from 'node:stream';
import { TLSSocket, type SecureContext } from 'node:tls';
import { refusals, type Refusal } from '../../src/broker/refusals.js';
import { Cap, CLIENT_MYSQL, encodeAuthMoreData, encodeAuthSwitch, MysqlDecodeError } from './codec.js';
import { decodeClientHandshake, encodeHandshakeV10, type HandshakeResponse } from './handshake.js';
import type { Greeting } from './profile.js';
import { PacketReader, PeerClosedError } from './reader.js';
import type { NativeLoop } from '../shared/native.js';
import { CACHING_SHA2, CLEAR_PASSWORD, clearPasswordFrom, makeScramble, rsaDecryptPassword, Sha2 } from './scramble.js';

/** An RSA key pair for caching_sha2's password encryption. */
export interface RsaKeys {
  privateKey: KeyObject;
  publicKeyPem: string;
}

export interface ClientAuthOptions {
  secureContext: SecureContext;
  allowPlaintext: boolean;
  /** The server this connection is greeted as (learned from the targets, see profile.ts). */
  greeting: Greeting;
  connectionId: number;
  /** For caching_sha2 full authentication without TLS. */
  /** The RSA key pair plaintext caching_sha2 clients encrypt their password to (made on first use). */
  rsa: () => Promise<RsaKeys>;
  /** The native data path (shared/native.ts) with the door's TLS context: the addon runs the client's TLS. */
  native?: { loop: NativeLoop; context: object };
  /**
   * The listener is over maxConnections: refused (ER_CON_COUNT_ERROR) once the client's
   * handshake response is in, after TLS, where the client can trust the error (MariaDB's
   * client calls an ERR before TLS unverifiable); never signed in.
   */
  overLimit?: boolean;
  /** Each step of the client's side of the login as it ends, for the debug log's `login timings`. */
  onStep?: (step: ClientStep) => void;
}

/**
 * The client's steps: `sslRequest` (the greeting until the client's first packet), `tls` (the
 * handshake), `response` (its handshake response over TLS), `auth` (the auth exchange until the
 * password; not `password`, a key the log redacts).
 */
export type ClientStep = 'sslRequest' | 'tls' | 'response' | 'auth';

export interface ClientLogin {
  reader: PacketReader;
  tls: boolean;
  /** The login as typed, e.g. `alice:prod-mysql`. */
  login: string;
  password: string;
  /** The client's flags, limited to what we offered. */
  capabilities: number;
  /** The client's MariaDB extended flags, limited to what we offered (0 when it answered as a MySQL client). */
  mariadbCapabilities: number;
  charset: number;
  maxPacket: number;
  database?: string;
}

/** How a client turns TLS back on; what a `tls_required` refusal tells the user to do. */
const TLS_HOW = 'drop --skip-ssl / set ssl in the driver (mariadb: --ssl-ca=ca.pem --ssl-verify-server-cert)';

const cannotAuthenticate = (plugin: string): Refusal =>
  refusals.unsupportedAuth(`the client cannot authenticate with ${plugin.slice(0, 64)}; it needs caching_sha2_password or mysql_clear_password.`);

/** A refusal to send the client before closing; thrown by the handshake. */
export class ClientRefused extends Error {
  /** `why`: the audit row's detail (default: the refusal's sentence). */
  constructor(readonly refusal: Refusal, why?: string) {
    super(why ?? refusal.message);
    this.name = 'ClientRefused';
  }
}

/**
 * Runs the client handshake up to a cleartext password (possibly empty: the login path
 * refuses that). `onReader` sees each reader as it is created.
 */
export async function acceptClient(socket: Socket, opts: ClientAuthOptions, onReader: (r: PacketReader) => void): Promise<ClientLogin> {
  const scramble = makeScramble();
  let reader = new PacketReader(socket, 'client');
  onReader(reader);
  reader.resetSeq();
  const g = opts.greeting;
  reader.write(encodeHandshakeV10({ ...g, connectionId: opts.connectionId, scramble, authPlugin: CACHING_SHA2 }));
  let first = decodeClientHandshake((await reader.read()).payload);
  opts.onStep?.('sslRequest');
  let tls = false;
  if (first.kind === 'ssl') {
    const seq = reader.seq;
    const ahead = reader.detach();
    // The ClientHello often arrives in the same segment as the SSLRequest; the TLS layer reads it from here.
    let secure: Duplex;
    if (opts.native) secure = await nativeUpgrade(socket, opts.native, ahead);
    else {
      if (ahead.length) socket.unshift(ahead);
      secure = await upgrade(socket, opts.secureContext);
    }
    opts.onStep?.('tls');
    reader = new PacketReader(secure, 'client');
    onReader(reader);
    reader.seq = seq;
    tls = true;
    first = decodeClientHandshake((await reader.read()).payload);
    opts.onStep?.('response');
    if (first.kind !== 'response') throw new MysqlDecodeError('MY_BAD_HANDSHAKE', 'Bad handshake', 1043, '08S01');
  } else if (!opts.allowPlaintext) {
    throw new ClientRefused(refusals.tlsRequired(TLS_HOW));
  }
  if (opts.overLimit) throw new ClientRefused(refusals.tooManyConnections(), 'over maxConnections');
  const password = await authenticate(reader, first, scramble, tls, opts);
  opts.onStep?.('auth');
  const login: ClientLogin = {
    reader, tls, login: first.user, password,
    capabilities: (first.capabilities & g.capabilities) >>> 0,
    mariadbCapabilities: g.capabilities & CLIENT_MYSQL ? 0 : (first.mariadbCapabilities & g.mariadbCapabilities) >>> 0,
    charset: first.charset, maxPacket: first.maxPacket,
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

/** The addon takes the socket and runs the handshake; the login then reads and writes through it. */
async function nativeUpgrade(socket: Socket, native: { loop: NativeLoop; context: object }, ahead: Buffer): Promise<Duplex> {
  const ep = native.loop.acceptTlsAfter(socket, native.context, ahead);
  ep.on('error', () => {});
  try {
    await ep.ready;
  } catch (err) {
    ep.destroy();
    throw new PeerClosedError(`client TLS handshake failed: ${err instanceof Error ? err.message : String(err)}`);
  }
  return ep;
}

async function authenticate(reader: PacketReader, resp: HandshakeResponse, scramble: Buffer, tls: boolean, opts: ClientAuthOptions): Promise<string> {
  const plugin = resp.capabilities & Cap.PLUGIN_AUTH ? (resp.authPlugin ?? '') : '';
  if (plugin === CLEAR_PASSWORD) return clearPasswordFrom(resp.authResponse);
  let token = resp.authResponse;
  if (plugin !== CACHING_SHA2) {
    if (!(resp.capabilities & Cap.PLUGIN_AUTH)) throw new ClientRefused(cannotAuthenticate(plugin || 'pre-plugin authentication'));
    reader.write(encodeAuthSwitch(CACHING_SHA2, Buffer.concat([scramble, Buffer.from([0])])));
    token = (await reader.read()).payload;
    // A client that cannot load caching_sha2 closes or answers with nothing usable.
    if (token.length !== 0 && token.length !== 32) throw new ClientRefused(cannotAuthenticate(plugin));
  }
  // An empty token is an empty password, and the client then waits for the verdict, not for
  // a question: the login path gives it (an empty password never signs in).
  if (token.length === 0) return '';
  // Whatever scramble the client computed is useless to us: ask for the password itself.
  reader.write(encodeAuthMoreData(Buffer.from([Sha2.PERFORM_FULL_AUTH])));
  const reply = (await reader.read()).payload;
  if (tls || !(reply.length === 1 && reply[0] === Sha2.REQUEST_PUBLIC_KEY)) return clearPasswordFrom(reply);
  const rsa = await opts.rsa();
  reader.write(encodeAuthMoreData(Buffer.from(rsa.publicKeyPem)));
  const blob = (await reader.read()).payload;
  const password = rsaDecryptPassword(blob, scramble, rsa.privateKey);
  if (password === undefined) throw new MysqlDecodeError('MY_BAD_PACKET', 'the RSA-encrypted password does not decrypt', 1045, '28000');
  return password;
}
