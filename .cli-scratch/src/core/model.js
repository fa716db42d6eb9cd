/**
 * The records Gatehouse keeps. Plain data only: validation lives in src/workflow, storage
 * in src/store. Times are Date objects in memory and ISO strings at rest.
 */
export const RecordTypes = ['machine', 'database', 'directory', 'browser'];
export const Protocols = ['ssh', 'rdp', 'postgres', 'mysql', 'ldap', 'http', 'tcp'];
/** Which protocols each record type may carry. */
export const ProtocolsByType = {
    machine: ['ssh', 'rdp', 'tcp'],
    database: ['postgres', 'mysql'],
    directory: ['ldap'],
    browser: ['http'],
};
export const Enforcements = ['ALLOW_CONFIGURE_WORKFLOW_SETTINGS'];
export const Weekdays = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
export const RequestStates = {
    pending: 'pending',
    approved: 'approved',
    active: 'active',
    denied: 'denied',
    cancelled: 'cancelled',
    expired: 'expired',
    ended: 'ended',
};
export const LeaseStates = {
    held: 'held',
    checked_in: 'checked_in',
    expired: 'expired',
    force_checked_in: 'force_checked_in',
};
export const TerminationReasons = [
    'client_closed',
    'target_closed',
    'expired',
    'schedule_closed',
    'checked_in',
    'force_checked_in',
    'request_revoked',
    'settings_changed',
    'user_disabled',
    'resource_removed',
    'killed',
    'shutdown',
    'error',
];
//# sourceMappingURL=model.js.map