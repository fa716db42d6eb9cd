/**
 * The browser door with node's own HTTPS and WebSocket clients against the project's web app
 * (test/targets/webapp.mjs over TLS, its certificate pinned on first use): entering with a
 * ticket, the decision's page, injected credentials of every kind, header hygiene and the
 * signed assertion, cookies and redirects, WebSockets and streams cut at teardown.
 * Chromium drives the same door in test/e2e/http-browser.test.ts.
 */
import { createPublicKey, verify as verifySignature } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import type { Listener } from '../../src/broker/adapter.js';
import { silentLogger } from '../../src/core/log.js';
import type { HttpAuth, ResourceOptions } from '../../src/core/model.js';
import { HttpAdapter } from '../../protocols/http/index.js';
import { startAdminer, startMariadb, startNginx, startWebapp, type AdminerTarget, type MariadbTarget, type NginxTarget, type WebappTarget } from '../targets/index.js';
import { eventually, within } from './contract-driver.js';
import { httpsGet, type Reply } from './http-client.js';
import { BERLIN_DAYTIME, makeGateway, type GatewayHarness } from './gateway-harness.js';

const APPS = 'apps.localhost';
const APPROVAL = { limitAccessTime: BERLIN_DAYTIME, requireApproval: { approvers: [{ team: 'dba' }], approvals: 1, startOn: 'approval' } };
const SINGLE_USER = { limitAccessTime: BERLIN_DAYTIME, singleUser: true };

let app: WebappTarget;
let nginx: NginxTarget;
let maria: MariadbTarget;
let adminer: AdminerTarget;
beforeAll(async () => {
  [app, nginx, maria] = await Promise.all([startWebapp({ tls: true }), startNginx(), startMariadb()]);
  adminer = await startAdminer({ db: { host: maria.host, port: maria.port, user: maria.user, password: maria.password } });
});
afterAll(async () => {
  await Promise.all([app?.stop(), nginx?.stop(), adminer?.stop()]);
  await maria?.stop();
});

let gw: GatewayHarness;
let listener: Listener;
beforeEach(async () => {
  gw = await makeGateway();
  listener = await new HttpAdapter({ upstreamCa: { '*': readFileSync(app.ca!, 'utf8'), nginx: readFileSync(nginx.ca, 'utf8') } }).listen({
    host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem },
    http: { appsDomain: APPS, vaultUrl: 'http://127.0.0.1:8080/' },
  });
});
afterEach(async () => {
  await listener?.close();
  await gw?.cleanup();
});

const origin = (name: string): string => `https://${name}.${APPS}:${listener.address.port}`;

async function webResource(name: string, settings: object = {}, httpAuth?: HttpAuth, options: ResourceOptions = {}): Promise<void> {
  await gw.addResource({
    name, type: 'browser', protocol: 'http', host: '127.0.0.1', port: app.port,
    credentials: { login: app.user, password: httpAuth?.kind === 'bearer' || httpAuth?.kind === 'header' ? app.token : app.password },
    settings, options: { ...options, ...(httpAuth ? { httpAuth } : {}) },
  });
}

/** One HTTPS request to the gateway for `host`, trusting only the gateway's CA. */
const get = (host: string, path: string, headers: Record<string, string> = {}): Promise<Reply> => httpsGet(listener.address.port, gw.pki.caCertPem, host, path, headers);

const hostOf = (name: string): string => `${name}.${APPS}:${listener.address.port}`;

/** Enters `name` as `user` with a fresh ticket; returns the session cookie. */
async function enter(name: string, user = 'alice', next = '/'): Promise<string> {
  const { ticket } = await gw.engine.mfa.issueTicket(user, name, false);
  const r = await get(hostOf(name), `/.gatehouse/enter?user=${user}&ticket=${encodeURIComponent(ticket)}&next=${encodeURIComponent(next)}`);
  if (r.status !== 302) throw new Error(`enter ${name}: ${r.status}\n${/gatehouse-reason">([^<]*)/.exec(r.body)?.[1] ?? r.body}`);
  const cookie = String(r.headers['set-cookie']?.[0] ?? '');
  expect(cookie).toMatch(/^__Host-gatehouse=[A-Za-z0-9_-]{43}; Path=\/; Secure; HttpOnly; SameSite=Lax$/);
  expect(r.headers.location).toBe(next);
  return cookie.split(';', 1)[0]!;
}

