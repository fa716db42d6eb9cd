/// <reference lib="dom" />
import { api, session, whenSignedOut } from './api.js';
import { approvalsScreen } from './approvals.js';
import { auditScreen } from './audit.js';
import { h, render } from './dom.js';
import { LiveEvents } from './events.js';
import { mfaScreen } from './mfa.js';
import { describeMessage } from './messages.js';
import { notify } from './notify.js';
import { sessionsScreen } from './sessions.js';
import { settingsScreen } from './settings.js';
import { signinScreen } from './signin.js';
import type { Me } from './types.js';
import type { App, Screen } from './ui.js';
import { vaultScreen } from './vault.js';

/** The shell: sign-in, navigation, routing by path, and the live event stream. */

const events = new LiveEvents();
const main = document.getElementById('main')!;
const top = document.getElementById('top')!;
let current: Screen | undefined;
let app: App | undefined;

interface RouteDef {
  match: RegExp;
  nav?: string;
  show(app: App, m: RegExpExecArray): Screen;
  /** Who may open the route at all (the API checks again). */
  allow?(me: Me): boolean;
  /** Who sees it in the navigation; the settings screen explains itself to the others. */
  listed?(me: Me): boolean;
}

const routes: RouteDef[] = [
  { match: /^\/(vault)?$/, nav: 'Vault', show: (a) => vaultScreen(a) },
  { match: /^\/approvals$/, nav: 'Approvals', show: (a) => approvalsScreen(a) },
  { match: /^\/settings(?:\/([^/]+))?$/, nav: 'Settings', show: (a, m) => settingsScreen(a, m[1] ? decodeURIComponent(m[1]) : undefined), listed: (me) => me.canConfigureWorkflow },
  { match: /^\/admin\/sessions$/, nav: 'Sessions', show: (a) => sessionsScreen(a), allow: (me) => me.admin },
  { match: /^\/admin\/audit$/, nav: 'Audit', show: (a) => auditScreen(a), allow: (me) => me.admin },
  { match: /^\/mfa$/, nav: 'Account', show: (a) => mfaScreen(a) },
];
const NAV_PATH: Record<string, string> = { Vault: '/', Approvals: '/approvals', Settings: '/settings', Sessions: '/admin/sessions', Audit: '/admin/audit', Account: '/mfa' };

function mount(screen: Screen, focus: boolean): void {
  current?.dispose?.();
  current = screen;
  render(main, screen.el);
  document.title = `${screen.title} · Gatehouse`;
  if (focus) (main.querySelector<HTMLElement>('h1') ?? main).focus();
}

function route(focus = true): void {
  if (!app) {
    top.hidden = true;
    mount(signinScreen(signedIn), focus);
    return;
  }
  top.hidden = false;
  const path = location.pathname;
  for (const r of routes) {
    const m = r.match.exec(path);
    if (m && (!r.allow || r.allow(app.me))) {
      mount(r.show(app, m), focus);
      drawNav();
      return;
    }
  }
  mount({ title: 'Not found', el: h('section', { class: 'screen' }, h('h1', { tabindex: -1 }, 'Not found'), h('p', null, h('a', { href: '/', 'data-link': '' }, 'Back to the vault'))) }, focus);
  drawNav();
}

function navigate(path: string): void {
  if (path !== location.pathname) history.pushState(null, '', path);
  route();
}

function drawNav(): void {
  if (!app) return;
  const me = app.me;
  const here = location.pathname;
  const active = routes.find((r) => r.match.test(here))?.nav;
  const live = h('span', { class: 'live', id: 'live', 'data-live': liveState }, liveState === 'on' ? 'Live' : 'Offline');
  render(top,
    h('a', { class: 'brand', href: '/', 'data-link': '' }, 'Gatehouse'),
    h('nav', { 'aria-label': 'Main' }, h('ul', null, routes.filter((r) => r.nav && (!r.allow || r.allow(me)) && (!r.listed || r.listed(me))).map((r) =>
      h('li', null, h('a', { href: NAV_PATH[r.nav!]!, 'data-link': '', ...(r.nav === active ? { 'aria-current': 'page' } : {}) }, r.nav!))))),
    h('div', { class: 'who' }, live, h('span', { class: 'user' }, me.name),
      h('button', { type: 'button', class: 'btn btn-link', onclick: () => void signOut() }, 'Sign out')));
}

let liveState: 'on' | 'off' = 'off';
events.onStatus = (on) => {
  liveState = on ? 'on' : 'off';
  document.body.dataset.live = liveState;
  const el = document.getElementById('live');
  if (el) {
    el.dataset.live = liveState;
    el.textContent = on ? 'Live' : 'Offline';
  }
};

events.subscribe((m) => {
  if (!app) return;
  const d = describeMessage(m, app.me.name);
  if (d) notify(d.text, { kind: d.kind, desktop: d.desktop });
});

function start(me: Me): void {
  app = { me, events, navigate, refreshMe };
  events.start(session.token ?? '');
}

function signedIn(token: string, me: Me): void {
  session.set(token);
  start(me);
  if (location.pathname === '/signin') history.replaceState(null, '', '/');
  route();
}

async function refreshMe(): Promise<void> {
  if (!app) return;
  app.me = await api<Me>('GET', '/me');
  drawNav();
}

async function signOut(): Promise<void> {
  await api('POST', '/auth/logout').catch(() => undefined);
  session.clear();
  signedOut();
}

function signedOut(): void {
  events.stop();
  app = undefined;
  route();
}
whenSignedOut(() => {
  if (app) notify('Your session ended; please sign in again.', { kind: 'error' });
  signedOut();
});
events.onRevoked = (reason) => {
  if (app) notify(`Your session ended (${reason || 'signed out'}); please sign in again.`, { kind: 'error' });
  session.clear();
  signedOut();
};

// Internal links navigate in place; modified clicks (new tab) keep the browser's behaviour.
document.addEventListener('click', (ev) => {
  const a = (ev.target as Element | null)?.closest?.('a[data-link]');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  ev.preventDefault();
  navigate(a.getAttribute('href') ?? '/');
});
window.addEventListener('popstate', () => route());

async function boot(): Promise<void> {
  if (session.token) {
    try {
      start(await api<Me>('GET', '/me'));
    } catch {
      session.clear();
    }
  }
  route(false);
}
void boot();
