import { join } from 'node:path';
import type { Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hashPassword } from '../../src/secrets/passwords.js';
import { ensurePrerequisites, launchBrowser, newUserPage, PASSWORD, SHOTS, signIn, startWebGateway, type WebGateway } from './web-harness.js';

/**
 * The vault's "Just-in-time accounts" section on a resource's settings page and the Account
 * column of the sessions screen, in Chromium against a real gateway (web-harness.ts: bob owns
 * prod-db and holds ALLOW_CONFIGURE_WORKFLOW_SETTINGS).
 */
describe('just-in-time accounts in the web vault', () => {
  let web: WebGateway;
  let browser: Browser;

  beforeAll(async () => {
    ensurePrerequisites();
    web = await startWebGateway();
    browser = await launchBrowser();
    // dave may configure workflows, but owns nothing: he sees prod-db's settings without the right to change them.
    const d = web.gw.engine.directory;
    await d.addUser('admin', { name: 'dave', teams: ['eng'], passwordHash: await hashPassword(PASSWORD) });
    await d.assignRole('admin', 'workflow-editors', 'dave');
  });
  afterAll(async () => {
    await browser?.close();
    await web?.close();
  });

  it('the owner with the enforcement sets ephemeral accounts, sees a bad name beside its field, switches to elevation and back', async () => {
    const bob = await newUserPage(browser);
    await signIn(bob.page, web.base, 'bob');
    await bob.page.getByRole('navigation').getByRole('link', { name: 'Settings' }).click();
    await bob.page.getByRole('link', { name: 'prod-db' }).click();
    const section = bob.page.getByRole('region', { name: 'Just-in-time accounts' });
    const form = section.getByRole('form', { name: 'Just-in-time accounts of prod-db' });
    await form.waitFor();
    const description = section.locator('[data-jit-description]');
    expect(await description.textContent()).toBe('Sessions log in upstream as the vaulted account (no ephemeral accounts).');
    expect(await form.getByLabel('The vaulted account', { exact: true }).isChecked()).toBe(true);
    const grants = form.getByLabel('Roles or groups of the temporary account');
    expect(await grants.isVisible()).toBe(false);

    await form.getByLabel('A temporary account per grant, removed when the grant ends').check();
    await grants.fill('app_read\nbad role');
    await form.getByLabel('Inheritor role').fill('app_owner');
    await form.getByRole('button', { name: 'Save JIT settings' }).click();
    const grantsError = bob.page.locator(`#${await grants.getAttribute('id')}-error`);
    await grantsError.filter({ hasText: "'bad role' is not a valid role name" }).waitFor();
    expect(await grants.getAttribute('aria-invalid')).toBe('true');
    expect(await grants.evaluate((el) => el === document.activeElement)).toBe(true);
    expect((await web.gw.store.getResource('prod-db'))!.jit).toBeUndefined();

    await grants.fill('app_read\napp_write');
    await form.getByRole('button', { name: 'Save JIT settings' }).click();
    await bob.page.locator('.notice').filter({ hasText: 'Saved the JIT settings of prod-db.' }).waitFor();
    await description.filter({ hasText: 'Sessions log in upstream as a temporary account per grant with app_read, app_write, removed when the grant ends.' }).waitFor();
    expect((await web.gw.store.getResource('prod-db'))!.jit).toEqual({ ephemeral: { grants: ['app_read', 'app_write'], inheritor: 'app_owner' } });
    // The form is rebuilt from what the gateway saved.
    expect(await form.getByLabel('Roles or groups of the temporary account').inputValue()).toBe('app_read\napp_write');
    await bob.page.screenshot({ path: join(SHOTS, 'jit-settings.png'), fullPage: true });

    await form.getByLabel('The vaulted account, elevated for the grant only').check();
    await form.getByLabel('Roles or groups added to the vaulted account').fill('pg_monitor');
    await form.getByRole('button', { name: 'Save JIT settings' }).click();
    await description.filter({ hasText: 'the vaulted account elevated with pg_monitor for the grant only' }).waitFor();
    expect((await web.gw.store.getResource('prod-db'))!.jit).toEqual({ elevate: { grants: ['pg_monitor'] } });

    await form.getByLabel('The vaulted account', { exact: true }).check();
    await form.getByRole('button', { name: 'Save JIT settings' }).click();
    await description.filter({ hasText: 'Sessions log in upstream as the vaulted account (no ephemeral accounts).' }).waitFor();
    expect((await web.gw.store.getResource('prod-db'))!.jit).toBeUndefined();
    expect((await web.gw.store.listAudit({ action: 'resource.jit' })).map((a) => a.actor)).toEqual(['bob', 'bob', 'bob']);

    // A web app has no such accounts: the section says so and offers nothing to change.
    await bob.page.goto(`${web.base}/settings/grafana`);
    await bob.page.getByText('http resources have no ephemeral accounts or elevation; sessions use the vaulted account.').waitFor();
    expect(await bob.page.locator('form.jit-form').count()).toBe(0);
    expect(bob.problems).toEqual([]);
    await bob.context.close();
  });

  it('is read-only for someone who may not change it, and the API refuses a forged save', async () => {
    await web.gw.engine.directory.setJit('admin', 'ops-ssh', { ephemeral: { grants: ['adm'], sudo: '/usr/bin/systemctl restart nginx' } });
    const dave = await newUserPage(browser);
    await signIn(dave.page, web.base, 'dave');
    await dave.page.goto(`${web.base}/settings/ops-ssh`);
    const section = dave.page.getByRole('region', { name: 'Just-in-time accounts' });
    await section.getByText('Sessions log in upstream as a temporary account per grant with adm (sudo /usr/bin/systemctl restart nginx), removed when the grant ends.').waitFor();
    const facts = await section.locator('dl.facts').evaluate((dl) => [...dl.querySelectorAll('dt')].map((dt) => `${dt.textContent}: ${dt.nextElementSibling?.textContent}`));
    expect(facts).toEqual(['Ephemeral accounts: on', 'Roles or groups: adm', 'sudo: /usr/bin/systemctl restart nginx', 'Elevation: off']);
    await section.getByText('Only an administrator, or the owner with ALLOW_CONFIGURE_WORKFLOW_SETTINGS, can change these.').waitFor();
    expect(await section.locator('form, input, textarea, button').count()).toBe(0);

    const forged = await dave.page.evaluate(async () => {
      const res = await fetch('/api/v1/resources/ops-ssh/jit', {
        method: 'PUT', headers: { authorization: `Bearer ${sessionStorage.getItem('gatehouse.token')}`, 'content-type': 'application/json' }, body: '{}',
      });
      return { status: res.status, code: ((await res.json()) as { error: { code: string } }).error.code };
    });
    expect(forged).toEqual({ status: 403, code: 'FORBIDDEN' });
    expect((await web.gw.store.getResource('ops-ssh'))!.jit).toEqual({ ephemeral: { grants: ['adm'], sudo: '/usr/bin/systemctl restart nginx' } });
    expect(dave.problems).toEqual([]);
    await dave.context.close();
  });

  it('shows administrators the account each live session logged in upstream as', async () => {
    const now = web.gw.engine.ctx.clock.now();
    const base = { user: 'carol', resource: 'ops-ssh', protocol: 'ssh' as const, state: 'live' as const, client: '203.0.113.9:51000', startedAt: now, deadline: new Date(now.getTime() + 3_600_000), bytesIn: 0, bytesOut: 0, node: 'node-b' };
    await web.gw.store.putSession({ ...base, id: 'sess-jit-temp', account: 'gh_carol_x7k2' });
    await web.gw.store.putSession({ ...base, id: 'sess-jit-vaulted' });
    const admin = await newUserPage(browser);
    await signIn(admin.page, web.base, 'admin');
    await admin.page.getByRole('link', { name: 'Sessions' }).click();
    const temp = admin.page.locator('tr[data-session="sess-jit-temp"] td[data-label="Account"]');
    await temp.waitFor();
    expect(await temp.textContent()).toBe('gh_carol_x7k2');
    expect(await admin.page.locator('tr[data-session="sess-jit-vaulted"] td[data-label="Account"]').textContent()).toBe('—');
    expect(await admin.page.locator('table.data thead th').allTextContents()).toEqual(['User', 'Resource', 'Account', 'Protocol', 'Client', 'Started', 'Ends', 'Node', '']);
    expect(admin.problems).toEqual([]);
    await admin.context.close();
  });
});