describe('HTTP door: entering an app', () => {
  it('answers an unknown host, and the bare gateway name, with its own 404, never the app', async () => {
    await webResource('echo');
    for (const host of [`nosuch.example.com`, `127.0.0.1:${listener.address.port}`, `a.b.${APPS}`]) {
      const r = await get(host, '/echo');
      expect(r.status, host).toBe(404);
      expect(r.body).toContain('not an app of this gateway');
    }
  });

  it('without a session shows how to get in, with the vault link', async () => {
    await webResource('echo');
    const r = await get(hostOf('echo'), '/echo');
    expect(r.status).toBe(401);
    expect(r.body).toContain('gatehouse connect echo');
    expect(r.body).toContain('http://127.0.0.1:8080/');
  });

  it('shows the denial sentence and the fixing command when the workflow says no', async () => {
    await webResource('jit', APPROVAL);
    const denial = await gw.engine.explain('alice', 'jit');
    const { ticket } = await gw.engine.mfa.issueTicket('alice', 'jit', false);
    const r = await get(hostOf('jit'), `/.gatehouse/enter?user=alice&ticket=${ticket}`);
    expect(r.status).toBe(403);
    if (denial.allow) throw new Error('jit should need an approval');
    expect(r.body).toContain(denial.message.replace(/'/g, '&#39;').replace(/"/g, '&quot;'));
    expect(r.body).toContain('(approval_required)');
    expect(r.body).toContain('gatehouse request jit');
  });

  it('refuses enter links that would redirect off the app, and a gateway password in the link', async () => {
    await webResource('echo');
    for (const next of ['//evil.example/', 'https://evil.example/', '/\\evil.example', '/\tx', 'javascript:alert(1)']) {
      const { ticket } = await gw.engine.mfa.issueTicket('alice', 'echo', false);
      const r = await get(hostOf('echo'), `/.gatehouse/enter?user=alice&ticket=${ticket}&next=${encodeURIComponent(next)}`);
      expect(r.status, next).toBe(400);
      expect(r.headers['set-cookie']).toBeUndefined();
      // Refused before the ticket was looked at: it still works.
      expect((await gw.engine.mfa.peekTicket(ticket))?.usedAt).toBeUndefined();
    }
    const pw = await get(hostOf('echo'), `/.gatehouse/enter?user=alice&ticket=${encodeURIComponent('correct horse battery')}`);
    expect(pw.status).toBe(401);
    expect(pw.body).toContain('(bad_ticket)');
  });
});

describe('HTTP door: what the app receives', () => {
  it('gets a header set rebuilt from the allow-list: none of the spoofed ones, the user and a signed assertion that verifies', async () => {
    await webResource('echo');
    const cookie = await enter('echo');
    const r = await get(hostOf('echo'), '/echo', {
      cookie: `${cookie}; mine=1`, 'x-forwarded-for': '6.6.6.6', forwarded: 'for=6.6.6.6', 'x-real-ip': '6.6.6.6', 'x-gatehouse-user': 'admin', authorization: 'Basic ZXZpbDpldmls',
    });
    expect(r.status).toBe(200);
    const seen = JSON.parse(r.body) as { headers: Record<string, string> };
    const h = seen.headers;
    expect(h['x-forwarded-for']).toBeUndefined();
    expect(h.forwarded).toBeUndefined();
    expect(h['x-real-ip']).toBeUndefined();
    expect(h.authorization).toBeUndefined();
    expect(h['x-gatehouse-user']).toBe('alice');
    expect(h.cookie).toBe('mine=1');
    // The assertion is an ES256 JWT signed by the key the JWKS publishes.
    const [head, payload, sig] = h['x-gatehouse-assertion']!.split('.');
    const jwks = JSON.parse((await get(hostOf('echo'), '/.gatehouse/jwks.json')).body) as { keys: Array<Record<string, string>> };
    const key = createPublicKey({ key: jwks.keys[0]!, format: 'jwk' });
    expect(verifySignature('sha256', Buffer.from(`${head}.${payload}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig!, 'base64url'))).toBe(true);
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ sub: 'alice', resource: 'echo', aud: origin('echo') });
    expect(claims.sid).toBe(gw.broker.live()[0]!.id);
  });

  it('does not pass on a Connection header that names the injected ones (a proxy further on would strip them)', async () => {
    await webResource('conn', {}, { kind: 'basic' });
    const cookie = await enter('conn');
    const r = await get(hostOf('conn'), '/echo', { cookie, connection: 'keep-alive, Authorization, X-Gatehouse-Assertion, X-Gatehouse-User' });
    const h = (JSON.parse(r.body) as { headers: Record<string, string> }).headers;
    expect(String(h.connection ?? '')).not.toMatch(/authorization|x-gatehouse/i);
    expect(h.authorization).toMatch(/^Basic /);
    expect(h['x-gatehouse-user']).toBe('alice');
  });

  it.each([
    ['basic', { kind: 'basic' } as HttpAuth, '/basic'],
    ['bearer', { kind: 'bearer' } as HttpAuth, '/bearer'],
    ['a custom header', { kind: 'header', header: 'X-Api-Key' } as HttpAuth, '/header'],
  ])('injects %s credentials; the browser never sees them', async (_what, auth, path) => {
    await webResource('app', {}, auth);
    const cookie = await enter('app');
    const r = await get(hostOf('app'), path, { cookie });
    expect(r.status, r.body).toBe(200);
    expect(JSON.stringify(r.headers) + r.body).not.toContain(auth.kind === 'basic' ? app.password : app.token);
  });

  it('signs in with the app login form itself (CSRF token and all); the app session cookie stays in the gateway', async () => {
    await webResource('formapp', {}, { kind: 'form', path: '/login', userField: 'username', passwordField: 'password' });
    const cookie = await enter('formapp');
    const r = await get(hostOf('formapp'), '/', { cookie });
    expect(r.status, r.body).toBe(200);
    expect(r.body).toContain(`Welcome ${app.user}`);
    expect(JSON.stringify(r.headers)).not.toContain('app_session');
  });

  it('makes app cookies host-only and rewrites an absolute Location onto the app origin', async () => {
    await webResource('echo');
    const cookie = await enter('echo');
    const c = await get(hostOf('echo'), '/set-domain-cookie', { cookie });
    for (const sc of c.headers['set-cookie'] ?? []) expect(sc).not.toMatch(/domain=/i);
    const r = await get(hostOf('echo'), '/redirect-absolute', { cookie });
    expect(r.status).toBe(302);
    expect(r.headers.location).toBe(`${origin('echo')}/echo`);
  });
});

describe('HTTP door: third-party apps', () => {
  it('signs in to nginx with injected basic auth', async () => {
    await gw.addResource({
      name: 'nginx', type: 'browser', protocol: 'http', host: '127.0.0.1', port: nginx.port,
      credentials: { login: nginx.user, password: nginx.password }, settings: {}, options: { httpAuth: { kind: 'basic' } },
    });
    const cookie = await enter('nginx');
    const r = await get(hostOf('nginx'), '/private/', { cookie });
    expect(r.status, r.body).toBe(200);
    expect(JSON.stringify(r.headers) + r.body).not.toContain(nginx.password);
  });

  it('signs in to Adminer through its login form into MariaDB, lands on its page for that login, and never hands out its cookies', async () => {
    const adminerForm: HttpAuth = {
      kind: 'form', path: '/', userField: 'auth[username]', passwordField: 'auth[password]', fields: { 'auth[driver]': 'server', 'auth[server]': adminer.server, 'auth[db]': '' },
    };
    await gw.addResource({
      name: 'adminer', type: 'browser', protocol: 'http', host: '127.0.0.1', port: adminer.port,
      credentials: { login: maria.user, password: maria.password }, settings: {}, options: { httpAuth: adminerForm, allowPlaintextUpstream: true },
    });
    const { ticket } = await gw.engine.mfa.issueTicket('alice', 'adminer', false);
    const entered = await get(hostOf('adminer'), `/.gatehouse/enter?user=alice&ticket=${ticket}`);
    expect(entered.status).toBe(302);
    const landing = String(entered.headers.location);
    expect(landing).toContain(`username=${maria.user}`);
    const cookie = String(entered.headers['set-cookie']![0]).split(';', 1)[0]!;
    const page = await get(hostOf('adminer'), landing, { cookie });
    expect(page.status, page.body.slice(0, 300)).toBe(200);
    expect(page.body).toContain('Select database');
    expect(page.body).toContain(maria.database);
    expect(page.body).not.toContain(maria.password);
    expect(JSON.stringify(page.headers)).not.toMatch(/adminer_(sid|key)/);

    // A wrong vaulted password: the gateway's own sign-in fails, the browser gets the reason.
    await gw.addResource({
      name: 'adminer-bad', type: 'browser', protocol: 'http', host: '127.0.0.1', port: adminer.port,
      credentials: { login: maria.user, password: 'not-the-password' }, settings: {}, options: { httpAuth: adminerForm, allowPlaintextUpstream: true },
    });
    const t2 = await gw.engine.mfa.issueTicket('alice', 'adminer-bad', false);
    const bad = await get(hostOf('adminer-bad'), `/.gatehouse/enter?user=alice&ticket=${t2.ticket}`);
    expect(bad.status).toBe(502);
    expect(bad.body).toContain('(target_login_failed)');
    expect(gw.broker.live().filter((s) => s.resource.name === 'adminer-bad')).toHaveLength(0);
  });
});

describe('HTTP door: teardown', () => {
  it('closes the WebSocket with 1008 and the reason, ends the stream, and then shows the reason page, within 1 s of a force check-in', async () => {
    await webResource('single', SINGLE_USER);
    await gw.engine.leases.checkout('alice', 'single');
    const cookie = await enter('single');

    const ws = new WebSocket(`wss://127.0.0.1:${listener.address.port}/ws`, {
      headers: { host: hostOf('single'), cookie }, origin: origin('single'), ca: gw.pki.caCertPem, servername: 'localhost',
    } as WebSocket.ClientOptions);
    const ticks: string[] = [];
    ws.on('message', (m) => ticks.push(m.toString()));
    const closed = new Promise<{ code: number; reason: string; at: number }>((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString(), at: performance.now() })));
    expect(await eventually(() => ticks.length >= 2)).toBe(true);

    const sse = await new Promise<{ ended: Promise<number> }>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port: listener.address.port, path: '/sse', servername: 'localhost', ca: gw.pki.caCertPem, headers: { host: hostOf('single'), cookie }, agent: false }, (res) => {
        res.on('data', () => {});
        resolve({ ended: new Promise((r) => res.once('close', () => r(performance.now()))) });
      });
      req.on('error', reject);
      req.end();
    });

    const t0 = performance.now();
    await gw.engine.leases.forceCheckin('bob', 'single', 'incident 9');
    const c = await within(closed, 5_000, 'the WebSocket close');
    expect(c.code).toBe(1008);
    expect(c.reason).toContain('force checked in by bob');
    expect(c.at - t0).toBeLessThan(1_000);
    expect((await within(sse.ended, 5_000, 'the SSE stream to end')) - t0).toBeLessThan(1_000);

    const next = await get(hostOf('single'), '/echo', { cookie });
    expect(next.status).toBe(403);
    expect(next.body).toContain('single was force checked in by bob: incident 9');
  });

  it('ends the session at the schedule window close on the workflow clock, and says so on the next request', async () => {
    await webResource('daytime', { limitAccessTime: { timezone: 'Europe/Berlin', schedule: [{ days: ['mon'], start: '08:00', end: '10:30' }], maxDurationMinutes: 240 } });
    const cookie = await enter('daytime');
    expect((await get(hostOf('daytime'), '/echo', { cookie })).status).toBe(200);
    const s = gw.broker.live()[0]!;
    gw.clock.set(s.decision.deadline!);
    expect(await eventually(async () => (await get(hostOf('daytime'), '/echo', { cookie })).status === 403)).toBe(true);
    const r = await get(hostOf('daytime'), '/echo', { cookie });
    expect(r.body).toContain('the access schedule window for daytime has ended');
  });

  it('ends the session when the user leaves through /.gatehouse/logout, and when it is left idle', async () => {
    await listener.close();
    listener = await new HttpAdapter({ upstreamCa: { '*': readFileSync(app.ca!, 'utf8') }, idleTimeoutMs: 300 }).listen({
      host: '127.0.0.1', port: 0, broker: gw.broker, log: silentLogger, tls: { cert: gw.pki.certPem, key: gw.pki.keyPem, ca: gw.pki.caCertPem }, http: { appsDomain: APPS },
    });
    await webResource('echo');
    const cookie = await enter('echo');
    expect((await get(hostOf('echo'), '/.gatehouse/logout', { cookie })).status).toBe(200);
    expect((await get(hostOf('echo'), '/echo', { cookie })).status).toBe(403);
    const idle = await enter('echo');
    expect((await get(hostOf('echo'), '/echo', { cookie: idle })).status).toBe(200);
    expect(await eventually(() => gw.broker.live().length === 0, 5_000)).toBe(true);
    const r = await get(hostOf('echo'), '/echo', { cookie: idle });
    expect(r.status).toBe(403);
    expect(r.body).toContain('idle too long');
  });

  it('refuses a WebSocket from another origin, and one without a session', async () => {
    await webResource('wsapp');
    const cookie = await enter('wsapp');
    const opened = (headers: Record<string, string>, from: string) =>
      new Promise<number>((resolve) => {
        const ws = new WebSocket(`wss://127.0.0.1:${listener.address.port}/ws`, { headers: { host: hostOf('wsapp'), ...headers }, origin: from, ca: gw.pki.caCertPem, servername: 'localhost' } as WebSocket.ClientOptions);
        ws.once('open', () => {
          ws.close();
          resolve(101);
        });
        ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.once('error', () => resolve(-1));
      });
    expect(await opened({ cookie }, origin('other'))).toBe(403);
    expect(await opened({}, origin('wsapp'))).toBe(401);
    expect(await opened({ cookie }, origin('wsapp'))).toBe(101);
  });
});

