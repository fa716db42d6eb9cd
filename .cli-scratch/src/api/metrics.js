import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
/** Prometheus metrics: live sessions, decisions by code, requests by state. */
export class Metrics {
    registry = new Registry();
    decisions;
    constructor(engine) {
        collectDefaultMetrics({ register: this.registry, prefix: 'gatehouse_process_' });
        this.decisions = new Counter({ name: 'gatehouse_decisions_total', help: 'Connection-start decisions by result and deny code', labelNames: ['result', 'code'], registers: [this.registry] });
        engine.onDecision((d) => this.decisions.inc({ result: d.allow ? 'allow' : 'deny', code: d.allow ? 'allow' : d.code }));
        const store = engine.ctx.store;
        new Gauge({
            name: 'gatehouse_live_sessions', help: 'Live gateway sessions by protocol', labelNames: ['protocol'], registers: [this.registry],
            async collect() {
                this.reset();
                for (const s of await store.listSessions({ state: 'live' }))
                    this.inc({ protocol: s.protocol });
            },
        });
        new Gauge({
            name: 'gatehouse_requests', help: 'Access requests by state', labelNames: ['state'], registers: [this.registry],
            async collect() {
                this.reset();
                for (const r of await store.listRequests())
                    this.inc({ state: r.state });
            },
        });
        new Gauge({
            name: 'gatehouse_leases_held', help: 'Single-user resources checked out now', registers: [this.registry],
            async collect() {
                this.set((await store.listLeases({ state: 'held' })).length);
            },
        });
    }
}
//# sourceMappingURL=metrics.js.map