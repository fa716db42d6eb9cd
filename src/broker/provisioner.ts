/**
 * What a door gives the broker so that grants can have their own accounts on its targets
 * (ephemeral JIT) or raise the vaulted account's rights for a grant (elevation). The door
 * knows its wire; the broker's JitManager (jit.ts) owns the lifecycle, the store records
 * and the audit. Every method talks to the target as the resource's vaulted account, reached
 * and verified exactly as the door reaches it for a session (TLS, pinned identity).
 */
import { GatehouseError } from '../core/errors.js';
import type { JitSettings, Protocol, Resource, TargetCredentials } from '../core/model.js';

/** The target to act on: the resource, its vaulted (administrator) login, and its JIT settings. */
export interface JitTarget {
  resource: Resource;
  admin: TargetCredentials;
  jit: JitSettings;
}

/** Who a temporary account acts for: recorded on the account itself and in the audit. */
export interface AccountOwner {
  user: string;
  /** The JitAccount record's id. */
  accountId: string;
  requestId?: string;
  leaseId?: string;
  sessionId?: string;
}

export interface AccountSpec {
  /** Already within the provisioner's `nameLimit`, unique, made of `[a-z0-9_]`. */
  name: string;
  owner: AccountOwner;
  /** When the grant ends, if it does (PostgreSQL VALID UNTIL, Linux expiry date, sudo NOTAFTER). */
  deadline?: Date;
  /** One line naming the owner, to record on the account (COMMENT ON ROLE, GECOS, description...). */
  note: string;
}

/** `done: false` means the account (or elevation) may still be there: the manager retries. */
export type RemoveResult = { done: true; detail?: string } | { done: false; detail: string };

export interface Provisioner {
  readonly protocol: Protocol;
  /** Longest account name the target accepts (PostgreSQL 63 bytes, MySQL 32, Linux 32...). */
  readonly nameLimit: number;
  /** What is wrong with these settings for this kind of target (e.g. LDAP needs an OU); empty when fine. */
  check(jit: JitSettings): string[];
  /**
   * Creates the account with the marker, the owner note and `jit.ephemeral.grants`, and
   * returns the credentials the door logs in with. On failure it throws a JitError naming
   * the missing right; the manager then calls `remove` so nothing half-made stays behind.
   */
  create(t: JitTarget, spec: AccountSpec): Promise<TargetCredentials>;
  /**
   * Locks the account, ends its live sessions and processes, hands over or drops what it
   * owns, and deletes it. Idempotent: an account that is not there is done. Never touches an
   * account without the Gatehouse marker.
   */
  remove(t: JitTarget, name: string): Promise<RemoveResult>;
  /** Adds `jit.elevate.grants` to the vaulted login (idempotent). */
  elevate(t: JitTarget, owner: AccountOwner): Promise<void>;
  /** Takes `jit.elevate.grants` away from the vaulted login and ends its sessions that may have used them. */
  unelevate(t: JitTarget): Promise<RemoveResult>;
  /** Names of the accounts on the target that carry the Gatehouse marker, for the reconciler. */
  listMarked(t: JitTarget): Promise<string[]>;
}

export const JitErrorKinds = ['missing_right', 'unreachable', 'refused', 'invalid'] as const;
export type JitErrorKind = (typeof JitErrorKinds)[number];

/** A target refused a JIT step; the message says what is missing, in the target's own terms. */
export class JitError extends GatehouseError {
  readonly kind: JitErrorKind;
  constructor(kind: JitErrorKind, message: string) {
    super('JIT_FAILED', message, { kind });
    this.name = 'JitError';
    this.kind = kind;
  }
}
