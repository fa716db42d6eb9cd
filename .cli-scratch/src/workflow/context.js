import { HOUR, MINUTE } from '../core/clock.js';
import { silentLogger } from '../core/log.js';
export const DEFAULT_WORKFLOW_CONFIG = {
    warnBeforeMs: 5 * MINUTE,
    reminderIntervalMs: 10 * MINUTE,
    ticketTtlMs: 60_000,
    approvedUseWithinMs: 24 * HOUR,
    defaultPendingTtlMs: 24 * HOUR,
    mfaFreshMs: 5 * MINUTE,
};
export function makeContext(deps) {
    return { ...deps, log: deps.log ?? silentLogger, config: { ...DEFAULT_WORKFLOW_CONFIG, ...deps.config } };
}
//# sourceMappingURL=context.js.map