import type {
  AccessRequest,
  ApiToken,
  AuditEntry,
  Delegation,
  JitAccount,
  JitKind,
  JitState,
  LaunchTicket,
  Lease,
  Resource,
  Role,
  SessionRecord,
  Team,
  User,
} from '../core/model.js';

/** The `prev` of the first audit entry; every Store implementation uses it. */
export const AUDIT_GENESIS = 'genesis';

/** An audit entry before the store assigns its sequence number and chain MAC. */
export type AuditDraft = Pick<AuditEntry, 'at' | 'actor' | 'action' | 'subject' | 'data'>;

/** Computes an entry's MAC from the previous MAC; supplied by src/audit so the store never holds the key logic. */
export type AuditSealer = (entry: Omit<AuditEntry, 'mac'>) => string;

export interface AuditQuery {
  afterSeq?: number;
  limit?: number;
  /** With `limit`: the newest entries (still returned in ascending seq order). */
  newest?: boolean;
  actor?: string;
  action?: string;
  subject?: string;
}

export interface SessionQuery {
  state?: 'live' | 'ended' | 'provisional';
  user?: string;
  resource?: string;
  limit?: number;
}

export interface JitAccountQuery {
  states?: readonly JitState[];
  resource?: string;
  kind?: JitKind;
  requestId?: string;
  leaseId?: string;
  sessionId?: string;
  /** Newest first with a limit. */
  limit?: number;
}

export interface RequestQuery {
  requester?: string;
  resource?: string;
  states?: AccessRequest['state'][];
}

/**
 * Every piece of state Gatehouse keeps. Atomic guarantees live here, not in callers:
 * - at most one `held` lease per resource (a second `insertLease` fails with CHECKED_OUT);
 * - a TOTP step is accepted at most once per user (`useTotpStep` returns false on replay);
 * - a launch ticket is used at most once (`consumeTicket` returns it once, then undefined);
 * - `updateRequest` applies only when the stored version matches (optimistic concurrency);
 * - audit entries are appended in one serial chain.
 * Any failure of the backing database surfaces as a StoreError (code STORE_FAILURE).
 */
export interface Store {
  readonly kind: 'sqlite' | 'postgres';

  // users, teams, roles
  putUser(user: User): Promise<void>;
  getUser(name: string): Promise<User | undefined>;
  listUsers(): Promise<User[]>;
  countUsers(): Promise<number>;

  putTeam(team: Team): Promise<void>;
  getTeam(name: string): Promise<Team | undefined>;
  listTeams(): Promise<Team[]>;

  putRole(role: Role): Promise<void>;
  getRole(name: string): Promise<Role | undefined>;
  listRoles(): Promise<Role[]>;

  // resources
  putResource(resource: Resource): Promise<void>;
  getResource(name: string): Promise<Resource | undefined>;
  listResources(): Promise<Resource[]>;
  deleteResource(name: string): Promise<boolean>;

  // access requests
  insertRequest(request: AccessRequest): Promise<void>;
  getRequest(id: string): Promise<AccessRequest | undefined>;
  listRequests(query?: RequestQuery): Promise<AccessRequest[]>;
  /** Writes `next` if the stored version equals `next.version - 1`; returns false otherwise. */
  updateRequest(next: AccessRequest): Promise<boolean>;

  // single-user leases
  /** Fails with GatehouseError CHECKED_OUT when the resource already has a held lease. */
  insertLease(lease: Lease): Promise<void>;
  getHeldLease(resource: string): Promise<Lease | undefined>;
  getLease(id: string): Promise<Lease | undefined>;
  listLeases(query?: { state?: Lease['state']; holder?: string; resource?: string }): Promise<Lease[]>;
  /** Ends a held lease; returns the ended lease, or undefined if it was no longer held. */
  endLease(
    id: string,
    end: { state: Exclude<Lease['state'], 'held'>; endedAt: Date; endedBy?: string; endReason?: string },
  ): Promise<Lease | undefined>;

  // delegations
  putDelegation(d: Delegation): Promise<void>;
  listDelegations(query?: { to?: string; from?: string }): Promise<Delegation[]>;
  deleteDelegation(id: string): Promise<boolean>;

  // MFA and tickets
  /** Records (user, step) and returns true, or returns false if it was used before. */
  useTotpStep(user: string, step: number, at: Date): Promise<boolean>;
  insertTicket(ticket: LaunchTicket): Promise<void>;
  /**
   * Marks the ticket used and returns it, if it exists, is unused and has not expired at `at`
   * (and, with `bound`, was issued to that user for that resource: otherwise it stays unused).
   */
  consumeTicket(hash: string, at: Date, bound?: { user: string; resource: string }): Promise<LaunchTicket | undefined>;
  /** The ticket as stored, used or not; nothing is changed. */
  getTicket(hash: string): Promise<LaunchTicket | undefined>;

  // API and session tokens
  insertToken(token: ApiToken): Promise<void>;
  getTokenByHash(hash: string): Promise<ApiToken | undefined>;
  deleteToken(id: string): Promise<boolean>;
  listTokens(user: string): Promise<ApiToken[]>;

  // gateway sessions (connections)
  putSession(session: SessionRecord): Promise<void>;
  /**
   * `putSession` for several records in one transaction: all of them are written or none
   * (a mass teardown records its ended sessions this way, after their sockets are closed).
   */
  putSessions(sessions: readonly SessionRecord[]): Promise<void>;
  getSession(id: string): Promise<SessionRecord | undefined>;
  listSessions(query?: SessionQuery): Promise<SessionRecord[]>;
  deleteSession(id: string): Promise<void>;

  // ephemeral accounts and elevations (JIT)
  /** Inserts a new account record; false when the grant already has a live one of that kind (read it instead). */
  insertJitAccount(account: JitAccount): Promise<boolean>;
  getJitAccount(id: string): Promise<JitAccount | undefined>;
  /** The grant's account of that kind in a live state (planned, provisioning, active, revoking), if any. */
  findLiveJitAccount(grant: string, kind: JitKind): Promise<JitAccount | undefined>;
  /** Oldest first (newest first with `limit`). */
  listJitAccounts(query?: JitAccountQuery): Promise<JitAccount[]>;
  /** Writes `next` if the stored version equals `next.version - 1`; returns false otherwise. */
  updateJitAccount(next: JitAccount): Promise<boolean>;

  // audit
  appendAudit(draft: AuditDraft, seal: AuditSealer): Promise<AuditEntry>;
  /**
   * Appends the drafts in order as consecutive entries of the chain, in one transaction (all or
   * none, and no other append lands between them); returns them sealed, in order.
   */
  appendAuditBatch(drafts: readonly AuditDraft[], seal: AuditSealer): Promise<AuditEntry[]>;
  listAudit(query?: AuditQuery): Promise<AuditEntry[]>;

  // small key/value settings (master-key check, schema version, pinned host keys...)
  getMeta(key: string): Promise<string | undefined>;
  setMeta(key: string, value: string): Promise<void>;

  close(): Promise<void>;
}
