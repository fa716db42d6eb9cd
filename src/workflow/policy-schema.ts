import { z } from 'zod';
import { GatehouseError } from '../core/errors.js';
import { DirectoryAccessModes, Protocols, ProtocolsByType, RecordTypes } from '../core/model.js';
import { parseDn } from '../../protocols/ldap/dn.js';
import { JitSettingsSchema } from './jit-settings.js';
import { parseDuration, parseScheduleSpec } from './schedule.js';
import { LimitAccessTimeSchema, PrincipalNameSchema, PrincipalSchema, ScheduleRangeSchema, workflowShape } from './settings.js';

/**
 * The policy-file format (see policies/README.md), built from the same zod definitions as
 * the API's settings so the two cannot drift. The file form is friendlier in two places
 * only: a schedule range may be a spec string ("mon-fri 08:00-17:00") and the maximum
 * duration is `maxDuration` ("2h" or minutes). Transforms turn both into model types;
 * the JSON schema (policyJsonSchema) describes the input side.
 */

/** No ':' (the SSH/DB user form is `alice:prod-pg`) and no '/' (the HTTP path is /r/NAME/). */
export const RecordNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'must be 1-63 letters, digits, ".", "_" or "-", starting with a letter or digit');

const UserName = PrincipalNameSchema;
/** How the browser door signs in to an app with the vaulted credentials. */
export const HttpAuthSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('none') }),
  z.strictObject({ kind: z.literal('basic') }),
  z.strictObject({ kind: z.literal('bearer') }),
  z.strictObject({ kind: z.literal('header'), header: z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name') }),
  z.strictObject({
    kind: z.literal('form'),
    path: z.string().regex(/^\/[^\s]*$/, 'a path on the app, e.g. /login').max(512),
    userField: z.string().min(1).max(128),
    passwordField: z.string().min(1).max(128),
    fields: z.record(z.string().max(128), z.string().max(512)).optional(),
  }),
]);

/** A directory base DN (RFC 4514), as the LDAP door will read it. */
export const BaseDn = z
  .string()
  .min(1)
  .max(1024)
  .refine((dn) => parseDn(dn) !== undefined, { error: 'must be a DN such as ou=people,dc=example,dc=com (RFC 4514; no quoted values)' });

const Port = z.int().min(1, 'must be a port between 1 and 65535').max(65535, 'must be a port between 1 and 65535');

function detail(e: unknown): string {
  if (e instanceof GatehouseError && typeof e.details?.field === 'string') {
    return e.message.slice(e.details.field.length + 2);
  }
  return e instanceof Error ? e.message : String(e);
}

const FileScheduleRange = z
  .union([z.string(), ScheduleRangeSchema], { error: 'must be a spec like "mon-fri 08:00-17:00" or { days, start, end }' })
  .transform((v, ctx) => {
    if (typeof v !== 'string') return v;
    try {
      return parseScheduleSpec(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: `'${v}' is not a schedule like "mon-fri 08:00-17:00" (${detail(e)})` });
      return z.NEVER;
    }
  });

const FileDuration = z
  .union([z.int(), z.string()], { error: 'must be a duration like "2h", "90m" or a whole number of minutes' })
  .transform((v, ctx) => {
    if (typeof v === 'number') return v;
    try {
      return parseDuration(v);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: `'${v}' is not a duration like "2h" or "90m" (${detail(e)})` });
      return z.NEVER;
    }
  });

export const FileLimitAccessTimeSchema = z
  .strictObject({
    timezone: LimitAccessTimeSchema.shape.timezone,
    schedule: z.array(FileScheduleRange).min(1, 'must list at least one range'),
    maxDuration: FileDuration.meta({ description: 'Longest single access: "2h", "90m", "1d" or minutes' }),
  })
  .transform(({ maxDuration, ...rest }) => ({ ...rest, maxDurationMinutes: maxDuration }));

export const FileWorkflowSchema = z.strictObject({
  limitAccessTime: FileLimitAccessTimeSchema.optional(),
  ...workflowShape,
});

