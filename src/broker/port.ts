/**
 * The narrow interface a door (protocol adapter) is given: sign-in, the decision, target
 * identity, and the session it gets back. Doors receive nothing else from the core, so the
 * engine, the store and the audit log are out of a door's reach except through this port.
 */
import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import type { Protocol, Resource, TargetCredentials, TerminationReason } from '../core/model.js';
import type { MfaProof } from '../workflow/decide.js';
import type { SessionHandle } from './adapter.js';
import type { LoginResult, LoginSecret } from './login.js';
import type { Refusal, RefusalCode } from './refusals.js';
import type { PinOutcome, TargetIdentity } from './target-identity.js';

export type { LoginResult, LoginSecret } from './login.js';
export type { Refusal, RefusalCode } from './refusals.js';
export type { TargetIdentity } from './target-identity.js';
export type { MfaProof } from '../workflow/decide.js';

/** What a door says about itself when it asks for its port. */
export interface DoorInfo {
  protocol: Protocol;
  /** How its users log in, e.g. `psql "host=GATEWAY port=15432 user=alice:prod-pg"`. */
  loginExample: string;
}

export type OpenOutcome = { ok: true; session: GatewaySession } | { ok: false; refusal: Refusal };

/** What a door knows about a session's target leg that belongs in its audit record. */
export type SessionFacts = Readonly<Record<string, string | number | boolean>>;

/** A connection that passed the decision; provisional until `live`, then ended only by the broker. */
export interface GatewaySession {
  readonly id: string;
  readonly user: string;
  readonly resource: Resource;
  readonly credentials: TargetCredentials | undefined;
  /** When the decision's grant, lease or schedule window ends the session, if it does. */
  readonly deadline: Date | undefined;
  bytesIn: number;
  bytesOut: number;
  /**
   * The target is reached: the session is recorded and its monitor starts. `facts` about the
   * target leg (e.g. `upstreamTls: false` for a plaintext lab target) go on the session.start audit row.
   */
  live(handle: SessionHandle, facts?: SessionFacts): Promise<void>;
  /** The target could not be reached: the attempt is audited with a stable code and forgotten. */
  discard(code: RefusalCode, detail: string): void;
  /**
   * One operation of a live session (an LDAP search: op, base, scope, filter), for its audit
   * trail; written in batches, identical consecutive ones folded. Never attribute values or
   * passwords.
   */
  operation(facts: SessionFacts): void;
  /** The client or the target went away (or the door hit an error). */
  end(reason: TerminationReason, message?: string): void;
}

export interface GatewayPort {
  readonly protocol: Protocol;
  readonly clock: Clock;
  readonly log: Logger;
  /** `USER:RESOURCE` plus a ticket, password or key: who this is, or a refusal (audited). */
  login(req: { name: string; secret: LoginSecret; client: string }): Promise<LoginResult>;
  /** Before any secret: a malformed login name or a locked user/address, or undefined. Nothing is counted. */
  precheck(name: string, client: string): Refusal | undefined;
  /** An SSH key probe: is this key registered for the login's user? Nothing is counted. */
  knowsKey(name: string, client: string, keyType: string, keyBase64: string): Promise<boolean>;
  /** Whether the resource wants a TOTP code at connection start (a dry run: nothing is used up). */
  needsMfa(user: string, resource: string): Promise<boolean>;
  /** The decision for this connection; a denial comes back as a refusal (audited). */
  open(req: { user: string; resource: string; client: string; mfa: MfaProof }): Promise<OpenOutcome>;
  /** Verifies or pins the target's identity; throws UpstreamError('identity') on a change. */
  verifyTarget(resource: string, identity: TargetIdentity): Promise<PinOutcome>;
  /** Records a refusal the door made itself (handshake, TLS, protocol), with its address. */
  refused(client: string, refusal: Refusal, detail?: string): void;
}

/** What a listener is handed: ports per door, nothing more. */
export interface PortProvider {
  portFor(door: DoorInfo, log?: Logger): GatewayPort;
}
