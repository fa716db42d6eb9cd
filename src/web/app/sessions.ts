/// <reference lib="dom" />
import { api, seg } from './api.js';
import { h, render } from './dom.js';
import { clockTime, dateTime } from './format.js';
import { notify } from './notify.js';
import type { ServerMessage, SessionView } from './types.js';
import { button, busy, debounce, heading, KeyedList, note, type App, type Screen } from './ui.js';

const POLL_MS = 5_000;

/** Admin: the live sessions on every node, each with Kill. */
export function sessionsScreen(app: App): Screen {
  const empty = note('Loading…');
  const body = h('tbody');
  const table = h('table', { class: 'data' },
    h('caption', { class: 'sr-only' }, 'Live sessions'),
    h('thead', null, h('tr', null, ...['User', 'Resource', 'Account', 'Protocol', 'Client', 'Started', 'Ends', 'Node', ''].map((t) => h('th', { scope: 'col' }, t)))),
    body);
  const rows = new KeyedList<SessionView>(body, (s) => s.id, (s) => `${s.state}:${s.deadline ?? ''}:${s.account ?? ''}`, (s) => row(s, () => load()));

  async function load(): Promise<void> {
    try {
      const list = await api<SessionView[]>('GET', '/sessions?state=live');
      rows.update(list);
      table.hidden = list.length === 0;
      empty.hidden = list.length > 0;
      empty.textContent = 'No live sessions.';
    } catch (e) {
      empty.hidden = false;
      empty.textContent = `Could not load sessions: ${(e as Error).message}`;
    }
  }
  const refresh = debounce(() => void load(), 100);
  const unsubscribe = app.events.subscribe((m: ServerMessage) => {
    if (m.type === 'hello' || m.type.startsWith('session_') || m.type.startsWith('lease_')) refresh();
  });
  const poll = window.setInterval(() => void load(), POLL_MS);
  void load();
  return {
    title: 'Live sessions',
    el: h('section', { class: 'screen sessions' }, heading('Live sessions'), empty, h('div', { class: 'table-wrap' }, table)),
    dispose() {
      unsubscribe();
      window.clearInterval(poll);
    },
  };
}

function row(s: SessionView, reload: () => Promise<void>): HTMLElement {
  const cell = h('td', { class: 'actions' });
  const start = (): HTMLButtonElement => button('Kill', () => {
    const yes: HTMLButtonElement = button(`Kill ${s.user}'s session`, () => busy(yes, async () => {
      const r = await api<{ ok: boolean }>('POST', `/sessions/${seg(s.id)}/kill`);
      notify(r.ok ? `Ended ${s.user}'s session to ${s.resource}.` : 'That session had already ended.', { kind: r.ok ? 'success' : 'info' });
      await reload();
    }), { kind: 'danger' });
    render(cell, yes, button('Cancel', () => {
      render(cell, start());
      cell.querySelector('button')?.focus();
    }, { kind: 'link' }));
    yes.focus();
  }, { kind: 'danger', attrs: { 'aria-label': `Kill ${s.user}'s session to ${s.resource}` } });
  render(cell, start());
  return h('tr', { 'data-session': s.id },
    h('td', { 'data-label': 'User' }, s.user), h('td', { 'data-label': 'Resource' }, s.resource),
    h('td', { 'data-label': 'Account', title: s.account ? 'The temporary account this session logged in upstream as' : 'The vaulted account' }, s.account ?? '—'),
    h('td', { 'data-label': 'Protocol' }, s.protocol),
    h('td', { 'data-label': 'Client' }, s.client), h('td', { 'data-label': 'Started' }, dateTime(s.startedAt)),
    h('td', { 'data-label': 'Ends' }, s.deadline ? clockTime(s.deadline, new Date()) : '—'), h('td', { 'data-label': 'Node' }, s.node), cell);
}
