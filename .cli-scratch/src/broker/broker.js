import { randomUUID } from 'node:crypto';
import { SessionMonitor } from './monitor.js';
import { verifyPassword } from '../secrets/passwords.js';
/**
 * A connection that passed the decision. It is provisional until the adapter has reached
 * the target and calls `live(handle)`; a provisional session that fails is discarded, not
 * recorded as ended. From live on, every end goes through the broker's one disconnect path.
 */
export class BrokerSession {
    broker;
    request;
    decision;
    id = randomUUID();
    startedAt;
    bytesIn = 0;
    bytesOut = 0;
    phase = 'provisional';
    handle;
    monitor;
    constructor(broker, request, decision) {
        this.broker = broker;
        this.request = request;
        this.decision = decision;
        this.startedAt = broker.engine.ctx.clock.now();
    }
    get user() {
        return this.decision.user;
    }
    get resource() {
        return this.decision.resource;
    }
    get credentials() {
        return this.decision.credentials;
    }
    /** The target is reached: record the session, start its monitor. */
    live(handle) {
        return this.broker.goLive(this, handle);
    }
    /** The target could not be reached: forget the session (audited as a failed attempt). */
    discard(why) {
        this.broker.discard(this, why);
    }
    /** The client or the target went away. */
    end(reason, message = '') {
        void this.broker.disconnect(this, reason, message);
    }
}
/** Opens sessions through the decision, keeps the live ones, and ends them. */
export class Broker {
    engine;
    log;
    node;
    sessions = new Map();
    constructor(opts) {
        this.engine = opts.engine;
        this.log = opts.log;
        this.node = opts.node;
    }
    /** Runs the decision for a new connection. Every connection, every time: nothing is cached. */
    async open(req) {
        const at = this.engine.ctx.clock.now();
        const d = await this.engine.decide({ user: req.user, resource: req.resource, at, mfa: req.mfa });
        if (!d.allow)
            return { ok: false, denial: d };
        return { ok: true, session: new BrokerSession(this, req, d) };
    }
    async goLive(s, handle) {
        if (s.phase !== 'provisional')
            return;
        s.phase = 'live';
        s.handle = handle;
        this.sessions.set(s.id, s);
        await this.save(s, 'live');
        await this.engine.ctx.audit.record(s.user, 'session.start', s.id, {
            resource: s.resource.name, protocol: s.request.protocol, client: s.request.client, deadline: s.decision.deadline?.toISOString(), node: this.node,
        });
        this.engine.ctx.bus.publishNotice({ kind: 'session_started', sessionId: s.id, resource: s.resource.name, user: s.user, to: [s.user] });
        this.startMonitor(s);
    }
    discard(s, why) {
        if (s.phase !== 'provisional')
            return;
        s.phase = 'ended';
        void this.engine.ctx.audit
            .record(s.user, 'session.discard', s.id, { resource: s.resource.name, protocol: s.request.protocol, why })
            .catch((err) => this.log.error({ err }, 'audit failed'));
    }
    /** The one way a live session ends: goodbye to the client, then record and audit. */
    async disconnect(s, reason, message) {
        if (s.phase === 'provisional')
            return this.discard(s, reason);
        if (s.phase !== 'live')
            return;
        s.phase = 'ended';
        s.monitor?.stop();
        this.sessions.delete(s.id);
        try {
            s.handle?.close(reason, message || `Gatehouse: session closed (${reason}).`);
        }
        catch (err) {
            this.log.warn({ err, session: s.id }, 'adapter close failed');
        }
        const endedAt = this.engine.ctx.clock.now();
        try {
            await this.save(s, 'ended', { endedAt, endReason: reason, endMessage: message });
            await this.engine.ctx.audit.record(s.user, 'session.end', s.id, {
                resource: s.resource.name, protocol: s.request.protocol, reason, message, bytesIn: s.bytesIn, bytesOut: s.bytesOut,
                durationMs: endedAt.getTime() - s.startedAt.getTime(),
            });
        }
        catch (err) {
            this.log.error({ err, session: s.id }, 'could not record the end of a session');
        }
        this.engine.ctx.bus.publishNotice({ kind: 'session_ended', sessionId: s.id, resource: s.resource.name, user: s.user, reason, to: [s.user] });
    }
    /**
     * Ends a live session by id. A session held by another node is reached through the bus
     * (its monitor listens for `session_killed`); the record is closed here either way, since
     * a stuck node might never do it.
     */
    async kill(id, by) {
        const local = this.sessions.get(id);
        if (local) {
            await this.disconnect(local, 'killed', `Gatehouse: this session was ended by ${by}.`);
            return true;
        }
        const rec = await this.engine.ctx.store.getSession(id);
        if (!rec || rec.state !== 'live')
            return false;
        this.engine.ctx.bus.publishRevoke({ kind: 'session_killed', sessionId: id, by, message: `ended by ${by}` });
        await this.engine.ctx.store.putSession({ ...rec, state: 'ended', endedAt: this.engine.ctx.clock.now(), endReason: 'killed', endMessage: `ended by ${by}` });
        await this.engine.ctx.audit.record(by, 'session.kill', id, { resource: rec.resource, node: rec.node });
        return true;
    }
    /**
     * Pins a target's identity (e.g. an SSH host key fingerprint) on first use; later
     * connections must present the same one. Protocols never touch the store themselves.
     */
    async pinTargetIdentity(resource, fingerprint) {
        const r = await this.engine.ctx.store.getResource(resource);
        if (!r)
            return 'mismatch';
        if (r.hostKeyPin)
            return r.hostKeyPin === fingerprint ? 'match' : 'mismatch';
        await this.engine.ctx.store.putResource({ ...r, hostKeyPin: fingerprint });
        await this.engine.ctx.audit.record('system', 'resource.pin_identity', resource, { fingerprint });
        return 'pinned';
    }
    /** Checks a user's gateway password (protocols that accept it instead of a launch ticket). */
    async checkPassword(user, password) {
        const u = await this.engine.ctx.store.getUser(user);
        return !!u && !u.disabled && (await verifyPassword(password, u.passwordHash));
    }
    /** Checks that `publicKey` (OpenSSH one-line, algorithm + base64) is registered for the user. */
    async hasSshKey(user, keyType, keyBase64) {
        const u = await this.engine.ctx.store.getUser(user);
        if (!u || u.disabled)
            return false;
        return u.sshKeys.some((line) => {
            const [t, b] = line.trim().split(/\s+/);
            return t === keyType && b === keyBase64;
        });
    }
    /** Redeems a one-time launch ticket for `resource`; the MFA proof it carries, or undefined. */
    async redeemTicket(ticket, resource) {
        const t = await this.engine.mfa.redeemTicket(ticket, resource);
        if (!t)
            return undefined;
        return { user: t.user, mfa: t.mfa ? { kind: 'verified', at: t.createdAt } : { kind: 'none' } };
    }
    live() {
        return [...this.sessions.values()];
    }
    async shutdown() {
        await Promise.all(this.live().map((s) => this.disconnect(s, 'shutdown', 'Gatehouse: the gateway is shutting down.')));
    }
    startMonitor(s) {
        const d = s.decision;
        s.monitor?.stop();
        s.monitor = new SessionMonitor({
            id: s.id, user: s.user, resource: s.resource.name,
            ...(d.requestId ? { requestId: d.requestId } : {}), ...(d.leaseId ? { leaseId: d.leaseId } : {}),
            ...(d.deadline ? { deadline: d.deadline } : {}), ...(d.deadlineCause ? { deadlineCause: d.deadlineCause } : {}), ...(d.warnAt ? { warnAt: d.warnAt } : {}),
        }, this.engine.ctx.clock, this.engine.ctx.bus, {
            warn: (m) => {
                try {
                    s.handle?.warn(m);
                }
                catch (err) {
                    this.log.warn({ err }, 'warning failed');
                }
                this.engine.ctx.bus.publishNotice({ kind: 'access_expiring', resource: s.resource.name, at: d.deadline ?? this.engine.ctx.clock.now(), to: [s.user] });
            },
            end: (reason, message) => void this.disconnect(s, reason, message),
            recheck: () => void this.recheck(s),
        });
        s.monitor.start();
    }
    /** Workflow settings changed: the session stays only if the new settings still allow it. */
    async recheck(s) {
        const now = this.engine.ctx.clock.now();
        const d = await this.engine.explain(s.user, s.resource.name, now);
        if (s.phase !== 'live')
            return;
        if (!d.allow) {
            await this.disconnect(s, 'settings_changed', `Gatehouse: the workflow of ${s.resource.name} changed and no longer allows this session (${d.message}).`);
            return;
        }
        s.decision = { ...d, credentials: s.decision.credentials };
        this.startMonitor(s);
    }
    async save(s, state, end = {}) {
        const rec = {
            id: s.id, user: s.user, resource: s.resource.name, protocol: s.request.protocol, state, client: s.request.client,
            startedAt: s.startedAt, bytesIn: s.bytesIn, bytesOut: s.bytesOut, node: this.node, ...end,
        };
        if (s.decision.deadline)
            rec.deadline = s.decision.deadline;
        await this.engine.ctx.store.putSession(rec);
    }
}
//# sourceMappingURL=broker.js.map