/// <reference lib="dom" />
import type { JitSettings, Principal, Protocol, RecordType, Weekday, WorkflowSettings } from '../../core/model.js';

/** The API's JSON shapes as the browser sees them (shared with the CLI in src/api/wire.ts). */
export type { JitSettings, Principal, Protocol, RecordType, Weekday, WorkflowSettings };

export type {
  AuditView as AuditEntry,
  AuditVerifyResponse as AuditVerify,
  JitView,
  LaunchResponse as LaunchResult,
  LeaseView as Lease,
  Me,
  RequestView as AccessRequest,
  ResourceState,
  ResourceView,
  SessionView,
  WorkflowView,
} from '../../api/wire.js';
import type { LeaseView as Lease, RequestView as AccessRequest } from '../../api/wire.js';

export type Review = AccessRequest['reviews'][number];

/** What the WebSocket pushes (src/api/ws.ts). */
export type ServerMessage =
  | { type: 'hello'; user: string }
  | { type: 'request_created' | 'request_reminder' | 'request_escalated' | 'request_approved' | 'request_denied' | 'request_cancelled' | 'request_expired' | 'request_reviewed'; request: AccessRequest }
  | { type: 'lease_checked_out' | 'lease_checked_in' | 'lease_force_checked_in' | 'lease_expired'; lease: Lease }
  | { type: 'access_expiring'; resource: string; at: string }
  | { type: 'session_started' | 'session_ended'; sessionId: string; resource: string; user: string; reason?: string };
