import { z } from 'zod';
import { Enforcements } from '../../core/model.js';
import type { ApiDeps } from '../deps.js';
import { parseBody, route, type Route } from '../http.js';
import { hashPassword } from '../../secrets/passwords.js';
import { userView } from '../views.js';

const Name = z.string().min(1).max(63);
const NewUser = z.strictObject({ name: Name, password: z.string().min(8).max(1024).optional(), teams: z.array(Name).max(100).optional(), admin: z.boolean().optional() });
const NameBody = z.strictObject({ name: Name });
const UserBody = z.strictObject({ user: Name });
const EnforcementBody = z.strictObject({ enforcement: z.enum(Enforcements), value: z.boolean() });

/** Users, teams and roles: administrators only (teams are readable by all). Passwords: routes/credentials.ts. */
export function directoryRoutes(d: ApiDeps): Route[] {
  const dir = d.engine.directory;
  const store = d.engine.ctx.store;
  return [
    route('GET', '/api/v1/users', 'List users', async (c) => {
      await dir.requireAdmin(c.user.name);
      return (await store.listUsers()).map(userView);
    }, {}),
    route('POST', '/api/v1/users', 'Create a user', async (c) => {
      await dir.requireAdmin(c.user.name);
      const b = parseBody(NewUser, c.body);
      const u = await dir.addUser(c.user.name, {
        name: b.name, admin: b.admin ?? false, teams: b.teams ?? [], ...(b.password ? { passwordHash: await hashPassword(b.password) } : {}),
      });
      return userView(u);
    }, {}),
    route('POST', '/api/v1/users/:name/disable', 'Disable a user (ends their sessions)', async (c) => userView(await dir.setDisabled(c.user.name, c.params.name!, true)), {}),
    route('POST', '/api/v1/users/:name/enable', 'Enable a user', async (c) => userView(await dir.setDisabled(c.user.name, c.params.name!, false)), {}),
    route('GET', '/api/v1/teams', 'List teams', async () => store.listTeams(), {}),
    route('POST', '/api/v1/teams', 'Create a team', async (c) => {
      await dir.requireAdmin(c.user.name);
      return dir.addTeam(c.user.name, parseBody(NameBody, c.body).name);
    }, {}),
    route('POST', '/api/v1/teams/:name/members', 'Add a user to a team', async (c) => {
      await dir.requireAdmin(c.user.name);
      return userView(await dir.addTeamMember(c.user.name, c.params.name!, parseBody(UserBody, c.body).user));
    }, {}),
    route('GET', '/api/v1/roles', 'List roles', async (c) => {
      await dir.requireAdmin(c.user.name);
      return store.listRoles();
    }, {}),
    route('POST', '/api/v1/roles', 'Create a role', async (c) => {
      await dir.requireAdmin(c.user.name);
      return dir.createRole(c.user.name, parseBody(NameBody, c.body).name);
    }, {}),
    route('PUT', '/api/v1/roles/:name/enforcements', 'Set an enforcement policy on a role', async (c) => {
      await dir.requireAdmin(c.user.name);
      const b = parseBody(EnforcementBody, c.body);
      return dir.setEnforcement(c.user.name, c.params.name!, b.enforcement, b.value);
    }, {}),
    route('POST', '/api/v1/roles/:name/members', 'Assign a role to a user', async (c) => {
      await dir.requireAdmin(c.user.name);
      return dir.assignRole(c.user.name, c.params.name!, parseBody(UserBody, c.body).user);
    }, {}),
  ];
}
