import type { AddressInfo } from 'node:net';
import type { Logger } from '../core/log.js';
import type { Protocol, TerminationReason } from '../core/model.js';
import type { GatewayPort, PortProvider } from './port.js';
import type { Provisioner } from './provisioner.js';

/** What a listener needs besides its address: the broker and the gateway's TLS and host keys. */
export interface ListenerConfig {
  host: string;
  port: number;
  /** Hands the door its GatewayPort; the broker in production, nothing wider. */
  broker: PortProvider;
  log: Logger;
  tls: { cert: string; key: string; ca: string };
  /** SSH host key (PKCS#1 PEM). */
  sshHostKey?: string;
  /** Plaintext (no TLS) client connections allowed because the listener is on loopback. */
  allowPlaintext?: boolean;
  /** The browser door: apps live at `<resource>.<appsDomain>`; the vault's address for its pages. */
  http?: { appsDomain: string; vaultUrl?: string };
}

export interface Listener {
  readonly address: AddressInfo;
  /** Stops accepting; live sessions are ended by the broker, not here. */
  close(): Promise<void>;
}

/**
 * One per protocol. `listen` binds and starts accepting; a bind error rejects (the caller
 * reports it and the gateway does not start that listener). Errors on one connection
 * never stop the accept loop: the adapter closes that connection and keeps serving.
 */
export interface ProtocolAdapter {
  readonly protocol: Protocol;
  listen(config: ListenerConfig): Promise<Listener>;
  /** Ephemeral accounts and elevation on this door's targets (see provisioner.ts); absent: the door has none. */
  provisioner?(port: GatewayPort): Provisioner;
}

/**
 * The adapter's side of a live session. The broker, not the adapter, decides when a session
 * ends; it calls `close` once, with the reason and a sentence for the user. `close` says
 * goodbye in the protocol's own way (SSH message + disconnect, PostgreSQL FATAL 57P01,
 * MySQL ERR, LDAP notice of disconnection) and then destroys the client socket.
 */
export interface SessionHandle {
  warn(message: string): void;
  close(reason: TerminationReason, message: string): void;
}
