export function leaseEnd(lease, e) {
    if (lease.state !== 'held')
        return null;
    switch (e.type) {
        case 'checkin':
            return { state: 'checked_in', endedAt: e.at, endedBy: e.by, endReason: 'checked in' };
        case 'force':
            return { state: 'force_checked_in', endedAt: e.at, endedBy: e.by, endReason: e.reason };
        case 'expire':
            return e.at.getTime() >= lease.expiresAt.getTime() ? { state: 'expired', endedAt: e.at, endReason: 'lease expired' } : null;
        default: {
            const never = e;
            throw new Error(`unknown lease end ${JSON.stringify(never)}`);
        }
    }
}
export function timeLeftMs(lease, at) {
    return Math.max(0, lease.expiresAt.getTime() - at.getTime());
}
export function formatTimeLeft(ms) {
    const totalMin = Math.ceil(ms / 60_000);
    const h = Math.floor(totalMin / 60);
    const m = totalMin % 60;
    if (h === 0)
        return `${m} min`;
    return m === 0 ? `${h} h` : `${h} h ${m} min`;
}
//# sourceMappingURL=leases.js.map