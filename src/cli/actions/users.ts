/** What `gatehouse user`, `team`, `role` subcommands do; loaded only when one of them runs (../commands/users.ts declares them). */
import type { Command } from 'commander';
import { Enforcements, type Enforcement } from '../../core/model.js';
import type { Me, PasswordChangeResponse, RoleView, TeamView, UserView } from '../../api/wire.js';
import { usageError } from '../cli-error.js';
import { seg, type Ctx } from '../context.js';
import { promptHidden, readStdinSecret } from '../io.js';

export async function addUser(ctx: Ctx, name: string, flags: { team?: string[]; admin?: boolean; passwordStdin?: boolean }, cmd: Command): Promise<void> {
  const body: { name: string; password?: string; teams?: string[]; admin?: boolean } = { name };
  if (flags.passwordStdin) body.password = await readStdinSecret(ctx.io, 'password');
  if (flags.team?.length) body.teams = flags.team;
  if (flags.admin) body.admin = true;
  const created = await (await ctx.client(cmd)).post<UserView>('/users', body);
  const facts = [created.admin ? 'admin' : '', created.teams.length ? `teams: ${created.teams.join(', ')}` : ''].filter(Boolean);
  ctx.print(`Created user ${created.name}${facts.length ? ` (${facts.join('; ')})` : ''}.`);
}

export async function passwd(ctx: Ctx, name: string, flags: { passwordStdin?: boolean }, cmd: Command): Promise<void> {
  const client = await ctx.client(cmd);
  const own = (await client.get<Me>('/me')).name === name;
  const body: { password: string; oldPassword?: string } = own ? await ownPasswords(ctx, flags.passwordStdin) : { password: await newPassword(ctx, flags.passwordStdin) };
  const res = await client.put<PasswordChangeResponse>(`/users/${seg(name)}/password`, body);
  const others = res.revokedTokens ?? 0;
  ctx.print(`Set the password of ${name}.${others > 0 ? ` Signed out ${others} ${own ? 'other ' : ''}session${others === 1 ? '' : 's'} and token${others === 1 ? '' : 's'}.` : ''}`);
}

export async function setDisabled(ctx: Ctx, verb: 'disable' | 'enable', done: string, name: string, cmd: Command): Promise<void> {
  const updated = await (await ctx.client(cmd)).post<UserView>(`/users/${seg(name)}/${verb}`);
  ctx.print(`${done} user ${updated.name}.`);
}

export async function addTeam(ctx: Ctx, name: string, cmd: Command): Promise<void> {
  const created = await (await ctx.client(cmd)).post<TeamView>('/teams', { name });
  ctx.print(`Created team ${created.name}.`);
}

export async function addMember(ctx: Ctx, teamName: string, userName: string, cmd: Command): Promise<void> {
  const updated = await (await ctx.client(cmd)).post<UserView>(`/teams/${seg(teamName)}/members`, { user: userName });
  ctx.print(`Added ${updated.name} to team ${teamName}.`);
}

export async function createRole(ctx: Ctx, name: string, cmd: Command): Promise<void> {
  const created = await (await ctx.client(cmd)).post<RoleView>('/roles', { name });
  ctx.print(`Created role ${created.name}.`);
}

export async function setEnforcement(ctx: Ctx, name: string, flags: { enforcement: string }, cmd: Command): Promise<void> {
  const { enforcement, value } = parseEnforcement(flags.enforcement);
  const updated = await (await ctx.client(cmd)).put<RoleView>(`/roles/${seg(name)}/enforcements`, { enforcement, value });
  ctx.print(`Role ${updated.name}: ${enforcement} = ${String(value)}.`);
}

export async function assignRole(ctx: Ctx, name: string, userName: string, cmd: Command): Promise<void> {
  const updated = await (await ctx.client(cmd)).post<RoleView>(`/roles/${seg(name)}/members`, { user: userName });
  ctx.print(`Assigned role ${updated.name} to ${userName}.`);
}

/** Your own password change: the current password, then the new one (two stdin lines, or two prompts). */
async function ownPasswords(ctx: Ctx, fromStdin: boolean | undefined): Promise<{ password: string; oldPassword: string }> {
  if (!fromStdin) {
    const oldPassword = await promptHidden(ctx.io, 'Current password: ', '--password-stdin');
    return { oldPassword, password: await promptHidden(ctx.io, 'New password: ', '--password-stdin') };
  }
  const lines = (await readStdinSecret(ctx.io, 'password')).split(/\r?\n/);
  if (lines.length !== 2 || !lines[0] || !lines[1]) throw usageError('--password-stdin: for your own account give the current password on the first line and the new one on the second');
  return { oldPassword: lines[0], password: lines[1] };
}

function newPassword(ctx: Ctx, fromStdin: boolean | undefined): Promise<string> {
  return fromStdin ? readStdinSecret(ctx.io, 'password') : promptHidden(ctx.io, 'New password: ', '--password-stdin');
}

/** `ALLOW_CONFIGURE_WORKFLOW_SETTINGS=true`; the quotes of Keeper's `"NAME":true` form are accepted too. */
export function parseEnforcement(text: string): { enforcement: Enforcement; value: boolean } {
  const m = /^"?([A-Za-z_]+)"?\s*[=:]\s*(true|false)$/i.exec(text.trim());
  if (!m) throw usageError(`--enforcement: "${text}" must look like ALLOW_CONFIGURE_WORKFLOW_SETTINGS=true`);
  const name = m[1]!.toUpperCase();
  const enforcement = Enforcements.find((e) => e === name);
  if (!enforcement) throw usageError(`--enforcement: unknown policy ${name}; known: ${Enforcements.join(', ')}`);
  return { enforcement, value: m[2]!.toLowerCase() === 'true' };
}
