/**
 * The browser door (protocols/http) in Chromium, entered the way a person does it: sign in to
 * the vault, Launch, click "Open <app>". Apps on their own origins under apps.localhost (which
 * Chromium resolves to loopback), the gateway's certificate accepted by its key (an SPKI pin,
 * nothing else ignored), the workflow on a fake clock that starts at the real time. Node's own
 * clients drive the same door in test/protocols/http.test.ts.
 */
import { createHash, createPublicKey, verify as verifySignature, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../src/core/clock.js';
import type { HttpAuth, Weekday } from '../../src/core/model.js';
import type { NewResource } from '../../src/workflow/directory.js';
import {
  startAdminer, startMariadb, startNginx, startWebapp, type AdminerTarget, type MariadbTarget, type NginxTarget, type WebappTarget,
} from '../targets/index.js';
import { ensurePrerequisites, launchBrowser, newUserPage, SHOTS, signIn, startWebGateway, type WebGateway } from './web-harness.js';

const WEEK: Weekday[] = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const ALWAYS = { timezone: 'UTC', schedule: [{ days: WEEK, start: '00:00', end: '24:00' }], maxDurationMinutes: 120 };
const APPROVAL = { limitAccessTime: ALWAYS, requireApproval: { approvers: [], approvals: 1, startOn: 'approval' } };

let web: WebGateway;
let browser: Browser;
let clock: FakeClock;
let app: WebappTarget;
let nginx: NginxTarget;
let maria: MariadbTarget;
let adminer: AdminerTarget;
/** When the `sched` resource's schedule window closes (workflow time). */
let windowEnd: Date;

const origin = (name: string): string => web.apps!.origin(name);
const card = (page: Page, name: string) => page.locator(`article[data-resource="${name}"]`);

/** Launch in the vault; the "Open <name>" link's href (the one-time enter link). */
async function launch(vault: Page, name: string): Promise<string> {
  await card(vault, name).getByRole('button', { name: 'Launch' }).click();
  const href = await card(vault, name).getByRole('link', { name: `Open ${name}` }).getAttribute('href');
  expect(href).toMatch(new RegExp(`^${origin(name).replace(/\./g, '\\.')}/\\.gatehouse/enter\\?user=alice&ticket=ght_[A-Za-z0-9_-]+$`));
  return href!;
}

/** Launch, then click "Open <name>": the app's tab (target=_blank), loaded. */
async function openApp(vault: Page, name: string): Promise<Page> {
  await launch(vault, name);
  const [tab] = await Promise.all([vault.waitForEvent('popup'), card(vault, name).getByRole('link', { name: `Open ${name}` }).click()]);
  await tab.waitForLoadState();
  return tab;
}

/** Everything of an app tab a script or a person could read, with every cookie of the context. */
async function visible(tab: Page, context: BrowserContext): Promise<string> {
  return [await tab.content(), await tab.locator('body').innerText(), await tab.evaluate(() => document.cookie), JSON.stringify(await context.cookies())].join('\n');
}

/** The gateway's session cookie, as Chromium stored it for an app origin. */
async function expectSessionCookie(context: BrowserContext, name: string): Promise<void> {
  const c = (await context.cookies(origin(name))).find((x) => x.name === '__Host-gatehouse');
  expect(c, `__Host-gatehouse on ${name}`).toMatchObject({ domain: `${name}.apps.localhost`, path: '/', secure: true, httpOnly: true, sameSite: 'Lax', expires: -1 });
  expect(c!.value).toMatch(/^[A-Za-z0-9_-]{43}$/);
}

/** Opens the app's WebSocket and EventSource in the tab, recording ticks and when and how each ended (Date.now()). */
async function watchStreams(tab: Page): Promise<void> {
  await tab.evaluate(() => {
    const rec = { ticks: 0, events: 0, opened: false, close: null as null | { code: number; reason: string; at: number }, sseEnd: null as null | number };
    (window as unknown as { rec: typeof rec }).rec = rec;
    const ws = new WebSocket(`${location.origin.replace('https', 'wss')}/ws`);
    ws.onopen = () => (rec.opened = true);
    ws.onmessage = () => rec.ticks++;
    ws.onclose = (e) => (rec.close = { code: e.code, reason: e.reason, at: Date.now() });
    const es = new EventSource('/sse');
    es.addEventListener('tick', () => rec.events++);
    es.onerror = () => {
      rec.sseEnd ??= Date.now();
      es.close();
    };
  });
  await tab.waitForFunction(() => {
    const r = (window as unknown as { rec: { ticks: number; events: number } }).rec;
    return r.ticks >= 2 && r.events >= 2;
  });
}

interface Ended {
  close: { code: number; reason: string; at: number };
  sseEnd: number;
}

async function streamsEnded(tab: Page): Promise<Ended> {
  const h = await tab.waitForFunction(() => {
    const r = (window as unknown as { rec: { close: unknown; sseEnd: unknown } }).rec;
    return r.close && r.sseEnd ? r : null;
  }, undefined, { timeout: 5_000 });
  return (await h.jsonValue()) as Ended;
}

beforeAll(async () => {
  ensurePrerequisites();
  let db: Promise<AdminerTarget>;
  [app, nginx, adminer] = await Promise.all([
    startWebapp({ tls: true }),
    startNginx(),
    (db = startMariadb().then((m) => {
      maria = m;
      return startAdminer({ db: { host: m.host, port: m.port, user: m.user, password: m.password } });
    })),
  ]);
  await db;
  clock = new FakeClock(Date.now());
  web = await startWebGateway({ clock, http: { upstreamCa: { '*': readFileSync(app.ca!, 'utf8'), nginx: readFileSync(nginx.ca, 'utf8') } } });
  // Chromium accepts the gateway's certificate by its key and nothing else; the name it must carry is checked here.
  const cert = new X509Certificate(web.gw.pki.certPem);
  expect(cert.checkHost('echo.apps.localhost')).toBe('*.apps.localhost');
  const spki = createHash('sha256').update(cert.publicKey.export({ type: 'spki', format: 'der' })).digest('base64');
  browser = await launchBrowser([`--ignore-certificate-errors-spki-list=${spki}`]);

  const d = web.gw.engine.directory;
  const add = (r: Omit<NewResource, 'owner' | 'access' | 'type' | 'protocol' | 'host'>): Promise<unknown> =>
    d.addResource('admin', { type: 'browser', protocol: 'http', host: '127.0.0.1', owner: 'bob', access: [{ team: 'eng' }], ...r });
  const adminerForm: HttpAuth = {
    kind: 'form', path: '/', userField: 'auth[username]', passwordField: 'auth[password]', fields: { 'auth[driver]': 'server', 'auth[server]': adminer.server, 'auth[db]': '' },
  };
  await add({ name: 'nginx', port: nginx.port, credentials: { login: nginx.user, password: nginx.password }, settings: APPROVAL, options: { httpAuth: { kind: 'basic' } } });
  await add({ name: 'adminer', port: adminer.port, credentials: { login: maria.user, password: maria.password }, settings: APPROVAL, options: { httpAuth: adminerForm, allowPlaintextUpstream: true } });
  for (const name of ['echo', 'other']) await add({ name, port: app.port, credentials: { login: app.user, password: app.password } });
  await add({ name: 'single', port: app.port, credentials: { login: app.user, password: app.password }, settings: { limitAccessTime: ALWAYS, singleUser: true } });
  // Today's window closes at the next full hour at least ten minutes ahead (midnight at the latest).
  const now = clock.now();
  const end = Math.min(1440, Math.ceil((now.getUTCHours() * 60 + now.getUTCMinutes() + 10) / 60) * 60);
  windowEnd = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate()) + end * 60_000);
  await add({
    name: 'sched', port: app.port, credentials: { login: app.user, password: app.password },
    settings: { limitAccessTime: { timezone: 'UTC', schedule: [{ days: [WEEK[now.getUTCDay()]!], start: '00:00', end: `${String(end / 60).padStart(2, '0')}:00` }], maxDurationMinutes: 600 } },
  });
});

