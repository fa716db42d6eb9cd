import { makeContext } from './context.js';
import { decide } from './decide.js';
import { Directory } from './directory.js';
import { LeaseService } from './lease-service.js';
import { MfaService } from './mfa-service.js';
import { RequestService } from './request-service.js';
import { Sweeper } from './sweeper.js';
/** The workflow engine: everything the API and the broker ask of it, with no network code. */
export class Engine {
    ctx;
    directory;
    requests;
    leases;
    mfa;
    sweeper;
    decisionListeners = [];
    constructor(deps) {
        this.ctx = makeContext(deps);
        const poke = () => this.sweeper.poke();
        this.directory = new Directory(this.ctx);
        this.requests = new RequestService(this.ctx, this.directory, poke);
        this.leases = new LeaseService(this.ctx, this.directory, this.requests, poke);
        this.mfa = new MfaService(this.ctx, this.directory);
        this.sweeper = new Sweeper(this.ctx.clock, [() => this.requests.sweep(), () => this.leases.sweep()], this.ctx.log);
    }
    /** The connection-start decision; every denial and allowance is audited. */
    async decide(input) {
        const d = await decide(this.ctx, input);
        if (!input.dryRun) {
            for (const fn of this.decisionListeners)
                fn(d);
            const data = d.allow
                ? { allow: true, deadline: d.deadline?.toISOString(), requestId: d.requestId, leaseId: d.leaseId }
                : { allow: false, code: d.code, message: d.message };
            await this.ctx.audit.record(input.user, d.allow ? 'decision.allow' : 'decision.deny', input.resource, data).catch((err) => {
                this.ctx.log.error({ err }, 'could not audit a decision');
            });
        }
        return d;
    }
    /** Observes every real (not dry-run) decision, e.g. for metrics. */
    onDecision(fn) {
        this.decisionListeners.push(fn);
    }
    /** `policy explain`: the same checks, without side effects. */
    explain(user, resource, at = this.ctx.clock.now()) {
        return decide(this.ctx, { user, resource, at, mfa: { kind: 'verified', at }, dryRun: true });
    }
    /** Runs expiry now (after a restart, or from tests) and plans the next run. */
    sweep() {
        return this.sweeper.run();
    }
    stop() {
        this.sweeper.stop();
    }
}
//# sourceMappingURL=engine.js.map