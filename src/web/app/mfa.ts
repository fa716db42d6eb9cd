/// <reference lib="dom" />
import { toDataURL } from 'qrcode';
import { api } from './api.js';
import { h, render } from './dom.js';
import { groupSecret } from './format.js';
import { notify } from './notify.js';
import { busy, button, field, heading, input, type App, type Screen } from './ui.js';

/** MFA enrolment: a QR code of the otpauth URI, the secret for manual entry, then a code to confirm. */
export function mfaScreen(app: App): Screen {
  const body = h('div', { class: 'mfa-body' });
  const intro = (): void => {
    if (app.me.mfaEnrolled) {
      render(body, h('p', { class: 'notice-inline ok', tabindex: -1 }, 'Your account has an authenticator. Gatehouse asks for its code at sign-in and before connections to MFA resources.'));
      return;
    }
    const start: HTMLButtonElement = button('Set up an authenticator', () => busy(start, enrol), { kind: 'primary' });
    render(body, h('p', null, 'Protect your account and unlock MFA resources with an authenticator app (any TOTP app).'), start);
  };

  async function enrol(): Promise<void> {
    const { secret, uri } = await api<{ secret: string; uri: string }>('POST', '/mfa/enroll');
    const qr = await toDataURL(uri, { margin: 1, width: 220, errorCorrectionLevel: 'M' });
    const code = field('Code from the app', input({ name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 8 }), { required: true });
    const confirm = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Confirm');
    const form = h('form', { class: 'mfa-form', novalidate: true, 'aria-label': 'Confirm the authenticator' }, code.el, h('div', { class: 'form-actions' }, confirm));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const value = code.control.value.replace(/\s/g, '');
      if (!/^\d{6,8}$/.test(value)) {
        code.setError('Enter the 6-digit code the app shows.');
        code.control.focus();
        return;
      }
      void busy(confirm, async () => {
        await api('POST', '/mfa/verify', { code: value });
        await app.refreshMe();
        notify('Your authenticator is set up.', { kind: 'success' });
        intro();
        body.querySelector<HTMLElement>('p')?.focus();
      }, (e) => {
        code.setError(e.message);
        code.control.focus();
        return true;
      });
    });
    render(body,
      h('ol', { class: 'steps' },
        h('li', null, 'Scan this QR code with your authenticator app:',
          h('figure', { class: 'qr' }, h('img', { src: qr, width: 220, height: 220, alt: 'QR code of your authenticator secret; the secret is also printed below.' }))),
        h('li', null, 'Or type the secret by hand: ', h('code', { class: 'secret', 'data-secret': secret }, groupSecret(secret))),
        h('li', null, 'Enter the code the app shows to confirm:', form)));
    code.control.focus();
  }

  intro();
  return { title: 'Account security', el: h('section', { class: 'screen mfa' }, heading('Account security'), body) };
}
