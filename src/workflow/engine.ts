import type { Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import type { EventBus } from '../events/bus.js';
import type { Sealer } from '../secrets/sealer.js';
import type { Store } from '../store/store.js';
import { makeContext, type AuditSink, type WorkflowConfig, type WorkflowContext } from './context.js';
import { decide, type Decision, type DecideInput } from './decide.js';
import { Directory } from './directory.js';
import { LeaseService } from './lease-service.js';
import { MfaService } from './mfa-service.js';
import { RequestService } from './request-service.js';
import { Sweeper } from './sweeper.js';

export interface EngineDeps {
  store: Store;
  clock: Clock;
  bus: EventBus;
  audit: AuditSink;
  sealer: Sealer;
  log?: Logger;
  config?: Partial<WorkflowConfig>;
}

/** The workflow engine: everything the API and the broker ask of it, with no network code. */
export class Engine {
  readonly ctx: WorkflowContext;
  readonly directory: Directory;
  readonly requests: RequestService;
  readonly leases: LeaseService;
  readonly mfa: MfaService;
  private readonly sweeper: Sweeper;
  private readonly decisionListeners: Array<(d: Decision) => void> = [];

  constructor(deps: EngineDeps) {
    this.ctx = makeContext(deps);
    const poke = (): void => this.sweeper.poke();
    this.directory = new Directory(this.ctx);
    this.requests = new RequestService(this.ctx, this.directory, poke);
    this.leases = new LeaseService(this.ctx, this.directory, this.requests, poke);
    this.mfa = new MfaService(this.ctx, this.directory);
    this.sweeper = new Sweeper(this.ctx.clock, [() => this.requests.sweep(), () => this.leases.sweep()], this.ctx.log);
  }

  /** The connection-start decision; every denial and allowance is audited. */
  async decide(input: DecideInput): Promise<Decision> {
    const d = await decide(this.ctx, input);
    if (!input.dryRun) {
      for (const fn of this.decisionListeners) fn(d);
      const via = { ...(input.protocol ? { door: input.protocol } : {}), ...(input.client ? { client: input.client } : {}) };
      const data = d.allow
        ? { allow: true, deadline: d.deadline?.toISOString(), requestId: d.requestId, leaseId: d.leaseId, ...via }
        : { allow: false, code: d.code, message: d.message, ...via };
      await this.ctx.audit.record(input.user, d.allow ? 'decision.allow' : 'decision.deny', input.resource, data).catch((err: unknown) => {
        this.ctx.log.error({ err }, 'could not audit a decision');
      });
    }
    return d;
  }

  /** Observes every real (not dry-run) decision, e.g. for metrics. */
  onDecision(fn: (d: Decision) => void): void {
    this.decisionListeners.push(fn);
  }

  /** `policy explain`: the same checks, without side effects. */
  explain(user: string, resource: string, at: Date = this.ctx.clock.now()): Promise<Decision> {
    return decide(this.ctx, { user, resource, at, mfa: { kind: 'verified', at }, dryRun: true });
  }

  /** Runs expiry now (after a restart, or from tests) and plans the next run. */
  sweep(): Promise<void> {
    return this.sweeper.run();
  }

  stop(): void {
    this.sweeper.stop();
  }
}
