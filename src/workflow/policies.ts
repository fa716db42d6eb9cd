import { readdir, readFile, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Document } from 'yaml';
import type { z } from 'zod';
import { GatehouseError, ValidationError } from '../core/errors.js';
import type { Resource, TargetCredentials } from '../core/model.js';
import { validateJit } from './jit-settings.js';
import { PolicyFileSchema, type PolicyFile } from './policy-schema.js';
import { formatFieldPath, validateSettings } from './settings.js';

export { policyJsonSchema } from './policy-schema.js';

/**
 * Policies as code: every `*.yaml` / `*.yml` file in a directory (format: policies/README.md).
 * Loading is all or nothing: every file is parsed and validated, across files too (team
 * references, duplicate names), before anything is returned. The first problem rejects
 * the load with POLICY_INVALID, pointing at file, line and field.
 *
 * Secrets are never read here: a resource's credentials are references (an environment
 * variable, a file). resolvePolicyCredentials reads them when the caller applies the set,
 * and a missing one leaves the secret empty rather than failing the load.
 */

export interface PolicyCredentialsRef {
  login: string;
  passwordEnv?: string;
  /** Absolute: resolved against the policy file's directory. */
  passwordFile?: string;
  keyFile?: string;
}

export interface PolicyResource {
  resource: Omit<Resource, 'id' | 'createdAt' | 'credentialsSealed'>;
  credentials?: PolicyCredentialsRef;
}

export interface PolicySet {
  teams: Array<{ name: string; members: string[] }>;
  resources: PolicyResource[];
  files: string[];
}

export interface LoadPoliciesOptions {
  /** Teams defined outside policy files (e.g. in the store), name → members. */
  teams?: Map<string, string[]>;
}

interface ParsedFile {
  file: string;
  doc: Document;
  lines: LineCounter;
  data: PolicyFile;
}

export async function loadPolicies(dir: string, options: LoadPoliciesOptions = {}): Promise<PolicySet> {
  const files = await listPolicyFiles(dir);
  const parsed: ParsedFile[] = [];
  for (const file of files) parsed.push(parseFile(file, await readFile(file, 'utf8')));

  const teams = new Map(options.teams);
  const seenTeams = new Map<string, string>();
  const outTeams: PolicySet['teams'] = [];
  for (const pf of parsed) {
    pf.data.teams.forEach((t, i) => {
      const at = ['teams', i, 'name'];
      const before = seenTeams.get(t.name);
      if (before) throw policyError(pf, at, `team '${t.name}' is already defined at ${before}`);
      seenTeams.set(t.name, `${pf.file}:${lineOf(pf, at)}`);
      const members = [...new Set(t.members)];
      teams.set(t.name, members);
      outTeams.push({ name: t.name, members });
    });
  }

  const seenResources = new Map<string, string>();
  const outResources: PolicyResource[] = [];
  for (const pf of parsed) {
    pf.data.resources.forEach((r, i) => {
      const before = seenResources.get(r.name);
      if (before) throw policyError(pf, ['resources', i, 'name'], `resource '${r.name}' is already defined at ${before}`);
      seenResources.set(r.name, `${pf.file}:${lineOf(pf, ['resources', i, 'name'])}`);
      outResources.push(toPolicyResource(pf, i, teams));
    });
  }
  return { teams: outTeams, resources: outResources, files };
}

async function listPolicyFiles(dir: string): Promise<string[]> {
  let names: string[];
  try {
    if ((await stat(dir)).isFile()) return [dir];
    names = await readdir(dir);
  } catch (e) {
    throw new GatehouseError('POLICY_INVALID', `${dir}: cannot read policies (${(e as Error).message})`, { file: dir });
  }
  return names
    .filter((n) => /\.ya?ml$/i.test(n))
    .sort()
    .map((n) => join(dir, n));
}

function parseFile(file: string, text: string): ParsedFile {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: true, uniqueKeys: true });
  const syntax = doc.errors[0];
  if (syntax) {
    const line = syntax.linePos?.[0].line ?? 1;
    const what = (syntax.message.split('\n')[0] ?? '').replace(/ at line \d+, column \d+:?$/, '');
    throw new GatehouseError('POLICY_INVALID', `${file}:${line}: ${what}`, { file, line, field: '' });
  }
  const result = PolicyFileSchema.safeParse(doc.toJS() ?? {});
  const shell = { file, doc, lines };
  if (result.success) return { ...shell, data: result.data };
  // Report the issue that comes first in the file, as a reader would meet it.
  const located = result.error.issues.map((issue) => {
    const path = issuePath(issue);
    return { path, message: issue.code === 'unrecognized_keys' ? 'unknown key' : issue.message, line: lineOf(shell, path) };
  });
  located.sort((a, b) => a.line - b.line);
  const first = located[0];
  if (!first) throw policyError(shell, [], 'is invalid');
  throw policyError(shell, first.path, first.message);
}

function issuePath(issue: z.core.$ZodIssue): PropertyKey[] {
  const path: PropertyKey[] = [...issue.path];
  if (issue.code === 'unrecognized_keys' && issue.keys[0] !== undefined) path.push(issue.keys[0]);
  return path;
}

