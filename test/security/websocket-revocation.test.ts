/**
 * Finding 6: WebSocket notices survived logout and account disable. A socket opened with a
 * token must close (4001, with a reason) the moment that token is revoked, expires or its
 * user is disabled, and every push re-checks the token, so a revocation this gateway did not
 * see (another node, a direct store change) still stops the notices.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { HOUR } from '../../src/core/clock.js';
import { call, listen, login, startApi, within, type ApiHarness } from './harness-api-server.js';

let c: ApiHarness;
beforeEach(async () => {
  c = await startApi();
});
afterEach(async () => {
  await c.close();
});

/** alice asks for prod-pg: a notice with her reason goes to every dba approver (dave, erin). */
async function aliceRequests(reason: string): Promise<string> {
  const alice = await login(c, 'alice');
  const r = await call(c, 'POST', '/api/v1/requests', { token: alice, body: { resource: 'prod-pg', reason } });
  expect(r.status, JSON.stringify(r.json)).toBe(200);
  return r.json.id as string;
}

describe('WebSocket notices end with the credential that opened them', () => {
  it('a logged-out session stops receiving notices: its socket is closed at once with 4001', async () => {
    const dave = await login(c, 'dave');
    const daveWs = await listen(c, dave);
    expect((await call(c, 'POST', '/api/v1/auth/logout', { token: dave })).status).toBe(200);
    expect(await within(daveWs.closed)).toEqual({ code: 4001, reason: 'signed out' });

    // erin, still signed in, proves the notice went out; dave's socket saw none of it.
    const erinWs = await listen(c, await login(c, 'erin'));
    const seen = erinWs.next((m) => m.type === 'request_created');
    await aliceRequests('after dave signed out');
    expect((await seen).request.reason).toBe('after dave signed out');
    expect(daveWs.messages.map((m) => m.type)).toEqual(['hello']);
  });

  it('a revoked API token stops receiving notices: its socket is closed at once with 4001', async () => {
    const dave = await login(c, 'dave');
    const created = await call(c, 'POST', '/api/v1/tokens', { token: dave, body: { label: 'pager bot' } });
    expect(created.status).toBe(200);
    const botWs = await listen(c, created.json.token as string);
    const revoked = await call(c, 'DELETE', `/api/v1/tokens/${created.json.id as string}`, { token: dave });
    expect(revoked.status).toBe(200);
    expect(await within(botWs.closed)).toEqual({ code: 4001, reason: 'token revoked' });
  });

  it("a disabled user's sockets are all closed at once with 4001, before any further notice", async () => {
    const admin = await login(c, 'admin');
    const first = await listen(c, await login(c, 'dave'));
    const second = await listen(c, await login(c, 'dave'));
    expect((await call(c, 'POST', '/api/v1/users/dave/disable', { token: admin })).status).toBe(200);
    expect(await within(first.closed)).toEqual({ code: 4001, reason: 'account disabled' });
    expect(await within(second.closed)).toEqual({ code: 4001, reason: 'account disabled' });
  });

  it('a token revoked behind this gateway\'s back (another node, the store) gets no notice: the push re-checks it and closes the socket', async () => {
    const dave = await login(c, 'dave');
    const daveWs = await listen(c, dave);
    const erinWs = await listen(c, await login(c, 'erin'));
    const [record] = await c.h.store.listTokens('dave');
    await c.h.store.deleteToken(record!.id);

    const seen = erinWs.next((m) => m.type === 'request_created');
    await aliceRequests('secret reason');
    await seen;
    expect(await within(daveWs.closed)).toEqual({ code: 4001, reason: 'token no longer valid' });
    expect(daveWs.messages.map((m) => m.type)).toEqual(['hello']);
  });

  it('a user disabled on another node gets no notice: the push re-checks the account and closes the socket', async () => {
    const daveWs = await listen(c, await login(c, 'dave'));
    const dave = (await c.h.store.getUser('dave'))!;
    await c.h.store.putUser({ ...dave, disabled: true }); // no revoke event on this node's bus
    // Approver lists skip disabled users, so address a notice to dave directly.
    c.h.bus.publishNotice({ kind: 'access_expiring', resource: 'prod-pg', at: c.h.clock.now(), to: ['dave'] });
    expect(await within(daveWs.closed)).toEqual({ code: 4001, reason: 'token no longer valid' });
    expect(daveWs.messages.map((m) => m.type)).toEqual(['hello']);
  });

  it('a session token that expires closes its socket when the clock reaches the expiry', async () => {
    const daveWs = await listen(c, await login(c, 'dave'));
    c.h.clock.advance(12 * HOUR);
    expect(await within(daveWs.closed)).toEqual({ code: 4001, reason: 'session expired' });
  });
});
