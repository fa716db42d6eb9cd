import { randomUUID } from 'node:crypto';
import { sealCredentials } from '../secrets/credentials.js';
import { teamMembers } from './access.js';
import { loadPolicies, resolvePolicyCredentials } from './policies.js';
const ACTOR = 'policy';
/**
 * Loads every policy file in `dir` and applies it: teams and their members, then resources
 * with their workflows and vaulted credentials. The whole directory is validated before
 * anything is written, so a bad file changes nothing.
 */
export async function applyPolicyDir(engine, dir) {
    const { store, clock } = engine.ctx;
    const users = await store.listUsers();
    const storeTeams = teamMembers(users);
    for (const t of await store.listTeams())
        if (!storeTeams.has(t.name))
            storeTeams.set(t.name, []);
    const set = await loadPolicies(dir, { teams: storeTeams });
    const result = { files: set.files, teams: set.teams.length, resources: set.resources.length, createdUsers: [], missingSecrets: {} };
    const ensureUser = async (name) => {
        if (await store.getUser(name))
            return;
        await engine.directory.addUser(ACTOR, { name });
        result.createdUsers.push(name);
    };
    for (const team of set.teams) {
        if (!(await store.getTeam(team.name)))
            await engine.directory.addTeam(ACTOR, team.name);
        for (const m of team.members) {
            await ensureUser(m);
            await engine.directory.addTeamMember(ACTOR, team.name, m);
        }
    }
    for (const { resource: def, credentials } of set.resources) {
        await ensureUser(def.owner);
        for (const p of def.access)
            if ('user' in p)
                await ensureUser(p.user);
        const before = await store.getResource(def.name);
        const next = { ...def, id: before?.id ?? randomUUID(), createdAt: before?.createdAt ?? clock.now() };
        if (before?.hostKeyPin && !next.hostKeyPin)
            next.hostKeyPin = before.hostKeyPin;
        if (credentials) {
            const resolved = await resolvePolicyCredentials(credentials);
            if (resolved.missing.length)
                result.missingSecrets[def.name] = resolved.missing;
            next.credentialsSealed = sealCredentials(engine.ctx.sealer, def.name, resolved.credentials);
        }
        else if (before?.credentialsSealed) {
            next.credentialsSealed = before.credentialsSealed;
        }
        await engine.directory.replaceResource(ACTOR, next);
    }
    return result;
}
//# sourceMappingURL=policy-sync.js.map