/**
 * What an SSH user reads when Gatehouse says no. Denials before login go out as a userauth
 * banner (the full text, printed by OpenSSH on stderr) followed by a DISCONNECT whose
 * description is one line; refusals after login (a tunnel, a forwarding) go out as the
 * description of a channel-open failure or on the session's stderr.
 */
import type { Denial } from '../../src/broker/broker.js';

export class SshRefusal {
  constructor(
    /** Stable code: a decide() deny code or one of the adapter's own below. */
    readonly code: string,
    readonly message: string,
    readonly hint?: string,
  ) {}

  /** The banner: code, reason, and the command that fixes it. */
  banner(resource?: string): string {
    const lines = [`Gatehouse: access${resource ? ` to ${resource}` : ''} refused (${this.code}).`, this.message];
    if (this.hint) lines.push(`To fix: ${this.hint}`);
    return `${lines.join('\n')}\n`;
  }

  /** The DISCONNECT description. */
  line(): string {
    return `Gatehouse: ${this.message}${this.hint ? ` (${this.hint})` : ''}`;
  }
}

export function fromDenial(d: Denial): SshRefusal {
  return new SshRefusal(d.code, d.message, d.hint);
}

export const refusals = {
  badLogin: (username: string) =>
    new SshRefusal('bad_login', `'${username}' is not a Gatehouse login; log in as USER:RESOURCE.`, 'ssh -p 2222 alice:prod-web@gateway'),
  badCredentials: () => new SshRefusal('bad_credentials', 'Too many failed authentication attempts.'),
  authTimeout: () => new SshRefusal('auth_timeout', 'Authentication took too long.'),
  upstream: (resource: string, why: string) =>
    new SshRefusal('target_unreachable', `Gatehouse could not open ${resource}: ${why}`, `try again; if it persists, tell the owner of ${resource}`),
  hostKeyMismatch: (resource: string, got: string, pinned: string) =>
    new SshRefusal(
      'host_key_mismatch',
      `The host key of ${resource} changed (now ${got}, pinned ${pinned}); refusing to connect.`,
      `an administrator must verify the new key and re-pin ${resource}`,
    ),
  wrongProtocol: (resource: string, protocol: string) =>
    new SshRefusal('wrong_protocol', `${resource} is a ${protocol} resource, not an SSH one.`, 'gatehouse resources'),
} as const;

/** Channel-open refusals: the description OpenSSH prints after "open failed: administratively prohibited:". */
export const channelRefusals = {
  tunnelHost: (resource: string, host: string, port: number) =>
    `Gatehouse: tunnels from ${resource} may only reach ${resource}'s own host, not ${host}:${port}`,
  tunnelPort: (resource: string, port: number, allowed: number[]) =>
    `Gatehouse: port ${port} is not an allowed tunnel port of ${resource} (allowed: ${allowed.join(', ')})`,
  streamLocal: (resource: string) => `Gatehouse: unix socket forwarding is not available on ${resource}`,
  serverOnly: (type: string) => `Gatehouse: clients may not open ${type} channels`,
  unknown: (type: string) => `Gatehouse: unknown channel type ${JSON.stringify(type.slice(0, 64))}`,
  notAllowed: (what: string, resource: string) => `Gatehouse: ${what} is not allowed on ${resource}`,
} as const;
