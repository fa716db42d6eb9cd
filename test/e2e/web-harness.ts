import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { Weekday } from '../../src/core/model.js';
import type { Clock } from '../../src/core/clock.js';
import { ListenerNames, loadConfig } from '../../src/core/config.js';
import { silentLogger } from '../../src/core/log.js';
import { startGateway, type Gateway } from '../../src/gateway.js';
import { HttpAdapter, type HttpAdapterOptions } from '../../protocols/http/index.js';
import { hashPassword } from '../../src/secrets/passwords.js';
import { serveWeb } from '../../src/web/serve.js';

export const ROOT = resolve(import.meta.dirname, '../..');
export const WEB_DIR = join(ROOT, 'dist/web');
// Screenshots go to test-results/ on every run; GATEHOUSE_SCREENSHOTS=docs/screenshots refreshes the README's.
export const SHOTS = resolve(ROOT, process.env.GATEHOUSE_SCREENSHOTS ?? 'test-results/screenshots');
export const PASSWORD = 'correct-horse-42';
export const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Debian's Chromium, installed on first use; and the bundle, built when `npm test` did not. */
export function ensurePrerequisites(): void {
  // Installed once, under the install lock, by test/global-setup.ts (test/targets/install.sh).
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: run test/targets/install.sh (vitest's global setup does)`);
  if (!existsSync(join(WEB_DIR, 'index.html'))) execFileSync(process.execPath, [join(ROOT, 'scripts/build-web.mjs')], { stdio: 'inherit' });
  mkdirSync(SHOTS, { recursive: true });
}

/** `args` are added to the harness's own Chromium flags (e.g. a certificate pin). */
export function launchBrowser(args: readonly string[] = []): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: [...CHROMIUM_ARGS, ...args] });
}

const WEEK: Weekday[] = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

export interface WebGateway {
  gw: Gateway;
  base: string;
  /** With `http`: the browser door's port, and an app's origin (`https://<name>.apps.localhost:<port>`). */
  apps?: { port: number; origin(name: string): string };
  close(): Promise<void>;
}

export interface WebGatewayOptions {
  /** The browser door on 127.0.0.1:0 (off unless given), with these adapter options. */
  http?: HttpAdapterOptions;
  /** The workflow clock (default: the system clock). */
  clock?: Clock;
}

/**
 * A real gateway (API, WebSocket and the web vault) on a free loopback port, seeded with:
 * bob owns prod-db (approval with reason + ticket CHG-n, single-user) and may configure
 * workflows; alice and carol (team eng) may request it; ops-ssh wants MFA; reporting-db is
 * outside its schedule; grafana is an open web app.
 */
export async function startWebGateway(opts: WebGatewayOptions = {}): Promise<WebGateway> {
  const data = mkdtempSync(join(tmpdir(), 'gh-web-'));
  const policies = join(data, 'policies');
  mkdirSync(policies);
  const adminFile = join(data, 'admin-password');
  writeFileSync(adminFile, PASSWORD);
  const cfg = loadConfig({
    data, policies, adminPasswordFile: adminFile,
    listen: ListenerNames.map((n) => (n === 'api' || (n === 'http' && opts.http) ? `${n}=127.0.0.1:0` : `${n}=off`)),
  });
  const gw = await startGateway(cfg, {
    web: serveWeb(WEB_DIR), log: silentLogger,
    ...(opts.clock ? { clock: opts.clock } : {}),
    ...(opts.http ? { adapters: { http: new HttpAdapter(opts.http) } } : {}),
  });
  const d = gw.engine.directory;
  const hash = await hashPassword(PASSWORD);
  await d.addTeam('admin', 'eng');
  for (const [name, teams] of [['alice', ['eng']], ['bob', []], ['carol', ['eng']]] as const) {
    await d.addUser('admin', { name, teams: [...teams], passwordHash: hash });
  }
  await d.createRole('admin', 'workflow-editors');
  await d.setEnforcement('admin', 'workflow-editors', 'ALLOW_CONFIGURE_WORKFLOW_SETTINGS', true);
  await d.assignRole('admin', 'workflow-editors', 'bob');

  const always = { timezone: 'UTC', schedule: [{ days: ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'] as Weekday[], start: '00:00', end: '24:00' }], maxDurationMinutes: 120 };
  const base = { host: '127.0.0.1', owner: 'bob', access: [{ team: 'eng' }], credentials: { login: 'app', password: 'target-secret' } };
  await d.addResource('admin', {
    ...base, name: 'prod-db', type: 'database', protocol: 'postgres', port: 5432, database: 'app',
    settings: {
      limitAccessTime: always,
      requireApproval: { approvers: [], approvals: 1, requireReason: true, requireTicket: true, ticketPattern: '^CHG-[0-9]+$', startOn: 'approval' },
      singleUser: true,
    },
  });
  await d.addResource('admin', { ...base, name: 'ops-ssh', type: 'machine', protocol: 'ssh', port: 22, settings: { limitAccessTime: always, mfa: true } });
  // Closed now whatever the day: its only window is two days ahead.
  const day = WEEK[(gw.engine.ctx.clock.now().getUTCDay() + 2) % 7]!;
  await d.addResource('admin', {
    ...base, name: 'reporting-db', type: 'database', protocol: 'mysql', port: 3306,
    settings: { limitAccessTime: { timezone: 'UTC', schedule: [{ days: [day], start: '10:00', end: '11:00' }], maxDurationMinutes: 60 } },
  });
  await d.addResource('admin', { ...base, name: 'grafana', type: 'browser', protocol: 'http', port: 3000 });

  const addr = gw.addresses.api!;
  const door = gw.addresses.http;
  return {
    gw,
    base: `http://${addr.host}:${addr.port}`,
    ...(door ? { apps: { port: door.port, origin: (name: string) => `https://${name}.${cfg.http.appsDomain}:${door.port}` } } : {}),
    async close() {
      await gw.close();
      rmSync(data, { recursive: true, force: true });
    },
  };
}

/** A browser context that records CSP violations and script errors, so tests can assert there were none. */
export async function newUserPage(browser: Browser, opts: { width?: number; height?: number; permissions?: string[] } = {}): Promise<{ context: BrowserContext; page: Page; problems: string[] }> {
  const context = await browser.newContext({ viewport: { width: opts.width ?? 1200, height: opts.height ?? 820 }, deviceScaleFactor: 1, locale: 'en-GB', timezoneId: 'UTC' });
  if (opts.permissions) await context.grantPermissions(opts.permissions);
  const page = await context.newPage();
  const problems: string[] = [];
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 4\d\d/.test(m.text())) problems.push(`console: ${m.text()}`);
  });
  return { context, page, problems };
}

/** Signs in through the form; `totp` is asked for when the server wants one. */
export async function signIn(page: Page, base: string, user: string, totp?: () => Promise<string>): Promise<void> {
  await page.goto(`${base}/`);
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
  if (totp) {
    await page.getByLabel('Authenticator code').waitFor();
    await page.getByLabel('Authenticator code').fill(await totp());
    await page.getByRole('button', { name: 'Sign in' }).click();
  }
  await page.getByRole('heading', { level: 1, name: 'Vault' }).waitFor();
  await page.locator('body[data-live="on"]').waitFor();
}

/** Clears the in-page notices so a screenshot shows the screen itself. */
export async function clearNotices(page: Page): Promise<void> {
  await page.evaluate(() => document.getElementById('notices')?.replaceChildren());
}
