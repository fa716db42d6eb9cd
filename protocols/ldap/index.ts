import { createSecureContext } from 'node:tls';
import type { Listener, ListenerConfig, ProtocolAdapter } from '../../src/broker/adapter.js';
import type { GatewayPort } from '../../src/broker/port.js';
import type { Provisioner } from '../../src/broker/provisioner.js';
import { ValidationError } from '../../src/core/errors.js';
import type { Resource } from '../../src/core/model.js';
import { DOORS } from '../registry.js';
import { resolveDatabaseOptions, type DatabaseAdapterOptions, type ResolvedDatabaseOptions } from '../shared/database-options.js';
import { assertPlaintextAllowed, positive, serveTcp } from '../shared/listener.js';
import { parseDn } from './dn.js';
import { LdapProvisioner } from './provision.js';
import { LdapConnection, type DirectoryPolicy, type LdapContext } from './session.js';
import type { LdapTarget, LdapTransport } from './upstream.js';

export interface LdapAdapterOptions extends Omit<DatabaseAdapterOptions, 'auditSqlLimit'> {
  /** Simultaneous client connections per listener, bound or not (default 1000). */
  maxConnections?: number;
  /** Largest message before a successful bind (default 16 KiB): a bind with a ticket is small. */
  anonymousMessageLimit?: number;
  /** Largest message from a bound client (default 4 MiB). */
  messageLimit?: number;
  /** Largest message from the directory (default 16 MiB: entries with photos and certificates). */
  directoryMessageLimit?: number;
}

const LOGIN_EXAMPLE = DOORS.find((d) => d.name === 'ldap')!.loginExample;
/** The standard LDAPS port: a target there speaks TLS from the first byte unless its resource says otherwise. */
const LDAPS_PORT = 636;

/**
 * The LDAP gateway: stock `ldapsearch`/`ldapmodify` and LDAP libraries bind as
 * `alice:corp-ldap` with a launch ticket or their gateway password, over StartTLS (listener
 * `ldap`) or LDAPS (listener `ldaps`, `implicitTls`), and their operations are relayed to the
 * directory bound as the vaulted service account. See README.md beside this file.
 */
export class LdapAdapter implements ProtocolAdapter {
  readonly protocol = 'ldap' as const;
  readonly stats = { upstreamConnects: 0 };
  private readonly opts: LdapAdapterOptions & Omit<ResolvedDatabaseOptions, 'auditSqlLimit'> & {
    maxConnections: number; caps: LdapContext['caps'];
  };

  constructor(
    options: LdapAdapterOptions = {},
    /** LDAPS: TLS from the first byte (the `ldaps` listener). */
    private readonly implicitTls = false,
  ) {
    this.opts = {
      ...options,
      ...resolveDatabaseOptions(options),
      maxConnections: positive('maxConnections', options.maxConnections, 1000),
      caps: {
        anonymous: positive('anonymousMessageLimit', options.anonymousMessageLimit, 16 * 1024),
        bound: positive('messageLimit', options.messageLimit, 4 * 1024 * 1024),
        upstream: positive('directoryMessageLimit', options.directoryMessageLimit, 16 * 1024 * 1024),
      },
    };
  }

  /** TLS to the directory unless the resource allows a plaintext lab directory (see upstream.ts). */
  private targetFor(port: GatewayPort, r: Resource): LdapTarget {
    const ca = this.opts.upstreamCa?.[r.name] ?? this.opts.upstreamCa?.['*'];
    const pinned = r.hostKeyPin?.startsWith('tls-sha256:') ?? false;
    const ldaps = r.options.ldaps ?? r.port === LDAPS_PORT;
    let transport: LdapTransport = ldaps ? 'ldaps' : 'starttls';
    if (!ldaps && r.options.allowPlaintextUpstream === true) transport = this.opts.upstreamTls === 'disable' && !ca && !pinned ? 'plain' : 'starttls-or-plain';
    return {
      resource: r.name, host: r.host, port: r.port, transport, pinned, timeoutMs: this.opts.upstreamTimeoutMs,
      ...(ca ? { ca } : {}),
      verify: (identity) => port.verifyTarget(r.name, identity),
    };
  }

  /**
   * Temporary entries and elevation (provision.ts), bound as the vaulted DN over the same
   * transport, TLS and identity policy as a session's directory leg.
   */
  provisioner(port: GatewayPort): Provisioner {
    return new LdapProvisioner((r) => this.targetFor(port, r));
  }

  async listen(config: ListenerConfig): Promise<Listener> {
    const name = this.implicitTls ? 'ldaps' : 'ldap';
    if (!this.implicitTls) assertPlaintextAllowed('LDAP', config);
    const { log } = config;
    const port = config.broker.portFor({ protocol: 'ldap', loginExample: LOGIN_EXAMPLE }, log);
    const ctx: LdapContext = {
      port,
      secureContext: createSecureContext({ cert: config.tls.cert, key: config.tls.key, minVersion: 'TLSv1.2' }),
      implicitTls: this.implicitTls,
      allowPlaintext: !this.implicitTls && (config.allowPlaintext ?? false),
      targetFor: (r) => this.targetFor(port, r),
      policyFor,
      caps: this.opts.caps,
      stats: this.stats,
    };
    return serveTcp(config, log, name, (conn) => new LdapConnection(conn, ctx).run(), {
      maxConnections: this.opts.maxConnections,
      handshakeTimeoutMs: this.opts.handshakeTimeoutMs,
    });
  }
}

/** The `ldaps` listener's adapter: the same door with TLS from the first byte. */
export class LdapsAdapter extends LdapAdapter {
  constructor(options: LdapAdapterOptions = {}) {
    super(options, true);
  }
}

/** Read-only unless the resource says read-write; the base DN, if any, parsed once per session. */
export function policyFor(r: Resource): DirectoryPolicy {
  const policy: DirectoryPolicy = { readWrite: r.options.directoryAccess === 'read-write' };
  if (r.options.baseDn !== undefined) {
    const rdns = parseDn(r.options.baseDn);
    if (!rdns) throw new ValidationError('options.baseDn', `'${r.options.baseDn}' is not a valid DN`);
    policy.base = { dn: r.options.baseDn, rdns };
  }
  return policy;
}
