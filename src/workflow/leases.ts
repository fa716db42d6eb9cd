import type { Lease } from '../core/model.js';

/**
 * Single-user leases: `held → checked_in | expired | force_checked_in`. The store keeps at
 * most one held lease per resource; these helpers only say what an end looks like.
 */
export type LeaseEnd =
  | { type: 'checkin'; by: string; at: Date }
  | { type: 'force'; by: string; at: Date; reason: string }
  | { type: 'expire'; at: Date };

export interface LeaseEndPatch {
  state: Exclude<Lease['state'], 'held'>;
  endedAt: Date;
  endedBy?: string;
  endReason?: string;
}

export function leaseEnd(lease: Lease, e: LeaseEnd): LeaseEndPatch | null {
  if (lease.state !== 'held') return null;
  switch (e.type) {
    case 'checkin':
      return { state: 'checked_in', endedAt: e.at, endedBy: e.by, endReason: 'checked in' };
    case 'force':
      return { state: 'force_checked_in', endedAt: e.at, endedBy: e.by, endReason: e.reason };
    case 'expire':
      return e.at.getTime() >= lease.expiresAt.getTime() ? { state: 'expired', endedAt: e.at, endReason: 'lease expired' } : null;
    default: {
      const never: never = e;
      throw new Error(`unknown lease end ${JSON.stringify(never)}`);
    }
  }
}

export function timeLeftMs(lease: Lease, at: Date): number {
  return Math.max(0, lease.expiresAt.getTime() - at.getTime());
}

export function formatTimeLeft(ms: number): string {
  const totalMin = Math.ceil(ms / 60_000);
  const h = Math.floor(totalMin / 60);
  const m = totalMin % 60;
  if (h === 0) return `${m} min`;
  return m === 0 ? `${h} h` : `${h} h ${m} min`;
}
