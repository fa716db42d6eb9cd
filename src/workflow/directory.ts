import { randomUUID } from 'node:crypto';
import { ForbiddenError, GatehouseError, NotFoundError, ValidationError } from '../core/errors.js';
import type {
  Enforcement, JitSettings, Principal, Resource, Role, TargetCredentials, Team, User, WorkflowSettings,
} from '../core/model.js';
import { Enforcements, ProtocolsByType, RecordTypes } from '../core/model.js';
import { sealCredentials } from '../secrets/credentials.js';
import { isOnAccessList, teamMembers } from './access.js';
import type { WorkflowContext } from './context.js';
import { validateJit } from './jit-settings.js';
import { canConfigureWorkflow, canConfigureWorkflowOf, validateSettings } from './settings.js';

export const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/i;

function checkName(field: string, name: string): void {
  if (!NAME_RE.test(name)) throw new ValidationError(field, 'use letters, digits, dot, dash or underscore (1-63 characters)');
}

/** What adding a resource takes: its definition, plain credentials to vault, unvalidated settings. */
export type NewResource = Pick<Resource, 'name' | 'type' | 'protocol' | 'host' | 'port' | 'database' | 'owner'> &
  Partial<Pick<Resource, 'access' | 'options' | 'source'>> & {
    credentials?: TargetCredentials;
    settings?: unknown;
  };

/** Users, teams, roles and resources: who exists and what they may reach. */
export class Directory {
  constructor(private readonly ctx: WorkflowContext) {}

  async requireUser(name: string): Promise<User> {
    const u = await this.ctx.store.getUser(name);
    if (!u) throw new NotFoundError('user', name);
    return u;
  }

  async requireResource(name: string): Promise<Resource> {
    const r = await this.ctx.store.getResource(name);
    if (!r) throw new NotFoundError('resource', name);
    return r;
  }

  async requireAdmin(actor: string): Promise<User> {
    const u = await this.requireUser(actor);
    if (!u.admin) throw new ForbiddenError('only an administrator can do this');
    return u;
  }

  async addUser(actor: string, input: { name: string; admin?: boolean; teams?: string[]; passwordHash?: string }): Promise<User> {
    checkName('name', input.name);
    if (input.name.includes(':')) throw new ValidationError('name', 'must not contain ":"');
    if (await this.ctx.store.getUser(input.name)) throw new GatehouseError('CONFLICT', `user '${input.name}' already exists`);
    for (const t of input.teams ?? []) if (!(await this.ctx.store.getTeam(t))) throw new NotFoundError('team', t);
    const user: User = {
      id: randomUUID(), name: input.name, admin: input.admin ?? false, disabled: false, teams: input.teams ?? [],
      totpConfirmed: false, sshKeys: [], createdAt: this.ctx.clock.now(),
    };
    if (input.passwordHash) user.passwordHash = input.passwordHash;
    await this.ctx.store.putUser(user);
    await this.ctx.audit.record(actor, 'user.create', user.name, { admin: user.admin, teams: user.teams });
    return user;
  }

  async updateUser(actor: string, name: string, patch: Partial<Pick<User, 'passwordHash' | 'totpSecretSealed' | 'totpConfirmed' | 'sshKeys' | 'teams' | 'admin'>>, action = 'user.update'): Promise<User> {
    const user = await this.requireUser(name);
    const next = { ...user, ...patch };
    await this.ctx.store.putUser(next);
    const visible = Object.keys(patch).filter((k) => k !== 'passwordHash' && k !== 'totpSecretSealed');
    await this.ctx.audit.record(actor, action, name, { fields: visible });
    return next;
  }

  async setDisabled(actor: string, name: string, disabled: boolean): Promise<User> {
    await this.requireAdmin(actor);
    const user = await this.updateUser(actor, name, {}, disabled ? 'user.disable' : 'user.enable');
    const next = { ...user, disabled };
    await this.ctx.store.putUser(next);
    if (disabled) this.ctx.bus.publishRevoke({ kind: 'user_disabled', user: name, message: `user ${name} was disabled` });
    return next;
  }

  async addTeam(actor: string, name: string): Promise<Team> {
    checkName('name', name);
    if (await this.ctx.store.getTeam(name)) throw new GatehouseError('CONFLICT', `team '${name}' already exists`);
    const team: Team = { name, createdAt: this.ctx.clock.now() };
    await this.ctx.store.putTeam(team);
    await this.ctx.audit.record(actor, 'team.create', name);
    return team;
  }

