/** Record builders for the store contract: `full` variants set every optional field, the rest leave them absent. */
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import type { GatehouseError } from '../../../src/core/errors.js';
import type {
  AccessRequest,
  ApiToken,
  AuditEntry,
  Delegation,
  JitAccount,
  LaunchTicket,
  Lease,
  Resource,
  SessionRecord,
  User,
} from '../../../src/core/model.js';

export const T0 = new Date('2026-01-05T09:00:00.123Z');

/** T0 plus `minutes` (fractions allowed), always a fresh Date. */
export function at(minutes: number): Date {
  return new Date(T0.getTime() + minutes * 60_000);
}

export function user(name: string, over: Partial<User> = {}): User {
  const flags = { admin: false, disabled: false, totpConfirmed: false };
  return { id: `u-${name}`, name, ...flags, teams: [], sshKeys: [], createdAt: at(0), ...over };
}

export function fullUser(name: string): User {
  return user(name, {
    admin: true,
    disabled: true,
    teams: ['dba', 'ops'],
    passwordHash: 'scrypt$16384$8$1$c2FsdA$aGFzaA',
    totpSecretSealed: 'v1:sealed-secret',
    totpConfirmed: true,
    sshKeys: ['ssh-ed25519 AAAAC3Nza alice@laptop', 'ssh-rsa AAAAB3Nza alice@desk'],
  });
}

export function resource(name: string, over: Partial<Resource> = {}): Resource {
  return {
    id: `r-${name}`,
    name,
    type: 'database',
    protocol: 'postgres',
    host: '127.0.0.1',
    port: 5432,
    owner: 'olivia',
    access: [],
    settings: {},
    options: {},
    source: 'api',
    createdAt: at(0),
    ...over,
  };
}

export function fullResource(name: string): Resource {
  return resource(name, {
    database: 'app',
    access: [{ user: 'alice' }, { team: 'dba' }],
    credentialsSealed: 'v1:sealed-creds',
    settings: {
      limitAccessTime: {
        timezone: 'Europe/Berlin',
        schedule: [{ days: ['mon', 'tue'], start: '22:00', end: '06:00' }],
        maxDurationMinutes: 120,
      },
      requireApproval: {
        approvers: [{ team: 'dba' }],
        approvals: 2,
        requireReason: true,
        requireTicket: true,
        ticketPattern: '^OPS-[0-9]+$',
        startOn: 'first_connection',
        secondStage: { approvers: [{ user: 'cto' }], approvals: 1 },
        escalation: { afterMinutes: 30, approvers: [{ user: 'oncall' }] },
        pendingTtlMinutes: 60,
      },
      singleUser: true,
      mfa: true,
    },
    options: { allowAgentForwarding: true, allowedTunnelPorts: [5432, 5433] },
    hostKeyPin: 'SHA256:abcdef',
    jit: { ephemeral: { grants: ['app_read', 'app_write'], inheritor: 'owners' } },
    source: 'policies/prod.yaml',
  });
}

export function request(id: string, over: Partial<AccessRequest> = {}): AccessRequest {
  return {
    id,
    resource: 'prod-pg',
    requester: 'alice',
    state: 'pending',
    stage: 0,
    reviews: [],
    createdAt: at(0),
    pendingUntil: at(60),
    version: 1,
    ...over,
  };
}

export function fullRequest(id: string): AccessRequest {
  return request(id, {
    reason: 'fix the broken index',
    ticket: 'OPS-42',
    state: 'active',
    stage: 1,
    reviews: [
      { approver: 'bob', decision: 'approve', stage: 0, at: at(5), comment: 'ok', onBehalfOf: 'olivia' },
      { approver: 'cto', decision: 'approve', stage: 1, at: at(6) },
    ],
    decidedAt: at(6),
    grantStart: at(7),
    grantEnd: at(127),
    useBy: at(30),
    lastRemindedAt: at(3),
    endedAt: at(100),
    endReason: 'done',
    version: 4,
  });
}

export function lease(id: string, over: Partial<Lease> = {}): Lease {
  return { id, resource: 'prod-pg', holder: 'alice', state: 'held', startedAt: at(0), expiresAt: at(60), ...over };
}

export function delegation(id: string, over: Partial<Delegation> = {}): Delegation {
  return { id, from: 'olivia', to: 'bob', start: at(0), end: at(600), ...over };
}

export function ticket(hash: string, over: Partial<LaunchTicket> = {}): LaunchTicket {
  return { hash, user: 'alice', resource: 'prod-pg', mfa: true, createdAt: at(0), expiresAt: at(1), ...over };
}

export function token(id: string, over: Partial<ApiToken> = {}): ApiToken {
  return { id, user: 'alice', hash: `hash-${id}`, kind: 'session', createdAt: at(0), ...over };
}

export function session(id: string, over: Partial<SessionRecord> = {}): SessionRecord {
  return {
    id,
    user: 'alice',
    resource: 'prod-pg',
    protocol: 'postgres',
    state: 'live',
    client: '127.0.0.1:50000',
    startedAt: at(0),
    bytesIn: 0,
    bytesOut: 0,
    node: 'node-a',
    ...over,
  };
}

export function jitAccount(id: string, over: Partial<JitAccount> = {}): JitAccount {
  return {
    id,
    resource: 'prod-pg',
    kind: 'ephemeral',
    grant: `lease:${id}`,
    user: 'alice',
    account: `gh_alice_${id}`,
    grants: ['app_read'],
    state: 'planned',
    resourceSnapshot: '{"name":"prod-pg"}',
    node: 'node-a',
    createdAt: at(0),
    updatedAt: at(0),
    attempts: 0,
    version: 1,
    ...over,
  };
}

/** A deterministic stand-in for src/audit's sealer: any function of the whole unsealed entry will do. */
export function seal(entry: Omit<AuditEntry, 'mac'>): string {
  return createHash('sha256').update(JSON.stringify(entry)).digest('hex');
}

/** The `prev` of the first audit entry, fixed so a chain verifies the same on every backend. */
export const GENESIS = 'genesis';

/** Awaits a promise that must reject and returns its error for code/details assertions. */
export async function rejection(p: Promise<unknown>): Promise<GatehouseError> {
  const outcome = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(outcome, 'expected the promise to reject').toBeInstanceOf(Error);
  return outcome as GatehouseError;
}
