/** Team name → member user names, derived from the users' own team lists. */
export function teamMembers(users) {
    const map = new Map();
    for (const u of users) {
        for (const t of u.teams) {
            const list = map.get(t) ?? [];
            list.push(u.name);
            map.set(t, list);
        }
    }
    return map;
}
/** Expands principals into user names. */
export function expandPrincipals(principals, teams) {
    const out = new Set();
    for (const p of principals) {
        if ('user' in p)
            out.add(p.user);
        else
            for (const m of teams.get(p.team) ?? [])
                out.add(m);
    }
    return out;
}
/** The owner and everyone on the access list (directly or through a team) may use a resource. */
export function isOnAccessList(user, resource) {
    if (user.name === resource.owner)
        return true;
    return resource.access.some((p) => ('user' in p ? p.user === user.name : user.teams.includes(p.team)));
}
export function principalLabel(p) {
    return 'user' in p ? p.user : `team:${p.team}`;
}
export function parsePrincipal(text) {
    return text.startsWith('team:') ? { team: text.slice(5) } : { user: text };
}
//# sourceMappingURL=access.js.map