  async addTeamMember(actor: string, team: string, user: string): Promise<User> {
    if (!(await this.ctx.store.getTeam(team))) throw new NotFoundError('team', team);
    const u = await this.requireUser(user);
    if (u.teams.includes(team)) return u;
    return this.updateUser(actor, user, { teams: [...u.teams, team] }, 'team.add_member');
  }

  async createRole(actor: string, name: string): Promise<Role> {
    checkName('name', name);
    if (await this.ctx.store.getRole(name)) throw new GatehouseError('CONFLICT', `role '${name}' already exists`);
    const role: Role = { name, enforcements: {}, members: [] };
    await this.ctx.store.putRole(role);
    await this.ctx.audit.record(actor, 'role.create', name);
    return role;
  }

  async setEnforcement(actor: string, roleName: string, enforcement: string, value: boolean): Promise<Role> {
    if (!(Enforcements as readonly string[]).includes(enforcement)) {
      throw new ValidationError('enforcement', `unknown enforcement '${enforcement}' (known: ${Enforcements.join(', ')})`);
    }
    const role = await this.ctx.store.getRole(roleName);
    if (!role) throw new NotFoundError('role', roleName);
    const next: Role = { ...role, enforcements: { ...role.enforcements, [enforcement as Enforcement]: value } };
    await this.ctx.store.putRole(next);
    await this.ctx.audit.record(actor, 'role.set_enforcement', roleName, { enforcement, value });
    return next;
  }

  async assignRole(actor: string, roleName: string, user: string): Promise<Role> {
    const role = await this.ctx.store.getRole(roleName);
    if (!role) throw new NotFoundError('role', roleName);
    await this.requireUser(user);
    if (role.members.includes(user)) return role;
    const next = { ...role, members: [...role.members, user] };
    await this.ctx.store.putRole(next);
    await this.ctx.audit.record(actor, 'role.assign', roleName, { user });
    return next;
  }

  /** Whether the user holds the enforcement at all (what `/me` reports); see canConfigureWorkflowOf. */
  async canConfigureWorkflow(userName: string): Promise<boolean> {
    const user = await this.requireUser(userName);
    return canConfigureWorkflow(user, await this.ctx.store.listRoles());
  }

  /** Whether the user may change this resource's workflow: an administrator, or its owner holding the enforcement. */
  async canConfigureWorkflowOf(userName: string, resource: Resource): Promise<boolean> {
    const user = await this.requireUser(userName);
    return canConfigureWorkflowOf(user, await this.ctx.store.listRoles(), resource);
  }

  async teamsMap(): Promise<Map<string, string[]>> {
    return teamMembers(await this.ctx.store.listUsers());
  }

  async addResource(actor: string, input: NewResource): Promise<Resource> {
    checkName('name', input.name);
    if (input.name.includes(':')) throw new ValidationError('name', 'must not contain ":"');
    if (!RecordTypes.includes(input.type)) throw new ValidationError('type', `must be one of ${RecordTypes.join(', ')}`);
    if (!ProtocolsByType[input.type].includes(input.protocol)) {
      throw new ValidationError('protocol', `a ${input.type} resource speaks ${ProtocolsByType[input.type].join(' or ')}`);
    }
    if (!input.host) throw new ValidationError('host', 'is required');
    if (!Number.isInteger(input.port) || input.port < 1 || input.port > 65535) throw new ValidationError('port', 'must be 1-65535');
    await this.requireUser(input.owner);
    if (await this.ctx.store.getResource(input.name)) throw new GatehouseError('CONFLICT', `resource '${input.name}' already exists`);
    const access = input.access ?? [];
    const settings = input.settings === undefined ? {} : validateSettings(input.settings, { owner: input.owner, access, teams: await this.teamsMap() });
    const resource: Resource = {
      id: randomUUID(), name: input.name, type: input.type, protocol: input.protocol, host: input.host, port: input.port,
      owner: input.owner, access, settings, options: input.options ?? {}, source: input.source ?? 'api', createdAt: this.ctx.clock.now(),
    };
    if (input.database) resource.database = input.database;
    if (input.credentials) resource.credentialsSealed = sealCredentials(this.ctx.sealer, resource.name, input.credentials);
    await this.ctx.store.putResource(resource);
    await this.ctx.audit.record(actor, 'resource.create', resource.name, { type: resource.type, protocol: resource.protocol, host: resource.host, port: resource.port, owner: resource.owner, options: resource.options });
    return resource;
  }

