/**
 * The SSH gateway: `ssh -p 2222 alice:prod-web@gateway`. The shared TCP listener owns every
 * client socket (teardown must be able to destroy them); ssh2 speaks the protocol on sockets
 * handed to it.
 */
import type { Socket } from 'node:net';
import ssh2, { type Connection } from 'ssh2';
import type { Listener, ListenerConfig, ProtocolAdapter } from '../../src/broker/adapter.js';
import type { GatewayPort } from '../../src/broker/port.js';
import type { Provisioner } from '../../src/broker/provisioner.js';
import { ValidationError } from '../../src/core/errors.js';
import { doorFor } from '../registry.js';
import { positive, serveTcp } from '../shared/listener.js';
import { socketOf } from './codec.js';
import { SshProvisioner } from './provision.js';
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
    const { log } = config;
    const port = config.broker.portFor({ protocol: 'ssh', loginExample: doorFor('ssh')!.loginExample }, log);
    const ssh = new ssh2.Server({ hostKeys: [config.sshHostKey, ...this.extraHostKeys], ident: 'Gatehouse' });
    const sessions = new WeakMap<Socket, SshSession>();
    ssh.on('connection', (conn: Connection) => {
      const socket = socketOf(conn);
      const s = socket && sessions.get(socket);
      if (s) s.attach(conn);
      else conn.end();
    });
    ssh.on('error', (err: Error) => log.warn({ err }, 'ssh server error'));

    return serveTcp(config, log, 'ssh', (door) => {
      sessions.set(door.socket, new SshSession(door, port, this.session));
      ssh.injectSocket(door.socket);
    }, {
      maxConnections: this.maxConnections,
      // The session runs sshd's two timers itself (to the first attempt, then LoginGraceTime);
      // the listener's is the backstop for both.
      handshakeTimeoutMs: this.session.handshakeTimeoutMs + this.session.loginGraceMs,
    });
  }

  /** Temporary Linux accounts and group elevation, reached as the door reaches the target (README: "Ephemeral accounts and elevation"). */
  provisioner(port: GatewayPort): Provisioner {
    return new SshProvisioner(port, { connectTimeoutMs: this.session.upstreamTimeoutMs });
  }
}
