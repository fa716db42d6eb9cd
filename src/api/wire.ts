import type {
  AccessRequest,
  AuditEntry,
  JitSettings,
  Lease,
  Protocol,
  Resource,
  Role,
  SessionRecord,
  Team,
  WorkflowSettings,
} from '../core/model.js';

/**
 * The API's JSON shapes as clients (the CLI, the web vault) receive them (src/api/README.md). Records travel with
 * their dates as ISO strings, so `Wire<T>` turns every Date field into a string.
 */
export type Wire<T> = T extends Date
  ? string
  : T extends Array<infer U>
    ? Array<Wire<U>>
    : T extends object
      ? { [K in keyof T]: Wire<T[K]> }
      : T;

export interface Me {
  name: string;
  admin: boolean;
  teams: string[];
  mfaEnrolled: boolean;
  canConfigureWorkflow: boolean;
}

export interface LoginResponse {
  token: string;
  expiresAt: string;
  user: Me;
}

export type RequestView = Wire<AccessRequest> & { approvers?: string[] };
export type LeaseView = Wire<Lease>;
export type SessionView = Wire<SessionRecord>;
export type AuditView = Wire<AuditEntry>;
export interface UserView {
  name: string;
  admin: boolean;
  disabled: boolean;
  teams: string[];
  mfaEnrolled: boolean;
  /** How many SSH keys the user has. */
  sshKeys: number;
  createdAt: string;
}
export type TeamView = Wire<Team>;
export type RoleView = Role;

export interface ResourceState {
  canConnect: boolean;
  code?: string;
  message?: string;
  hint?: string;
  request?: RequestView;
  lease?: { holder: string; expiresAt: string; mine: boolean };
  timeLeftMs?: number;
  /** A phrase in the resource's zone, e.g. "next window Mon 08:00 (Europe/Berlin)". */
  nextWindow?: string;
  nextWindowAt?: string;
}

/** What GET /resources returns: the resource without its secrets, plus my state on it. */
export type ResourceView = Pick<Resource, 'name' | 'type' | 'protocol' | 'host' | 'port' | 'database' | 'owner' | 'access' | 'settings' | 'jit' | 'options' | 'source'> & {
  state: ResourceState;
};

export interface WorkflowView {
  resource: string;
  settings: WorkflowSettings;
  lines: string[];
  canConfigure: boolean;
}

/** GET and PUT /resources/:name/jit: ephemeral accounts and elevation. */
export interface JitView {
  resource: string;
  protocol: Protocol;
  /** Whether the resource's door can make temporary accounts or elevate (postgres, mysql, ssh, ldap). */
  supported: boolean;
  /** null: every session uses the vaulted account as it is. */
  jit: JitSettings | null;
  /** One sentence (describeJit), e.g. "a temporary account per grant with app_read, removed when the grant ends". */
  description: string;
  /** Whether the caller may change them (the workflow settings' rule). */
  canConfigure: boolean;
}

export interface LaunchResponse {
  ticket: string;
  expiresAt: string;
  command: string;
  resource: string;
  protocol: Protocol;
  /** How to start the stock client (absent for browser and tunnel resources). */
  invocation?: { program: string; args: string[]; env: Record<string, string>; stdin?: string };
}

export interface ExplainResponse {
  allow: boolean;
  code?: string;
  message?: string;
  hint?: string;
  deadline?: string;
  checks: Array<{ check: string; ok: boolean; detail: string }>;
  /** Which account a session of the resource logs in upstream as; absent for a resource the caller cannot see. */
  jit?: ExplainJit;
}

export interface ExplainJit {
  ephemeral: boolean;
  elevate: boolean;
  /** describeJit's sentence. */
  description: string;
}

export type AuditVerifyResponse =
  | { ok: true; count: number; head?: string }
  | { ok: false; count: number; firstBadSeq?: number; problem?: string };

/** A signed checkpoint of the audit chain's head (src/audit/checkpoint.ts), kept off the gateway's machine. */
export interface AuditCheckpointView {
  v: 1;
  seq: number;
  mac: string;
  at: string;
  node: string;
  sig: string;
}

export interface TokenResponse {
  id: string;
  token: string;
  expiresAt?: string;
}

/** GET /tokens: my sessions and API tokens, without the tokens themselves. */
export interface TokenView {
  id: string;
  kind: 'session' | 'api';
  label?: string;
  createdAt: string;
  expiresAt?: string;
  /** The token this request was made with. */
  current: boolean;
}

export interface TokenListResponse {
  tokens: TokenView[];
}

/** DELETE /tokens/:id; `current` when that was the token the request came with. */
export interface TokenRevokeResponse {
  ok: true;
  current: boolean;
}

export interface SshKeyView {
  /** As `ssh-keygen -l` prints it: `SHA256:` and base64 without padding. */
  fingerprint: string;
  type: string;
  comment?: string;
  publicKey: string;
}

/** GET and POST /keys: `keys` are the key lines (older clients read them), `entries` add fingerprints. */
export interface KeysResponse {
  keys: string[];
  entries: SshKeyView[];
}

export interface PasswordChangeResponse {
  ok: true;
  /** Other sessions and API tokens of the user that the change revoked. */
  revokedTokens: number;
}

/** Messages on /api/v1/events; only the ones the CLI acts on are spelled out. */
export type EventMessage =
  | { type: 'hello'; user: string }
  | { type: `request_${string}`; request: RequestView }
  | { type: `lease_${string}`; lease: LeaseView }
  | { type: string; [key: string]: unknown };
