/// <reference lib="dom" />
import { api, seg } from './api.js';
import { h, render, type Child } from './dom.js';
import { clockTime, principalLabel, scheduleSummary } from './format.js';
import { launchPanel } from './launch.js';
import { notify } from './notify.js';
import type { ResourceView } from './types.js';
import { button, busy, field, input, type App } from './ui.js';
import { requestFormErrors, type VaultAction } from './vault-state.js';

export interface CardContext {
  app: App;
  reload(): Promise<void>;
}

const TYPE_LABEL: Record<ResourceView['type'], string> = { machine: 'Machine', database: 'Database', directory: 'Directory', browser: 'Web app' };

/** One resource: name, type, workflow badges, my status and the one action that fits it. */
export function buildCard(r: ResourceView, action: VaultAction, ctx: CardContext): HTMLElement {
  const headingId = `res-${r.name}`;
  const statusEl = h('p', { class: `status status-${action.kind}` });
  const actions = h('div', { class: 'actions' });
  const card = h(
    'article',
    { class: `card card-${action.kind}`, 'aria-labelledby': headingId, 'data-resource': r.name },
    h('header', { class: 'card-head' },
      h('h2', { id: headingId }, r.name),
      h('span', { class: `type type-${r.type}` }, `${TYPE_LABEL[r.type]} · ${r.protocol}`)),
    badges(r),
    statusEl,
    actions,
  );
  fill(r, action, ctx, statusEl, actions);
  return card;
}

function badges(r: ResourceView): HTMLElement {
  const s = r.settings;
  const items: Array<[string, string, string]> = [];
  if (s.limitAccessTime) items.push(['schedule', 'Schedule', scheduleSummary(s.limitAccessTime)]);
  if (s.requireApproval) {
    const a = s.requireApproval;
    const who = [r.owner, ...a.approvers.map(principalLabel)].join(', ');
    items.push(['approval', 'Approval', `${a.approvals} of ${who}${a.requireReason ? '; reason required' : ''}${a.requireTicket ? '; ticket required' : ''}`]);
  }
  if (s.singleUser) items.push(['single', 'Single-user', 'one holder at a time: check out, then check in']);
  if (s.mfa) items.push(['mfa', 'MFA', 'a fresh authenticator code before each connection']);
  if (items.length === 0) return h('p', { class: 'badges-none muted' }, 'No workflow: open access');
  return h('ul', { class: 'badges', 'aria-label': 'Workflow' },
    items.map(([k, label, detail]) => h('li', { class: `badge badge-${k}`, title: detail }, label, h('span', { class: 'sr-only' }, `: ${detail}`))));
}

