import { EventEmitter } from 'node:events';
import type { AuditCheckpoint } from '../audit/checkpoint.js';
import type { AccessRequest, Lease, TerminationReason } from '../core/model.js';

/**
 * Revoke events end live sessions. Every one names the resource (and the user when it
 * concerns one user) so a session monitor can tell whether it is affected.
 */
export type RevokeEvent =
  | { kind: 'lease_ended'; resource: string; user: string; leaseId: string; reason: TerminationReason; by?: string; message: string }
  | { kind: 'request_revoked'; resource: string; user: string; requestId: string; message: string }
  | { kind: 'settings_changed'; resource: string; message: string }
  | { kind: 'user_disabled'; user: string; message: string }
  | { kind: 'resource_removed'; resource: string; message: string }
  | { kind: 'session_killed'; sessionId: string; by: string; message: string };

/** Notifications for people: pushed to their open clients and to webhooks. */
export type Notice =
  | { kind: 'request_created'; request: AccessRequest; to: string[] }
  | { kind: 'request_reminder'; request: AccessRequest; to: string[] }
  | { kind: 'request_escalated'; request: AccessRequest; to: string[] }
  | { kind: 'request_approved'; request: AccessRequest; to: string[] }
  | { kind: 'request_denied'; request: AccessRequest; to: string[] }
  | { kind: 'request_cancelled'; request: AccessRequest; to: string[] }
  | { kind: 'request_expired'; request: AccessRequest; to: string[] }
  | { kind: 'request_reviewed'; request: AccessRequest; to: string[] }
  | { kind: 'lease_checked_out'; lease: Lease; to: string[] }
  | { kind: 'lease_checked_in'; lease: Lease; to: string[] }
  | { kind: 'lease_force_checked_in'; lease: Lease; to: string[] }
  | { kind: 'lease_expired'; lease: Lease; to: string[] }
  | { kind: 'access_expiring'; resource: string; at: Date; to: string[] }
  | { kind: 'session_started'; sessionId: string; resource: string; user: string; to: string[] }
  | { kind: 'session_ended'; sessionId: string; resource: string; user: string; reason: string; to: string[] }
  /** A signed checkpoint of the audit chain's head, for receivers that keep it off the box. */
  | { kind: 'audit_checkpoint'; checkpoint: AuditCheckpoint; to: string[] };

export interface EventBusEvents {
  revoke: [RevokeEvent];
  /** A notice made on this node: its open clients and its webhooks. */
  notice: [Notice];
  /**
   * A notice made on another node of the cluster (carried by the PostgreSQL bridge): for the
   * clients connected here only. Webhooks do not listen: the node that made it sends those.
   */
  remoteNotice: [Notice];
}

/**
 * The in-process bus. A clustered deployment bridges it to PostgreSQL LISTEN/NOTIFY; the
 * interface stays the same. Listener errors are isolated so one bad subscriber cannot stop
 * a revoke from reaching the others.
 */
/** How many recent revoke events the bus keeps for monitors that start after them. */
const REVOKE_HISTORY = 2000;

export class EventBus {
  private readonly emitter = new EventEmitter();
  /** Recent revoke events with their sequence numbers, oldest first. */
  private readonly recent: Array<{ seq: number; event: RevokeEvent }> = [];
  private seq = 0;

  constructor() {
    this.emitter.setMaxListeners(0);
  }

  publishRevoke(event: RevokeEvent): void {
    this.seq += 1;
    this.recent.push({ seq: this.seq, event });
    if (this.recent.length > REVOKE_HISTORY) this.recent.splice(0, this.recent.length - REVOKE_HISTORY);
    this.emit('revoke', event);
  }

  /** A mark in the revoke stream: `revokesSince(mark)` later returns what came after it. */
  revokeMark(): number {
    return this.seq;
  }

  /**
   * The revoke events published after `mark`, for a session whose monitor starts after its
   * decision (a force check-in in between must still end it). `complete` is false when some
   * of them have already been dropped from the history: the caller re-checks instead.
   */
  revokesSince(mark: number): { events: RevokeEvent[]; complete: boolean } {
    const oldest = this.recent[0]?.seq ?? this.seq + 1;
    return { events: this.recent.filter((r) => r.seq > mark).map((r) => r.event), complete: mark >= oldest - 1 };
  }

  publishNotice(notice: Notice): void {
    this.emit('notice', notice);
  }

  /** Hands on a notice another node made (see `remoteNotice`). */
  publishRemoteNotice(notice: Notice): void {
    this.emit('remoteNotice', notice);
  }

  on<K extends keyof EventBusEvents>(name: K, fn: (...args: EventBusEvents[K]) => void): () => void {
    const wrapped = (...args: unknown[]): void => {
      try {
        (fn as (...a: unknown[]) => void)(...args);
      } catch {
        // A subscriber's failure is its own; the bus keeps delivering.
      }
    };
    this.emitter.on(name, wrapped);
    return () => this.emitter.off(name, wrapped);
  }

  private emit<K extends keyof EventBusEvents>(name: K, ...args: EventBusEvents[K]): void {
    this.emitter.emit(name, ...args);
  }
}
