/// <reference lib="dom" />
import { api, seg } from './api.js';
import { h, render, uid } from './dom.js';
import { notify } from './notify.js';
import type { JitSettings, JitView, Protocol } from './types.js';
import { busy, field, input, note, type Field } from './ui.js';

/**
 * "Just-in-time accounts" on a resource's settings page: which account sessions log in
 * upstream as. Editable by those the API says may change it (the workflow settings' rule:
 * an administrator, or the owner holding ALLOW_CONFIGURE_WORKFLOW_SETTINGS); read-only for
 * everyone else. The API checks again on every save.
 */

type Mode = 'vaulted' | 'ephemeral' | 'elevate';

const GRANT_HINT: Partial<Record<Protocol, string>> = {
  postgres: 'Role names, one per line, e.g. app_read.',
  mysql: 'Role names, one per line, e.g. app_read.',
  ssh: 'Linux groups, one per line, e.g. adm.',
  ldap: 'Group DNs, one per line, e.g. cn=operators,ou=groups,dc=example,dc=com.',
};

export function jitSection(name: string, initial: JitView): HTMLElement {
  const headingId = uid('jit-heading');
  const el = h('section', { class: 'jit group', 'aria-labelledby': headingId });
  const show = (view: JitView): void => {
    const head = h('h2', { id: headingId }, 'Just-in-time accounts');
    const summary = h('p', { class: 'jit-current', 'data-jit-description': '' }, `Sessions log in upstream as ${view.description}.`);
    if (!view.supported) {
      render(el, head, note(`${view.protocol} resources have no ephemeral accounts or elevation; sessions use the vaulted account.`));
    } else if (!view.canConfigure) {
      render(el, head, summary, facts(view.jit),
        h('p', { class: 'hint' }, 'Only an administrator, or the owner with ALLOW_CONFIGURE_WORKFLOW_SETTINGS, can change these.'));
    } else {
      render(el, head, summary, editor(name, view, show));
    }
  };
  show(initial);
  return el;
}

function facts(jit: JitSettings | null): HTMLElement {
  const e = jit?.ephemeral;
  const rows: Array<[string, string]> = [
    ['Ephemeral accounts', e ? 'on' : 'off'],
    ...(e ? [['Roles or groups', e.grants.join(', ') || 'none'] as [string, string]] : []),
    ...(e?.sudo !== undefined ? [['sudo', e.sudo] as [string, string]] : []),
    ...(e?.ou !== undefined ? [['OU', e.ou] as [string, string]] : []),
    ...(e?.inheritor !== undefined ? [['Inheritor', e.inheritor] as [string, string]] : []),
    ...(e?.maxConnections !== undefined ? [['Maximum connections', String(e.maxConnections)] as [string, string]] : []),
    ['Elevation', jit?.elevate ? `on: ${jit.elevate.grants.join(', ')}` : 'off'],
  ];
  return h('dl', { class: 'facts' }, rows.flatMap(([k, v]) => [h('dt', null, k), h('dd', null, v)]));
}

const lines = (text: string): string[] => text.split('\n').map((l) => l.trim()).filter(Boolean);

