import type { Clock } from '../core/clock.js';
import { HOUR, MINUTE } from '../core/clock.js';
import type { Logger } from '../core/log.js';
import { silentLogger } from '../core/log.js';
import type { EventBus } from '../events/bus.js';
import type { Store } from '../store/store.js';
import type { Sealer } from '../secrets/sealer.js';

/** Where workflow services write audit events; src/audit's AuditLog is the real one. */
export interface AuditSink {
  record(actor: string, action: string, subject: string, data?: Record<string, unknown>): Promise<unknown>;
  /** Several entries at once, consecutive and in one transaction (AuditLog has it); else one `record` each. */
  recordMany?(items: ReadonlyArray<{ actor: string; action: string; subject: string; data?: Record<string, unknown> }>): Promise<unknown>;
}

export interface WorkflowConfig {
  /** How long before the deadline a live session is warned in-band. */
  warnBeforeMs: number;
  /** Minimum time between two reminders for one request. */
  reminderIntervalMs: number;
  /** Launch tickets live this long. */
  ticketTtlMs: number;
  /** An approved grant that starts on first connection must be used within this. */
  approvedUseWithinMs: number;
  /** A pending request expires after this unless its workflow says otherwise. */
  defaultPendingTtlMs: number;
  /** A TOTP check at ticket issue counts as fresh MFA for this long. */
  mfaFreshMs: number;
}

export const DEFAULT_WORKFLOW_CONFIG: WorkflowConfig = {
  warnBeforeMs: 5 * MINUTE,
  reminderIntervalMs: 10 * MINUTE,
  ticketTtlMs: 60_000,
  approvedUseWithinMs: 24 * HOUR,
  defaultPendingTtlMs: 24 * HOUR,
  mfaFreshMs: 5 * MINUTE,
};

export interface WorkflowContext {
  store: Store;
  clock: Clock;
  bus: EventBus;
  audit: AuditSink;
  sealer: Sealer;
  log: Logger;
  config: WorkflowConfig;
}

export function makeContext(
  deps: Omit<WorkflowContext, 'config' | 'log'> & { config?: Partial<WorkflowConfig>; log?: Logger },
): WorkflowContext {
  return { ...deps, log: deps.log ?? silentLogger, config: { ...DEFAULT_WORKFLOW_CONFIG, ...deps.config } };
}
