/**
 * The SSH gateway: `ssh -p 2222 alice:prod-web@gateway`. The adapter owns the TCP listener
 * and every client socket (teardown must be able to destroy them); ssh2 speaks the protocol
 * on sockets handed to it.
 */
import { createServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import ssh2, { type Connection } from 'ssh2';
import type { Listener, ListenerConfig, ProtocolAdapter } from '../../src/broker/adapter.js';
import { ValidationError } from '../../src/core/errors.js';
import { SshSession, type SshSessionOptions } from './session.js';

export interface SshAdapterOptions {
  /** A connection that has not asked to authenticate by then is dropped (default 20 s). */
  handshakeTimeoutMs?: number;
  /** A connection that has not finished logging in this long after its first attempt is dropped (default 120 s, sshd's LoginGraceTime). */
  loginGraceMs?: number;
  /** Failed key or password attempts before the connection is dropped (default 6, like sshd's MaxAuthTries). */
  maxAuthAttempts?: number;
  /** How long the gateway waits for the target's SSH login (default 15 s). */
  upstreamTimeoutMs?: number;
  /** Simultaneous client connections, logged in or not (default 1000). */
  maxConnections?: number;
  /** Extra host keys (PEM or OpenSSH private keys) besides ListenerConfig.sshHostKey, e.g. an ed25519 one. */
  extraHostKeys?: string[];
}

const DEFAULTS = { handshakeTimeoutMs: 20_000, loginGraceMs: 120_000, maxAuthAttempts: 6, upstreamTimeoutMs: 15_000, maxConnections: 1000 };

function positive(field: string, v: number | undefined, fallback: number): number {
  if (v === undefined) return fallback;
  if (!Number.isFinite(v) || v <= 0) throw new ValidationError(field, 'must be a positive number');
  return v;
}

export class SshAdapter implements ProtocolAdapter {
  readonly protocol = 'ssh' as const;
  private readonly session: SshSessionOptions;
  private readonly maxConnections: number;
  private readonly extraHostKeys: string[];

  constructor(opts: SshAdapterOptions = {}) {
    this.session = {
      handshakeTimeoutMs: positive('handshakeTimeoutMs', opts.handshakeTimeoutMs, DEFAULTS.handshakeTimeoutMs),
      loginGraceMs: positive('loginGraceMs', opts.loginGraceMs, DEFAULTS.loginGraceMs),
      maxAuthAttempts: positive('maxAuthAttempts', opts.maxAuthAttempts, DEFAULTS.maxAuthAttempts),
      upstreamTimeoutMs: positive('upstreamTimeoutMs', opts.upstreamTimeoutMs, DEFAULTS.upstreamTimeoutMs),
      lingerMs: 100,
    };
    this.maxConnections = positive('maxConnections', opts.maxConnections, DEFAULTS.maxConnections);
    this.extraHostKeys = opts.extraHostKeys ?? [];
  }

  async listen(config: ListenerConfig): Promise<Listener> {
    if (!config.sshHostKey) throw new ValidationError('sshHostKey', 'the SSH listener needs the gateway host key');
    const { broker, log } = config;
    const ssh = new ssh2.Server({ hostKeys: [config.sshHostKey, ...this.extraHostKeys], ident: 'Gatehouse' });
    const sessions = new Map<Socket, SshSession>();
    ssh.on('connection', (conn: Connection) => {
      const socket = (conn as unknown as { _sock: Socket })._sock;
      const s = sessions.get(socket);
      if (s) s.attach(conn);
      else conn.end();
    });
    ssh.on('error', (err: Error) => log.warn({ err }, 'ssh server error'));

    const server: NetServer = createServer({ noDelay: true }, (socket) => {
      try {
        const s = new SshSession(socket, broker, log, this.session);
        sessions.set(socket, s);
        socket.once('close', () => sessions.delete(socket));
        ssh.injectSocket(socket);
      } catch (err) {
        log.error({ err }, 'ssh connection setup failed');
        socket.destroy();
      }
    });
    server.maxConnections = this.maxConnections;
    server.on('error', (err) => log.error({ err }, 'ssh listener error'));

    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      server.once('error', onError);
      server.listen(config.port, config.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    log.info({ address: `${address.address}:${address.port}` }, 'ssh gateway listening');
    return {
      address,
      close: async () => {
        // Stops accepting at once; the callback would wait for live sessions, which the broker ends.
        server.close();
        for (const [socket, s] of sessions) if (!s.isLive) socket.destroy();
      },
    };
  }
}