function editor(name: string, view: JitView, show: (v: JitView) => void): HTMLElement {
  const jit = view.jit;
  const e = jit?.ephemeral;
  const protocol = view.protocol;
  const modeName = uid('jit-mode');
  const radios = new Map<Mode, HTMLInputElement>();
  const radio = (value: Mode, label: string): HTMLElement => {
    const id = uid('r');
    const r = h('input', { type: 'radio', name: modeName, id, value });
    r.checked = (e ? 'ephemeral' : jit?.elevate ? 'elevate' : 'vaulted') === value;
    radios.set(value, r);
    return h('div', { class: 'check' }, r, h('label', { for: id }, label));
  };
  const modes = h('fieldset', { class: 'radios' }, h('legend', null, 'Sessions log in upstream as'),
    radio('vaulted', 'The vaulted account'),
    radio('ephemeral', 'A temporary account per grant, removed when the grant ends'),
    radio('elevate', 'The vaulted account, elevated for the grant only'));

  const area = (value: string, rows = 3): HTMLTextAreaElement => {
    const t = h('textarea', { rows, spellcheck: 'false', autocomplete: 'off' });
    t.value = value;
    return t;
  };
  const grants = field('Roles or groups of the temporary account', area((e?.grants ?? []).join('\n')), { hint: GRANT_HINT[protocol] ?? '' });
  const extra: Array<[string, Field]> = [];
  if (protocol === 'ssh') extra.push(['sudo', field('sudo commands', input({ value: e?.sudo ?? '', spellcheck: false, placeholder: '/usr/bin/systemctl restart nginx' }), { hint: 'Optional: ALL, or absolute command paths separated by commas.' })]);
  if (protocol === 'ldap') extra.push(['ou', field('OU for temporary entries', input({ value: e?.ou ?? '', spellcheck: false, placeholder: 'ou=temporary,dc=example,dc=com' }), { hint: 'The DN temporary entries are made under.' })]);
  if (protocol === 'postgres') extra.push(['inheritor', field('Inheritor role', input({ value: e?.inheritor ?? '', spellcheck: false, placeholder: 'gatehouse_inheritor' }), { hint: 'Optional: the role that inherits what the temporary account created.' })]);
  if (protocol === 'mysql') extra.push(['maxConnections', field('Maximum connections', input({ type: 'number', min: 1, max: 1000, value: e?.maxConnections ?? '' }), { hint: 'Optional: MAX_USER_CONNECTIONS of the temporary account (default 10).' })]);
  const ephemeralBody = h('div', { class: 'group-body' }, grants.el, extra.map(([, f]) => f.el));
  const elevateGrants = field('Roles or groups added to the vaulted account', area((jit?.elevate?.grants ?? []).join('\n')), { hint: GRANT_HINT[protocol] ?? '' });
  const elevateBody = h('div', { class: 'group-body' }, elevateGrants.el);

  const mode = (): Mode => ([...radios].find(([, r]) => r.checked)?.[0] ?? 'vaulted');
  const sync = (): void => {
    ephemeralBody.hidden = mode() !== 'ephemeral';
    elevateBody.hidden = mode() !== 'elevate';
  };
  for (const r of radios.values()) r.addEventListener('change', sync);
  sync();

  const read = (): JitSettings => {
    switch (mode()) {
      case 'vaulted':
        return {};
      case 'elevate':
        return { elevate: { grants: lines(elevateGrants.control.value) } };
      case 'ephemeral': {
        const out: Record<string, unknown> = { grants: lines(grants.control.value) };
        for (const [key, f] of extra) {
          const v = f.control.value.trim();
          if (v) out[key] = key === 'maxConnections' ? Number(v) : v;
        }
        return { ephemeral: out as unknown as NonNullable<JitSettings['ephemeral']> };
      }
    }
  };

  const targets: Array<[string, Field]> = [['ephemeral.grants', grants], ...extra.map(([k, f]) => [`ephemeral.${k}`, f] as [string, Field]), ['elevate.grants', elevateGrants]];
  const shown: Field[] = [];
  const formError = h('div', { class: 'form-error', role: 'alert', hidden: true });
  const save = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save JIT settings');
  const form = h('form', { class: 'jit-form', novalidate: true, 'aria-label': `Just-in-time accounts of ${name}` },
    formError, modes, ephemeralBody, elevateBody, h('div', { class: 'form-actions' }, save));
  form.onsubmit = (ev) => {
    ev.preventDefault();
    for (const f of shown.splice(0)) f.setError(undefined);
    formError.hidden = true;
    void busy(save, async () => {
      const next = await api<JitView>('PUT', `/resources/${seg(name)}/jit`, read());
      notify(`Saved the JIT settings of ${name}.`, { kind: 'success' });
      show(next);
    }, (err) => {
      const path = err.field ?? '';
      const hit = targets.find(([p]) => path === p || path.startsWith(`${p}[`) || path.startsWith(`${p}.`));
      if (hit) {
        hit[1].setError(err.message.replace(/^[^:]+: /, ''));
        shown.push(hit[1]);
        hit[1].control.focus();
        return true;
      }
      formError.textContent = err.message;
      formError.hidden = false;
      formError.setAttribute('tabindex', '-1');
      formError.focus();
      return true;
    });
  };
  return form;
}
