import { randomUUID } from 'node:crypto';
import { resolve, sep } from 'node:path';
import type { Resource, TargetCredentials } from '../core/model.js';
import { canonicalJson } from '../audit/audit-log.js';
import { openCredentials, sealCredentials } from '../secrets/credentials.js';
import { teamMembers } from './access.js';
import type { Engine } from './engine.js';
import { loadPolicies, resolvePolicyCredentials } from './policies.js';

export interface PolicySyncResult {
  files: string[];
  teams: number;
  resources: number;
  /** Users named in policies that did not exist; created without a password (an admin sets one). */
  createdUsers: string[];
  /** Secrets a policy refers to that could not be read (resource → references). */
  missingSecrets: Record<string, string[]>;
  /** Resources that came from a file in this directory and are no longer defined there. */
  removed: string[];
}

const ACTOR = 'policy';

function sameCredentials(engine: Engine, resource: string, sealed: string, creds: TargetCredentials): boolean {
  try {
    return JSON.stringify(openCredentials(engine.ctx.sealer, resource, sealed)) === JSON.stringify(creds);
  } catch {
    return false;
  }
}

/**
 * Loads every policy file in `dir` and applies it: teams and their members, then resources
 * with their workflows and vaulted credentials. The whole directory is validated before
 * anything is written, so a bad file changes nothing. Resources that a file in `dir` once
 * defined and no longer does are removed.
 */
export async function applyPolicyDir(engine: Engine, dir: string): Promise<PolicySyncResult> {
  const { store, clock } = engine.ctx;
  const users = await store.listUsers();
  const storeTeams = teamMembers(users);
  for (const t of await store.listTeams()) if (!storeTeams.has(t.name)) storeTeams.set(t.name, []);
  const set = await loadPolicies(dir, { teams: storeTeams });
  const result: PolicySyncResult = { files: set.files, teams: set.teams.length, resources: set.resources.length, createdUsers: [], missingSecrets: {}, removed: [] };

  const ensureUser = async (name: string): Promise<void> => {
    if (await store.getUser(name)) return;
    await engine.directory.addUser(ACTOR, { name });
    result.createdUsers.push(name);
  };
  for (const team of set.teams) {
    if (!(await store.getTeam(team.name))) await engine.directory.addTeam(ACTOR, team.name);
    for (const m of team.members) {
      await ensureUser(m);
      await engine.directory.addTeamMember(ACTOR, team.name, m);
    }
  }
  for (const { resource: def, credentials } of set.resources) {
    await ensureUser(def.owner);
    for (const p of def.access) if ('user' in p) await ensureUser(p.user);
    const before = await store.getResource(def.name);
    const next: Resource = { ...def, id: before?.id ?? randomUUID(), createdAt: before?.createdAt ?? clock.now() };
    if (before?.hostKeyPin && !next.hostKeyPin) next.hostKeyPin = before.hostKeyPin;
    if (credentials) {
      const resolved = await resolvePolicyCredentials(credentials);
      if (resolved.missing.length) result.missingSecrets[def.name] = resolved.missing;
      // Sealing is randomised: keep the stored blob when the secret itself did not change.
      const same = before?.credentialsSealed && sameCredentials(engine, def.name, before.credentialsSealed, resolved.credentials);
      next.credentialsSealed = same ? before.credentialsSealed! : sealCredentials(engine.ctx.sealer, def.name, resolved.credentials);
    } else if (before?.credentialsSealed) {
      next.credentialsSealed = before.credentialsSealed;
    }
    if (before && canonicalJson(before) === canonicalJson(next)) continue;
    await engine.directory.replaceResource(ACTOR, next);
    // As when set through the API: who changed which account sessions log in upstream as.
    if (canonicalJson(before?.jit ?? null) !== canonicalJson(next.jit ?? null)) {
      await engine.ctx.audit.record(ACTOR, 'resource.jit', def.name, { jit: next.jit ?? null, source: def.source });
    }
  }
  // Policies are the source of truth for what they define: a resource deleted from its file
  // goes away (and its live sessions end). Resources made through the API are not touched.
  const defined = new Set(set.resources.map((r) => r.resource.name));
  const inDir = resolve(dir) + sep;
  for (const r of await store.listResources()) {
    if (r.source.startsWith(inDir) && !defined.has(r.name)) {
      await engine.directory.deleteResource(ACTOR, r.name);
      result.removed.push(r.name);
    }
  }
  return result;
}
