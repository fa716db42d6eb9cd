/** What `gatehouse login`, `logout`, `whoami`, `token create` do; loaded only when one of them runs (../commands/auth.ts declares them). */
import type { Command } from 'commander';
import type { LoginResponse, Me, TokenResponse } from '../../api/wire.js';
import { CliError } from '../cli-error.js';
import { ApiClient } from '../client.js';
import { removeSavedLogin, writeSavedLogin, type SavedLogin } from '../config.js';
import { readCa, type Ctx } from '../context.js';
import { formatLocalTime } from '../format.js';
import { promptHidden, readStdinSecret } from '../io.js';

export interface LoginFlags {
  user: string;
  passwordStdin?: boolean;
  totp?: string;
}

export async function login(ctx: Ctx, flags: LoginFlags, cmd: Command): Promise<void> {
  const conn = await ctx.connection(cmd);
  const caPem = conn.ca !== undefined ? await readCa(conn.ca) : undefined;
  // A login never sends an existing token: it is how a token is obtained.
  const client = new ApiClient(caPem !== undefined ? { server: conn.server, caPem } : { server: conn.server });
  const password = flags.passwordStdin
    ? await readStdinSecret(ctx.io, 'password')
    : await promptHidden(ctx.io, `Password for ${flags.user}: `, '--password-stdin');
  const body: { user: string; password: string; totp?: string } = { user: flags.user, password };
  if (flags.totp) body.totp = flags.totp;
  let res: LoginResponse;
  try {
    res = await client.post<LoginResponse>('/auth/login', body);
  } catch (e) {
    const canAsk = e instanceof CliError && e.code === 'MFA_REQUIRED' && !flags.totp && !flags.passwordStdin && ctx.io.stdin.isTTY;
    if (!canAsk) throw e;
    body.totp = await promptHidden(ctx.io, 'TOTP code: ', '--totp CODE');
    res = await client.post<LoginResponse>('/auth/login', body);
  }
  const saved: SavedLogin = { server: conn.server, token: res.token, user: res.user.name, expiresAt: res.expiresAt };
  if (conn.ca) saved.ca = conn.ca;
  await writeSavedLogin(ctx.home, saved);
  const until = formatLocalTime(res.expiresAt, ctx.now(), ctx.zone);
  ctx.print(`Signed in to ${conn.server} as ${res.user.name} until ${until}.`);
  if (!res.user.mfaEnrolled) ctx.print('MFA is not enrolled yet: run gatehouse mfa enroll.');
}

export async function logout(ctx: Ctx, cmd: Command): Promise<void> {
  const conn = await ctx.connection(cmd);
  if (!conn.saved) {
    ctx.print('Not signed in.');
    return;
  }
  const client = await ctx.client(cmd);
  let revokeError: CliError | undefined;
  try {
    await client.post('/auth/logout');
  } catch (e) {
    // An already invalid token needs no revoking; anything else is worth saying.
    if (!(e instanceof CliError) || e.status !== 401) revokeError = e instanceof CliError ? e : new CliError('INTERNAL', String(e));
  }
  await removeSavedLogin(ctx.home);
  if (revokeError) {
    throw new CliError(revokeError.code, `forgot the saved login, but the gateway did not revoke the token: ${revokeError.message}`, {
      exitCode: revokeError.exitCode,
    });
  }
  ctx.print(`Signed out of ${conn.server}.`);
}

export async function whoami(ctx: Ctx, flags: { json?: boolean }, cmd: Command): Promise<void> {
  const client = await ctx.client(cmd);
  const me = await client.get<Me>('/me');
  if (flags.json) return ctx.printJson(me);
  const facts = [
    me.admin ? 'admin' : '',
    me.teams.length ? `teams: ${me.teams.join(', ')}` : 'no teams',
    me.mfaEnrolled ? 'MFA enrolled' : 'MFA not enrolled',
    me.canConfigureWorkflow ? 'may configure workflows' : '',
  ].filter(Boolean);
  ctx.print(`${me.name} on ${client.server} (${facts.join('; ')})`);
}

export async function createToken(ctx: Ctx, flags: { label: string; ttlDays?: number; json?: boolean }, cmd: Command): Promise<void> {
  const client = await ctx.client(cmd);
  const body: { label: string; ttlDays?: number } = { label: flags.label };
  if (flags.ttlDays !== undefined) body.ttlDays = flags.ttlDays;
  const res = await client.post<TokenResponse>('/tokens', body);
  if (flags.json) return ctx.printJson(res);
  const expiry = res.expiresAt ? `, expires ${formatLocalTime(res.expiresAt, ctx.now(), ctx.zone)}` : '';
  ctx.print(`API token ${res.id} created${expiry}. It is shown only this once; use it as GATEHOUSE_TOKEN:`);
  ctx.print(res.token);
}
