/// <reference lib="dom" />
import type { NoticeKind } from './notify.js';
import type { ServerMessage } from './types.js';

/**
 * The sentence a person sees for a live event, or undefined for events that need none
 * (the user caused them, or a screen shows them anyway). `desktop` marks what is worth a
 * browser notification when the page is in the background.
 */
export function describeMessage(m: ServerMessage, me: string): { text: string; kind: NoticeKind; desktop: boolean } | undefined {
  switch (m.type) {
    case 'hello':
      return undefined;
    case 'request_created': {
      const r = m.request;
      return { text: `${r.requester} requests access to ${r.resource}${r.reason ? `: ${r.reason}` : ''}${r.ticket ? ` (${r.ticket})` : ''}`, kind: 'info', desktop: true };
    }
    case 'request_reminder':
      return { text: `${m.request.requester} is still waiting for your approval of ${m.request.resource}`, kind: 'info', desktop: true };
    case 'request_escalated':
      return { text: `${m.request.requester}'s request for ${m.request.resource} was escalated to you`, kind: 'info', desktop: true };
    case 'request_approved':
      return { text: `Your request for ${m.request.resource} was approved`, kind: 'success', desktop: true };
    case 'request_denied': {
      const why = [...m.request.reviews].reverse().find((r) => r.decision === 'deny')?.comment;
      return { text: `Your request for ${m.request.resource} was denied${why ? `: ${why}` : ''}`, kind: 'error', desktop: true };
    }
    case 'request_cancelled':
      return { text: `${m.request.requester} cancelled the request for ${m.request.resource}`, kind: 'info', desktop: false };
    case 'request_expired':
      return { text: `Your request for ${m.request.resource} expired unanswered`, kind: 'error', desktop: true };
    case 'request_reviewed': {
      const last = m.request.reviews[m.request.reviews.length - 1];
      if (!last || last.approver === me) return undefined;
      const whose = m.request.requester === me ? 'your' : `${m.request.requester}'s`;
      return { text: `${last.approver} ${last.decision === 'approve' ? 'approved' : 'denied'} ${whose} request for ${m.request.resource}; more approvals are needed`, kind: 'info', desktop: false };
    }
    case 'lease_force_checked_in':
      return { text: `${m.lease.resource} was force checked in by ${m.lease.endedBy ?? 'an approver'}${m.lease.endReason ? `: ${m.lease.endReason}` : ''}`, kind: 'error', desktop: true };
    case 'lease_expired':
      return { text: `Your check-out of ${m.lease.resource} expired`, kind: 'info', desktop: true };
    case 'lease_checked_out':
    case 'lease_checked_in':
      return undefined;
    case 'access_expiring':
      return { text: `Your access to ${m.resource} ends soon`, kind: 'info', desktop: true };
    case 'session_started':
      return undefined;
    case 'session_ended':
      return m.user === me ? { text: `Your session to ${m.resource} ended${m.reason ? ` (${m.reason.replace(/_/g, ' ')})` : ''}`, kind: 'info', desktop: false } : undefined;
    default: {
      const never: never = m;
      return never;
    }
  }
}
