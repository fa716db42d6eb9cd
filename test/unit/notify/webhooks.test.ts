import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { FakeClock } from '../../../src/core/clock.js';
import { silentLogger } from '../../../src/core/log.js';
import type { AccessRequest } from '../../../src/core/model.js';
import { EventBus } from '../../../src/events/bus.js';
import { noticeText, signWebhook, WebhookSender } from '../../../src/notify/webhooks.js';

const request: AccessRequest = {
  id: 'r1', resource: 'prod-pg', requester: 'alice', reason: 'hotfix', ticket: 'OPS-7', state: 'pending', stage: 0, reviews: [],
  createdAt: new Date('2026-01-05T09:00:00Z'), pendingUntil: new Date('2026-01-06T09:00:00Z'), version: 1,
};

describe('webhooks', () => {
  let server: Server | undefined;
  afterEach(() => server?.close());

  it('posts signed JSON with a Slack-compatible text and retries with backoff until accepted', async () => {
    const received: Array<{ headers: Record<string, string | string[] | undefined>; body: string }> = [];
    let failuresLeft = 2;
    server = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        received.push({ headers: req.headers, body });
        res.statusCode = failuresLeft-- > 0 ? 503 : 204;
        res.end();
      });
    });
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
    const clock = new FakeClock('2026-01-05T09:00:00Z');
    const bus = new EventBus();
    const sender = new WebhookSender([{ url, secret: 'a-very-long-shared-secret' }], { clock, log: silentLogger, backoffMs: [1000, 4000] });
    sender.attach(bus);
    bus.publishNotice({ kind: 'request_created', request, to: ['dave'] });

    // The receiver records a request before the sender has read the 503 and armed its
    // retry timer; advancing the clock before that timer exists would fire nothing.
    await vi.waitFor(() => expect(received).toHaveLength(1));
    await vi.waitFor(() => expect(clock.pendingTimers()).toBe(1));
    clock.advance(1000); // first backoff
    await vi.waitFor(() => expect(received).toHaveLength(2));
    await vi.waitFor(() => expect(clock.pendingTimers()).toBe(1));
    clock.advance(4000); // second backoff
    await vi.waitFor(() => expect(received).toHaveLength(3));
    await sender.drain();

    const last = received[2]!;
    const payload = JSON.parse(last.body);
    expect(payload).toMatchObject({ type: 'request_created', text: 'alice requests access to prod-pg: hotfix (OPS-7)', recipients: ['dave'], request: { id: 'r1' } });
    const ts = String(last.headers['x-gatehouse-timestamp']);
    expect(last.headers['x-gatehouse-signature']).toBe(signWebhook('a-very-long-shared-secret', ts, last.body));
    expect(last.headers['content-type']).toBe('application/json');
  });

  it('gives up after the last backoff and filters by event kind', async () => {
    let calls = 0;
    const clock = new FakeClock();
    const fetchImpl = (async () => {
      calls++;
      throw new Error('connection refused');
    }) as unknown as typeof fetch;
    const sender = new WebhookSender([{ url: 'http://127.0.0.1:9/none', secret: 'x'.repeat(16), events: ['request_approved'] }], { clock, log: silentLogger, backoffMs: [10], fetchImpl });
    sender.send({ kind: 'request_created', request, to: ['dave'] });
    expect(calls).toBe(0);
    sender.send({ kind: 'request_approved', request, to: ['alice'] });
    await vi.waitFor(() => expect(calls).toBe(1));
    // calls counts before the failure is handled: wait for the retry timer, as above.
    await vi.waitFor(() => expect(clock.pendingTimers()).toBe(1));
    clock.advance(10);
    await sender.drain();
    expect(calls).toBe(2);
  });

  it('every notice kind has a sentence', () => {
    expect(noticeText({ kind: 'request_denied', request, to: [] })).toBe('Access to prod-pg for alice was denied');
    expect(noticeText({ kind: 'session_ended', sessionId: 's', resource: 'prod-pg', user: 'alice', reason: 'expired', to: [] })).toContain('expired');
  });
});
