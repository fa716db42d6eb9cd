import type { AddressInfo, Socket } from 'node:net';
import type { Logger } from '../core/log.js';
import type { Protocol, TerminationReason } from '../core/model.js';
import type { GatewayPort, PortProvider } from './port.js';
import type { Provisioner } from './provisioner.js';

/** The length of a listener's TLS ticket key (ListenerConfig `tls.ticketKey`): OpenSSL's key name, HMAC key and AES key, 16 + 32 + 32 bytes. */
export const TICKET_KEY_BYTES = 80;

/** What a listener needs besides its address: the broker and the gateway's TLS and host keys. */
export interface ListenerConfig {
  host: string;
  port: number;
  /** Hands the door its GatewayPort; the broker in production, nothing wider. */
  broker: PortProvider;
  log: Logger;
  /**
   * `rsaKey`: an RSA private key (PEM) for clients that encrypt to the gateway (MySQL without
   * TLS), src/pki's `rsaKeyPem`. `ticketKey`: the secret that seals the TLS session tickets a door
   * issues (80 random bytes, base64), so that one listener's tickets resume in every process that
   * serves it (the data-path primary gives its workers one per listener); absent, each process
   * seals with a random key of its own.
   */
  tls: { cert: string; key: string; ca: string; rsaKey?: string; ticketKey?: string };
  /** SSH host key (PKCS#1 PEM). */
  sshHostKey?: string;
  /** Plaintext (no TLS) client connections allowed because the listener is on loopback. */
  allowPlaintext?: boolean;
  /** The browser door: apps live at `<resource>.<appsDomain>`; the vault's address for its pages. */
  http?: { appsDomain: string; vaultUrl?: string };
  /**
   * Set when the listener runs in a data-path worker (src/dataplane): the primary process
   * owns the listening socket and hands each accepted connection to one worker.
   */
  dataPath?: DataPathWorker;
}

/**
 * A door's view of the data-path worker it runs in. Sockets arrive from the primary instead
 * of a bound listener; state one connection needs from another (a PostgreSQL CancelRequest
 * naming a session in another worker) travels as door messages between workers.
 */
export interface DataPathWorker {
  /** This worker's number, 0 ≤ index < count. */
  readonly index: number;
  readonly count: number;
  /** The address the primary listens on, for the door's Listener. */
  readonly address: AddressInfo;
  /** Starts taking connections; `stop` ends that (connections already handed over stay). */
  accept(onSocket: (socket: Socket) => void): { stop(): void };
  /**
   * A connection handed to this worker no longer counts against the listener's limit (refused,
   * closed, or a kept connection released): once per connection. The primary hands new
   * connections to the worker that holds the fewest.
   */
  released(): void;
  /** Sends a door message to worker `to` of the same listener (it arrives at that worker's `onMessage`). */
  send(to: number, payload: unknown): void;
  onMessage(fn: (payload: unknown) => void): void;
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
  /** The options it was made with, for a data-path worker to make the same door (src/dataplane). */
  readonly options?: object;
  /**
   * Which of its `stats` count live things (a gauge, such as PostgreSQL's live cancel keys)
   * rather than events: a data-path worker that dies takes its share of a gauge with it.
   */
  readonly gauges?: readonly string[];
}

/**
 * The adapter's side of a live session. The broker, not the adapter, decides when a session
 * ends; it calls `close` once, with the reason and a sentence for the user. `close` says
 * goodbye in the protocol's own way (SSH message + disconnect, PostgreSQL FATAL 57P01,
 * MySQL ERR, LDAP notice of disconnection) and then destroys the client socket.
 */
export interface SessionHandle {
  warn(message: string): void;
  /**
   * A handle whose session lives in another process (a data-path worker) returns a promise:
   * the session's byte counts are final when it settles, and the broker records them then.
   */
  close(reason: TerminationReason, message: string): void | Promise<void>;
}