function toPolicyResource(pf: ParsedFile, i: number, teams: Map<string, string[]>): PolicyResource {
  const r = pf.data.resources[i]!;
  const at = ['resources', i];
  r.access.forEach((p, j) => {
    if ('team' in p && !teams.has(p.team)) {
      throw policyError(pf, [...at, 'access', j], `team '${p.team}' is not defined in any policy file`);
    }
  });
  let settings;
  try {
    settings = validateSettings(r.workflow, { owner: r.owner, access: r.access, teams });
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    const path = filePathOfSettingsField(e.field);
    throw policyError(pf, [...at, 'workflow', ...path], e.message.slice(e.field.length + 2));
  }
  let jit;
  try {
    jit = validateJit(r.jit, r.protocol);
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    const path = e.field === 'jit' ? [] : filePathOfSettingsField(e.field);
    throw policyError(pf, [...at, 'jit', ...path], e.message.slice(e.field.length + 2));
  }
  const resource: PolicyResource['resource'] = {
    name: r.name,
    type: r.type,
    protocol: r.protocol,
    host: r.host,
    port: r.port,
    owner: r.owner,
    access: r.access,
    settings,
    options: r.options,
    source: pf.file,
  };
  if (r.database !== undefined) resource.database = r.database;
  if (r.hostKeyPin !== undefined) resource.hostKeyPin = r.hostKeyPin;
  if (jit) resource.jit = jit;
  const out: PolicyResource = { resource };
  if (r.credentials) {
    const c = r.credentials;
    const base = dirname(pf.file);
    out.credentials = { login: c.login };
    if (c.passwordEnv !== undefined) out.credentials.passwordEnv = c.passwordEnv;
    if (c.passwordFile !== undefined) out.credentials.passwordFile = resolve(base, c.passwordFile);
    if (c.keyFile !== undefined) out.credentials.keyFile = resolve(base, c.keyFile);
  }
  return out;
}

/** `limitAccessTime.maxDurationMinutes` is written `maxDuration` in files; other fields match. */
function filePathOfSettingsField(field: string): PropertyKey[] {
  const path: PropertyKey[] = [];
  for (const m of field.matchAll(/([^.[\]]+)|\[(\d+)\]/g)) path.push(m[2] !== undefined ? Number(m[2]) : m[1]!);
  if (path[0] === 'limitAccessTime' && path[1] === 'maxDurationMinutes') path[1] = 'maxDuration';
  return path;
}

function policyError(pf: Pick<ParsedFile, 'file' | 'doc' | 'lines'>, path: PropertyKey[], message: string): GatehouseError {
  const line = lineOf(pf, path);
  const field = formatFieldPath(path);
  const text = field ? `${pf.file}:${line}: ${field}: ${message}` : `${pf.file}:${line}: ${message}`;
  return new GatehouseError('POLICY_INVALID', text, { file: pf.file, line, field });
}

/**
 * The 1-based line of the deepest node on `path` that exists in the document: a map entry
 * is located by its key (so a nested block points at `requireApproval:`, not the line
 * below), a sequence item by its first character. A missing field points at its parent.
 */
function lineOf(pf: Pick<ParsedFile, 'doc' | 'lines'>, path: readonly PropertyKey[]): number {
  let node: unknown = pf.doc.contents;
  let offset = (node as { range?: [number, number, number] } | null)?.range?.[0] ?? 0;
  for (const seg of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      offset = (isScalar(pair.key) ? pair.key.range?.[0] : undefined) ?? offset;
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item = node.items[seg] as { range?: [number, number, number] } | undefined;
      if (!item) break;
      offset = item.range?.[0] ?? offset;
      node = item;
    } else {
      break;
    }
  }
  return pf.lines.linePos(offset).line;
}

export interface ResolvedCredentials {
  credentials: TargetCredentials;
  /** References that could not be read, e.g. `env PROD_PG_PASSWORD` or `file /etc/gh/key`. */
  missing: string[];
}

/** Reads the secrets a policy resource refers to; what is missing stays empty and is listed. */
export async function resolvePolicyCredentials(
  ref: PolicyCredentialsRef,
  io: { env?: NodeJS.ProcessEnv; readFile?: (path: string) => Promise<string> } = {},
): Promise<ResolvedCredentials> {
  const env = io.env ?? process.env;
  const read = io.readFile ?? ((p: string) => readFile(p, 'utf8'));
  const credentials: TargetCredentials = { login: ref.login };
  const missing: string[] = [];
  if (ref.passwordEnv !== undefined) {
    const v = env[ref.passwordEnv];
    if (v) credentials.password = v;
    else missing.push(`env ${ref.passwordEnv}`);
  }
  const fromFile = async (path: string): Promise<string | undefined> => {
    try {
      return await read(path);
    } catch {
      missing.push(`file ${path}`);
      return undefined;
    }
  };
  if (ref.passwordFile !== undefined) {
    const v = await fromFile(ref.passwordFile);
    // A trailing newline is an editor artefact, never part of the password.
    if (v !== undefined) credentials.password = v.replace(/\r?\n$/, '');
  }
  if (ref.keyFile !== undefined) {
    const v = await fromFile(ref.keyFile);
    if (v !== undefined) credentials.privateKey = v;
  }
  return { credentials, missing };
}
