/**
 * The one TCP accept loop every door uses. It owns the listening socket and every client
 * socket until the door says the connection is established (a live session the broker now
 * ends); until then a handshake timer runs and closing the listener destroys the socket.
 *
 * Failure semantics: a bind error rejects `serveTcp` (the gateway reports it and does not
 * start that door); an error on one connection never stops the accept loop — the door's
 * handler is caught, logged, and only that socket is destroyed.
 */
import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { Listener, ListenerConfig } from '../../src/broker/adapter.js';
import { ValidationError } from '../../src/core/errors.js';
import type { Logger } from '../../src/core/log.js';
import { isLoopback } from '../../src/core/net.js';

export interface TcpOptions {
  /**
   * Simultaneous client connections, logged in or not. Past it, up to BUSY_HEADROOM more are
   * taken in at a time only to be refused on the door's own wire (`DoorConnection.overLimit`);
   * past those, a new connection is closed at once.
   */
  maxConnections: number;
  /** From accept to `established()`; then the handler's own timeout is called (default: destroy). */
  handshakeTimeoutMs: number;
}

/** One accepted client connection, as the door's handler sees it. */
export interface DoorConnection {
  readonly socket: Socket;
  /** `ip:port` (IPv6 as `[ip]:port`), for refusals and the audit. */
  readonly client: string;
  /**
   * The listener is at `maxConnections`: the door refuses this connection with
   * `too_many_connections` at the first point its protocol can say so (audited like any other
   * refusal), and never signs anyone in on it.
   */
  readonly overLimit: boolean;
  /** The login is done: the handshake timer stops, and closing the listener no longer ends it. */
  established(): void;
  /** What to do when the handshake timer fires instead of a bare destroy (e.g. send an error first). */
  onHandshakeTimeout(fn: () => void): void;
  /**
   * The door holds this connection on its own from here (the native data path keeps a copy of
   * the descriptor), so `socket` may go: the connection counts against `maxConnections` until
   * the returned release is called (once is enough; more calls do nothing).
   */
  keep(): () => void;
}

export type DoorHandler = (conn: DoorConnection) => Promise<void> | void;

const noop = (): void => undefined;

/** Connections over `maxConnections` refused on the door's wire at once, at most (per listener or data-path worker). */
export const BUSY_HEADROOM = 32;

/** `ip:port` of a socket's peer. */
export function clientAddress(socket: Socket): string {
  const ip = socket.remoteAddress ?? '?';
  return `${ip.includes(':') ? `[${ip}]` : ip}:${socket.remotePort ?? 0}`;
}

/** Plaintext client connections only on a loopback listener: checked once, for every door. */
export function assertPlaintextAllowed(name: string, config: Pick<ListenerConfig, 'allowPlaintext' | 'host'>): void {
  if (config.allowPlaintext && !isLoopback(config.host)) {
    throw new ValidationError('allowPlaintext', `plaintext ${name} connections are allowed only on a loopback listener, not ${config.host}`);
  }
}

export async function serveTcp(config: Pick<ListenerConfig, 'host' | 'port' | 'dataPath'>, log: Logger, name: string, handler: DoorHandler, opts: TcpOptions): Promise<Listener> {
  const handshaking = new Set<Socket>();
  // Connections held: open sockets, and those a door kept after their socket went (keep()).
  // In a data-path worker, handed connections in turn, the limit is this worker's share.
  const limit = config.dataPath ? Math.ceil(opts.maxConnections / config.dataPath.count) : opts.maxConnections;
  // `held`: connections counted against the limit; `refusing`: over the limit, being refused on the door's wire.
  const count = { held: 0, refusing: 0 };
  // Its own scope: a kept release holds no socket.
  const take = (which: keyof typeof count): (() => void) => {
    count[which]++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      count[which]--;
      config.dataPath?.released();
    };
  };
  let dropped = 0;
  const drop = (client: string): void => {
    if (dropped++ % 1000 === 0) log.warn({ client, maxConnections: opts.maxConnections, dropped }, `${name}: over maxConnections, and ${BUSY_HEADROOM} refusals under way: connection closed unanswered`);
  };
  const onConnection = (socket: Socket): void => {
    const overLimit = count.held >= limit;
    if (overLimit && count.refusing >= BUSY_HEADROOM) {
      // Even a refusal costs a handshake on some doors: past the headroom, a bare close.
      drop(clientAddress(socket));
      socket.destroy();
      return void config.dataPath?.released();
    }
    const release = take(overLimit ? 'refusing' : 'held');
    let kept = false;
    socket.once('close', () => {
      if (!kept) release();
    });
    socket.on('error', (err) => log.debug({ err }, `${name} client socket error`));
    handshaking.add(socket);
    let onTimeout = (): void => void socket.destroy();
    const timer = setTimeout(() => onTimeout(), opts.handshakeTimeoutMs);
    timer.unref();
    const done = (): void => {
      clearTimeout(timer);
      handshaking.delete(socket);
      // The door's timeout handler holds its handshake state (parsed startup, buffers read
      // ahead); an established session no longer needs it, so it is not kept alive from here.
      onTimeout = noop;
    };
    socket.once('close', done);
    const conn: DoorConnection = {
      socket,
      client: clientAddress(socket),
      overLimit,
      established: done,
      onHandshakeTimeout: (fn) => (onTimeout = fn),
      keep: () => {
        kept = true;
        return release;
      },
    };
    try {
      Promise.resolve(handler(conn)).catch((err: unknown) => {
        log.error({ err, client: conn.client }, `${name} connection handler failed`);
        socket.destroy();
      });
    } catch (err) {
      log.error({ err, client: conn.client }, `${name} connection setup failed`);
      socket.destroy();
    }
  };
  const endHandshakes = (): void => {
    // Connections still in their handshake are not sessions yet, so nobody else would end them.
    for (const s of handshaking) s.destroy();
  };
  if (config.dataPath) {
    // A data-path worker: the primary accepts, this process serves what it is handed.
    // TCP_NODELAY came with the descriptor: the primary's server set it.
    const taking = config.dataPath.accept(onConnection);
    return {
      address: config.dataPath.address,
      async close() {
        taking.stop();
        endHandshakes();
      },
    };
  }
  const server = createServer({ noDelay: true }, onConnection);
  // Node's own check refuses before a socket object exists; it counts sockets only, so `held`
  // (which counts kept connections too) is checked as well. The headroom lets the doors refuse
  // the connections over the limit on their own wire.
  server.maxConnections = opts.maxConnections + BUSY_HEADROOM;
  // Node closes those past its own count before a socket exists; they are counted alike.
  server.on('drop', (d?: { remoteAddress?: string; remotePort?: number }) => drop(`${d?.remoteAddress ?? '?'}:${d?.remotePort ?? 0}`));
  server.on('error', (err) => log.error({ err }, `${name} listener error`));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  log.info({ address: `${address.address}:${address.port}` }, `${name} gateway listening`);
  return {
    address,
    async close() {
      // Stops accepting at once (the callback would wait for live sessions, which the broker ends).
      server.close();
      endHandshakes();
    },
  };
}

/** A positive number option, or its default; validated once at construction. */
export function positive(field: string, v: number | undefined, dflt: number, allowZero = false): number {
  if (v === undefined) return dflt;
  if (!Number.isFinite(v) || v < 0 || (!allowZero && v === 0)) throw new ValidationError(field, 'must be a positive number');
  return v;
}
