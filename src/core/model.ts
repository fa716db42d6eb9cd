/**
 * The records Gatehouse keeps. Plain data only: validation lives in src/workflow, storage
 * in src/store. Times are Date objects in memory and ISO strings at rest.
 */

export const RecordTypes = ['machine', 'database', 'directory', 'browser'] as const;
export type RecordType = (typeof RecordTypes)[number];

export const Protocols = ['ssh', 'rdp', 'postgres', 'mysql', 'ldap', 'http', 'tcp'] as const;
export type Protocol = (typeof Protocols)[number];

/** Which protocols each record type may carry. */
export const ProtocolsByType: Record<RecordType, readonly Protocol[]> = {
  machine: ['ssh', 'rdp', 'tcp'],
  // tcp: any engine or directory the gateway does not speak natively, through a tunnel.
  database: ['postgres', 'mysql', 'tcp'],
  directory: ['ldap', 'tcp'],
  browser: ['http'],
};

export const Enforcements = ['ALLOW_CONFIGURE_WORKFLOW_SETTINGS'] as const;
export type Enforcement = (typeof Enforcements)[number];

export interface User {
  id: string;
  name: string;
  admin: boolean;
  disabled: boolean;
  teams: string[];
  /** scrypt hash (`scrypt$N$r$p$salt$hash`), absent for users that cannot sign in with a password. */
  passwordHash?: string;
  /** TOTP secret, sealed with the master key (see src/secrets). */
  totpSecretSealed?: string;
  /** True once the user proved the enrolled secret with a code. */
  totpConfirmed: boolean;
  sshKeys: string[];
  createdAt: Date;
}

export interface Team {
  name: string;
  createdAt: Date;
}

export interface Role {
  name: string;
  enforcements: Partial<Record<Enforcement, boolean>>;
  members: string[];
}

/** A user or a team named on an access list or as an approver. */
export type Principal = { user: string } | { team: string };

export type Weekday = 'mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat' | 'sun';
export const Weekdays: readonly Weekday[] = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

/**
 * One weekly range: on each listed day, from start to end local time ("HH:MM").
 * end <= start means the range crosses midnight into the next day; "24:00" is the end of day.
 */
export interface ScheduleRange {
  days: Weekday[];
  start: string;
  end: string;
}

export interface LimitAccessTime {
  timezone: string;
  schedule: ScheduleRange[];
  maxDurationMinutes: number;
}

export interface ApprovalStage {
  approvers: Principal[];
  approvals: number;
}

export interface RequireApproval {
  /** Approvers of the first stage in addition to the resource owner (always eligible). */
  approvers: Principal[];
  approvals: number;
  requireReason: boolean;
  requireTicket: boolean;
  ticketPattern?: string;
  startOn: 'approval' | 'first_connection';
  /** A further stage that must approve after the first one has. */
  secondStage?: ApprovalStage;
  /** After this delay without a decision, these approvers become eligible too. */
  escalation?: { afterMinutes: number; approvers: Principal[] };
  /** How long a pending request waits for a decision before it expires (default 24 h). */
  pendingTtlMinutes?: number;
}

export interface WorkflowSettings {
  limitAccessTime?: LimitAccessTime;
  requireApproval?: RequireApproval;
  singleUser?: boolean;
  mfa?: boolean;
}

/** What a resource lets an SSH session do beyond a shell, exec and sftp. */
export interface ResourceOptions {
  allowAgentForwarding?: boolean;
  allowX11?: boolean;
  allowRemoteForwarding?: boolean;
  /** Ports on the resource's own host that `-L` may reach (default: the resource port). */
  allowedTunnelPorts?: number[];
  /**
   * Database targets: the target may be reached without TLS (a lab target). Default false:
   * TLS is required and the target's identity verified (CA) or pinned. Even when true, a
   * cleartext or MD5 password is never sent outside TLS; only SCRAM may run in plaintext.
   * Audited when set, and every session that uses a plaintext target leg is logged.
   */
  allowPlaintextUpstream?: boolean;
  /** Directory targets: what users may do (default 'read-only': search and compare only). */
  directoryAccess?: DirectoryAccess;
  /** Directory targets: every operation must name a DN at or below this one. */
  baseDn?: string;
  /** Directory targets: TLS from the first byte (LDAPS) instead of StartTLS; default: the port is 636. */
  ldaps?: boolean;
  /** Browser targets: how the gateway signs in to the app (default none). */
  httpAuth?: HttpAuth;
  /** Tunnels (tcp, rdp): connections carried at once by one tunnel (Boundary's session_connection_limit); default unlimited. */
  tunnelConnectionLimit?: number;
  /**
   * RDP: hand the vaulted login to the user's own RDP client at tunnel start (passed on its
   * standard input, never its command line). Off by default: the user types their own.
   * Audited on the session when used.
   */
  handOutCredentials?: boolean;
}

