import { join } from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { clockTime } from '../../src/web/app/format.js';
import {
  clearNotices, ensurePrerequisites, launchBrowser, newUserPage, SHOTS, signIn, startWebGateway, type WebGateway,
} from './web-harness.js';
import { totpSource } from './totp-source.js';

/** Milliseconds since `t0`, for "within 1 s" bounds. */
const since = (t0: number): number => performance.now() - t0;

/** Replaces window.Notification (granted) and reports the page as hidden, so desktop notices are recorded. */
function recordDesktopNotices(): void {
  const calls: string[] = [];
  (window as unknown as { __desktop: string[] }).__desktop = calls;
  class FakeNotification {
    static permission = 'granted';
    static requestPermission = async (): Promise<string> => 'granted';
    constructor(_title: string, opts?: { body?: string }) {
      calls.push(opts?.body ?? '');
    }
  }
  Object.defineProperty(window, 'Notification', { value: FakeNotification, configurable: true });
  Object.defineProperty(document, 'visibilityState', { get: () => 'hidden', configurable: true });
}

const card = (page: Page, name: string) => page.locator(`article[data-resource="${name}"]`);

describe('web vault in Chromium', () => {
  let web: WebGateway;
  let browser: Browser;

  beforeAll(async () => {
    ensurePrerequisites();
    web = await startWebGateway();
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
    await web?.close();
  });

  it('request, live approval, check-out with countdown, holder shown to others, force check-in, all live', async () => {
    const bob = await newUserPage(browser);
    await bob.context.addInitScript(recordDesktopNotices);
    const alice = await newUserPage(browser, { permissions: ['clipboard-read', 'clipboard-write'] });
    await signIn(bob.page, web.base, 'bob');
    await bob.page.getByRole('link', { name: 'Approvals' }).click();
    await bob.page.getByText('Nothing is waiting for your approval.').waitFor();
    await signIn(alice.page, web.base, 'alice');

    // The request form asks for what the workflow requires and checks the ticket pattern before sending.
    const db = card(alice.page, 'prod-db');
    await expect(db.locator('.badge').allTextContents()).resolves.toEqual(expect.arrayContaining([expect.stringMatching(/^Schedule/), expect.stringMatching(/^Approval/), expect.stringMatching(/^Single-user/)]));
    await db.getByRole('button', { name: 'Request Access' }).click();
    const reason = db.getByLabel('Reason');
    expect(await reason.evaluate((el) => el === document.activeElement)).toBe(true);
    await db.getByRole('button', { name: 'Send request' }).click();
    await db.getByText('A reason is required for this resource.').waitFor();
    await reason.fill('Rotate the replication slot after the failover');
    await db.getByLabel('Ticket id').fill('1234');
    await db.getByRole('button', { name: 'Send request' }).click();
    await db.getByText('The ticket id must match ^CHG-[0-9]+$.').waitFor();
    expect(await db.getByLabel('Ticket id').getAttribute('aria-invalid')).toBe('true');
    expect(await web.gw.store.listRequests({ requester: 'alice' })).toHaveLength(0);
    await db.getByLabel('Ticket id').fill('CHG-4711');
    await alice.page.screenshot({ path: join(SHOTS, 'request-form.png') });

    // Bob's inbox shows it without a reload, within a second.
    const reloads = await bob.page.evaluate(() => performance.getEntriesByType('navigation').length);
    let t0 = performance.now();
    await db.getByRole('button', { name: 'Send request' }).click();
    const item = bob.page.locator('[data-request]').filter({ hasText: 'alice → prod-db' });
    await item.waitFor({ timeout: 1000 });
    expect(since(t0)).toBeLessThan(1000);
    expect(await bob.page.evaluate(() => performance.getEntriesByType('navigation').length)).toBe(reloads);
    expect(await item.locator('[data-fact="requester"]').textContent()).toBe('alice');
    expect(await item.locator('[data-fact="reason"]').textContent()).toBe('Rotate the replication slot after the failover');
    expect(await item.locator('[data-fact="ticket"]').textContent()).toBe('CHG-4711');
    expect(await item.locator('[data-fact="requested"]').textContent()).toMatch(/^\d\d:\d\d$/);
    await bob.page.locator('.notice').filter({ hasText: 'alice requests access to prod-db' }).waitFor({ timeout: 1000 });
    expect(await bob.page.evaluate(() => (window as unknown as { __desktop: string[] }).__desktop)).toEqual([expect.stringContaining('alice requests access to prod-db')]);

    // Alice sees her pending request with approvals so far; Remind works once, then is rate-limited.
    await db.getByText('Waiting for approval: 0 of 1 so far').waitFor({ timeout: 1000 });
    await db.getByRole('button', { name: 'Remind' }).click();
    await alice.page.locator('.notice').filter({ hasText: 'The approvers were reminded.' }).waitFor();
    await db.getByRole('button', { name: 'Remind' }).click();
    await alice.page.locator('.notice[role="alert"]').filter({ hasText: 'a reminder was sent recently' }).waitFor();
    await clearNotices(bob.page);
    await bob.page.screenshot({ path: join(SHOTS, 'inbox.png') });

    // Bob approves with a comment; Alice's page updates live.
    await item.getByLabel('Comment (optional)').fill('Go ahead, CAB approved');
    t0 = performance.now();
    await item.getByRole('button', { name: 'Approve' }).click();
    await db.getByRole('button', { name: 'Check Out' }).waitFor({ timeout: 1000 });
    expect(since(t0)).toBeLessThan(1000);
    await alice.page.locator('.notice').filter({ hasText: 'Your request for prod-db was approved' }).waitFor({ timeout: 1000 });
    const approved = (await web.gw.store.listRequests({ requester: 'alice' }))[0]!;
    expect(approved.reviews).toEqual([expect.objectContaining({ approver: 'bob', decision: 'approve', comment: 'Go ahead, CAB approved' })]);

    // Check out: a live countdown.
    await db.getByRole('button', { name: 'Check Out' }).click();
    const countdown = db.locator('[data-countdown="prod-db"]');
    await countdown.filter({ hasText: /^\d+:\d\d(:\d\d)?$/ }).waitFor({ timeout: 1000 });
    const first = await countdown.textContent();
    await alice.page.waitForFunction((before) => document.querySelector('[data-countdown="prod-db"]')?.textContent !== before, first, { timeout: 2500 });
    const lease = (await web.gw.store.getHeldLease('prod-db'))!;
    // The page runs in UTC (see newUserPage); past midnight the label carries the weekday.
    const until = clockTime(lease.expiresAt.toISOString(), new Date(), 'UTC');
    expect(await db.locator('.status').textContent()).toContain(`Checked out by you until ${until}`);
    expect(await db.getByRole('button', { name: 'Check In' }).isVisible()).toBe(true);
    await clearNotices(alice.page);
    await alice.page.screenshot({ path: join(SHOTS, 'vault.png'), fullPage: true });

    // Carol, signing in with the keyboard only, sees who holds it and until when.
    const carol = await newUserPage(browser);
    await carol.page.goto(`${web.base}/`);
    await carol.page.getByLabel('User name').focus();
    await carol.page.keyboard.type('carol');
    await carol.page.keyboard.press('Tab');
    await carol.page.keyboard.type('correct-horse-42');
    await carol.page.keyboard.press('Enter');
    await carol.page.getByRole('heading', { level: 1, name: 'Vault' }).waitFor();
    expect(await carol.page.evaluate(() => document.activeElement?.tagName)).toBe('H1');
    await card(carol.page, 'prod-db').getByText(`Checked out by alice until ${until}`).waitFor();
    expect(await card(carol.page, 'prod-db').locator('.actions button').count()).toBe(0);

    // Bob sees the holder and forces a check-in; Alice's page shows it within a second.
    const holder = bob.page.locator('[data-lease="prod-db"]');
    await holder.getByText('checked out by alice').waitFor({ timeout: 7000 });
    await holder.getByRole('button', { name: 'Force Check-In' }).click();
    await holder.getByLabel('Reason (optional)').fill('emergency maintenance');
    t0 = performance.now();
    await holder.getByRole('button', { name: 'Confirm Force Check-In' }).click();
    await alice.page.locator('.notice').filter({ hasText: 'prod-db was force checked in by bob: emergency maintenance' }).waitFor({ timeout: 1000 });
    await db.getByRole('button', { name: 'Request Access' }).waitFor({ timeout: 1000 });
    expect(since(t0)).toBeLessThan(1000);
    expect(await db.locator('.status').textContent()).not.toContain('Checked out');
    expect((await web.gw.store.listLeases({ resource: 'prod-db' }))[0]).toMatchObject({ state: 'force_checked_in', endedBy: 'bob' });

    expect([...alice.problems, ...bob.problems, ...carol.problems]).toEqual([]);
    await Promise.all([alice.context.close(), bob.context.close(), carol.context.close()]);
  });

  it('shows the workflow editor only with ALLOW_CONFIGURE_WORKFLOW_SETTINGS, with API errors inline; the API refuses a forged save', async () => {
    const bob = await newUserPage(browser);
    await signIn(bob.page, web.base, 'bob');
    await bob.page.getByRole('navigation').getByRole('link', { name: 'Settings' }).click();
    await bob.page.getByRole('link', { name: 'prod-db' }).click();
    const form = bob.page.getByRole('form', { name: 'Workflow settings of prod-db' });
    await form.waitFor();
    expect(await form.getByLabel('Limit access time').isChecked()).toBe(true);
    expect(await form.getByLabel('Time zone').inputValue()).toBe('UTC');
    expect(await form.getByLabel('Approvals needed').inputValue()).toBe('1');
    expect(await form.getByLabel('Ticket pattern').inputValue()).toBe('^CHG-[0-9]+$');
    expect(await form.getByLabel('On approval').isChecked()).toBe(true);
    await bob.page.screenshot({ path: join(SHOTS, 'settings.png'), fullPage: true });

    // The API's validation, shown beside the field it names.
    const lat = form.getByLabel('Limit access time');
    await lat.uncheck();
    await form.getByRole('button', { name: 'Save settings' }).click();
    const latError = bob.page.locator(`#${await lat.getAttribute('id')}-error`);
    await latError.filter({ hasText: 'required when requireApproval, singleUser or mfa is on' }).waitFor();
    expect(await lat.getAttribute('aria-invalid')).toBe('true');
    expect(await lat.evaluate((el) => el === document.activeElement)).toBe(true);
    await lat.check();
    await form.getByLabel('Approvals needed').fill('3');
    await form.getByRole('button', { name: 'Save settings' }).click();
    await form.getByText('must be between 1 and 1').waitFor();
    expect(await form.getByLabel('Approvals needed').getAttribute('aria-invalid')).toBe('true');
    expect(await latError.isHidden()).toBe(true);
    await form.getByLabel('Approvals needed').fill('1');
    await form.getByLabel('MFA: ask for an authenticator code').check();
    await form.getByRole('button', { name: 'Save settings' }).click();
    await bob.page.locator('.notice').filter({ hasText: 'Saved the workflow of prod-db.' }).waitFor();
    const saved = (await web.gw.store.getResource('prod-db'))!.settings;
    expect(saved).toMatchObject({ mfa: true, singleUser: true, requireApproval: { approvals: 1, ticketPattern: '^CHG-[0-9]+$', requireReason: true } });

    // Carol has no such role: no link, no editor, and a hand-made save is refused.
    const carol = await newUserPage(browser);
    await signIn(carol.page, web.base, 'carol');
    expect(await carol.page.getByRole('navigation').getByRole('link', { name: 'Settings' }).count()).toBe(0);
    await carol.page.goto(`${web.base}/settings/prod-db`);
    await carol.page.getByText('Changing workflow settings needs a role with the ALLOW_CONFIGURE_WORKFLOW_SETTINGS enforcement.').waitFor();
    expect(await carol.page.locator('form.settings-form').count()).toBe(0);
    const forged = await carol.page.evaluate(async () => {
      const res = await fetch('/api/v1/resources/prod-db/workflow', {
        method: 'PUT', headers: { authorization: `Bearer ${sessionStorage.getItem('gatehouse.token')}`, 'content-type': 'application/json' }, body: '{}',
      });
      return { status: res.status, body: (await res.json()) as { error: { code: string } } };
    });
    expect(forged.status).toBe(403);
    expect(forged.body.error.code).toBe('FORBIDDEN');
    expect((await web.gw.store.getResource('prod-db'))!.settings).toEqual(saved);
    expect([...bob.problems, ...carol.problems]).toEqual([]);
    await Promise.all([bob.context.close(), carol.context.close()]);
  });

  it('enrols MFA with a QR code, signs in with TOTP, launches with a fresh code, and explains closed resources', async () => {
    const alice = await newUserPage(browser, { permissions: ['clipboard-read', 'clipboard-write'] });
    await signIn(alice.page, web.base, 'alice');
    await card(alice.page, 'ops-ssh').getByRole('link', { name: 'Set up MFA' }).click();
    await alice.page.getByRole('button', { name: 'Set up an authenticator' }).click();
    const qr = alice.page.getByRole('img', { name: /QR code/ });
    await qr.waitFor();
    expect(await qr.evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 100)).toBe(true);
    const secret = (await alice.page.locator('[data-secret]').getAttribute('data-secret'))!;
    const codes = totpSource(secret);
    await alice.page.getByLabel('Code from the app').fill(await codes());
    await alice.page.getByRole('button', { name: 'Confirm' }).click();
    await alice.page.getByText('Your account has an authenticator.').waitFor();
    expect((await web.gw.store.getUser('alice'))!.totpConfirmed).toBe(true);

    await alice.page.getByRole('link', { name: 'Vault' }).click();
    const ssh = card(alice.page, 'ops-ssh');
    await ssh.getByRole('button', { name: 'Launch' }).click();
    const code = ssh.getByLabel('Authenticator code');
    expect(await code.evaluate((el) => el === document.activeElement)).toBe(true);
    await code.fill('000000');
    await ssh.getByRole('button', { name: 'Launch' }).click();
    await ssh.getByText('the TOTP code is not valid').waitFor();
    await code.fill(await codes());
    await ssh.getByRole('button', { name: 'Launch' }).click();
    const command = ssh.locator('pre.command');
    await command.filter({ hasText: 'alice:ops-ssh' }).waitFor();
    await ssh.getByRole('button', { name: 'Copy' }).click();
    expect(await alice.page.evaluate(() => navigator.clipboard.readText())).toBe(await command.textContent());

    await card(alice.page, 'grafana').getByRole('button', { name: 'Launch' }).click();
    // A web app opens on its own origin through its one-time enter link.
    const open = alice.page.getByRole('link', { name: 'Open grafana' });
    await open.waitFor();
    expect(await open.getAttribute('href')).toMatch(/^https:\/\/grafana\.apps\.localhost:\d+\/\.gatehouse\/enter\?user=alice&ticket=ght_[A-Za-z0-9_-]+$/);
    await card(alice.page, 'reporting-db').getByText(/^Outside the access schedule, next window \w{3} 10:00 \(UTC\)$/).waitFor();

    await alice.page.getByRole('button', { name: 'Sign out' }).click();
    await alice.page.getByRole('heading', { name: 'Sign in to Gatehouse' }).waitFor();
    await signIn(alice.page, web.base, 'alice', codes);
    expect(alice.problems).toEqual([]);
    await alice.context.close();
  });

  it('gives administrators live sessions with Kill and the audit log with its chain status', async () => {
    const now = web.gw.engine.ctx.clock.now();
    await web.gw.store.putSession({
      id: 'sess-other-node', user: 'carol', resource: 'ops-ssh', protocol: 'ssh', state: 'live', client: '203.0.113.9:51000',
      startedAt: now, deadline: new Date(now.getTime() + 3_600_000), bytesIn: 0, bytesOut: 0, node: 'node-b',
    });
    const admin = await newUserPage(browser);
    await signIn(admin.page, web.base, 'admin');
    await admin.page.getByRole('link', { name: 'Sessions' }).click();
    const row = admin.page.locator('tr[data-session="sess-other-node"]');
    await row.waitFor();
    await row.getByRole('button', { name: "Kill carol's session to ops-ssh" }).click();
    await row.getByRole('button', { name: "Kill carol's session" }).click();
    await row.waitFor({ state: 'detached' });
    expect(await web.gw.store.getSession('sess-other-node')).toMatchObject({ state: 'ended', endReason: 'killed' });

    await admin.page.getByRole('link', { name: 'Audit' }).click();
    await admin.page.locator('.verdict-ok').filter({ hasText: /^Chain verified: all \d+ entries are intact\.$/ }).waitFor();
    await admin.page.getByLabel('Actor').fill('bob');
    await admin.page.getByRole('button', { name: 'Filter' }).click();
    await admin.page.locator('table.audit tbody tr').first().filter({ hasText: 'bob' }).waitFor();
    const actors = await admin.page.locator('table.audit tbody td[data-label="Actor"]').allTextContents();
    expect(actors.length).toBeGreaterThan(2);
    expect(new Set(actors)).toEqual(new Set(['bob']));
    expect(await admin.page.locator('table.audit tbody td[data-label="Action"]').allTextContents()).toEqual(expect.arrayContaining(['request.approve', 'workflow.set']));
    expect(admin.problems).toEqual([]);
    await admin.context.close();
  });

  it('fits a phone screen without sideways scrolling', async () => {
    const carol = await newUserPage(browser, { width: 375, height: 740 });
    await signIn(carol.page, web.base, 'carol');
    await card(carol.page, 'prod-db').waitFor();
    const widths = await carol.page.evaluate(() => ({ page: document.documentElement.scrollWidth, view: window.innerWidth }));
    expect(widths.page).toBeLessThanOrEqual(widths.view);
    const boxes = await carol.page.locator('article.card').evaluateAll((els) => els.map((e) => e.getBoundingClientRect().width));
    for (const w of boxes) expect(w).toBeLessThanOrEqual(375);
    await carol.page.screenshot({ path: join(SHOTS, 'vault-phone.png'), fullPage: true });
    expect(carol.problems).toEqual([]);
    await carol.context.close();
  });
});
