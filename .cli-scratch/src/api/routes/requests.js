import { z } from 'zod';
import { ForbiddenError } from '../../core/errors.js';
import { parseBody, route } from '../http.js';
import { requestView } from '../views.js';
const Name = z.string().min(1).max(63);
const NewRequest = z.strictObject({ resource: Name, reason: z.string().max(1000).optional(), ticket: z.string().max(100).optional() });
const Comment = z.strictObject({ comment: z.string().max(1000).optional() });
const DenyBody = z.strictObject({ reason: z.string().max(1000).optional() });
const Delegation = z.strictObject({ to: Name, resource: Name.optional(), start: z.iso.datetime().optional(), end: z.iso.datetime() });
/** Access requests and their reviews, and delegations of approval authority. */
export function requestRoutes(d) {
    const { engine } = d;
    const svc = engine.requests;
    return [
        route('POST', '/api/v1/requests', 'Request access', async (c) => {
            const b = parseBody(NewRequest, c.body);
            return requestView(await svc.create(c.user.name, { resource: b.resource, ...(b.reason ? { reason: b.reason } : {}), ...(b.ticket ? { ticket: b.ticket } : {}) }));
        }, {}),
        route('GET', '/api/v1/requests', 'List requests (view=mine|to-approve|all)', async (c) => {
            const view = c.query.get('view') ?? 'mine';
            if (view === 'to-approve')
                return (await svc.toApprove(c.user.name)).map((r) => requestView(r));
            if (view === 'all') {
                if (!c.user.admin)
                    throw new ForbiddenError('only an administrator can list all requests');
                return (await engine.ctx.store.listRequests()).map((r) => requestView(r));
            }
            return (await engine.ctx.store.listRequests({ requester: c.user.name })).map((r) => requestView(r));
        }, {}),
        route('GET', '/api/v1/requests/:id', 'One request', async (c) => {
            const r = await svc.get(c.params.id);
            const approvers = await svc.approversOf(r).catch(() => []);
            if (r.requester !== c.user.name && !c.user.admin && !approvers.includes(c.user.name) && !r.reviews.some((x) => x.approver === c.user.name)) {
                throw new ForbiddenError('you are neither the requester nor an approver of this request');
            }
            return requestView(r, { approvers });
        }, {}),
        route('POST', '/api/v1/requests/:id/remind', 'Remind the approvers', async (c) => requestView(await svc.remind(c.params.id, c.user.name)), {}),
        route('POST', '/api/v1/requests/:id/cancel', 'Cancel my request', async (c) => requestView(await svc.cancel(c.params.id, c.user.name)), {}),
        route('POST', '/api/v1/requests/:id/approve', 'Approve', async (c) => requestView(await svc.approve(c.params.id, c.user.name, parseBody(Comment, c.body).comment)), {}),
        route('POST', '/api/v1/requests/:id/deny', 'Deny', async (c) => requestView(await svc.deny(c.params.id, c.user.name, parseBody(DenyBody, c.body).reason)), {}),
        route('POST', '/api/v1/delegations', 'Delegate my approval authority for a period', async (c) => {
            const b = parseBody(Delegation, c.body);
            await engine.directory.requireUser(b.to);
            const now = engine.ctx.clock.now();
            const del = { id: crypto.randomUUID(), from: c.user.name, to: b.to, start: b.start ? new Date(b.start) : now, end: new Date(b.end), ...(b.resource ? { resource: b.resource } : {}) };
            if (del.end <= del.start)
                throw new ForbiddenError('a delegation must end after it starts');
            await engine.ctx.store.putDelegation(del);
            await engine.ctx.audit.record(c.user.name, 'delegation.create', del.id, { to: del.to, resource: del.resource, end: del.end.toISOString() });
            return del;
        }, {}),
    ];
}
//# sourceMappingURL=requests.js.map