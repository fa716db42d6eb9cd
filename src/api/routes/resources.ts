import { z } from 'zod';
import { NotFoundError } from '../../core/errors.js';
import { DirectoryAccessModes, Protocols, RecordTypes, type Resource, type User } from '../../core/model.js';
import { BaseDn, HttpAuthSchema } from '../../workflow/policy-schema.js';
import { isOnAccessList } from '../../workflow/access.js';
import { describeSettings } from '../../workflow/settings.js';
import { describeJit, JIT_PROTOCOLS, JitSettingsSchema } from '../../workflow/jit-settings.js';
import type { ApiDeps } from '../deps.js';
import { parseBody, route, type Route } from '../http.js';
import { leaseView, resourceView } from '../views.js';

const Name = z.string().min(1).max(63);
const NewResource = z.strictObject({
  name: Name,
  type: z.enum(RecordTypes),
  protocol: z.enum(Protocols),
  host: z.string().min(1).max(255),
  port: z.number().int().min(1).max(65535),
  database: z.string().min(1).max(63).optional(),
  owner: Name.optional(),
  login: z.string().min(1).max(128).optional(),
  password: z.string().max(4096).optional(),
  privateKey: z.string().max(16_384).optional(),
  options: z.strictObject({
    allowAgentForwarding: z.boolean().optional(),
    allowX11: z.boolean().optional(),
    allowRemoteForwarding: z.boolean().optional(),
    allowedTunnelPorts: z.array(z.number().int().min(1).max(65535)).max(64).optional(),
    allowPlaintextUpstream: z.boolean().optional(),
    directoryAccess: z.enum(DirectoryAccessModes).optional(),
    baseDn: BaseDn.optional(),
    ldaps: z.boolean().optional(),
    httpAuth: HttpAuthSchema.optional(),
    tunnelConnectionLimit: z.number().int().min(1).max(10_000).optional(),
    handOutCredentials: z.boolean().optional(),
  }).optional(),
});
const Share = z.union([z.strictObject({ user: Name }), z.strictObject({ team: Name })]);
const Reason = z.strictObject({ reason: z.string().max(1000).optional() });

/** Resources, their workflow settings, and check-out / check-in. */
export function resourceRoutes(d: ApiDeps): Route[] {
  const { engine } = d;
  const dir = engine.directory;
  const visible = async (user: User, name: string): Promise<Resource> => {
    const r = await dir.requireResource(name);
    // As for a missing one: a resource the caller cannot see does not exist for them.
    if (!user.admin && !isOnAccessList(user, r)) throw new NotFoundError('resource', name);
    return r;
  };
  const workflowView = async (user: User, r: Resource) => ({
    resource: r.name, settings: r.settings, lines: describeSettings(r.settings), canConfigure: await dir.canConfigureWorkflowOf(user.name, r),
  });
  const jitView = async (user: User, r: Resource) => ({
    resource: r.name, protocol: r.protocol, supported: JIT_PROTOCOLS.includes(r.protocol), jit: r.jit ?? null,
    description: describeJit(r.jit), canConfigure: await dir.canConfigureWorkflowOf(user.name, r),
  });
  return [
    route('GET', '/api/v1/resources', 'Resources I can reach, with my workflow state', async (c) => {
      const all = await engine.ctx.store.listResources();
      const mine = all.filter((r) => c.user.admin || isOnAccessList(c.user, r));
      return Promise.all(mine.map((r) => resourceView(engine, r, c.user)));
    }, {}),
    route('POST', '/api/v1/resources', 'Add a resource', async (c) => {
      await dir.requireAdmin(c.user.name);
      const b = parseBody(NewResource, c.body);
      const creds = b.login ? { login: b.login, ...(b.password ? { password: b.password } : {}), ...(b.privateKey ? { privateKey: b.privateKey } : {}) } : undefined;
      const r = await dir.addResource(c.user.name, {
        name: b.name, type: b.type, protocol: b.protocol, host: b.host, port: b.port, owner: b.owner ?? c.user.name,
        ...(b.database ? { database: b.database } : {}), ...(creds ? { credentials: creds } : {}), ...(b.options ? { options: b.options } : {}),
      });
      return resourceView(engine, r, c.user);
    }, {}),
    route('GET', '/api/v1/resources/:name', 'One resource with my state', async (c) => resourceView(engine, await visible(c.user, c.params.name!), c.user), {}),
    route('DELETE', '/api/v1/resources/:name', 'Remove a resource (ends its sessions)', async (c) => {
      await dir.removeResource(c.user.name, c.params.name!);
      return { ok: true };
    }, {}),
    route('POST', '/api/v1/resources/:name/share', 'Share with a user or team', async (c) => {
      const r = await dir.share(c.user.name, c.params.name!, parseBody(Share, c.body));
      return resourceView(engine, r, c.user);
    }, {}),
    route('GET', '/api/v1/resources/:name/workflow', 'Workflow settings', async (c) => workflowView(c.user, await visible(c.user, c.params.name!)), {}),
    route('PUT', '/api/v1/resources/:name/workflow', 'Change workflow settings (ALLOW_CONFIGURE_WORKFLOW_SETTINGS)', async (c) => {
      await dir.setWorkflow(c.user.name, c.params.name!, c.body ?? {});
      return workflowView(c.user, await dir.requireResource(c.params.name!));
    }, {}),
    route('GET', '/api/v1/resources/:name/jit', 'Ephemeral-account and elevation settings', async (c) => jitView(c.user, await visible(c.user, c.params.name!)), {}),
    route('PUT', '/api/v1/resources/:name/jit', 'Change ephemeral-account and elevation settings (ALLOW_CONFIGURE_WORKFLOW_SETTINGS); {} clears them', async (c) => {
      const name = c.params.name!;
      // For someone who may change it, an unknown key is refused by its name (setJit would say only 'jit');
      // for anyone else setJit refuses first, before the body is looked at.
      if (await dir.canConfigureWorkflowOf(c.user.name, await visible(c.user, name))) parseBody(JitSettingsSchema, c.body);
      await dir.setJit(c.user.name, name, c.body ?? {});
      return jitView(c.user, await dir.requireResource(name));
    }, { body: 'JitSettings' }),
    route('POST', '/api/v1/resources/:name/checkout', 'Check out a single-user resource', async (c) => leaseView(await engine.leases.checkout(c.user.name, c.params.name!)), {}),
    route('POST', '/api/v1/resources/:name/checkin', 'Check in', async (c) => leaseView(await engine.leases.checkin(c.user.name, c.params.name!)), {}),
    route('POST', '/api/v1/resources/:name/force-checkin', 'Force check-in (approvers)', async (c) => {
      const b = parseBody(Reason, c.body);
      return leaseView(await engine.leases.forceCheckin(c.user.name, c.params.name!, b.reason));
    }, {}),
    route('GET', '/api/v1/leases', 'Held leases I can see', async (c) => {
      const held = await engine.ctx.store.listLeases({ state: 'held' });
      const out = [];
      for (const l of held) {
        const r = await engine.ctx.store.getResource(l.resource);
        if (!r) continue;
        if (l.holder === c.user.name || c.user.admin || (await engine.leases.mayForce(c.user.name, r))) out.push(leaseView(l));
      }
      return out;
    }, {}),
  ];
}
