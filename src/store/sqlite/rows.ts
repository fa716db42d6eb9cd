/**
 * Mapping between model records and SQLite rows. Every `...ToRow` returns every column
 * (null for an absent optional field) so the store can build its SQL from the row's keys;
 * every `...FromRow` leaves absent optional fields absent rather than `undefined`.
 */
import type {
  AccessRequest,
  ApiToken,
  AuditEntry,
  Delegation,
  LaunchTicket,
  Lease,
  JitAccount,
  Resource,
  Review,
  Role,
  SessionRecord,
  Team,
  User,
} from '../../core/model.js';

type Cell = string | number | null;
export type Row = Record<string, Cell>;

const iso = (d: Date): string => d.toISOString();
const isoOrNull = (d: Date | undefined): string | null => (d ? d.toISOString() : null);
const bit = (b: boolean): number => (b ? 1 : 0);
const json = (v: unknown): string => JSON.stringify(v);

function str(v: Cell | undefined): string {
  if (typeof v !== 'string') throw new TypeError(`expected text, got ${typeof v}`);
  return v;
}
const num = (v: Cell | undefined): number => Number(v);
const bool = (v: Cell | undefined): boolean => v === 1;
const date = (v: Cell | undefined): Date => new Date(str(v));
const optStr = (v: Cell | undefined): string | undefined => (v === null || v === undefined ? undefined : str(v));
const optDate = (v: Cell | undefined): Date | undefined => (v === null || v === undefined ? undefined : date(v));
const parse = <T>(v: Cell | undefined): T => JSON.parse(str(v)) as T;

/** Drops keys whose value is undefined, so optional fields read back absent, not present-but-undefined. */
function compact<T extends object>(record: T): T {
  for (const key of Object.keys(record) as (keyof T)[]) {
    if (record[key] === undefined) delete record[key];
  }
  return record;
}

export function userToRow(u: User): Row {
  return {
    name: u.name,
    id: u.id,
    admin: bit(u.admin),
    disabled: bit(u.disabled),
    teams: json(u.teams),
    password_hash: u.passwordHash ?? null,
    totp_secret_sealed: u.totpSecretSealed ?? null,
    totp_confirmed: bit(u.totpConfirmed),
    ssh_keys: json(u.sshKeys),
    created_at: iso(u.createdAt),
  };
}

export function userFromRow(r: Row): User {
  return compact<User>({
    id: str(r.id),
    name: str(r.name),
    admin: bool(r.admin),
    disabled: bool(r.disabled),
    teams: parse<string[]>(r.teams),
    passwordHash: optStr(r.password_hash),
    totpSecretSealed: optStr(r.totp_secret_sealed),
    totpConfirmed: bool(r.totp_confirmed),
    sshKeys: parse<string[]>(r.ssh_keys),
    createdAt: date(r.created_at),
  });
}

export function teamToRow(t: Team): Row {
  return { name: t.name, created_at: iso(t.createdAt) };
}

export function teamFromRow(r: Row): Team {
  return { name: str(r.name), createdAt: date(r.created_at) };
}

export function roleToRow(role: Role): Row {
  return { name: role.name, enforcements: json(role.enforcements), members: json(role.members) };
}

export function roleFromRow(r: Row): Role {
  return {
    name: str(r.name),
    enforcements: parse<Role['enforcements']>(r.enforcements),
    members: parse<string[]>(r.members),
  };
}

export function resourceToRow(res: Resource): Row {
  return {
    name: res.name,
    id: res.id,
    type: res.type,
    protocol: res.protocol,
    host: res.host,
    port: res.port,
    database: res.database ?? null,
    owner: res.owner,
    access: json(res.access),
    credentials_sealed: res.credentialsSealed ?? null,
    settings: json(res.settings),
    options: json(res.options),
    host_key_pin: res.hostKeyPin ?? null,
    jit: res.jit ? json(res.jit) : null,
    source: res.source,
    created_at: iso(res.createdAt),
  };
}