/** Browser targets: how the gateway signs in to the app with the vaulted credentials. */
export type HttpAuth =
  /** The app needs no sign-in (or trusts the signed assertion header). */
  | { kind: 'none' }
  /** `Authorization: Basic login:password`. */
  | { kind: 'basic' }
  /** `Authorization: Bearer <password>`. */
  | { kind: 'bearer' }
  /** `<header>: <password>`, e.g. X-Api-Key. */
  | { kind: 'header'; header: string }
  /** The app's login form at `path`, posted by the gateway; its cookies stay in a jar per session. */
  | { kind: 'form'; path: string; userField: string; passwordField: string; fields?: Record<string, string> };

/**
 * Just-in-time rights on the target, per grant (an approval window, a check-out, or the
 * session itself when the resource has neither). The vaulted account is the administrator
 * that creates and removes them; each door's README says which rights it needs.
 */
export interface JitSettings {
  /** Every grant logs in upstream as its own temporary account, removed when the grant ends. */
  ephemeral?: EphemeralSettings;
  /** The vaulted account is given these roles/groups for the grant only. */
  elevate?: ElevateSettings;
}

export interface EphemeralSettings {
  /** Roles (PostgreSQL, MySQL/MariaDB), groups (Linux) or group DNs (LDAP) the temporary account gets. */
  grants: string[];
  /** Linux: a sudo command list for the account (`ALL`, or full command paths), in a validated drop-in. */
  sudo?: string;
  /** LDAP: the OU the temporary entries are made under. */
  ou?: string;
  /** PostgreSQL: the role that inherits what the account created (default `gatehouse_inheritor`, made NOLOGIN if missing). */
  inheritor?: string;
  /** MySQL/MariaDB: MAX_USER_CONNECTIONS of the account (default 10). */
  maxConnections?: number;
}

export interface ElevateSettings {
  /** Roles (PostgreSQL, MySQL/MariaDB), groups (Linux) or group DNs (LDAP) added to the vaulted account for the grant. */
  grants: string[];
}

export const JitStates = ['planned', 'provisioning', 'active', 'revoking', 'gone', 'failed'] as const;
export type JitState = (typeof JitStates)[number];
/** States in which the account may exist on the target and belongs to a grant. */
export const LIVE_JIT_STATES: readonly JitState[] = ['planned', 'provisioning', 'active', 'revoking'];

export type JitKind = 'ephemeral' | 'elevation';

/**
 * One temporary account (or one elevation of the vaulted account) on a target, for one
 * grant. Every step is written before it is taken, so a crash loses nothing: an account in
 * `provisioning` may exist on the target, and the reconciler removes it.
 */
export interface JitAccount {
  id: string;
  resource: string;
  kind: JitKind;
  /** `lease:ID`, `request:ID` or `session:ID`: connections of the same grant share the account. */
  grant: string;
  /** The Gatehouse user the account acts for. */
  user: string;
  requestId?: string;
  leaseId?: string;
  sessionId?: string;
  /** The account's name on the target (for an elevation: the vaulted login). */
  account: string;
  /** Roles/groups given (ephemeral) or added (elevation). */
  grants: string[];
  state: JitState;
  /** The account's own credentials, sealed with the master key (ephemeral only). */
  credentialsSealed?: string;
  /** The resource as it was at provisioning, so the account can be removed even after the resource is. */
  resourceSnapshot: string;
  node: string;
  createdAt: Date;
  updatedAt: Date;
  /** When the grant ends: the account is removed then at the latest. */
  deadline?: Date;
  /** Failed removal attempts so far (retried without a cap). */
  attempts: number;
  /** The last error, in words naming the missing right where known. */
  error?: string;
  goneAt?: Date;
  /** Optimistic concurrency: every update bumps it. */
  version: number;
}

export const DirectoryAccessModes = ['read-only', 'read-write'] as const;
export type DirectoryAccess = (typeof DirectoryAccessModes)[number];

