/// <reference lib="dom" />
import { api } from './api.js';
import { h } from './dom.js';
import { buildCard, type CardContext } from './vault-card.js';
import { vaultAction } from './vault-state.js';
import { countdown, duration } from './format.js';
import type { ResourceView, ServerMessage } from './types.js';
import { debounce, heading, KeyedList, note, type App, type Screen } from './ui.js';

const POLL_MS = 30_000;

/** The vault: every resource I can reach, each with the one action that fits my state. */
export function vaultScreen(app: App): Screen {
  const list = h('ul', { class: 'cards', 'aria-label': 'Resources' });
  const status = note('Loading resources…');
  // Countdowns run on performance.now() from the server's own "time left", so a wrong
  // clock on the user's machine cannot make them lie.
  const deadlines = new Map<string, number>();
  let loading: Promise<void> | undefined;

  const ctx: CardContext = { app, reload: () => load() };
  const cards = new KeyedList<ResourceView>(
    list,
    (r) => r.name,
    (r) => JSON.stringify([signature(r), r.settings]),
    (r) => h('li', null, buildCard(r, vaultAction(r), ctx)),
  );

  async function fetchAndRender(): Promise<void> {
    const resources = await api<ResourceView[]>('GET', '/resources');
    const now = performance.now();
    deadlines.clear();
    for (const r of resources) if (r.state.timeLeftMs !== undefined) deadlines.set(r.name, now + r.state.timeLeftMs);
    cards.update(resources);
    status.hidden = resources.length > 0;
    status.textContent = 'No resources are shared with you yet.';
    tick();
  }

  function load(): Promise<void> {
    // One load at a time; a burst of events during a load is covered by the next one.
    loading ??= fetchAndRender()
      .catch((e: Error) => {
        status.hidden = false;
        status.textContent = `Could not load resources: ${e.message}`;
      })
      .finally(() => {
        loading = undefined;
      });
    return loading;
  }

  function tick(): void {
    const now = performance.now();
    let expired = false;
    for (const el of list.querySelectorAll<HTMLElement>('[data-countdown]')) {
      const at = deadlines.get(el.dataset.countdown ?? '');
      if (at === undefined) continue;
      const left = at - now;
      if (left <= 0) expired = true;
      const text = countdown(left);
      if (el.textContent !== text) {
        el.textContent = text;
        el.setAttribute('aria-label', `${duration(left)} left`);
      }
    }
    if (expired) void load();
  }

  const refresh = debounce(() => void load(), 100);
  const unsubscribe = app.events.subscribe((m: ServerMessage) => {
    if (m.type === 'hello' || m.type.startsWith('request_') || m.type.startsWith('lease_') || m.type === 'access_expiring') refresh();
  });
  const ticker = window.setInterval(tick, 1000);
  const poll = window.setInterval(() => void load(), POLL_MS);
  void load();

  return {
    title: 'Vault',
    el: h('section', { class: 'screen vault' },
      heading('Vault', h('p', { class: 'lede' }, 'The resources you can reach, and what you can do with each right now.')),
      status, list),
    dispose() {
      unsubscribe();
      window.clearInterval(ticker);
      window.clearInterval(poll);
    },
  };
}

/** What decides whether a card must be rebuilt: its action, not the ticking time left. */
function signature(r: ResourceView): string {
  const a = vaultAction(r);
  switch (a.kind) {
    case 'pending':
      return `pending:${a.request.id}:${a.approvals.join(',')}`;
    case 'checked_out':
      return `checked_out:${a.until}`;
    case 'launch':
      return `launch:${a.timeLeftMs === undefined ? '' : 'timed'}`;
    default:
      return JSON.stringify(a);
  }
}
