/// <reference lib="dom" />
import { api, ApiError } from './api.js';
import { h } from './dom.js';
import type { Me } from './types.js';
import { busy, field, heading, input, type Screen } from './ui.js';

interface LoginResult {
  token: string;
  expiresAt: string;
  user: Me;
}

/** Sign-in with password, then the authenticator code once the account has one. */
export function signinScreen(onSignedIn: (token: string, me: Me) => void): Screen {
  const user = field('User name', input({ name: 'user', autocomplete: 'username', autocapitalize: 'none', spellcheck: false }), { required: true });
  const password = field('Password', input({ type: 'password', name: 'password', autocomplete: 'current-password' }), { required: true });
  const totp = field('Authenticator code', input({ name: 'totp', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: 8 }), {
    hint: 'Your account has MFA: enter the 6-digit code from your authenticator app.',
  });
  totp.el.hidden = true;
  const error = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'btn btn-primary wide' }, 'Sign in');
  const form = h('form', { class: 'signin-form', novalidate: true, 'aria-label': 'Sign in' }, error, user.el, password.el, totp.el, submit);

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    error.hidden = true;
    for (const f of [user, password, totp]) f.setError(undefined);
    const missing = [[user, 'Enter your user name.'], [password, 'Enter your password.']] as const;
    for (const [f, msg] of missing) {
      if (!f.control.value) {
        f.setError(msg);
        f.control.focus();
        return;
      }
    }
    const code = totp.control.value.replace(/\s/g, '');
    void busy(submit, async () => {
      const r = await api<LoginResult>('POST', '/auth/login', { user: user.control.value.trim(), password: password.control.value, ...(code ? { totp: code } : {}) });
      onSignedIn(r.token, r.user);
    }, (e: ApiError) => {
      if (e.code === 'MFA_REQUIRED' && totp.el.hidden) {
        totp.el.hidden = false;
        totp.control.focus();
        return true;
      }
      if (e.code === 'MFA_INVALID' || e.code === 'MFA_REPLAY' || e.code === 'MFA_REQUIRED') {
        totp.setError(e.message);
        totp.control.select();
        totp.control.focus();
        return true;
      }
      error.textContent = e.message;
      error.hidden = false;
      password.control.select();
      password.control.focus();
      return true;
    });
  });

  return {
    title: 'Sign in',
    el: h('section', { class: 'screen signin' }, heading('Sign in to Gatehouse'), h('p', { class: 'lede' }, 'Just-in-time access to production: request, check out, launch.'), form),
  };
}
