import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, hostname } from 'node:os';
import { resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { GatehouseError } from './errors.js';

import { DOORS, type DoorName } from '../../protocols/registry.js';

/** The API listener plus one per door in the registry. */
export type ListenerName = 'api' | DoorName;
export const ListenerNames: readonly ListenerName[] = ['api', ...DOORS.map((d) => d.name)];

export interface ListenAddress {
  host: string;
  port: number;
}

export const DEFAULT_LISTEN = Object.fromEntries([
  ['api', { host: '127.0.0.1', port: 8080 }],
  ...DOORS.map((d) => [d.name, { host: '127.0.0.1', port: d.defaultPort }]),
]) as Record<ListenerName, ListenAddress>;

export interface GatewayConfig {
  dataDir: string;
  certDir: string;
  /** Policy directory to load at start; absent when none exists. */
  policiesDir?: string;
  /** Enabled listeners; a listener set to `off` in the config file is absent. */
  listen: Partial<Record<ListenerName, ListenAddress>>;
  /** Extra names for the gateway certificate. */
  hostnames: string[];
  webhooks: Array<{ url: string; secret: string; events?: string[] }>;
  warnBeforeMinutes: number;
  nodeName: string;
  adminPasswordFile?: string;
  /** PostgreSQL plaintext startup allowed on loopback listeners (tests, local use). */
  allowPlaintextOnLoopback: boolean;
  /** A PostgreSQL connection string for state shared by several gateways; SQLite in the data dir when absent. */
  storeUrl?: string;
  /** Lifetime of an API token created without one, and the longest one may ask for (days). */
  apiTokenTtlDays: number;
  /** The audit chain's key file (default `<data>/audit.key`); keep it off the database's host so a database writer cannot re-sign the chain. */
  auditKeyFile: string;
  /** The browser door: apps are served at `<resource>.<appsDomain>` (default apps.localhost, which browsers resolve to loopback). */
  http: { appsDomain: string };
  /**
   * Data-path worker processes (src/dataplane) serving the doors that can run in them; 1 (the
   * default) serves every connection in the gateway's own process.
   */
  workers: number;
}

const Address = z.union([z.literal('off'), z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^:]+):\d{1,5}$/, 'use HOST:PORT')]);
const FileSchema = z.strictObject({
  data: z.string().optional(),
  certs: z.string().optional(),
  policies: z.string().optional(),
  listen: z.partialRecord(z.enum(ListenerNames as [ListenerName, ...ListenerName[]]), Address).optional(),
  hostnames: z.array(z.string()).optional(),
  webhooks: z.array(z.strictObject({ url: z.url(), secret: z.string().min(16), events: z.array(z.string()).optional() })).optional(),
  warnBeforeMinutes: z.number().int().min(0).max(1440).optional(),
  nodeName: z.string().optional(),
  allowPlaintextOnLoopback: z.boolean().optional(),
  store: z.string().regex(/^postgres(ql)?:\/\//, 'use a postgres:// connection string').optional(),
  auditKeyFile: z.string().min(1).optional(),
  apiTokenTtlDays: z.number().int().min(1).max(3650).optional(),
  workers: z.union([z.number().int().min(1).max(64), z.literal('auto')]).optional(),
  http: z
    .strictObject({
      appsDomain: z
        .string()
        .regex(/^(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/, 'use a DNS name such as apps.gw.example.com (one origin per app below it)'),
    })
    .optional(),
});

export interface ConfigInputs {
  configFile?: string;
  data?: string;
  policies?: string;
  /** `NAME=HOST:PORT` overrides. */
  listen?: string[];
  adminPasswordFile?: string;
  /** PostgreSQL connection string (overrides the config file's `store`). */
  store?: string;
  /** `--allow-plaintext-on-loopback`: overrides the config file's `allowPlaintextOnLoopback` when set. */
  allowPlaintextOnLoopback?: boolean;
  /** `--workers N|auto`: overrides the config file's `workers`. */
  workers?: string;
  cwd?: string;
}

export function parseAddress(text: string, field: string): ListenAddress {
  const m = /^(\[[0-9a-fA-F:]+\]|[^:]+):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new GatehouseError('CONFIG_INVALID', `${field}: '${text}' is not HOST:PORT (port 0 picks a free one)`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), port };
}

/** `auto` is one worker per core this process may use. */
function parseWorkers(v: number | string): number {
  if (v === 'auto') return availableParallelism();
  const n = typeof v === 'number' ? v : /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 64) throw new GatehouseError('CONFIG_INVALID', `--workers: '${v}' is not a number from 1 to 64 or auto`);
  return n;
}

