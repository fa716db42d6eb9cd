import { z } from 'zod';
import { ForbiddenError, GatehouseError, NotFoundError } from '../../core/errors.js';
import { isOnAccessList } from '../../workflow/access.js';
import { describeJit } from '../../workflow/jit-settings.js';
import type { MfaProof } from '../../workflow/decide.js';
import { AuditLog } from '../../audit/audit-log.js';
import { AuditCheckpointSchema } from '../../audit/checkpoint.js';
import type { ApiDeps } from '../deps.js';
import { parseBody, route, type Route } from '../http.js';
import { clientCommand, clientInvocation } from '../launch.js';
import { doorFor, isTunneled } from '../../../protocols/registry.js';
import { sessionView } from '../views.js';

const Launch = z.strictObject({ resource: z.string().min(1).max(63), totp: z.string().max(16).optional() });

/** Launch tickets, live sessions, the audit log and `policy explain`. */
export function operationRoutes(d: ApiDeps): Route[] {
  const { engine, auth } = d;
  const store = engine.ctx.store;
  const auditLog = (): AuditLog => {
    const audit = engine.ctx.audit;
    if (!(audit instanceof AuditLog)) throw new GatehouseError('INTERNAL', 'audit verification is not available');
    return audit;
  };
  return [
    route('POST', '/api/v1/launch', 'Issue a one-time launch ticket and the client command', async (c) => {
      const b = parseBody(Launch, c.body);
      const r = await engine.directory.requireResource(b.resource);
      if (!isOnAccessList(c.user, r)) throw new ForbiddenError(`${c.user.name} is not on the access list of ${r.name}`);
      // No ticket for a resource no door can reach: it could only be misused or wasted.
      if (!doorFor(r.protocol) && !isTunneled(r.protocol)) throw new GatehouseError('INVALID_STATE', `${r.name} is a ${r.protocol} resource and no gateway door serves ${r.protocol} yet`, { protocol: r.protocol });
      let mfa: MfaProof = { kind: 'none' };
      if (b.totp) {
        // Checked against the lock first; a wrong code counts against this user, not the address.
        await auth.guardTotp(c.user.name, () => engine.mfa.verify(c.user.name, b.totp!));
        mfa = { kind: 'verified', at: engine.ctx.clock.now() };
      }
      // Refuse now, with the reason, rather than hand out a ticket the gateway will refuse.
      const verdict = await engine.explain(c.user.name, r.name);
      if (!verdict.allow) throw new GatehouseError('FORBIDDEN', verdict.message, { denyCode: verdict.code, hint: verdict.hint });
      if (r.settings.mfa && mfa.kind === 'none') {
        throw new GatehouseError('MFA_REQUIRED', `${r.name} requires MFA: pass a TOTP code (--totp CODE)`, { denyCode: 'mfa_required' });
      }
      const t = await engine.mfa.issueTicket(c.user.name, r.name, mfa.kind === 'verified');
      const invocation = clientInvocation(d, c.user.name, r, t.ticket);
      return {
        resource: r.name, protocol: r.protocol, ticket: t.ticket, expiresAt: t.expiresAt,
        command: clientCommand(d, c.user.name, r, t.ticket), ...(invocation ? { invocation } : {}),
      };
    }, {}),
    route('GET', '/api/v1/sessions', 'Gateway sessions (admins: all; others: own)', async (c) => {
      const state = c.query.get('state');
      const list = await store.listSessions({
        ...(state === 'live' || state === 'ended' ? { state } : {}),
        ...(c.user.admin ? {} : { user: c.user.name }),
        limit: 500,
      });
      return list.map(sessionView);
    }, {}),
    route('POST', '/api/v1/sessions/:id/kill', 'End a live session now', async (c) => {
      const s = await store.getSession(c.params.id!);
      if (!s) throw new NotFoundError('session', c.params.id!);
      const r = await store.getResource(s.resource);
      if (!c.user.admin && !(r && (await engine.leases.mayForce(c.user.name, r)))) throw new ForbiddenError('only an administrator or an approver of the resource can kill a session');
      const killed = await d.sessions.kill(s.id, c.user.name);
      return { ok: killed };
    }, {}),
    route('GET', '/api/v1/audit', 'The audit log', async (c) => {
      await engine.directory.requireAdmin(c.user.name);
      const q = c.query;
      const limit = Math.min(Number(q.get('limit') ?? 200) || 200, 5000);
      // Without a cursor the newest entries are what people want to see.
      return store.listAudit({
        limit,
        newest: !q.get('afterSeq'),
        ...(q.get('afterSeq') ? { afterSeq: Number(q.get('afterSeq')) } : {}),
        ...(q.get('actor') ? { actor: q.get('actor')! } : {}),
        ...(q.get('action') ? { action: q.get('action')! } : {}),
        ...(q.get('subject') ? { subject: q.get('subject')! } : {}),
      });
    }, {}),
    route('GET', '/api/v1/audit/verify', 'Verify the audit chain', async (c) => {
      await engine.directory.requireAdmin(c.user.name);
      return auditLog().verify();
    }, {}),
    route('POST', '/api/v1/audit/verify', 'Verify the audit chain against a checkpoint kept elsewhere', async (c) => {
      await engine.directory.requireAdmin(c.user.name);
      const b = parseBody(z.strictObject({ checkpoint: AuditCheckpointSchema }), c.body);
      return auditLog().verify({ checkpoint: b.checkpoint });
    }, {}),
    route('GET', '/api/v1/audit/checkpoint', "A signed checkpoint of the audit chain's head, to keep off this machine", async (c) => {
      await engine.directory.requireAdmin(c.user.name);
      const cp = await auditLog().checkpoint();
      await engine.ctx.audit.record(c.user.name, 'audit.checkpoint', String(cp.seq), { mac: cp.mac });
      return cp;
    }, {}),
    route('GET', '/api/v1/policy/explain', 'Why a user can or cannot connect', async (c) => {
      const user = c.query.get('user') ?? c.user.name;
      const resource = c.query.get('resource');
      if (!resource) throw new GatehouseError('VALIDATION', 'resource: required', { field: 'resource' });
      if (user !== c.user.name && !c.user.admin) throw new ForbiddenError('only an administrator can explain access for someone else');
      const atText = c.query.get('at');
      const at = atText ? new Date(atText) : engine.ctx.clock.now();
      if (Number.isNaN(at.getTime())) throw new GatehouseError('VALIDATION', 'at: not an ISO time', { field: 'at' });
      const dcs = await engine.explain(user, resource, at);
      // Which account the session would use upstream; only for a resource the caller can see.
      const r = await store.getResource(resource);
      const jit = r && (c.user.admin || isOnAccessList(c.user, r))
        ? { jit: { ephemeral: !!r.jit?.ephemeral, elevate: !!r.jit?.elevate, description: describeJit(r.jit) } }
        : {};
      return dcs.allow
        ? { allow: true, deadline: dcs.deadline, warnAt: dcs.warnAt, checks: dcs.checks, ...jit }
        : { allow: false, code: dcs.code, message: dcs.message, hint: dcs.hint, checks: dcs.checks, ...jit };
    }, {}),
  ];
}
