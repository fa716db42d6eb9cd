/// <reference lib="dom" />
import { api, seg } from './api.js';
import { h, render } from './dom.js';
import { clockTime, dateTime, duration } from './format.js';
import { askDesktopPermission, desktopAllowed, desktopSupported, notify } from './notify.js';
import type { AccessRequest, Lease, ServerMessage } from './types.js';
import { button, busy, debounce, field, heading, input, KeyedList, note, type App, type Screen } from './ui.js';

// Holders change without a notice to approvers (a check-out is told to its holder only).
const HOLDERS_POLL_MS = 5_000;

/** Approvals: the live inbox of requests waiting for me, and the current holders I may force in. */
export function approvalsScreen(app: App): Screen {
  const inboxNote = note('Loading…');
  const inbox = h('ul', { class: 'inbox', 'aria-label': 'Requests waiting for you' });
  const holdersNote = note('Loading…');
  const holders = h('ul', { class: 'holders', 'aria-label': 'Checked out now' });
  const reload = (): Promise<void> => Promise.all([loadInbox(), loadHolders()]).then(() => undefined);

  const requests = new KeyedList<AccessRequest>(inbox, (r) => r.id, (r) => `${r.stage}:${r.reviews.length}`, (r) => requestItem(r, reload));
  const leases = new KeyedList<Lease>(holders, (l) => l.id, (l) => l.expiresAt, (l) => holderItem(l, reload));
  let first = true;

  async function loadInbox(): Promise<void> {
    try {
      const list = await api<AccessRequest[]>('GET', '/requests?view=to-approve');
      const added = requests.update(list.filter((r) => r.state === 'pending'));
      if (!first) for (const id of added) inbox.querySelector(`[data-request="${CSS.escape(id)}"]`)?.classList.add('is-new');
      first = false;
      inboxNote.hidden = list.length > 0;
      inboxNote.textContent = 'Nothing is waiting for your approval.';
    } catch (e) {
      inboxNote.hidden = false;
      inboxNote.textContent = `Could not load requests: ${(e as Error).message}`;
    }
  }

  async function loadHolders(): Promise<void> {
    try {
      const list = await api<Lease[]>('GET', '/leases');
      leases.update(list.filter((l) => l.holder !== app.me.name));
      holdersNote.hidden = holders.children.length > 0;
      holdersNote.textContent = 'No single-user resource you approve is checked out.';
    } catch (e) {
      holdersNote.hidden = false;
      holdersNote.textContent = `Could not load holders: ${(e as Error).message}`;
    }
  }

  const refresh = debounce(() => void reload(), 50);
  const unsubscribe = app.events.subscribe((m: ServerMessage) => {
    if (m.type === 'hello' || m.type.startsWith('request_') || m.type.startsWith('lease_')) refresh();
  });
  const poll = window.setInterval(() => void loadHolders(), HOLDERS_POLL_MS);
  void reload();

  return {
    title: 'Approvals',
    el: h('section', { class: 'screen approvals' },
      heading('Approvals', desktopToggle()),
      h('h2', null, 'Waiting for you'), inboxNote, inbox,
      h('h2', null, 'Checked out now'), holdersNote, holders),
    dispose() {
      unsubscribe();
      window.clearInterval(poll);
    },
  };
}

function requestItem(r: AccessRequest, reload: () => Promise<void>): HTMLElement {
  const now = new Date();
  const comment = field('Comment (optional)', h('textarea', { name: 'comment', rows: 2, maxlength: 1000 }));
  const decide = (verb: 'approve' | 'deny', label: string, kind: 'primary' | 'danger'): HTMLButtonElement => {
    const b: HTMLButtonElement = button(label, () => busy(b, async () => {
      const text = comment.control.value.trim();
      const body = text ? (verb === 'approve' ? { comment: text } : { reason: text }) : {};
      await api('POST', `/requests/${seg(r.id)}/${verb}`, body);
      notify(`You ${verb === 'approve' ? 'approved' : 'denied'} ${r.requester}'s request for ${r.resource}.`, { kind: 'success' });
      await reload();
    }), { kind, attrs: { 'aria-describedby': `req-${r.id}` } });
    return b;
  };
  const approvedBy = r.reviews.filter((x) => x.decision === 'approve').map((x) => x.approver);
  return h('li', { class: 'request', 'data-request': r.id },
    h('article', { 'aria-labelledby': `req-${r.id}` },
      h('h3', { id: `req-${r.id}` }, `${r.requester} → ${r.resource}`),
      h('dl', { class: 'facts' },
        h('dt', null, 'Requester'), h('dd', { 'data-fact': 'requester' }, r.requester),
        h('dt', null, 'Reason'), h('dd', { 'data-fact': 'reason' }, r.reason ?? '—'),
        h('dt', null, 'Ticket'), h('dd', { 'data-fact': 'ticket' }, r.ticket ?? '—'),
        h('dt', null, 'Requested'), h('dd', { 'data-fact': 'requested' }, h('time', { datetime: r.createdAt, title: dateTime(r.createdAt) }, clockTime(r.createdAt, now))),
        h('dt', null, 'Expires'), h('dd', null, `in ${duration(new Date(r.pendingUntil).getTime() - now.getTime())} if unanswered`),
        approvedBy.length ? [h('dt', null, 'Approved so far'), h('dd', null, approvedBy.join(', '))] : null),
      comment.el,
      h('div', { class: 'form-actions' }, decide('approve', 'Approve', 'primary'), decide('deny', 'Deny', 'danger'))));
}

function holderItem(l: Lease, reload: () => Promise<void>): HTMLElement {
  const actions = h('div', { class: 'form-actions' });
  const ask = (): void => {
    const reason = field('Reason (optional)', input({ name: 'reason', maxlength: 1000 }), { hint: `${l.holder} is told, and their live sessions end at once.` });
    const confirm: HTMLButtonElement = button('Confirm Force Check-In', () => busy(confirm, async () => {
      const text = reason.control.value.trim();
      await api('POST', `/resources/${seg(l.resource)}/force-checkin`, text ? { reason: text } : {});
      notify(`${l.resource} was force checked in from ${l.holder}.`, { kind: 'success' });
      await reload();
    }), { kind: 'danger' });
    render(actions, reason.el, confirm, button('Cancel', () => {
      render(actions, start());
      actions.querySelector('button')?.focus();
    }, { kind: 'link' }));
    reason.control.focus();
  };
  const start = (): HTMLButtonElement => button('Force Check-In', ask, { kind: 'danger', attrs: { 'aria-describedby': `lease-${l.id}` } });
  render(actions, start());
  return h('li', { class: 'holder', 'data-lease': l.resource },
    h('p', { id: `lease-${l.id}` }, h('strong', null, l.resource), ` checked out by ${l.holder} until ${clockTime(l.expiresAt, new Date())}`),
    actions);
}

function desktopToggle(): HTMLElement | null {
  if (!desktopSupported()) return null;
  const wrap = h('p', { class: 'desktop-toggle' });
  const show = (): void => {
    if (desktopAllowed()) render(wrap, h('span', { class: 'muted' }, 'Desktop notifications are on.'));
    else if (Notification.permission === 'denied') render(wrap, h('span', { class: 'muted' }, 'Desktop notifications are blocked in this browser.'));
    else render(wrap, button('Turn on desktop notifications', async () => {
      await askDesktopPermission();
      show();
    }));
  };
  show();
  return wrap;
}
