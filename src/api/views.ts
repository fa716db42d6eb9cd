import type { AccessRequest, Lease, Resource, SessionRecord, User } from '../core/model.js';
import type { Engine } from '../workflow/engine.js';
import { isGranted } from '../workflow/requests.js';
import { describeNextOpening, nextOpening } from '../workflow/schedule.js';

/** Public shapes: what leaves the API. Secrets (hashes, sealed blobs) never do. */
export function userView(u: User): Record<string, unknown> {
  return { name: u.name, admin: u.admin, disabled: u.disabled, teams: u.teams, mfaEnrolled: u.totpConfirmed, sshKeys: u.sshKeys.length, createdAt: u.createdAt };
}

export function requestView(r: AccessRequest, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { ...r, ...extra };
}

export function leaseView(l: Lease): Record<string, unknown> {
  return { ...l };
}

/** `account`: the temporary account the session logged in upstream as (ephemeral JIT); absent when it used the vaulted one. */
export function sessionView(s: SessionRecord): Record<string, unknown> {
  return { ...s };
}

export interface ResourceState {
  canConnect: boolean;
  code?: string;
  message?: string;
  hint?: string;
  request?: AccessRequest;
  lease?: { holder: string; expiresAt: Date; mine: boolean };
  timeLeftMs?: number;
  nextWindow?: string;
  nextWindowAt?: Date;
}

export async function resourceView(engine: Engine, r: Resource, user: User): Promise<Record<string, unknown>> {
  const now = engine.ctx.clock.now();
  const d = await engine.explain(user.name, r.name, now);
  const state: ResourceState = { canConnect: d.allow };
  if (!d.allow) {
    state.code = d.code;
    state.message = d.message;
    if (d.hint) state.hint = d.hint;
  } else if (d.deadline) {
    state.timeLeftMs = d.deadline.getTime() - now.getTime();
  }
  const mine = (await engine.ctx.store.listRequests({ requester: user.name, resource: r.name })).find((x) => x.state === 'pending' || isGranted(x));
  if (mine) state.request = mine;
  if (r.settings.singleUser) {
    const lease = await engine.ctx.store.getHeldLease(r.name);
    if (lease && lease.expiresAt > now) {
      state.lease = { holder: lease.holder, expiresAt: lease.expiresAt, mine: lease.holder === user.name };
      if (lease.holder === user.name) state.timeLeftMs = Math.min(state.timeLeftMs ?? Infinity, lease.expiresAt.getTime() - now.getTime());
    }
  }
  const limit = r.settings.limitAccessTime;
  if (limit && d.allow === false && d.code === 'outside_schedule') {
    state.nextWindow = describeNextOpening(limit, now);
    const at = nextOpening(limit, now);
    if (at) state.nextWindowAt = at;
  }
  return {
    name: r.name, type: r.type, protocol: r.protocol, host: r.host, port: r.port, ...(r.database ? { database: r.database } : {}),
    owner: r.owner, access: r.access, settings: r.settings, ...(r.jit ? { jit: r.jit } : {}), options: r.options, source: r.source, state,
  };
}