export function resourceFromRow(r: Row): Resource {
  return compact<Resource>({
    id: str(r.id),
    name: str(r.name),
    type: str(r.type) as Resource['type'],
    protocol: str(r.protocol) as Resource['protocol'],
    host: str(r.host),
    port: num(r.port),
    database: optStr(r.database),
    owner: str(r.owner),
    access: parse<Resource['access']>(r.access),
    credentialsSealed: optStr(r.credentials_sealed),
    settings: parse<Resource['settings']>(r.settings),
    options: parse<Resource['options']>(r.options),
    hostKeyPin: optStr(r.host_key_pin),
    jit: r.jit == null ? undefined : parse<Resource['jit']>(r.jit),
    source: str(r.source),
    createdAt: date(r.created_at),
  });
}

type StoredReview = Omit<Review, 'at'> & { at: string };

export function requestToRow(q: AccessRequest): Row {
  return {
    id: q.id,
    resource: q.resource,
    requester: q.requester,
    reason: q.reason ?? null,
    ticket: q.ticket ?? null,
    state: q.state,
    stage: q.stage,
    reviews: json(q.reviews),
    created_at: iso(q.createdAt),
    pending_until: iso(q.pendingUntil),
    decided_at: isoOrNull(q.decidedAt),
    grant_start: isoOrNull(q.grantStart),
    grant_end: isoOrNull(q.grantEnd),
    use_by: isoOrNull(q.useBy),
    last_reminded_at: isoOrNull(q.lastRemindedAt),
    escalated_at: isoOrNull(q.escalatedAt),
    ended_at: isoOrNull(q.endedAt),
    end_reason: q.endReason ?? null,
    version: q.version,
  };
}

export function requestFromRow(r: Row): AccessRequest {
  const reviews = parse<StoredReview[]>(r.reviews).map((rv): Review => ({ ...rv, at: new Date(rv.at) }));
  return compact<AccessRequest>({
    id: str(r.id),
    resource: str(r.resource),
    requester: str(r.requester),
    reason: optStr(r.reason),
    ticket: optStr(r.ticket),
    state: str(r.state) as AccessRequest['state'],
    stage: num(r.stage),
    reviews,
    createdAt: date(r.created_at),
    pendingUntil: date(r.pending_until),
    decidedAt: optDate(r.decided_at),
    grantStart: optDate(r.grant_start),
    grantEnd: optDate(r.grant_end),
    useBy: optDate(r.use_by),
    lastRemindedAt: optDate(r.last_reminded_at),
    escalatedAt: optDate(r.escalated_at),
    endedAt: optDate(r.ended_at),
    endReason: optStr(r.end_reason),
    version: num(r.version),
  });
}

export function leaseToRow(l: Lease): Row {
  return {
    id: l.id,
    resource: l.resource,
    holder: l.holder,
    state: l.state,
    request_id: l.requestId ?? null,
    started_at: iso(l.startedAt),
    expires_at: iso(l.expiresAt),
    ended_at: isoOrNull(l.endedAt),
    ended_by: l.endedBy ?? null,
    end_reason: l.endReason ?? null,
  };
}

export function leaseFromRow(r: Row): Lease {
  return compact<Lease>({
    id: str(r.id),
    resource: str(r.resource),
    holder: str(r.holder),
    state: str(r.state) as Lease['state'],
    requestId: optStr(r.request_id),
    startedAt: date(r.started_at),
    expiresAt: date(r.expires_at),
    endedAt: optDate(r.ended_at),
    endedBy: optStr(r.ended_by),
    endReason: optStr(r.end_reason),
  });
}

export function delegationToRow(d: Delegation): Row {
  return {
    id: d.id,
    from_user: d.from,
    to_user: d.to,
    resource: d.resource ?? null,
    start_at: iso(d.start),
    end_at: iso(d.end),
  };
}

export function delegationFromRow(r: Row): Delegation {
  return compact<Delegation>({
    id: str(r.id),
    from: str(r.from_user),
    to: str(r.to_user),
    resource: optStr(r.resource),
    start: date(r.start_at),
    end: date(r.end_at),
  });
}

export function ticketToRow(t: LaunchTicket): Row {
  return {
    hash: t.hash,
    user: t.user,
    resource: t.resource,
    mfa: bit(t.mfa),
    created_at: iso(t.createdAt),
    expires_at: iso(t.expiresAt),
    used_at: isoOrNull(t.usedAt),
  };
}

export function ticketFromRow(r: Row): LaunchTicket {
  return compact<LaunchTicket>({
    hash: str(r.hash),
    user: str(r.user),
    resource: str(r.resource),
    mfa: bool(r.mfa),
    createdAt: date(r.created_at),
    expiresAt: date(r.expires_at),
    usedAt: optDate(r.used_at),
  });
}

