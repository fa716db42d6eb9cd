/**
 * Every way a door can say no, as one closed set of codes. The broker and the shared door
 * code build each refusal (code, sentence, and the command that fixes it); a door only
 * renders it in its own wire format from a `Record<RefusalCode, ...>` table, so adding a code
 * here does not compile until every door says how it looks on its wire.
 */
import { DENY_CODES, type DenyCode } from '../workflow/decide.js';

/** Sign-in refusals, from the broker's one login path. */
export const LOGIN_REFUSAL_CODES = [
  /** The login name is not USER:RESOURCE with valid names. */
  'bad_login_name',
  /** Neither the user's gateway password nor a ticket; or an unknown user. */
  'bad_password',
  /** A public key that is not registered for the user (or a bad signature). */
  'bad_key',
  /** No password at all (an empty one is never a sign-in). */
  'no_secret',
  /** A ticket that is unknown, used or expired. */
  'bad_ticket',
  'ticket_other_user',
  'ticket_other_resource',
  /** Too many failed sign-ins for the user or from the address. */
  'locked',
  /** Too many attempts from one address in a short time. */
  'throttled',
] as const;
export type LoginRefusalCode = (typeof LOGIN_REFUSAL_CODES)[number];

/** Refusals a door makes on its own, before or around the login. */
export const DOOR_REFUSAL_CODES = [
  'tls_required',
  'handshake_timeout',
  'protocol_error',
  /** The client asked for an authentication method the door does not offer. */
  'unsupported_auth',
  /** A command or mode the gateway refuses on purpose (replication, COM_CHANGE_USER...). */
  'not_allowed',
  'too_many_connections',
  'internal_error',
] as const;
export type DoorRefusalCode = (typeof DOOR_REFUSAL_CODES)[number];

/** The decision allowed the session but the target could not be used. */
export const TARGET_REFUSAL_CODES = [
  'target_unreachable', 'target_login_failed', 'target_identity', 'target_protocol', 'target_no_credentials',
  /** The grant's temporary account (or elevation) could not be made on the target. */
  'target_provisioning',
] as const;
export type TargetRefusalCode = (typeof TARGET_REFUSAL_CODES)[number];

export type RefusalCode = DenyCode | LoginRefusalCode | DoorRefusalCode | TargetRefusalCode;

export const REFUSAL_CODES: readonly RefusalCode[] = [...DENY_CODES, ...LOGIN_REFUSAL_CODES, ...DOOR_REFUSAL_CODES, ...TARGET_REFUSAL_CODES];

/** A refusal as a person reads it: the code, a sentence, and the command that fixes it. */
export interface Refusal {
  readonly code: RefusalCode;
  readonly message: string;
  readonly hint?: string;
}

const make = (code: RefusalCode, message: string, hint?: string): Refusal => (hint ? { code, message, hint } : { code, message });

/** Which family a code belongs to, for doors whose wire has few distinct error kinds. */
export function refusalFamily(code: RefusalCode): 'identity' | 'workflow' | 'door' | 'target' {
  if ((LOGIN_REFUSAL_CODES as readonly string[]).includes(code)) return 'identity';
  if ((DOOR_REFUSAL_CODES as readonly string[]).includes(code)) return 'door';
  if ((TARGET_REFUSAL_CODES as readonly string[]).includes(code)) return 'target';
  return 'workflow';
}

/** The catalogue's sentences. `example` is how the door's own users log in. */
export const refusals = {
  badLoginName: (name: string, example: string) =>
    make('bad_login_name', `'${printable(name, 64)}' is not a Gatehouse login; log in as USER:RESOURCE.`, example),
  badPassword: (user: string, resource: string) =>
    make('bad_password', `access denied for ${user}:${resource}: the password is neither ${user}'s gateway password nor a valid launch ticket.`, `use your Gatehouse password, or a launch ticket from: gatehouse launch ${resource}`),
  badKey: (user: string) => make('bad_key', `that key is not registered for ${user}.`, 'gatehouse key add ~/.ssh/id_ed25519.pub'),
  noSecret: (resource: string) =>
    make('no_secret', 'a password is required: your gateway password or a launch ticket (an empty password never signs in).', `gatehouse launch ${resource}`),
  badTicket: (resource: string) =>
    make('bad_ticket', `the launch ticket is not valid for ${resource} (unknown, already used or expired).`, `get a fresh one: gatehouse launch ${resource}`),
  ticketOtherUser: (user: string, resource: string) =>
    make('ticket_other_user', `that launch ticket was not issued to ${user}; it stays valid for its owner.`, `gatehouse launch ${resource}`),
  ticketOtherResource: (resource: string, boundTo: string) =>
    make('ticket_other_resource', `that launch ticket is for ${boundTo}, not ${resource}; it stays valid for ${boundTo}.`, `gatehouse launch ${resource}`),
  locked: (minutes: number) =>
    make('locked', `too many failed sign-ins; try again in ${minutes} min.`, 'wait, or ask an administrator to check the audit log'),
  throttled: () => make('throttled', 'too many sign-in attempts from your address; slow down.', 'wait a few seconds and try again'),
  tlsRequired: (how: string) => make('tls_required', 'this gateway accepts only TLS connections.', how),
  handshakeTimeout: () => make('handshake_timeout', 'the handshake took too long.'),
  protocolError: (detail: string) => make('protocol_error', printable(detail, 200)),
  unsupportedAuth: (detail: string, hint?: string) => make('unsupported_auth', printable(detail, 200), hint),
  notAllowed: (what: string, hint?: string) => make('not_allowed', `${what} is not allowed through the gateway.`, hint),
  tooManyConnections: () => make('too_many_connections', 'the gateway has too many connections; try again shortly.'),
  internalError: () => make('internal_error', 'internal error; the connection was closed.', 'try again; if it persists, tell your Gatehouse administrator'),
  target: (code: TargetRefusalCode, resource: string, detail: string, hint?: string) =>
    make(code, `could not open ${resource}: ${printable(detail, 300)}`, hint ?? `try again; if it persists, tell the owner of ${resource}`),
  fromDenial: (d: { code: DenyCode; message: string; hint?: string }) => make(d.code, d.message, d.hint),
} as const;

/** Names and details that came from the network, safe to show: no control characters, bounded. */
export function printable(s: string, max: number): string {
  // eslint-disable-next-line no-control-regex
  const clean = s.replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  return clean.length <= max ? clean : `${clean.slice(0, max)}...`;
}
