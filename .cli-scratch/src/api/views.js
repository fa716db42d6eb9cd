import { isGranted } from '../workflow/requests.js';
import { describeNextOpening, nextOpening } from '../workflow/schedule.js';
/** Public shapes: what leaves the API. Secrets (hashes, sealed blobs) never do. */
export function userView(u) {
    return { name: u.name, admin: u.admin, disabled: u.disabled, teams: u.teams, mfaEnrolled: u.totpConfirmed, sshKeys: u.sshKeys.length, createdAt: u.createdAt };
}
export function requestView(r, extra = {}) {
    return { ...r, ...extra };
}
export function leaseView(l) {
    return { ...l };
}
export function sessionView(s) {
    return { ...s };
}
export async function resourceView(engine, r, user) {
    const now = engine.ctx.clock.now();
    const d = await engine.explain(user.name, r.name, now);
    const state = { canConnect: d.allow };
    if (!d.allow) {
        state.code = d.code;
        state.message = d.message;
        if (d.hint)
            state.hint = d.hint;
    }
    else if (d.deadline) {
        state.timeLeftMs = d.deadline.getTime() - now.getTime();
    }
    const mine = (await engine.ctx.store.listRequests({ requester: user.name, resource: r.name })).find((x) => x.state === 'pending' || isGranted(x));
    if (mine)
        state.request = mine;
    if (r.settings.singleUser) {
        const lease = await engine.ctx.store.getHeldLease(r.name);
        if (lease && lease.expiresAt > now) {
            state.lease = { holder: lease.holder, expiresAt: lease.expiresAt, mine: lease.holder === user.name };
            if (lease.holder === user.name)
                state.timeLeftMs = Math.min(state.timeLeftMs ?? Infinity, lease.expiresAt.getTime() - now.getTime());
        }
    }
    const limit = r.settings.limitAccessTime;
    if (limit && d.allow === false && d.code === 'outside_schedule') {
        state.nextWindow = describeNextOpening(limit, now);
        const at = nextOpening(limit, now);
        if (at)
            state.nextWindowAt = at;
    }
    return {
        name: r.name, type: r.type, protocol: r.protocol, host: r.host, port: r.port, ...(r.database ? { database: r.database } : {}),
        owner: r.owner, access: r.access, settings: r.settings, options: r.options, source: r.source, state,
    };
}
//# sourceMappingURL=views.js.map