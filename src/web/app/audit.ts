/// <reference lib="dom" />
import { api } from './api.js';
import { h, render } from './dom.js';
import { dateTime } from './format.js';
import type { AuditEntry, AuditVerify } from './types.js';
import { button, field, heading, input, note, type App, type Screen } from './ui.js';

const PAGE = 100;

/** Admin: the audit log with filters, and whether its hash chain verifies. */
export function auditScreen(_app: App): Screen {
  const verdict = h('div', { class: 'verdict', role: 'status' }, 'Verifying the chain…');
  const actor = field('Actor', input({ name: 'actor', autocomplete: 'off' }));
  const action = field('Action', input({ name: 'action', autocomplete: 'off', placeholder: 'e.g. request.approve' }));
  const subject = field('Subject', input({ name: 'subject', autocomplete: 'off' }));
  const apply = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Filter');
  const filters = h('form', { class: 'filters', 'aria-label': 'Filter the audit log' }, actor.el, action.el, subject.el,
    h('div', { class: 'form-actions' }, apply));
  const body = h('tbody');
  const table = h('table', { class: 'data audit' },
    h('caption', { class: 'sr-only' }, 'Audit entries'),
    h('thead', null, h('tr', null, ...['#', 'Time', 'Actor', 'Action', 'Subject', 'Details'].map((t) => h('th', { scope: 'col' }, t)))), body);
  const status = note('');
  const pager = h('div', { class: 'form-actions' });
  let total = 0;

  async function verify(): Promise<void> {
    try {
      const v = await api<AuditVerify>('GET', '/audit/verify');
      total = v.count;
      verdict.className = `verdict ${v.ok ? 'verdict-ok' : 'verdict-bad'}`;
      render(verdict, v.ok
        ? `Chain verified: all ${v.count} entries are intact.`
        : `Chain broken at entry #${v.firstBadSeq ?? '?'} (${(v.problem ?? 'unknown').replace(/_/g, ' ')}): the log was altered.`);
    } catch (e) {
      verdict.className = 'verdict verdict-bad';
      render(verdict, `Could not verify the chain: ${(e as Error).message}`);
    }
  }

  async function load(afterSeq?: number): Promise<void> {
    const q = new URLSearchParams({ limit: String(PAGE) });
    const filtered = [actor, action, subject].some((f) => f.control.value.trim());
    // Without filters, open on the newest page; with filters, page forward from the start.
    const from = afterSeq ?? (filtered ? 0 : Math.max(0, total - PAGE));
    if (from > 0) q.set('afterSeq', String(from));
    for (const [k, f] of [['actor', actor], ['action', action], ['subject', subject]] as const) {
      const v = f.control.value.trim();
      if (v) q.set(k, v);
    }
    try {
      const entries = await api<AuditEntry[]>('GET', `/audit?${q}`);
      render(body, entries.slice().reverse().map(entryRow));
      table.hidden = entries.length === 0;
      status.textContent = entries.length ? `Entries ${entries[0]!.seq}–${entries[entries.length - 1]!.seq}, newest first.` : 'No entries match.';
      const last = entries[entries.length - 1];
      render(pager,
        from > 0 ? button('Earlier entries', () => load(Math.max(0, from - PAGE))) : null,
        last && entries.length === PAGE ? button('Later entries', () => load(last.seq)) : null);
    } catch (e) {
      status.textContent = `Could not load the audit log: ${(e as Error).message}`;
    }
  }

  filters.addEventListener('submit', (ev) => {
    ev.preventDefault();
    void load();
  });
  void verify().then(() => load());
  return {
    title: 'Audit log',
    el: h('section', { class: 'screen audit' }, heading('Audit log'), verdict, filters, status, h('div', { class: 'table-wrap' }, table), pager),
  };
}

function entryRow(e: AuditEntry): HTMLElement {
  const data = Object.entries(e.data ?? {}).map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
  return h('tr', null,
    h('td', { 'data-label': '#' }, String(e.seq)), h('td', { 'data-label': 'Time' }, dateTime(e.at)), h('td', { 'data-label': 'Actor' }, e.actor),
    h('td', { 'data-label': 'Action' }, e.action), h('td', { 'data-label': 'Subject' }, e.subject), h('td', { 'data-label': 'Details', class: 'details' }, data));
}