export const ResourceOptionsSchema = z.strictObject({
  allowAgentForwarding: z.boolean().optional(),
  allowX11: z.boolean().optional(),
  allowRemoteForwarding: z.boolean().optional(),
  allowedTunnelPorts: z.array(Port).optional(),
  allowPlaintextUpstream: z
    .boolean()
    .optional()
    .meta({ description: 'Database and directory targets: allow a target without TLS (lab only; databases: SCRAM only, never a cleartext or MD5 password). Default false' }),
  directoryAccess: z
    .enum(DirectoryAccessModes)
    .optional()
    .meta({ description: "Directory targets: 'read-only' (search and compare only, the default) or 'read-write'" }),
  baseDn: BaseDn.optional().meta({ description: 'Directory targets: every operation must name a DN at or below this one' }),
  ldaps: z.boolean().optional().meta({ description: 'Directory targets: LDAPS (TLS from the first byte) instead of StartTLS. Default: true when the port is 636' }),
  httpAuth: HttpAuthSchema.optional().meta({ description: 'Browser targets: how the gateway signs in to the app (none, basic, bearer, header, form). Default none' }),
  tunnelConnectionLimit: z.int().min(1).max(10_000).optional().meta({ description: 'Tunnels (tcp, rdp): connections one tunnel carries at once. Default unlimited' }),
  handOutCredentials: z.boolean().optional().meta({ description: "RDP: hand the vaulted login to the user's RDP client at tunnel start (on its standard input). Default false" }),
});

const inlineSecret = (use: string) =>
  z.never({ error: `secrets never go inline in policy files: use ${use}` }).optional();

export const CredentialsRefSchema = z
  .strictObject({
    login: UserName,
    passwordEnv: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'must be an environment variable name')
      .optional()
      .meta({ description: 'Environment variable holding the password' }),
    passwordFile: z.string().min(1).optional().meta({ description: 'File holding the password (relative to this file)' }),
    keyFile: z.string().min(1).optional().meta({ description: 'Private key file (relative to this file)' }),
    password: inlineSecret('passwordEnv or passwordFile'),
    privateKey: inlineSecret('keyFile'),
  })
  .superRefine((c, ctx) => {
    if (c.passwordEnv !== undefined && c.passwordFile !== undefined) {
      ctx.addIssue({ code: 'custom', path: ['passwordFile'], message: 'give passwordEnv or passwordFile, not both' });
    }
  });

export const PolicyResourceSchema = z
  .strictObject({
    name: RecordNameSchema,
    type: z.enum(RecordTypes),
    protocol: z.enum(Protocols),
    host: z.string().min(1, 'must not be empty'),
    port: Port,
    database: z.string().min(1).optional(),
    owner: UserName,
    access: z.array(PrincipalSchema).default([]),
    credentials: CredentialsRefSchema.optional(),
    options: ResourceOptionsSchema.default({}),
    workflow: FileWorkflowSchema.default({}),
    jit: JitSettingsSchema.optional().meta({
      description: 'Ephemeral accounts (a temporary account per grant, removed when it ends) or elevation of the vaulted account for the grant; one of the two. Names are checked against the protocol',
    }),
    hostKeyPin: z.string().min(1).optional().meta({ description: 'Expected SSH host key fingerprint (SHA256:...)' }),
  })
  .superRefine((r, ctx) => {
    const allowed = ProtocolsByType[r.type];
    if (!allowed.includes(r.protocol)) {
      ctx.addIssue({ code: 'custom', path: ['protocol'], message: `a ${r.type} resource takes ${allowed.join(', ')}, not ${r.protocol}` });
    }
  });

export const PolicyTeamSchema = z.strictObject({
  name: RecordNameSchema,
  members: z.array(UserName).default([]),
});

export const PolicyFileSchema = z
  .strictObject({
    version: z.literal(1).optional().meta({ description: 'Format version; 1 when given' }),
    teams: z.array(PolicyTeamSchema).default([]),
    resources: z.array(PolicyResourceSchema).default([]),
  })
  .meta({ title: 'Gatehouse policy file', description: 'Teams, resources and their workflows (policies/README.md)' });

export type PolicyFile = z.output<typeof PolicyFileSchema>;

/** The JSON schema of a policy file, generated from the zod definitions above. */
export function policyJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(PolicyFileSchema, { io: 'input', target: 'draft-2020-12' }) as Record<string, unknown>;
}