function fill(r: ResourceView, a: VaultAction, ctx: CardContext, statusEl: HTMLElement, actions: HTMLElement): void {
  const now = new Date();
  const act = (label: string, path: string, done: string, kind: 'primary' | 'secondary' | 'danger' = 'primary'): HTMLButtonElement => {
    const b: HTMLButtonElement = button(label, () => busy(b, async () => {
      await api('POST', path);
      notify(done, { kind: 'success' });
      await ctx.reload();
    }), { kind });
    return b;
  };
  const countdownEl = (): HTMLElement => h('span', { class: 'countdown', role: 'timer', 'data-countdown': r.name }, '');
  const launch = (): HTMLButtonElement => button('Launch', () => {
    render(actions, launchPanel(r, () => {
      fill(r, a, ctx, statusEl, actions);
      actions.querySelector('button')?.focus();
    }));
    actions.querySelector<HTMLElement>('input, button')?.focus();
  }, { kind: 'primary' });
  switch (a.kind) {
    case 'closed':
      render(statusEl, a.text);
      render(actions);
      return;
    case 'held_by_other':
      render(statusEl, `Checked out by ${a.holder} until ${clockTime(a.until, now)}`);
      render(actions);
      return;
    case 'unavailable':
      render(statusEl, a.text);
      render(actions);
      return;
    case 'pending': {
      const req = a.request;
      render(statusEl, `Waiting for approval: ${a.approvals.length} of ${a.needed} so far`, a.approvals.length ? ` (approved by ${a.approvals.join(', ')})` : '',
        h('br'), h('span', { class: 'muted' }, `Requested ${clockTime(req.createdAt, now)}${req.ticket ? ` · ticket ${req.ticket}` : ''}`));
      render(actions,
        act('Remind', `/requests/${seg(req.id)}/remind`, 'The approvers were reminded.', 'secondary'),
        act('Cancel request', `/requests/${seg(req.id)}/cancel`, 'Your request was cancelled.', 'danger'));
      return;
    }
    case 'request':
      render(statusEl, a.lapsed ? 'Your access ended; request it again to continue.' : 'Approval is required before you can connect.');
      render(actions, button('Request Access', () => {
        const form = requestForm(r, a, ctx, () => {
          fill(r, a, ctx, statusEl, actions);
          actions.querySelector('button')?.focus();
        });
        render(actions, form);
        form.querySelector<HTMLElement>('textarea, input')?.focus();
      }, { kind: 'primary' }));
      return;
    case 'checkout':
      render(statusEl, 'Approved. Single-user: check it out to connect.');
      render(actions, act('Check Out', `/resources/${seg(r.name)}/checkout`, `You checked out ${r.name}.`));
      return;
    case 'checked_out':
      render(statusEl, `Checked out by you until ${clockTime(a.until, now)} · `, countdownEl(), ' left');
      render(actions, launch(), act('Check In', `/resources/${seg(r.name)}/checkin`, `You checked in ${r.name}.`, 'secondary'));
      return;
    case 'launch':
      render(statusEl, ...(a.timeLeftMs !== undefined ? ['Access open · ', countdownEl(), ' left'] : ['Access open']) as Child[]);
      render(actions, launch());
      return;
    case 'enrol_mfa':
      render(statusEl, `${r.name} requires MFA: set up your authenticator first.`);
      render(actions,
        h('a', { class: 'btn btn-primary', href: '/mfa', 'data-link': '' }, 'Set up MFA'),
        a.holding ? act('Check In', `/resources/${seg(r.name)}/checkin`, `You checked in ${r.name}.`, 'secondary') : null);
      return;
    default: {
      const never: never = a;
      throw new Error(`unhandled action ${String(never)}`);
    }
  }
}

type RequestAction = Extract<VaultAction, { kind: 'request' }>;

function requestForm(r: ResourceView, a: RequestAction, ctx: CardContext, close: () => void): HTMLFormElement {
  const reason = field('Reason', h('textarea', { name: 'reason', rows: 3, maxlength: 1000 }), {
    required: a.requireReason, hint: a.requireReason ? 'Required: tell the approvers why you need access.' : 'Optional: helps the approvers decide.',
  });
  const ticket = a.requireTicket || a.ticketPattern
    ? field('Ticket id', input({ name: 'ticket', maxlength: 100, autocomplete: 'off', spellcheck: false }), {
      required: a.requireTicket, hint: a.ticketPattern ? `Must match the pattern ${a.ticketPattern}` : 'The change or incident ticket for this work.',
    })
    : undefined;
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Send request');
  const form = h('form', { class: 'request-form', novalidate: true, 'aria-label': `Request access to ${r.name}` },
    reason.el, ticket?.el ?? null,
    h('div', { class: 'form-actions' }, submit, button('Cancel', close, { kind: 'link' })));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const reasonText = reason.control.value.trim();
    const ticketText = ticket?.control.value.trim() ?? '';
    const errors = requestFormErrors(a, reasonText, ticketText);
    reason.setError(errors.reason);
    ticket?.setError(errors.ticket);
    if (errors.reason) return reason.control.focus();
    if (errors.ticket) return ticket?.control.focus();
    void busy(submit, async () => {
      await api('POST', '/requests', { resource: r.name, ...(reasonText ? { reason: reasonText } : {}), ...(ticketText ? { ticket: ticketText } : {}) });
      notify(`Your request for ${r.name} was sent to the approvers.`, { kind: 'success' });
      await ctx.reload();
    }, (e) => {
      const target = e.field === 'reason' ? reason : e.field === 'ticket' ? ticket : undefined;
      if (!target) return false;
      target.setError(e.message.replace(/^\w+: /, ''));
      target.control.focus();
      return true;
    });
  });
  return form;
}