export function tokenToRow(t: ApiToken): Row {
  return {
    id: t.id,
    user: t.user,
    hash: t.hash,
    kind: t.kind,
    label: t.label ?? null,
    created_at: iso(t.createdAt),
    expires_at: isoOrNull(t.expiresAt),
  };
}

export function tokenFromRow(r: Row): ApiToken {
  return compact<ApiToken>({
    id: str(r.id),
    user: str(r.user),
    hash: str(r.hash),
    kind: str(r.kind) as ApiToken['kind'],
    label: optStr(r.label),
    createdAt: date(r.created_at),
    expiresAt: optDate(r.expires_at),
  });
}

export function sessionToRow(s: SessionRecord): Row {
  return {
    id: s.id,
    user: s.user,
    resource: s.resource,
    protocol: s.protocol,
    state: s.state,
    client: s.client,
    started_at: iso(s.startedAt),
    deadline: isoOrNull(s.deadline),
    ended_at: isoOrNull(s.endedAt),
    end_reason: s.endReason ?? null,
    end_message: s.endMessage ?? null,
    bytes_in: s.bytesIn,
    bytes_out: s.bytesOut,
    node: s.node,
    account: s.account ?? null,
  };
}

export function sessionFromRow(r: Row): SessionRecord {
  return compact<SessionRecord>({
    id: str(r.id),
    user: str(r.user),
    resource: str(r.resource),
    protocol: str(r.protocol) as SessionRecord['protocol'],
    state: str(r.state) as SessionRecord['state'],
    client: str(r.client),
    startedAt: date(r.started_at),
    deadline: optDate(r.deadline),
    endedAt: optDate(r.ended_at),
    endReason: optStr(r.end_reason) as SessionRecord['endReason'],
    endMessage: optStr(r.end_message),
    bytesIn: num(r.bytes_in),
    bytesOut: num(r.bytes_out),
    node: str(r.node),
    account: optStr(r.account),
  });
}

export function jitAccountToRow(a: JitAccount): Row {
  return {
    id: a.id,
    resource: a.resource,
    kind: a.kind,
    grant_key: a.grant,
    user: a.user,
    request_id: a.requestId ?? null,
    lease_id: a.leaseId ?? null,
    session_id: a.sessionId ?? null,
    account: a.account,
    grants: json(a.grants),
    state: a.state,
    credentials_sealed: a.credentialsSealed ?? null,
    resource_snapshot: a.resourceSnapshot,
    node: a.node,
    created_at: iso(a.createdAt),
    updated_at: iso(a.updatedAt),
    deadline: isoOrNull(a.deadline),
    attempts: a.attempts,
    error: a.error ?? null,
    gone_at: isoOrNull(a.goneAt),
    version: a.version,
  };
}

export function jitAccountFromRow(r: Row): JitAccount {
  return compact<JitAccount>({
    id: str(r.id),
    resource: str(r.resource),
    kind: str(r.kind) as JitAccount['kind'],
    grant: str(r.grant_key),
    user: str(r.user),
    requestId: optStr(r.request_id),
    leaseId: optStr(r.lease_id),
    sessionId: optStr(r.session_id),
    account: str(r.account),
    grants: parse<string[]>(r.grants),
    state: str(r.state) as JitAccount['state'],
    credentialsSealed: optStr(r.credentials_sealed),
    resourceSnapshot: str(r.resource_snapshot),
    node: str(r.node),
    createdAt: date(r.created_at),
    updatedAt: date(r.updated_at),
    deadline: optDate(r.deadline),
    attempts: num(r.attempts),
    error: optStr(r.error),
    goneAt: optDate(r.gone_at),
    version: num(r.version),
  });
}

export function auditToRow(e: AuditEntry): Row {
  return {
    seq: e.seq,
    at: iso(e.at),
    actor: e.actor,
    action: e.action,
    subject: e.subject,
    data: json(e.data),
    prev: e.prev,
    mac: e.mac,
  };
}

export function auditFromRow(r: Row): AuditEntry {
  return {
    seq: num(r.seq),
    at: date(r.at),
    actor: str(r.actor),
    action: str(r.action),
    subject: str(r.subject),
    data: parse<Record<string, unknown>>(r.data),
    prev: str(r.prev),
    mac: str(r.mac),
  };
}
