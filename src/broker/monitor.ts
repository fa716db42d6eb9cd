import type { Cancel, Clock } from '../core/clock.js';
import type { TerminationReason } from '../core/model.js';
import type { EventBus, RevokeEvent } from '../events/bus.js';
import type { DeadlineCause } from '../workflow/decide.js';
import { formatTimeLeft } from '../workflow/leases.js';

export interface MonitorTarget {
  id: string;
  user: string;
  resource: string;
  requestId?: string;
  leaseId?: string;
  deadline?: Date;
  deadlineCause?: DeadlineCause;
  warnAt?: Date;
}

export interface MonitorHooks {
  warn(message: string): void;
  end(reason: TerminationReason, message: string): void;
  /** A settings change: the broker re-runs the decision and ends or keeps the session. */
  recheck(): void;
}

const CAUSE_REASON: Record<DeadlineCause, TerminationReason> = {
  grant: 'expired',
  lease: 'expired',
  max_duration: 'expired',
  schedule: 'schedule_closed',
};

const CAUSE_TEXT: Record<DeadlineCause, string> = {
  grant: 'your access grant',
  lease: 'your check-out',
  max_duration: 'the maximum session time',
  schedule: 'the access schedule window',
};

/**
 * One per live session: fires the in-band warning and the deadline on the injected clock,
 * and listens for every revoke event that concerns this session.
 */
export class SessionMonitor {
  private readonly cancels: Cancel[] = [];
  private stopped = false;

  constructor(
    private readonly t: MonitorTarget,
    private readonly clock: Clock,
    private readonly bus: EventBus,
    private readonly hooks: MonitorHooks,
  ) {}

  /** `replayFrom`: a revoke-stream mark taken before the decision; events since then are applied too. */
  start(replayFrom?: number): void {
    const { warnAt, deadline, deadlineCause } = this.t;
    const cause = deadlineCause ?? 'grant';
    if (warnAt && deadline) {
      this.cancels.push(
        this.clock.setTimer(warnAt, () => {
          const left = formatTimeLeft(deadline.getTime() - this.clock.now().getTime());
          this.hooks.warn(`Gatehouse: ${CAUSE_TEXT[cause]} for ${this.t.resource} ends in ${left} (at ${deadline.toISOString()}); this session will be closed then.`);
        }),
      );
    }
    if (deadline) {
      this.cancels.push(
        this.clock.setTimer(deadline, () => this.hooks.end(CAUSE_REASON[cause], `Gatehouse: ${CAUSE_TEXT[cause]} for ${this.t.resource} has ended; session closed.`)),
      );
    }
    this.cancels.push(this.bus.on('revoke', (e) => this.onRevoke(e)));
    if (replayFrom !== undefined) {
      // A revocation that landed between the decision and this start would otherwise be missed.
      const since = this.bus.revokesSince(replayFrom);
      for (const e of since.events) this.onRevoke(e);
      if (!since.complete && !this.stopped) this.hooks.recheck();
    }
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    for (const c of this.cancels) c();
  }

  private onRevoke(e: RevokeEvent): void {
    if (this.stopped) return;
    const t = this.t;
    switch (e.kind) {
      case 'lease_ended':
        if (e.resource === t.resource && e.user === t.user) this.hooks.end(e.reason, `Gatehouse: ${e.message}; session closed.`);
        return;
      case 'request_revoked':
        if (e.requestId === t.requestId || (e.resource === t.resource && e.user === t.user && t.requestId !== undefined)) {
          this.hooks.end('request_revoked', `Gatehouse: access to ${t.resource} ended (${e.message}); session closed.`);
        }
        return;
      case 'settings_changed':
        if (e.resource === t.resource) this.hooks.recheck();
        return;
      case 'user_disabled':
        if (e.user === t.user) this.hooks.end('user_disabled', `Gatehouse: ${e.message}; session closed.`);
        return;
      case 'resource_removed':
        if (e.resource === t.resource) this.hooks.end('resource_removed', `Gatehouse: ${e.message}; session closed.`);
        return;
      case 'session_killed':
        if (e.sessionId === t.id) this.hooks.end('killed', `Gatehouse: this session was ended by ${e.by}.`);
        return;
      default: {
        const never: never = e;
        throw new Error(`unknown revoke event ${JSON.stringify(never)}`);
      }
    }
  }
}