/** Builds the gateway configuration: defaults, then the config file, then flags. Validated once here. */
export function loadConfig(inputs: ConfigInputs): GatewayConfig {
  const cwd = inputs.cwd ?? process.cwd();
  let file: z.infer<typeof FileSchema> = {};
  if (inputs.configFile) {
    const path = resolve(cwd, inputs.configFile);
    let raw: unknown;
    try {
      raw = parseYaml(readFileSync(path, 'utf8'));
    } catch (e) {
      throw new GatehouseError('CONFIG_INVALID', `${path}: ${(e as Error).message}`);
    }
    const r = FileSchema.safeParse(raw ?? {});
    if (!r.success) {
      const issue = r.error.issues[0]!;
      throw new GatehouseError('CONFIG_INVALID', `${path}: ${issue.path.join('.') || '(top)'}: ${issue.message}`);
    }
    file = r.data;
  }
  const dataDir = resolve(cwd, inputs.data ?? file.data ?? 'data');
  // Several gateways side by side each keep their certs in their own data dir.
  const certDir = resolve(cwd, file.certs ?? (inputs.data ? resolve(dataDir, 'certs') : 'certs'));
  const listen: Partial<Record<ListenerName, ListenAddress>> = { ...DEFAULT_LISTEN };
  for (const [name, value] of Object.entries(file.listen ?? {})) {
    if (value === 'off') delete listen[name as ListenerName];
    else if (value) listen[name as ListenerName] = parseAddress(value, `listen.${name}`);
  }
  for (const flag of inputs.listen ?? []) {
    const eq = flag.indexOf('=');
    const name = flag.slice(0, eq) as ListenerName;
    if (eq < 0 || !ListenerNames.includes(name)) {
      throw new GatehouseError('CONFIG_INVALID', `--listen ${flag}: use NAME=HOST:PORT with NAME one of ${ListenerNames.join(', ')}`);
    }
    const value = flag.slice(eq + 1);
    if (value === 'off') delete listen[name];
    else listen[name] = parseAddress(value, `--listen ${name}`);
  }
  const policiesDir = inputs.policies ?? file.policies ?? (existsSync(resolve(cwd, 'policies')) ? 'policies' : undefined);
  const cfg: GatewayConfig = {
    dataDir,
    certDir,
    listen,
    hostnames: file.hostnames ?? [],
    webhooks: file.webhooks ?? [],
    warnBeforeMinutes: file.warnBeforeMinutes ?? 5,
    nodeName: file.nodeName ?? hostname(),
    allowPlaintextOnLoopback: inputs.allowPlaintextOnLoopback ?? file.allowPlaintextOnLoopback ?? false,
    auditKeyFile: resolve(cwd, file.auditKeyFile ?? resolve(dataDir, 'audit.key')),
    apiTokenTtlDays: file.apiTokenTtlDays ?? 90,
    http: { appsDomain: file.http?.appsDomain ?? 'apps.localhost' },
    workers: parseWorkers(inputs.workers ?? file.workers ?? 1),
  };
  if (policiesDir) cfg.policiesDir = resolve(cwd, policiesDir);
  if (inputs.adminPasswordFile) cfg.adminPasswordFile = resolve(cwd, inputs.adminPasswordFile);
  const storeUrl = inputs.store ?? file.store;
  if (storeUrl !== undefined) {
    if (!/^postgres(ql)?:\/\//.test(storeUrl)) throw new GatehouseError('CONFIG_INVALID', `--store: '${storeUrl.replace(/:[^:@/]*@/, ':***@')}' is not a postgres:// connection string`);
    cfg.storeUrl = storeUrl;
  }
  return cfg;
}
