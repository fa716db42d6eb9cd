/// <reference lib="dom" />
import type { Principal, Protocol, RecordType, Weekday, WorkflowSettings } from '../../core/model.js';

/** The API's JSON shapes as the browser sees them: dates arrive as ISO strings. */
export type { Principal, Protocol, RecordType, Weekday, WorkflowSettings };

export interface Me {
  name: string;
  admin: boolean;
  teams: string[];
  mfaEnrolled: boolean;
  canConfigureWorkflow: boolean;
}

export interface Review {
  approver: string;
  decision: 'approve' | 'deny';
  stage: number;
  at: string;
  comment?: string;
  onBehalfOf?: string;
}

export interface AccessRequest {
  id: string;
  resource: string;
  requester: string;
  reason?: string;
  ticket?: string;
  state: 'pending' | 'approved' | 'active' | 'denied' | 'cancelled' | 'expired' | 'ended';
  stage: number;
  reviews: Review[];
  createdAt: string;
  pendingUntil: string;
  decidedAt?: string;
  grantStart?: string;
  grantEnd?: string;
  lastRemindedAt?: string;
}

export interface Lease {
  id: string;
  resource: string;
  holder: string;
  state: 'held' | 'checked_in' | 'expired' | 'force_checked_in';
  startedAt: string;
  expiresAt: string;
  endedAt?: string;
  endedBy?: string;
  endReason?: string;
}

export interface ResourceState {
  canConnect: boolean;
  code?: string;
  message?: string;
  hint?: string;
  request?: AccessRequest;
  lease?: { holder: string; expiresAt: string; mine: boolean };
  timeLeftMs?: number;
  nextWindow?: string;
  nextWindowAt?: string;
}

export interface ResourceView {
  name: string;
  type: RecordType;
  protocol: Protocol;
  host: string;
  port: number;
  database?: string;
  owner: string;
  access: Principal[];
  settings: WorkflowSettings;
  state: ResourceState;
}

export interface WorkflowView {
  resource: string;
  settings: WorkflowSettings;
  lines: string[];
  canConfigure: boolean;
}

export interface SessionView {
  id: string;
  user: string;
  resource: string;
  protocol: Protocol;
  state: 'provisional' | 'live' | 'ended';
  client: string;
  startedAt: string;
  deadline?: string;
  endedAt?: string;
  endReason?: string;
  bytesIn: number;
  bytesOut: number;
  node: string;
}

export interface AuditEntry {
  seq: number;
  at: string;
  actor: string;
  action: string;
  subject: string;
  data: Record<string, unknown>;
}

export interface AuditVerify {
  ok: boolean;
  count: number;
  firstBadSeq?: number;
  problem?: string;
}

export interface LaunchResult {
  resource: string;
  protocol: Protocol;
  ticket: string;
  expiresAt: string;
  command: string;
}

/** What the WebSocket pushes (src/api/ws.ts). */
export type ServerMessage =
  | { type: 'hello'; user: string }
  | { type: 'request_created' | 'request_reminder' | 'request_escalated' | 'request_approved' | 'request_denied' | 'request_cancelled' | 'request_expired' | 'request_reviewed'; request: AccessRequest }
  | { type: 'lease_checked_out' | 'lease_checked_in' | 'lease_force_checked_in' | 'lease_expired'; lease: Lease }
  | { type: 'access_expiring'; resource: string; at: string }
  | { type: 'session_started' | 'session_ended'; sessionId: string; resource: string; user: string; reason?: string };
