/// <reference lib="dom" />
import { h, render, uid } from './dom.js';
import { DAY_LABEL, parsePrincipalKey, principalKey, principalLabel, WEEKDAYS } from './format.js';
import type { Principal, ResourceView, Weekday, WorkflowSettings } from './types.js';
import { button, field, input, type Field } from './ui.js';

/** A control the API's `error.details.field` can point at. */
interface Target {
  path: string;
  setError(message: string | undefined): void;
  focus(): void;
}

export interface SettingsForm {
  el: HTMLElement;
  /** The settings as the user set them; keys the editor does not show are kept as they were. */
  read(): Record<string, unknown>;
  /** Shows an API validation error beside the field it names; false when no field matches. */
  showError(fieldPath: string, message: string): boolean;
  clearErrors(): void;
}

interface Check {
  el: HTMLElement;
  control: HTMLInputElement;
  setError(message: string | undefined): void;
}

function check(label: string, checked: boolean, hint?: string): Check {
  const control = h('input', { type: 'checkbox', id: uid('c') });
  control.checked = checked;
  const err = h('p', { class: 'field-error', id: `${control.id}-error`, hidden: true });
  const hintEl = hint ? h('p', { class: 'hint', id: `${control.id}-hint` }, hint) : null;
  control.setAttribute('aria-describedby', [hint ? `${control.id}-hint` : '', err.id].filter(Boolean).join(' '));
  return {
    el: h('div', { class: 'check' }, control, h('label', { for: control.id }, label), hintEl, err),
    control,
    setError(message) {
      err.textContent = message ?? '';
      err.hidden = !message;
      if (message) control.setAttribute('aria-invalid', 'true');
      else control.removeAttribute('aria-invalid');
    },
  };
}

const target = (path: string, f: Field | Check): Target => ({ path, setError: (m) => f.setError(m), focus: () => f.control.focus() });

