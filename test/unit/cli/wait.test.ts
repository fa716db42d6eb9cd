import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RequestView } from '../../../src/api/wire.js';
import { CliError } from '../../../src/cli/cli-error.js';
import { ApiClient } from '../../../src/cli/client.js';
import { waitForDecision } from '../../../src/cli/wait.js';
import { CliHarness, FakeApi } from './harness.js';

let api: FakeApi;

beforeEach(async () => {
  api = await new FakeApi().start();
});

afterEach(async () => {
  await api.stop();
});

function request(over: Partial<RequestView> = {}): RequestView {
  return {
    id: 'r1', resource: 'prod-pg', requester: 'alice', state: 'pending', stage: 0, reviews: [],
    createdAt: '2026-01-05T11:00:00Z', pendingUntil: '2026-01-06T11:00:00Z', version: 1, ...over,
  };
}

const bobApproves = { approver: 'bob', decision: 'approve' as const, stage: 0, at: '2026-01-05T12:01:00Z' };

/** Resolves once the CLI has polled the request after the socket opened: it is listening. */
function polled(times = 1): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (api.calls.filter((c) => c.path === '/requests/r1').length >= times) resolve();
      else setTimeout(check, 5);
    };
    check();
  });
}

describe('waitForDecision', () => {
  it('follows pushed updates until approval, reading the request once the stream is up', async () => {
    api.on('GET /requests/r1', { body: request({ approvers: ['bob', 'carol'] }) });
    const seen: string[] = [];
    const client = new ApiClient({ server: api.url, token: 'tok-alice' });
    const done = waitForDecision({ client, requestId: 'r1', onUpdate: (r, ev) => seen.push(`${ev}:${r.state}:${r.reviews.length}`) });
    await polled();
    api.push({ type: 'request_reviewed', request: request({ id: 'other' }) });
    api.push({ type: 'request_reviewed', request: request({ reviews: [bobApproves], version: 2 }) });
    // A stale copy (an older version) arriving late changes nothing.
    api.push({ type: 'request_reviewed', request: request({ version: 1 }) });
    api.push({ type: 'request_approved', request: request({ state: 'approved', reviews: [bobApproves, { ...bobApproves, approver: 'carol' }], version: 3 }) });
    const final = await done;
    expect(final.state).toBe('approved');
    expect(seen).toEqual(['poll:pending:0', 'request_reviewed:pending:1', 'request_approved:approved:2']);
    expect(api.socketHeaders[0]!.authorization).toBe('Bearer tok-alice');
  });

  it('does not miss a decision made before the stream was up', async () => {
    api.on('GET /requests/r1', { body: request({ state: 'denied', reviews: [{ ...bobApproves, decision: 'deny' }] }) });
    const client = new ApiClient({ server: api.url, token: 't' });
    const final = await waitForDecision({ client, requestId: 'r1', onUpdate: () => {} });
    expect(final.state).toBe('denied');
  });

  it('reads the request anyway when the server never says hello', async () => {
    api.sayHello = false;
    api.on('GET /requests/r1', { body: request({ state: 'approved' }) });
    const client = new ApiClient({ server: api.url, token: 't' });
    const final = await waitForDecision({ client, requestId: 'r1', onUpdate: () => {}, helloGraceMs: 20 });
    expect(final.state).toBe('approved');
  });

  it('reconnects when the stream drops, and reads the request again', async () => {
    api.on('GET /requests/r1', { body: request() });
    const client = new ApiClient({ server: api.url, token: 't' });
    const done = waitForDecision({ client, requestId: 'r1', onUpdate: () => {}, reconnectDelaysMs: [10] });
    await polled();
    api.on('GET /requests/r1', { body: request({ state: 'approved' }) });
    for (const ws of api.wss.clients) ws.terminate();
    expect((await done).state).toBe('approved');
    expect(api.socketHeaders.length).toBe(2);
  });

  it('gives up with one clear line once the retry budget is spent', async () => {
    api.on('GET /requests/r1', { body: request() });
    const client = new ApiClient({ server: api.url, token: 't' });
    const done = waitForDecision({ client, requestId: 'r1', onUpdate: () => {}, reconnectDelaysMs: [] });
    await polled();
    for (const ws of api.wss.clients) ws.terminate();
    await expect(done).rejects.toThrow(/^lost the notification stream at ws:\/\/127\.0\.0\.1:\d+\/api\/v1\/events/);
  });

  it('fails as an auth error when the stream refuses the token', async () => {
    api.acceptSocket = () => false;
    const client = new ApiClient({ server: api.url, token: 'expired' });
    const err = await waitForDecision({ client, requestId: 'r1', onUpdate: () => {} }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CliError);
    expect((err as CliError).exitCode).toBe(3);
  });
});

describe('gatehouse request --wait', () => {
  let cli: CliHarness;
  beforeEach(() => {
    cli = new CliHarness();
    cli.env.GATEHOUSE_SERVER = api.url;
    cli.env.GATEHOUSE_TOKEN = 'tok-alice';
    api.on('POST /requests', { body: request() });
    api.on('GET /requests/r1', { body: request({ approvers: ['bob'] }) });
    api.on('GET /resources', { body: [{ name: 'prod-pg', settings: { requireApproval: { approvers: [], approvals: 1, requireReason: true, requireTicket: true, startOn: 'approval' } } }] });
  });
  afterEach(() => cli.cleanup());

  it('prints status lines and exits 0 once approved', async () => {
    const run = cli.run(['request', 'prod-pg', '--reason', 'fix', '--ticket', 'CHG-1', '--wait']);
    await polled();
    api.push({ type: 'request_approved', request: request({ state: 'approved', reviews: [bobApproves], grantEnd: '2026-01-05T13:00:00Z' }) });
    const r = await run;
    expect(r.code).toBe(0);
    expect(r.stderr).toBe('');
    expect(api.calls[0]!.body).toEqual({ resource: 'prod-pg', reason: 'fix', ticket: 'CHG-1' });
    expect(r.stdout).toBe(
      'Request r1 for prod-pg sent; waiting for a decision (Ctrl-C stops waiting, not the request).\n' +
        'Approvers: bob\n' +
        '[13:00] pending (0/1 approvals)\n' +
        '[13:00] approved, access until 14:00\n',
    );
  });

  it('exits non-zero with one line when denied', async () => {
    const run = cli.run(['request', 'prod-pg', '--wait']);
    await polled();
    api.push({ type: 'request_denied', request: request({ state: 'denied', reviews: [{ ...bobApproves, decision: 'deny', comment: 'not now' }] }) });
    const r = await run;
    expect(r.code).toBe(1);
    expect(r.stderr).toBe('gatehouse: request r1 denied by bob: not now\n');
  });

  it('with --json prints only the final request', async () => {
    const run = cli.run(['request', 'prod-pg', '--wait', '--json']);
    await polled();
    api.push({ type: 'request_approved', request: request({ state: 'approved' }) });
    const r = await run;
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ id: 'r1', state: 'approved' });
  });
});
