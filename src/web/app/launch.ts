/// <reference lib="dom" />
import { api } from './api.js';
import { h, render } from './dom.js';
import { clockTime } from './format.js';
import { notify } from './notify.js';
import type { LaunchResult, ResourceView } from './types.js';
import { button, busy, field, input } from './ui.js';

/**
 * Launch: asks for a TOTP code when the resource wants MFA, then shows the exact client
 * command with its one-time ticket (or a link for a web app).
 */
export function launchPanel(r: ResourceView, close: () => void): HTMLElement {
  const panel = h('div', { class: 'launch' });
  const go = async (btn: HTMLButtonElement | null, totp?: string, code?: ReturnType<typeof field>): Promise<void> => {
    await busy(btn, async () => {
      const res = await api<LaunchResult>('POST', '/launch', { resource: r.name, ...(totp ? { totp } : {}) });
      showResult(panel, res, close);
    }, (e) => {
      if (!code || !['MFA_INVALID', 'MFA_REPLAY', 'MFA_REQUIRED', 'VALIDATION'].includes(e.code)) return false;
      code.setError(e.message);
      code.control.focus();
      return true;
    });
  };
  if (!r.settings.mfa) {
    render(panel, h('p', { class: 'muted' }, 'Issuing a one-time ticket…'));
    void go(null).then(() => {
      if (!panel.querySelector('.launch-result')) close();
    });
    return panel;
  }
  const code = field('Authenticator code', input({ name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 8, pattern: '[0-9]*' }), {
    required: true, hint: `${r.name} requires MFA: enter the 6-digit code from your authenticator app.`,
  });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Launch');
  const form = h('form', { class: 'launch-form', novalidate: true, 'aria-label': `Launch ${r.name}` },
    code.el, h('div', { class: 'form-actions' }, submit, button('Cancel', close, { kind: 'link' })));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = code.control.value.replace(/\s/g, '');
    if (!/^\d{6,8}$/.test(value)) {
      code.setError('Enter the 6-digit code from your authenticator app.');
      code.control.focus();
      return;
    }
    code.setError(undefined);
    void go(submit, value, code);
  });
  render(panel, form);
  return panel;
}

function showResult(panel: HTMLElement, res: LaunchResult, close: () => void): void {
  const isUrl = res.protocol === 'http';
  const codeEl = h('code', { id: `cmd-${res.resource}` }, res.command);
  const copy = button('Copy', async () => {
    try {
      await navigator.clipboard.writeText(res.command);
      notify('Command copied to the clipboard.', { kind: 'success' });
    } catch {
      // No clipboard permission: select the text so Ctrl+C works.
      const range = document.createRange();
      range.selectNodeContents(codeEl);
      const sel = window.getSelection();
      sel?.removeAllRanges();
      sel?.addRange(range);
      notify('Press Ctrl+C to copy the selected command.');
    }
  }, { kind: 'secondary', attrs: { 'aria-describedby': codeEl.id } });
  const done = button('Done', close, { kind: 'link' });
  render(panel, h('div', { class: 'launch-result', role: 'group', 'aria-label': `How to connect to ${res.resource}` },
    isUrl
      ? h('p', null, h('a', { class: 'btn btn-primary', href: res.command, target: '_blank', rel: 'noopener noreferrer' }, `Open ${res.resource}`))
      : h('p', null, 'Run this command; the ticket inside works once:'),
    h('pre', { class: 'command' }, codeEl),
    h('p', { class: 'muted' }, `One-time ticket, valid until ${clockTime(res.expiresAt, new Date())}.`),
    h('div', { class: 'form-actions' }, copy, done)));
  copy.focus();
}
