/**
 * The cluster channel's payloads: revocations keep the previous release's shape, dates come
 * back as dates, and a message too long for one NOTIFY (8000 bytes) travels as chunks that
 * each fit and are put back together in any order.
 */
import { describe, expect, it } from 'vitest';
import type { Notice, RevokeEvent } from '../../../src/events/bus.js';
import { encodeMessage, MAX_PAYLOAD_BYTES, MessageTooLargeError, originOf, Reassembler } from '../../../src/events/pg-wire.js';
import type { AccessRequest } from '../../../src/core/model.js';

const ORIGIN = '7d0f3c52-5f43-4c43-9a57-3c1fbb3a8f11';

function request(reason: string): AccessRequest {
  return {
    id: 'q1', resource: 'prod-pg', requester: 'alice', reason, state: 'approved', stage: 0,
    reviews: [{ approver: 'dave', decision: 'approve', stage: 0, at: new Date('2026-01-05T09:01:00Z'), comment: 'ok – go ahead 👍' }],
    createdAt: new Date('2026-01-05T09:00:00Z'), pendingUntil: new Date('2026-01-06T09:00:00Z'), grantStart: new Date('2026-01-05T09:01:00Z'),
    grantEnd: new Date('2026-01-05T10:01:00Z'), version: 2,
  };
}

describe('cluster channel payloads', () => {
  it('sends a revoke event as one payload in the shape nodes of the previous release read: {origin, event}', () => {
    const event: RevokeEvent = { kind: 'lease_ended', resource: 'db', user: 'alice', leaseId: 'l1', reason: 'force_checked_in', by: 'dave', message: 'incident' };
    const payloads = encodeMessage(ORIGIN, { kind: 'revoke', event });
    expect(payloads).toHaveLength(1);
    expect(JSON.parse(payloads[0]!)).toEqual({ origin: ORIGIN, event });
    expect(new Reassembler().accept(payloads[0]!)).toEqual({ origin: ORIGIN, message: { kind: 'revoke', event } });
  });

  it('brings a notice back with its Date fields as Dates', () => {
    const notice: Notice = { kind: 'request_approved', request: request('deploy'), to: ['alice'] };
    const [payload] = encodeMessage(ORIGIN, { kind: 'notice', notice });
    const got = new Reassembler().accept(payload!);
    expect(got).toEqual({ origin: ORIGIN, message: { kind: 'notice', notice } });
    expect(got?.message.kind === 'notice' && got.message.notice.kind === 'request_approved' && got.message.notice.request.reviews[0]?.at).toBeInstanceOf(Date);
  });

  it('splits a 100 kB notice into payloads under the NOTIFY limit and puts them back together in any order', () => {
    const notice: Notice = { kind: 'request_created', request: request('ü'.repeat(50_000)), to: ['dave', 'erin'] };
    const payloads = encodeMessage(ORIGIN, { kind: 'notice', notice });
    expect(payloads.length).toBeGreaterThan(10);
    for (const p of payloads) {
      expect(Buffer.byteLength(p, 'utf8')).toBeLessThanOrEqual(MAX_PAYLOAD_BYTES);
      expect(originOf(p)).toBe(ORIGIN);
    }
    const r = new Reassembler();
    const shuffled = [...payloads.slice(1).reverse(), payloads[0]!];
    const results = shuffled.map((p) => r.accept(p));
    expect(results.slice(0, -1).every((x) => x === undefined)).toBe(true);
    expect(results.at(-1)).toEqual({ origin: ORIGIN, message: { kind: 'notice', notice } });
    expect(r.waiting).toBe(0);
  });

  it('forgets a message whose other chunks never came', () => {
    let now = 0;
    const r = new Reassembler(() => now);
    const payloads = encodeMessage(ORIGIN, { kind: 'notice', notice: { kind: 'request_created', request: request('x'.repeat(20_000)), to: ['dave'] } });
    expect(r.accept(payloads[0]!)).toBeUndefined();
    expect(r.waiting).toBe(1);
    now = 31_000;
    const other = encodeMessage(ORIGIN, { kind: 'notice', notice: { kind: 'request_created', request: request('y'.repeat(20_000)), to: ['dave'] } });
    expect(r.accept(other[0]!)).toBeUndefined();
    expect(r.waiting).toBe(1);
  });

  it('refuses a message over 1 MB when sending, and malformed payloads when receiving', () => {
    expect(() => encodeMessage(ORIGIN, { kind: 'notice', notice: { kind: 'request_created', request: request('x'.repeat(1_100_000)), to: ['dave'] } })).toThrow(MessageTooLargeError);
    const r = new Reassembler();
    for (const bad of ['not json', '{}', `{"origin":"${ORIGIN}"}`, `{"origin":"${ORIGIN}","event":{}}`, `{"origin":"${ORIGIN}","chunk":{"id":"c","i":5,"n":2,"data":""}}`]) {
      expect(() => r.accept(bad), bad).toThrow();
    }
  });
});
