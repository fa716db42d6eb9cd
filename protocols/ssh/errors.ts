/**
 * What an SSH user reads when Gatehouse says no. Refusals before login (the broker's login
 * and decision refusals, the door's own, a target that could not be used) go out as a
 * userauth banner (the full text, printed by OpenSSH on stderr) followed by a DISCONNECT
 * whose reason comes from one table and whose description is one line. Refusals after
 * login (a tunnel, a forwarding) go out as the description of a channel-open failure or on
 * the session's stderr.
 */
import type { Refusal, RefusalCode } from '../../src/broker/port.js';
import { DISCONNECT } from './codec.js';

/**
 * The DISCONNECT reason per refusal code. Adding a code to the catalogue does not compile
 * until it has a line here.
 */
export const DISCONNECT_REASON_OF: Record<RefusalCode, number> = {
  // The decision: the user is who they said, the workflow says no.
  resource_unknown: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  wrong_protocol: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  user_unknown: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  user_disabled: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  not_on_access_list: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  outside_schedule: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  approval_required: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  approval_pending: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  grant_expired: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  checkout_required: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  checked_out_by_other: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  mfa_not_enrolled: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  mfa_required: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  mfa_invalid: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  mfa_replayed: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  // The store failed: the gateway's problem, not the user's credentials.
  gateway_unavailable: DISCONNECT.BY_APPLICATION,
  // Sign-in.
  bad_login_name: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  bad_password: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  bad_key: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  no_secret: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  bad_ticket: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  ticket_other_user: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  ticket_other_resource: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  locked: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  throttled: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  // The door's own.
  tls_required: DISCONNECT.PROTOCOL_ERROR,
  handshake_timeout: DISCONNECT.BY_APPLICATION,
  protocol_error: DISCONNECT.PROTOCOL_ERROR,
  unsupported_auth: DISCONNECT.NO_MORE_AUTH_METHODS_AVAILABLE,
  not_allowed: DISCONNECT.BY_APPLICATION,
  too_many_connections: DISCONNECT.TOO_MANY_CONNECTIONS,
  internal_error: DISCONNECT.BY_APPLICATION,
  // The decision allowed it, the target could not be used.
  target_unreachable: DISCONNECT.BY_APPLICATION,
  target_login_failed: DISCONNECT.BY_APPLICATION,
  target_identity: DISCONNECT.BY_APPLICATION,
  target_protocol: DISCONNECT.BY_APPLICATION,
  target_no_credentials: DISCONNECT.BY_APPLICATION,
  target_provisioning: DISCONNECT.BY_APPLICATION,
};

/** A refusal as the SSH wire shows it: a banner, then a DISCONNECT with a reason and one line. */
export class SshRefusal {
  constructor(
    readonly refusal: Refusal,
    /** The resource the user asked for, when the gateway knows it (it names it in the banner). */
    readonly resource?: string,
    /** A sentence of the door's put before the catalogue's (e.g. why the connection ends now). */
    readonly preface?: string,
  ) {}

  get code(): RefusalCode {
    return this.refusal.code;
  }

  /** The DISCONNECT reason code. */
  get reason(): number {
    return DISCONNECT_REASON_OF[this.refusal.code];
  }

  /** The banner: code, reason, and the command that fixes it. */
  banner(): string {
    const r = this.refusal;
    const lines = [`Gatehouse: access${this.resource ? ` to ${this.resource}` : ''} refused (${r.code}).`];
    if (this.preface) lines.push(this.preface);
    lines.push(r.message);
    if (r.hint) lines.push(`To fix: ${r.hint}`);
    return `${lines.join('\n')}\n`;
  }

  /** The DISCONNECT description. */
  line(): string {
    const r = this.refusal;
    return `Gatehouse: ${this.preface ? `${this.preface} ` : ''}${r.message}${r.hint ? ` (${r.hint})` : ''}`;
  }
}

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