/** The workflow settings editor for one resource. */
export function settingsForm(r: ResourceView, settings: WorkflowSettings): SettingsForm {
  const targets: Target[] = [];
  const lat = settings.limitAccessTime;
  const ra = settings.requireApproval;

  // Limit Access Time
  const latOn = check('Limit access time', !!lat, 'Required whenever approval, single-user mode or MFA is on.');
  const zone = field('Time zone', input({ name: 'timezone', list: 'tz-list', autocomplete: 'off', value: lat?.timezone ?? Intl.DateTimeFormat().resolvedOptions().timeZone }), { hint: 'An IANA zone, e.g. Europe/Berlin.' });
  const zones = h('datalist', { id: 'tz-list' }, ...Intl.supportedValuesOf('timeZone').map((z) => h('option', { value: z })));
  const maxDuration = field('Maximum access duration (minutes)', input({ type: 'number', name: 'maxDurationMinutes', min: 1, max: 43200, value: lat?.maxDurationMinutes ?? 120 }), { hint: 'How long one grant or check-out lasts at most (120 = 2 hours).' });
  const rangesEl = h('div', { class: 'ranges' });
  const rangesErr = h('p', { class: 'field-error', hidden: true, role: 'alert' });
  interface RangeRow { el: HTMLElement; days: Map<Weekday, HTMLInputElement>; daysErr: HTMLElement; start: Field; end: Field }
  const rows: RangeRow[] = [];
  const renumber = (): void => {
    rows.forEach((row, i) => {
      row.el.querySelector('legend')!.textContent = `Time range ${i + 1}`;
    });
  };
  const addRange = (days: readonly Weekday[], start: string, end: string): RangeRow => {
    const dayBoxes = new Map<Weekday, HTMLInputElement>();
    const dayEls = WEEKDAYS.map((d) => {
      const box = h('input', { type: 'checkbox', id: uid('day'), value: d });
      box.checked = days.includes(d);
      dayBoxes.set(d, box);
      return h('span', { class: 'day' }, box, h('label', { for: box.id }, DAY_LABEL[d]));
    });
    const daysErr = h('p', { class: 'field-error', hidden: true });
    const s = field('From', input({ name: 'start', value: start, placeholder: '08:00', size: 5, maxlength: 5 }), { hint: 'HH:MM' });
    const e = field('To', input({ name: 'end', value: end, placeholder: '18:00', size: 5, maxlength: 5 }), { hint: 'HH:MM; 24:00 is midnight; earlier than From crosses midnight' });
    const row: RangeRow = { el: h('fieldset', { class: 'range' }), days: dayBoxes, daysErr, start: s, end: e };
    const remove = button('Remove range', () => {
      rows.splice(rows.indexOf(row), 1);
      row.el.remove();
      renumber();
      addBtn.focus();
    }, { kind: 'link' });
    render(row.el, h('legend', null, ''), h('div', { class: 'days', role: 'group', 'aria-label': 'Days' }, dayEls), daysErr,
      h('div', { class: 'times' }, s.el, e.el), remove);
    rows.push(row);
    rangesEl.append(row.el);
    renumber();
    return row;
  };
  const addBtn = button('Add time range', () => addRange(['mon', 'tue', 'wed', 'thu', 'fri'], '08:00', '18:00').days.get('mon')?.focus());
  for (const rg of lat?.schedule ?? [{ days: ['mon', 'tue', 'wed', 'thu', 'fri'] as Weekday[], start: '08:00', end: '18:00' }]) addRange(rg.days, rg.start, rg.end);
  const latBody = h('div', { class: 'group-body' }, zone.el, zones, h('p', { class: 'sub' }, 'Access schedule'), rangesEl, rangesErr, addBtn, maxDuration.el);

  // Require Approval
  const raOn = check('Require approval', !!ra);
  const chosen = new Set((ra?.approvers ?? []).map(principalKey));
  const candidates: Principal[] = r.access.filter((p) => !('user' in p && p.user === r.owner));
  const approverBoxes = candidates.map((p) => {
    const c = check(principalLabel(p), chosen.has(principalKey(p)));
    c.control.value = principalKey(p);
    return c;
  });
  const approversErr = h('p', { class: 'field-error', hidden: true });
  const approvers = h('fieldset', { class: 'approvers' }, h('legend', null, 'Approvers'),
    h('p', { class: 'hint' }, `The owner, ${r.owner}, always approves. Add users or teams from the access list:`),
    approverBoxes.length ? approverBoxes.map((c) => c.el) : h('p', { class: 'muted' }, 'Nobody else is on the access list.'), approversErr);
  const approvals = field('Approvals needed', input({ type: 'number', name: 'approvals', min: 1, value: ra?.approvals ?? 1 }));
  const reason = check('Require a reason', ra?.requireReason ?? false);
  const ticket = check('Require a ticket id', ra?.requireTicket ?? false);
  const pattern = field('Ticket pattern', input({ name: 'ticketPattern', value: ra?.ticketPattern ?? '', placeholder: '^CHG-[0-9]+$', spellcheck: false }), { hint: 'A regular expression the ticket id must match (optional).' });
  const startName = uid('start');
  const startOn = (value: 'approval' | 'first_connection', label: string): HTMLElement => {
    const id = uid('r');
    const radio = h('input', { type: 'radio', name: startName, id, value });
    radio.checked = (ra?.startOn ?? 'approval') === value;
    return h('div', { class: 'check' }, radio, h('label', { for: id }, label));
  };
  const startGroup = h('fieldset', { class: 'radios' }, h('legend', null, 'The access timer starts'),
    startOn('approval', 'On approval'), startOn('first_connection', 'On first connection'));
  const syncPattern = (): void => {
    pattern.control.disabled = !ticket.control.checked;
  };
  ticket.control.addEventListener('change', syncPattern);
  syncPattern();
  const raBody = h('div', { class: 'group-body' }, approvers, approvals.el, reason.el, ticket.el, pattern.el, startGroup);

  const single = check('Single-user mode: one holder at a time (check out / check in)', settings.singleUser ?? false);
  const mfa = check('MFA: ask for an authenticator code before each connection', settings.mfa ?? false);

  const toggle = (c: Check, body: HTMLElement): void => {
    const sync = (): void => void (body.hidden = !c.control.checked);
    c.control.addEventListener('change', sync);
    sync();
  };
  toggle(latOn, latBody);
  toggle(raOn, raBody);

  targets.push(
    target('limitAccessTime', latOn), target('limitAccessTime.timezone', zone), target('limitAccessTime.maxDurationMinutes', maxDuration),
    { path: 'limitAccessTime.schedule', setError: (m) => void ((rangesErr.textContent = m ?? ''), (rangesErr.hidden = !m)), focus: () => addBtn.focus() },
    target('requireApproval', raOn), target('requireApproval.approvals', approvals), target('requireApproval.requireReason', reason),
    target('requireApproval.requireTicket', ticket), target('requireApproval.ticketPattern', pattern),
    { path: 'requireApproval.approvers', setError: (m) => void ((approversErr.textContent = m ?? ''), (approversErr.hidden = !m)), focus: () => (approverBoxes[0]?.control ?? raOn.control).focus() },
    target('singleUser', single), target('mfa', mfa),
  );
  const rangeTarget = (path: string): Target | undefined => {
    const m = /^limitAccessTime\.schedule\[(\d+)\](?:\.(\w+))?/.exec(path);
    const row = m ? rows[Number(m[1])] : undefined;
    if (!m || !row) return undefined;
    if (m[2] === 'start') return target(path, row.start);
    if (m[2] === 'end') return target(path, row.end);
    return { path, setError: (msg) => void ((row.daysErr.textContent = msg ?? ''), (row.daysErr.hidden = !msg)), focus: () => row.days.get('mon')?.focus() };
  };
  const shown: Target[] = [];

  const el = h('div', { class: 'settings-fields' },
    h('fieldset', { class: 'group' }, h('legend', null, 'Limit Access Time'), latOn.el, latBody),
    h('fieldset', { class: 'group' }, h('legend', null, 'Require Approval'), raOn.el, raBody),
    h('fieldset', { class: 'group' }, h('legend', null, 'Single-User Mode'), single.el),
    h('fieldset', { class: 'group' }, h('legend', null, 'MFA'), mfa.el));

  return {
    el,
    read() {
      const out: Record<string, unknown> = {};
      if (latOn.control.checked) {
        out.limitAccessTime = {
          timezone: zone.control.value.trim(),
          schedule: rows.map((row) => ({ days: WEEKDAYS.filter((d) => row.days.get(d)?.checked), start: row.start.control.value.trim(), end: row.end.control.value.trim() })),
          maxDurationMinutes: Number(maxDuration.control.value),
        };
      }
      if (raOn.control.checked) {
        const next: Record<string, unknown> = {
          ...(ra ?? {}),
          approvers: approverBoxes.filter((c) => c.control.checked).map((c) => parsePrincipalKey(c.control.value)),
          approvals: Number(approvals.control.value),
          requireReason: reason.control.checked,
          requireTicket: ticket.control.checked,
          startOn: (el.querySelector<HTMLInputElement>(`input[name="${startName}"]:checked`)?.value ?? 'approval'),
        };
        const pat = pattern.control.value.trim();
        if (ticket.control.checked && pat) next.ticketPattern = pat;
        else delete next.ticketPattern;
        out.requireApproval = next;
      }
      if (single.control.checked) out.singleUser = true;
      if (mfa.control.checked) out.mfa = true;
      return out;
    },
    showError(path, message) {
      const t = rangeTarget(path) ?? [...targets].sort((a, b) => b.path.length - a.path.length)
        .find((x) => path === x.path || path.startsWith(`${x.path}.`) || path.startsWith(`${x.path}[`));
      if (!t) return false;
      t.setError(message);
      shown.push(t);
      t.focus();
      return true;
    },
    clearErrors() {
      for (const t of shown.splice(0)) t.setError(undefined);
    },
  };
}