describe('HTTP door: bad input', () => {
  /** Raw bytes over TLS; resolves with what came back before the close. */
  function raw(bytes: string): Promise<string> {
    return new Promise((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: listener.address.port, servername: 'localhost', ca: gw.pki.caCertPem }, () => s.end(bytes));
      let out = '';
      s.on('data', (d: Buffer) => (out += d.toString()));
      s.on('error', () => resolve(out));
      s.on('close', () => resolve(out));
    });
  }

  it('answers smuggling attempts, absolute-form targets and garbage with 400 and a close, and keeps serving', async () => {
    await webResource('echo');
    const host = hostOf('echo');
    const many = Array.from({ length: 120 }, (_, i) => `X-H${i}: v\r\n`).join('');
    const cases = [
      `POST /echo HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      `POST /echo HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!`,
      `POST /echo HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello`,
      `GET /echo HTTP/1.1\r\nHost: ${host}\r\nX-Folded: a\r\n b\r\n\r\n`,
      `GET /echo HTTP/1.1\r\nHost: ${host}\r\n${many}\r\n`,
      `GET http://127.0.0.1:${app.port}/echo HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
      `GET //127.0.0.1:${app.port}/echo HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
      `GET /echo HTTP/1.1\r\nHost: ${host}\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`,
      '\u0016\u0003garbage\r\n\r\n',
    ];
    for (const c of cases) {
      const out = await within(raw(c), 10_000, 'the gateway to answer and close');
      expect(out, JSON.stringify(c.slice(0, 80))).toMatch(/^HTTP\/1\.1 400 /);
      expect(out).toMatch(/connection: close/i);
    }
    const cookie = await enter('echo');
    expect((await get(host, '/echo', { cookie })).status).toBe(200);
    const audited = await gw.store.listAudit({ action: 'door.refuse' });
    expect(audited.filter((e) => e.data.door === 'http' && e.data.code === 'protocol_error' && /^127\.0\.0\.1:\d+$/.test(String(e.data.client))).length).toBeGreaterThanOrEqual(cases.length);
  });
});
