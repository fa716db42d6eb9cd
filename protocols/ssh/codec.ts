/**
 * The SSH wire details ssh2 does not expose: OpenSSH host key fingerprints, a key blob's
 * type, and the few raw packets the gateway must send itself (a userauth banner at any
 * point of authentication, a DISCONNECT that carries a description, a channel-open failure
 * with a reason). Everything that reaches into ssh2's internals lives here, so an
 * ssh2 upgrade has one file to check.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Client, Connection } from 'ssh2';

const require = createRequire(import.meta.url);
const ssh2Utils = require('ssh2/lib/protocol/utils.js') as {
  sendPacket(proto: ProtocolInternals, packet: Buffer, bypass?: boolean): boolean;
};

export const MSG = {
  DISCONNECT: 1,
  USERAUTH_BANNER: 53,
  CHANNEL_OPEN: 90,
} as const;

export const DISCONNECT = {
  PROTOCOL_ERROR: 2,
  BY_APPLICATION: 11,
  TOO_MANY_CONNECTIONS: 12,
  AUTH_CANCELLED_BY_USER: 13,
  NO_MORE_AUTH_METHODS_AVAILABLE: 14,
} as const;

export const OPEN_FAILURE = {
  ADMINISTRATIVELY_PROHIBITED: 1,
  CONNECT_FAILED: 2,
  UNKNOWN_CHANNEL_TYPE: 3,
  RESOURCE_SHORTAGE: 4,
} as const;

/** What ssh2's Protocol object offers under the hood (version 1.17). */
export interface ProtocolInternals {
  _packetRW: {
    write: {
      allocStart: number;
      allocStartKEX: number;
      alloc(payloadLen: number, force?: boolean): Buffer;
      finalize(packet: Buffer, force?: boolean): Buffer;
    };
  };
  _handlers: Record<string, ((...args: never[]) => unknown) | undefined>;
  channelOpenFail(remote: number, reason: number, desc: string): void;
}

/** The CHANNEL_OPEN message as ssh2's parser hands it to the connection's handler. */
export interface ChannelOpenInfo {
  type: string;
  sender: number;
  window: number;
  packetSize: number;
  data: Record<string, unknown>;
}

export function protocolOf(conn: Connection | Client): ProtocolInternals {
  return (conn as unknown as { _protocol: ProtocolInternals })._protocol;
}

export function socketOf(conn: Connection | Client): Socket | undefined {
  return (conn as unknown as { _sock?: Socket })._sock;
}

/** Sends one message (payload starts with the message number); `kex` allows it mid key exchange. */
export function sendRaw(proto: ProtocolInternals, payload: Buffer, kex = false): void {
  const w = proto._packetRW.write;
  const p = kex ? w.allocStartKEX : w.allocStart;
  const packet = w.alloc(payload.length, kex);
  packet.set(payload, p);
  ssh2Utils.sendPacket(proto, w.finalize(packet, kex), kex);
}

/** Encodes SSH wire values: uint32 numbers, strings, raw bytes. */
export function encode(...parts: Array<number | string | Buffer>): Buffer {
  const bufs = parts.map((v) => {
    if (typeof v === 'number') {
      const b = Buffer.allocUnsafe(4);
      b.writeUInt32BE(v >>> 0, 0);
      return b;
    }
    const s = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    const len = Buffer.allocUnsafe(4);
    len.writeUInt32BE(s.length, 0);
    return Buffer.concat([len, s]);
  });
  return Buffer.concat(bufs);
}

/**
 * SSH_MSG_USERAUTH_BANNER: OpenSSH prints it on stderr during authentication, BatchMode or
 * not (only LogLevel QUIET hides it), which makes it the place for a denial's reason.
 */
export function sendBanner(proto: ProtocolInternals, text: string): void {
  const body = text.endsWith('\n') ? text.replace(/\r?\n/g, '\r\n') : `${text.replace(/\r?\n/g, '\r\n')}\r\n`;
  sendRaw(proto, Buffer.concat([Buffer.from([MSG.USERAUTH_BANNER]), encode(body, '')]));
}

/** SSH_MSG_DISCONNECT with a description; OpenSSH shows it as "Received disconnect from …: N: text". */
export function sendDisconnect(proto: ProtocolInternals, reason: number, text: string): void {
  sendRaw(proto, Buffer.concat([Buffer.from([MSG.DISCONNECT]), encode(reason, oneLine(text), '')]), true);
}

/** OpenSSH prints at most ~400 bytes of a description and strips control characters. */
export function oneLine(text: string, max = 380): string {
  const flat = text.replace(/[\r\n]+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

/**
 * Lets the gateway see every CHANNEL_OPEN first. The hook either answers it itself (maybe
 * later, through `passOn` to let ssh2 continue) and returns true, or returns false to let
 * ssh2 handle it as usual. ssh2's own refusals carry no reason text, and the user should
 * read why a tunnel was refused.
 */
export function interceptChannelOpen(
  conn: Connection,
  hook: (info: ChannelOpenInfo, proto: ProtocolInternals, passOn: () => void) => boolean,
): void {
  const proto = protocolOf(conn);
  const original = proto._handlers.CHANNEL_OPEN as ((p: ProtocolInternals, info: ChannelOpenInfo) => void) | undefined;
  if (!original) throw new Error('ssh2 internals changed: no CHANNEL_OPEN handler');
  proto._handlers.CHANNEL_OPEN = ((p: ProtocolInternals, info: ChannelOpenInfo) => {
    if (!hook(info, p, () => original(p, info))) original(p, info);
  }) as never;
}

/** OpenSSH's `SHA256:` fingerprint of a public key blob (base64 without padding). */
export function fingerprint(keyBlob: Buffer): string {
  return `SHA256:${createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '')}`;
}

/** A public key blob's algorithm name (its first SSH string), e.g. `ssh-ed25519`. */
export function keyTypeOf(blob: Buffer): string | undefined {
  if (blob.length < 4) return undefined;
  const len = blob.readUInt32BE(0);
  if (len === 0 || len > 64 || 4 + len > blob.length) return undefined;
  return blob.toString('latin1', 4, 4 + len);
}

/** ssh2's channel limits (lib/Channel.js), used for channels the gateway opens itself. */
const MAX_WINDOW = 2 * 1024 * 1024;
const PACKET_SIZE = 32 * 1024;

/**
 * Opens an `auth-agent@openssh.com` channel to the user's client (agent forwarding). ssh2's
 * server can open forwarded-tcpip and x11 channels but not this one; it is the same dance.
 */
export function openAgentChannel(conn: Connection, cb: (err: Error | undefined, stream?: Duplex) => void): void {
  const c = conn as unknown as {
    _chanMgr: { add(v: unknown): number };
    _protocol: ProtocolInternals & { openssh_authAgent(chan: number, window: number, packet: number): void };
  };
  const wrapper = Object.assign((err: Error | undefined, stream?: Duplex) => cb(err, stream), { type: 'auth-agent@openssh.com' });
  const local = c._chanMgr.add(wrapper);
  if (local === -1) {
    cb(new Error('no free channels'));
    return;
  }
  c._protocol.openssh_authAgent(local, MAX_WINDOW, PACKET_SIZE);
}