  /** Replaces a resource's definition (policy reload); revokes live sessions if the workflow changed. */
  async replaceResource(actor: string, resource: Resource): Promise<void> {
    const before = await this.ctx.store.getResource(resource.name);
    await this.ctx.store.putResource(resource);
    await this.ctx.audit.record(actor, before ? 'resource.update' : 'resource.create', resource.name, { source: resource.source, options: resource.options });
    if (before && JSON.stringify(before.settings) !== JSON.stringify(resource.settings)) {
      this.ctx.bus.publishRevoke({ kind: 'settings_changed', resource: resource.name, message: `the workflow of ${resource.name} changed` });
    }
  }

  async setCredentials(actor: string, name: string, creds: TargetCredentials): Promise<void> {
    await this.requireAdmin(actor);
    const r = await this.requireResource(name);
    await this.ctx.store.putResource({ ...r, credentialsSealed: sealCredentials(this.ctx.sealer, name, creds) });
    await this.ctx.audit.record(actor, 'resource.set_credentials', name, { login: creds.login });
  }

  async share(actor: string, name: string, who: Principal): Promise<Resource> {
    const r = await this.requireResource(name);
    const me = await this.requireUser(actor);
    if (!me.admin && r.owner !== actor) throw new ForbiddenError(`only the owner of ${name} or an administrator can share it`);
    if ('user' in who) await this.requireUser(who.user);
    else if (!(await this.ctx.store.getTeam(who.team))) throw new NotFoundError('team', who.team);
    const exists = r.access.some((p) => JSON.stringify(p) === JSON.stringify(who));
    const next = exists ? r : { ...r, access: [...r.access, who] };
    if (!exists) await this.ctx.store.putResource(next);
    await this.ctx.audit.record(actor, 'resource.share', name, { principal: who });
    return next;
  }

  async removeResource(actor: string, name: string): Promise<void> {
    await this.requireAdmin(actor);
    await this.deleteResource(actor, name);
  }

  /** Deletes a resource and ends its sessions; callers have checked who may. */
  async deleteResource(actor: string, name: string): Promise<void> {
    if (!(await this.ctx.store.deleteResource(name))) throw new NotFoundError('resource', name);
    await this.ctx.audit.record(actor, 'resource.remove', name);
    this.ctx.bus.publishRevoke({ kind: 'resource_removed', resource: name, message: `resource ${name} was removed` });
  }

  /**
   * Changes workflow settings: administrators on any resource, owners holding a role with
   * ALLOW_CONFIGURE_WORKFLOW_SETTINGS on theirs. A resource the actor cannot see is
   * NOT_FOUND, worded as for one that does not exist.
   */
  async setWorkflow(actor: string, name: string, input: unknown): Promise<WorkflowSettings> {
    const r = await this.mayConfigure(actor, name);
    const settings = validateSettings(input, { owner: r.owner, access: r.access, teams: await this.teamsMap() });
    await this.ctx.store.putResource({ ...r, settings });
    await this.ctx.audit.record(actor, 'workflow.set', name, { settings });
    this.ctx.bus.publishRevoke({ kind: 'settings_changed', resource: name, message: `the workflow of ${name} changed` });
    return settings;
  }

  /**
   * Sets (or, with undefined or `{}`, clears) a resource's ephemeral-account and elevation
   * settings; the same people may do it as may change its workflow. Grants that already
   * have an account keep it until they end; new grants follow the new settings.
   */
  async setJit(actor: string, name: string, input: unknown): Promise<JitSettings | undefined> {
    const r = await this.mayConfigure(actor, name);
    const jit = validateJit(input, r.protocol);
    const next: Resource = { ...r };
    if (jit) next.jit = jit;
    else delete next.jit;
    await this.ctx.store.putResource(next);
    await this.ctx.audit.record(actor, 'resource.jit', name, { jit: jit ?? null });
    return jit;
  }

  /** The resource, if `actor` may change its workflow and JIT settings; NOT_FOUND for one they cannot see. */
  private async mayConfigure(actor: string, name: string): Promise<Resource> {
    const user = await this.requireUser(actor);
    const r = await this.ctx.store.getResource(name);
    if (!r || !(user.admin || isOnAccessList(user, r))) throw new NotFoundError('resource', name);
    const roles = await this.ctx.store.listRoles();
    if (!canConfigureWorkflow(user, roles)) {
      throw new ForbiddenError(`${actor} may not change workflow settings (needs a role with ALLOW_CONFIGURE_WORKFLOW_SETTINGS)`);
    }
    if (!canConfigureWorkflowOf(user, roles, r)) {
      throw new ForbiddenError(`only the owner of ${name} (${r.owner}) or an administrator can change its workflow; ALLOW_CONFIGURE_WORKFLOW_SETTINGS covers the resources you own`);
    }
    return r;
  }
}