export interface TargetCredentials {
  login: string;
  password?: string;
  privateKey?: string;
}

export interface Resource {
  id: string;
  name: string;
  type: RecordType;
  protocol: Protocol;
  host: string;
  port: number;
  database?: string;
  owner: string;
  access: Principal[];
  /** Vaulted target credentials, sealed with the master key. */
  credentialsSealed?: string;
  settings: WorkflowSettings;
  options: ResourceOptions;
  /** Pinned target identity: SSH host key fingerprint recorded on first use. */
  hostKeyPin?: string;
  /** Ephemeral accounts and privilege elevation (see JitSettings); absent: every session uses the vaulted account. */
  jit?: JitSettings;
  /** Where the record came from: a policy file path, or 'api'. */
  source: string;
  createdAt: Date;
}

export const RequestStates = {
  pending: 'pending',
  approved: 'approved',
  active: 'active',
  denied: 'denied',
  cancelled: 'cancelled',
  expired: 'expired',
  ended: 'ended',
} as const;
export type RequestState = (typeof RequestStates)[keyof typeof RequestStates];

export interface Review {
  approver: string;
  decision: 'approve' | 'deny';
  stage: number;
  at: Date;
  comment?: string;
  /** Set when the approver acted for someone else through a delegation. */
  onBehalfOf?: string;
}

export interface AccessRequest {
  id: string;
  resource: string;
  requester: string;
  reason?: string;
  ticket?: string;
  state: RequestState;
  /** Index of the approval stage collecting approvals now (0 or 1). */
  stage: number;
  reviews: Review[];
  createdAt: Date;
  /** When a pending request expires unanswered. */
  pendingUntil: Date;
  decidedAt?: Date;
  /** Grant window: set on approval (start rule `approval`) or first connection. */
  grantStart?: Date;
  grantEnd?: Date;
  /** Approved but not started grants (start rule `first_connection`) lapse at this time. */
  useBy?: Date;
  lastRemindedAt?: Date;
  /** Set once the escalation delay passed and the extra approvers were told. */
  escalatedAt?: Date;
  endedAt?: Date;
  endReason?: string;
  /** Optimistic concurrency: every update bumps it. */
  version: number;
}

export const LeaseStates = {
  held: 'held',
  checked_in: 'checked_in',
  expired: 'expired',
  force_checked_in: 'force_checked_in',
} as const;
export type LeaseState = (typeof LeaseStates)[keyof typeof LeaseStates];

export interface Lease {
  id: string;
  resource: string;
  holder: string;
  state: LeaseState;
  requestId?: string;
  startedAt: Date;
  expiresAt: Date;
  endedAt?: Date;
  endedBy?: string;
  endReason?: string;
}

export interface Delegation {
  id: string;
  from: string;
  to: string;
  /** Limit to one resource; absent means every resource `from` approves. */
  resource?: string;
  start: Date;
  end: Date;
}

export interface LaunchTicket {
  hash: string;
  user: string;
  resource: string;
  /** True when the ticket was issued right after a TOTP check. */
  mfa: boolean;
  createdAt: Date;
  expiresAt: Date;
  usedAt?: Date;
}

export const TerminationReasons = [
  'client_closed',
  'target_closed',
  'expired',
  'schedule_closed',
  'checked_in',
  'force_checked_in',
  'request_revoked',
  'settings_changed',
  'user_disabled',
  'resource_removed',
  'killed',
  'shutdown',
  'error',
] as const;
export type TerminationReason = (typeof TerminationReasons)[number];

export type SessionState = 'provisional' | 'live' | 'ended';

export interface SessionRecord {
  id: string;
  user: string;
  resource: string;
  protocol: Protocol;
  state: SessionState;
  client: string;
  startedAt: Date;
  deadline?: Date;
  endedAt?: Date;
  endReason?: TerminationReason;
  endMessage?: string;
  bytesIn: number;
  bytesOut: number;
  node: string;
  /** The temporary account the session logged in upstream as (ephemeral JIT). */
  account?: string;
}

export interface AuditEntry {
  seq: number;
  at: Date;
  actor: string;
  action: string;
  subject: string;
  data: Record<string, unknown>;
  prev: string;
  mac: string;
}

export interface ApiToken {
  id: string;
  user: string;
  hash: string;
  kind: 'session' | 'api';
  label?: string;
  createdAt: Date;
  expiresAt?: Date;
}