afterAll(async () => {
  await browser?.close();
  await web?.close();
  await Promise.all([app?.stop(), nginx?.stop(), adminer?.stop()]);
  await maria?.stop();
});

describe('browser door in Chromium', () => {
  it('an app behind an approval: the vault asks for it, a link outliving its grant shows the denial, then nginx and Adminer open signed in by injected credentials the browser never sees', async () => {
    const { context, page: vault, problems } = await newUserPage(browser);
    await signIn(vault, web.base, 'alice');
    const requests = web.gw.engine.requests;

    // The vault says approval is needed; alice asks for it there, bob approves.
    const ng = card(vault, 'nginx');
    await ng.getByText('Approval is required before you can connect.').waitFor();
    await ng.getByRole('button', { name: 'Request Access' }).click();
    await ng.getByLabel('Reason').fill('Check the private area after the deploy');
    await ng.getByRole('button', { name: 'Send request' }).click();
    await ng.getByText('Waiting for approval: 0 of 1 so far').waitFor();
    const first = (await web.gw.store.listRequests({ requester: 'alice', resource: 'nginx' }))[0]!;
    await requests.approve(first.id, 'bob');

    // A link issued while the grant was live, opened after the grant ended: the gateway's denial page.
    const stale = await launch(vault, 'nginx');
    await requests.end(first.id, 'bob', 'revoked by bob');
    const denial = await web.gw.engine.explain('alice', 'nginx');
    if (denial.allow) throw new Error('nginx should be closed to alice now');
    const deniedTab = await context.newPage();
    const denied = await deniedTab.goto(stale);
    expect(denied!.status()).toBe(403);
    expect(await deniedTab.getByRole('heading', { level: 1 }).textContent()).toBe('Access refused');
    expect(await deniedTab.locator('#gatehouse-reason').textContent()).toBe(`Gatehouse: ${denial.message} (${denial.code})`);
    expect(denial.message).toBe('Your access to nginx has ended (revoked by bob); request it again.');
    expect(await deniedTab.locator('body').innerText()).toContain('To fix: gatehouse request nginx --reason "..."');
    expect(await deniedTab.getByRole('link', { name: 'Open the Gatehouse vault' }).getAttribute('href')).toBe(`${web.base}/`);
    expect(await context.cookies(origin('nginx'))).toEqual([]);
    await deniedTab.screenshot({ path: join(SHOTS, 'http-denied.png') });
    await deniedTab.close();

    // Asked again in the vault, approved in bob's inbox: Launch, Open, and nginx's basic auth is the gateway's.
    await vault.reload();
    await ng.getByText('Your access ended; request it again to continue.').waitFor();
    await ng.getByRole('button', { name: 'Request Access' }).click();
    await ng.getByLabel('Reason').fill('Again, with the deploy done');
    await ng.getByRole('button', { name: 'Send request' }).click();
    const bob = await newUserPage(browser);
    await signIn(bob.page, web.base, 'bob');
    await bob.page.getByRole('link', { name: 'Approvals' }).click();
    await bob.page.locator('[data-request]').filter({ hasText: 'alice → nginx' }).getByRole('button', { name: 'Approve' }).click();
    await ng.getByRole('button', { name: 'Launch' }).waitFor();
    const nginxTab = await openApp(vault, 'nginx');
    expect(nginxTab.url()).toBe(`${origin('nginx')}/`);
    await nginxTab.getByRole('link', { name: 'Private area' }).click();
    await nginxTab.getByRole('heading', { name: 'Private area' }).waitFor();
    expect(nginxTab.url()).toBe(`${origin('nginx')}/private/`);
    expect(await nginxTab.locator('body').innerText()).toContain('Only for the basic-auth user.');
    await expectSessionCookie(context, 'nginx');
    expect((await context.cookies(origin('nginx'))).map((c) => c.name)).toEqual(['__Host-gatehouse']);
    const basic = Buffer.from(`${nginx.user}:${nginx.password}`).toString('base64');
    for (const secret of [nginx.password, basic]) expect(await visible(nginxTab, context)).not.toContain(secret);

    // Adminer: approved through the engine, its own login form filled in by the gateway, into MariaDB.
    const req = await requests.create('alice', { resource: 'adminer', reason: 'look at the schema' });
    await requests.approve(req.id, 'bob');
    await card(vault, 'adminer').getByRole('button', { name: 'Launch' }).waitFor();
    const adminerTab = await openApp(vault, 'adminer');
    expect(adminerTab.url()).toMatch(new RegExp(`^${origin('adminer').replace(/\./g, '\\.')}/\\?.*username=${maria.user}`));
    await adminerTab.getByRole('heading', { name: 'Select database' }).waitFor();
    await adminerTab.getByRole('link', { name: maria.database, exact: true }).first().waitFor();
    await expectSessionCookie(context, 'adminer');
    // Adminer's own session cookies (adminer_sid, adminer_key) stay in the gateway's jar.
    expect((await context.cookies(origin('adminer'))).map((c) => c.name)).toEqual(['__Host-gatehouse']);
    expect(await visible(adminerTab, context)).not.toContain(maria.password);
    await adminerTab.screenshot({ path: join(SHOTS, 'http-adminer.png') });

    expect([...problems, ...bob.problems]).toEqual([]);
    await Promise.all([context.close(), bob.context.close()]);
  });

  it('the app sees none of the forwarding headers the browser made up and no gateway cookie, but an assertion that verifies against the JWKS; enter links refuse to leave the app', async () => {
    const { context, page: vault, problems } = await newUserPage(browser);
    await signIn(vault, web.base, 'alice');
    const link = await launch(vault, 'echo');
    const tab = await context.newPage();
    const offsite: string[] = [];
    context.on('request', (r) => {
      if (new URL(r.url()).hostname.endsWith('evil.example')) offsite.push(r.url());
    });

    // The link with a `next` off the app: a 400 page on the app origin, no cookie, the ticket left unused.
    for (const next of ['//evil.example/', 'https://evil.example/', '/\\evil.example/']) {
      const r = await tab.goto(`${link}&next=${next}`);
      expect(r!.status(), next).toBe(400);
      expect(new URL(tab.url()).origin).toBe(origin('echo'));
      expect(await tab.locator('#gatehouse-reason').textContent()).toContain('a redirect off the app (next must be a path on this app)');
    }
    expect(await context.cookies(origin('echo'))).toEqual([]);

    await tab.setExtraHTTPHeaders({ 'X-Forwarded-For': '6.6.6.6', 'X-Gatehouse-User': 'admin', Forwarded: 'for=6.6.6.6;proto=http', 'X-Real-IP': '6.6.6.6' });
    const r = await tab.goto(`${link}&next=/echo`);
    expect(r!.status()).toBe(200);
    expect(tab.url()).toBe(`${origin('echo')}/echo`);
    expect(offsite).toEqual([]);
    await expectSessionCookie(context, 'echo');
    const seen = JSON.parse(await tab.locator('body').innerText()) as { headers: Record<string, string | undefined>; rawHeaders: string[] };
    const h = seen.headers;
    expect(h['x-forwarded-for']).toBeUndefined();
    expect(h.forwarded).toBeUndefined();
    expect(h['x-real-ip']).toBeUndefined();
    expect(h['x-gatehouse-user']).toBe('alice');
    expect(seen.rawHeaders.join('\n')).not.toContain('6.6.6.6');
    expect(seen.rawHeaders.filter((x) => /^x-gatehouse-user$/i.test(x))).toHaveLength(1);
    expect(h.cookie ?? '').not.toContain('gatehouse');

    // The assertion, checked with the key the app origin publishes.
    const [head, payload, sig] = h['x-gatehouse-assertion']!.split('.');
    const jwks = JSON.parse(await tab.evaluate(() => fetch('/.gatehouse/jwks.json').then((x) => x.text()))) as { keys: Array<Record<string, string>> };
    const kid = (JSON.parse(Buffer.from(head!, 'base64url').toString()) as { kid: string }).kid;
    const jwk = jwks.keys.find((k) => k.kid === kid)!;
    expect(jwk).toMatchObject({ kty: 'EC', crv: 'P-256', alg: 'ES256' });
    const key = createPublicKey({ key: jwk, format: 'jwk' });
    expect(verifySignature('sha256', Buffer.from(`${head}.${payload}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig!, 'base64url'))).toBe(true);
    const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
    expect(claims).toMatchObject({ sub: 'alice', resource: 'echo', aud: origin('echo'), sid: web.gw.broker.live().find((s) => s.resource.name === 'echo')!.id });
    expect(problems).toEqual([]);
    await context.close();
  });

  it("keeps one app's cookies from other apps and the vault, and refuses a WebSocket from one app to another", async () => {
    const { context, page: vault, problems } = await newUserPage(browser);
    await signIn(vault, web.base, 'alice');
    const a = await openApp(vault, 'echo');
    const b = await openApp(vault, 'other');

    // Cookies set with Domain=apps.localhost and Domain=localhost land host-only on app A.
    await a.goto(`${origin('echo')}/set-domain-cookie`);
    const onA = await context.cookies(origin('echo'));
    for (const name of ['wide', 'wider', 'narrow']) expect(onA.find((c) => c.name === name), name).toMatchObject({ domain: 'echo.apps.localhost' });
    // B has only its own (the gateway's and the csrf cookie of its login page), all host-only on B.
    const onB = await context.cookies(origin('other'));
    expect(onB.map((c) => c.name).sort()).toEqual(['__Host-gatehouse', 'csrf']);
    for (const c of onB) expect(c.domain).toBe('other.apps.localhost');
    const apiPort = new URL(web.base).port;
    for (const url of [web.base, `http://localhost:${apiPort}/`, `https://apps.localhost:${web.apps!.port}/`]) expect(await context.cookies(url), url).toEqual([]);
    await b.goto(`${origin('other')}/echo`);
    const sentToB = (JSON.parse(await b.locator('body').innerText()) as { headers: { cookie?: string } }).headers.cookie ?? '';
    expect(sentToB).toMatch(/^csrf=[0-9a-f]+$/);

    const tryWs = (tab: Page, url: string) =>
      tab.evaluate((u) => new Promise<{ opened: boolean; errored: boolean; code: number; ticks: number }>((resolve) => {
        const ws = new WebSocket(u);
        const r = { opened: false, errored: false, code: 0, ticks: 0 };
        ws.onopen = () => (r.opened = true);
        ws.onerror = () => (r.errored = true);
        ws.onmessage = () => {
          if (++r.ticks === 2) ws.close(1000);
        };
        ws.onclose = (e) => resolve({ ...r, code: e.code });
      }), url);
    const wsOf = (name: string): string => `${origin(name).replace('https', 'wss')}/ws`;
    // B's own page opens B's WebSocket (the session there is live), and A's its own; A's page cannot open B's.
    expect(await tryWs(b, wsOf('other'))).toEqual({ opened: true, errored: false, code: 1000, ticks: 2 });
    expect(await tryWs(a, wsOf('echo'))).toEqual({ opened: true, errored: false, code: 1000, ticks: 2 });
    expect(await tryWs(a, wsOf('other'))).toEqual({ opened: false, errored: true, code: 1006, ticks: 0 });
    expect(problems).toEqual([]);
    await context.close();
  });

  it('force check-in with the app open: its WebSocket gets 1008 with the reason and its stream ends within 1 s, the next page says why', async () => {
    const { context, page: vault, problems } = await newUserPage(browser);
    await signIn(vault, web.base, 'alice');
    await card(vault, 'single').getByRole('button', { name: 'Check Out' }).click();
    const tab = await openApp(vault, 'single');
    expect(new URL(tab.url()).origin).toBe(origin('single'));
    await watchStreams(tab);

    const t0 = Date.now();
    await web.gw.engine.leases.forceCheckin('bob', 'single', 'incident 9');
    const ended = await streamsEnded(tab);
    expect(ended.close.code).toBe(1008);
    expect(ended.close.reason).toContain('single was force checked in by bob: incident 9');
    expect(ended.close.at - t0).toBeLessThan(1_000);
    expect(ended.sseEnd - t0).toBeLessThan(1_000);

    const next = await tab.reload();
    expect(next!.status()).toBe(403);
    expect(await tab.getByRole('heading', { level: 1 }).textContent()).toBe('Session ended');
    expect(await tab.locator('#gatehouse-reason').textContent()).toContain('single was force checked in by bob: incident 9');
    await tab.screenshot({ path: join(SHOTS, 'http-ended.png') });
    expect(problems).toEqual([]);
    await context.close();
  });

  it('schedule close on the workflow clock: the same 1008, end of stream and reason page', async () => {
    const { context, page: vault, problems } = await newUserPage(browser);
    await signIn(vault, web.base, 'alice');
    const tab = await openApp(vault, 'sched');
    await watchStreams(tab);
    const s = web.gw.broker.live().find((x) => x.resource.name === 'sched')!;
    expect(s.decision.deadline).toEqual(windowEnd);

    const t0 = Date.now();
    clock.set(s.decision.deadline!);
    const ended = await streamsEnded(tab);
    expect(ended.close.code).toBe(1008);
    expect(ended.close.reason).toContain('the access schedule window for sched has ended');
    expect(ended.close.at - t0).toBeLessThan(1_000);
    expect(ended.sseEnd - t0).toBeLessThan(1_000);

    expect((await tab.reload())!.status()).toBe(403);
    expect(await tab.locator('#gatehouse-reason').textContent()).toContain('the access schedule window for sched has ended');
    expect(problems).toEqual([]);
    await context.close();
  });
});
