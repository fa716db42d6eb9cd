import { z } from 'zod';
import type { ApiDeps } from '../deps.js';
import { parseBody, route, type Route } from '../http.js';
import { userView } from '../views.js';

const Login = z.strictObject({ user: z.string().min(1).max(64), password: z.string().min(1).max(1024), totp: z.string().max(16).optional() });
const Code = z.strictObject({ code: z.string().min(1).max(16) });

/** Sign-in, my account and MFA enrolment (tokens, keys and the password: routes/credentials.ts). */
export function accountRoutes(d: ApiDeps): Route[] {
  const { engine, auth } = d;
  return [
    route('POST', '/api/v1/auth/login', 'Sign in with password (+ TOTP once enrolled)', async (c) => {
      const b = parseBody(Login, c.body);
      const r = await auth.login(b.user, b.password, b.totp, c.ip);
      return { token: r.token, expiresAt: r.expiresAt, user: await me(d, r.user.name) };
    }, { public: true }),
    route('GET', '/api/v1/me', 'Who am I', async (c) => me(d, c.user.name), {}),
    route('POST', '/api/v1/mfa/enroll', 'Start TOTP enrolment (secret + otpauth URI)', async (c) => engine.mfa.enroll(c.user.name), {}),
    route('POST', '/api/v1/mfa/verify', 'Confirm TOTP enrolment with a code', async (c) => {
      const b = parseBody(Code, c.body);
      await auth.guardTotp(c.user.name, () => (c.user.totpConfirmed ? engine.mfa.verify(c.user.name, b.code) : engine.mfa.confirm(c.user.name, b.code)));
      return { ok: true };
    }, {}),
  ];
}

async function me(d: ApiDeps, name: string): Promise<Record<string, unknown>> {
  const u = await d.engine.directory.requireUser(name);
  return { ...userView(u), canConfigureWorkflow: await d.engine.directory.canConfigureWorkflow(name) };
}
