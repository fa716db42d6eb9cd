/** The exact client command a user runs to reach a resource through the gateway. */
export function clientCommand(d, user, r, ticket) {
    const id = `${user}:${r.name}`;
    const l = d.listeners;
    switch (r.protocol) {
        case 'ssh':
            return `ssh -p ${l.ssh?.port ?? 2222} ${id}@${l.ssh?.host ?? '127.0.0.1'}`;
        case 'postgres': {
            const tls = d.caPath ? ` sslmode=verify-full sslrootcert=${d.caPath}` : ' sslmode=require';
            return `PGPASSWORD='${ticket}' psql "host=${l.postgres?.host === '127.0.0.1' ? 'localhost' : (l.postgres?.host ?? 'localhost')} port=${l.postgres?.port ?? 15432} user=${id} dbname=${r.database ?? r.name}${tls}"`;
        }
        case 'mysql':
            return `mysql -h ${l.mysql?.host ?? '127.0.0.1'} -P ${l.mysql?.port ?? 13306} -u ${id} --password='${ticket}'${d.caPath ? ` --ssl-ca=${d.caPath}` : ''}`;
        case 'ldap':
            return `ldapsearch -H ldap://${l.ldap?.host ?? '127.0.0.1'}:${l.ldap?.port ?? 13389} -D '${id}' -w '${ticket}'`;
        case 'http':
            return `https://${l.http?.host ?? '127.0.0.1'}:${l.http?.port ?? 8443}/r/${r.name}/`;
        case 'rdp':
        case 'tcp':
            return `gatehouse tunnel ${r.name} --port ${r.port}`;
        default: {
            const never = r.protocol;
            return String(never);
        }
    }
}
//# sourceMappingURL=launch.js.map