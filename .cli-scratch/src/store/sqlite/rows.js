const iso = (d) => d.toISOString();
const isoOrNull = (d) => (d ? d.toISOString() : null);
const bit = (b) => (b ? 1 : 0);
const json = (v) => JSON.stringify(v);
function str(v) {
    if (typeof v !== 'string')
        throw new TypeError(`expected text, got ${typeof v}`);
    return v;
}
const num = (v) => Number(v);
const bool = (v) => v === 1;
const date = (v) => new Date(str(v));
const optStr = (v) => (v === null || v === undefined ? undefined : str(v));
const optDate = (v) => (v === null || v === undefined ? undefined : date(v));
const parse = (v) => JSON.parse(str(v));
/** Drops keys whose value is undefined, so optional fields read back absent, not present-but-undefined. */
function compact(record) {
    for (const key of Object.keys(record)) {
        if (record[key] === undefined)
            delete record[key];
    }
    return record;
}
export function userToRow(u) {
    return {
        name: u.name,
        id: u.id,
        admin: bit(u.admin),
        disabled: bit(u.disabled),
        teams: json(u.teams),
        password_hash: u.passwordHash ?? null,
        totp_secret_sealed: u.totpSecretSealed ?? null,
        totp_confirmed: bit(u.totpConfirmed),
        ssh_keys: json(u.sshKeys),
        created_at: iso(u.createdAt),
    };
}
export function userFromRow(r) {
    return compact({
        id: str(r.id),
        name: str(r.name),
        admin: bool(r.admin),
        disabled: bool(r.disabled),
        teams: parse(r.teams),
        passwordHash: optStr(r.password_hash),
        totpSecretSealed: optStr(r.totp_secret_sealed),
        totpConfirmed: bool(r.totp_confirmed),
        sshKeys: parse(r.ssh_keys),
        createdAt: date(r.created_at),
    });
}
export function teamToRow(t) {
    return { name: t.name, created_at: iso(t.createdAt) };
}
export function teamFromRow(r) {
    return { name: str(r.name), createdAt: date(r.created_at) };
}
export function roleToRow(role) {
    return { name: role.name, enforcements: json(role.enforcements), members: json(role.members) };
}
export function roleFromRow(r) {
    return {
        name: str(r.name),
        enforcements: parse(r.enforcements),
        members: parse(r.members),
    };
}
export function resourceToRow(res) {
    return {
        name: res.name,
        id: res.id,
        type: res.type,
        protocol: res.protocol,
        host: res.host,
        port: res.port,
        database: res.database ?? null,
        owner: res.owner,
        access: json(res.access),
        credentials_sealed: res.credentialsSealed ?? null,
        settings: json(res.settings),
        options: json(res.options),
        host_key_pin: res.hostKeyPin ?? null,
        source: res.source,
        created_at: iso(res.createdAt),
    };
}
export function resourceFromRow(r) {
    return compact({
        id: str(r.id),
        name: str(r.name),
        type: str(r.type),
        protocol: str(r.protocol),
        host: str(r.host),
        port: num(r.port),
        database: optStr(r.database),
        owner: str(r.owner),
        access: parse(r.access),
        credentialsSealed: optStr(r.credentials_sealed),
        settings: parse(r.settings),
        options: parse(r.options),
        hostKeyPin: optStr(r.host_key_pin),
        source: str(r.source),
        createdAt: date(r.created_at),
    });
}
export function requestToRow(q) {
    return {
        id: q.id,
        resource: q.resource,
        requester: q.requester,
        reason: q.reason ?? null,
        ticket: q.ticket ?? null,
        state: q.state,
        stage: q.stage,
        reviews: json(q.reviews),
        created_at: iso(q.createdAt),
        pending_until: iso(q.pendingUntil),
        decided_at: isoOrNull(q.decidedAt),
        grant_start: isoOrNull(q.grantStart),
        grant_end: isoOrNull(q.grantEnd),
        use_by: isoOrNull(q.useBy),
        last_reminded_at: isoOrNull(q.lastRemindedAt),
        escalated_at: isoOrNull(q.escalatedAt),
        ended_at: isoOrNull(q.endedAt),
        end_reason: q.endReason ?? null,
        version: q.version,
    };
}
export function requestFromRow(r) {
    const reviews = parse(r.reviews).map((rv) => ({ ...rv, at: new Date(rv.at) }));
    return compact({
        id: str(r.id),
        resource: str(r.resource),
        requester: str(r.requester),
        reason: optStr(r.reason),
        ticket: optStr(r.ticket),
        state: str(r.state),
        stage: num(r.stage),
        reviews,
        createdAt: date(r.created_at),
        pendingUntil: date(r.pending_until),
        decidedAt: optDate(r.decided_at),
        grantStart: optDate(r.grant_start),
        grantEnd: optDate(r.grant_end),
        useBy: optDate(r.use_by),
        lastRemindedAt: optDate(r.last_reminded_at),
        escalatedAt: optDate(r.escalated_at),
        endedAt: optDate(r.ended_at),
        endReason: optStr(r.end_reason),
        version: num(r.version),
    });
}
export function leaseToRow(l) {
    return {
        id: l.id,
        resource: l.resource,
        holder: l.holder,
        state: l.state,
        request_id: l.requestId ?? null,
        started_at: iso(l.startedAt),
        expires_at: iso(l.expiresAt),
        ended_at: isoOrNull(l.endedAt),
        ended_by: l.endedBy ?? null,
        end_reason: l.endReason ?? null,
    };
}
export function leaseFromRow(r) {
    return compact({
        id: str(r.id),
        resource: str(r.resource),
        holder: str(r.holder),
        state: str(r.state),
        requestId: optStr(r.request_id),
        startedAt: date(r.started_at),
        expiresAt: date(r.expires_at),
        endedAt: optDate(r.ended_at),
        endedBy: optStr(r.ended_by),
        endReason: optStr(r.end_reason),
    });
}
export function delegationToRow(d) {
    return {
        id: d.id,
        from_user: d.from,
        to_user: d.to,
        resource: d.resource ?? null,
        start_at: iso(d.start),
        end_at: iso(d.end),
    };
}
export function delegationFromRow(r) {
    return compact({
        id: str(r.id),
        from: str(r.from_user),
        to: str(r.to_user),
        resource: optStr(r.resource),
        start: date(r.start_at),
        end: date(r.end_at),
    });
}
export function ticketToRow(t) {
    return {
        hash: t.hash,
        user: t.user,
        resource: t.resource,
        mfa: bit(t.mfa),
        created_at: iso(t.createdAt),
        expires_at: iso(t.expiresAt),
        used_at: isoOrNull(t.usedAt),
    };
}
export function ticketFromRow(r) {
    return compact({
        hash: str(r.hash),
        user: str(r.user),
        resource: str(r.resource),
        mfa: bool(r.mfa),
        createdAt: date(r.created_at),
        expiresAt: date(r.expires_at),
        usedAt: optDate(r.used_at),
    });
}
export function tokenToRow(t) {
    return {
        id: t.id,
        user: t.user,
        hash: t.hash,
        kind: t.kind,
        label: t.label ?? null,
        created_at: iso(t.createdAt),
        expires_at: isoOrNull(t.expiresAt),
    };
}
export function tokenFromRow(r) {
    return compact({
        id: str(r.id),
        user: str(r.user),
        hash: str(r.hash),
        kind: str(r.kind),
        label: optStr(r.label),
        createdAt: date(r.created_at),
        expiresAt: optDate(r.expires_at),
    });
}
export function sessionToRow(s) {
    return {
        id: s.id,
        user: s.user,
        resource: s.resource,
        protocol: s.protocol,
        state: s.state,
        client: s.client,
        started_at: iso(s.startedAt),
        deadline: isoOrNull(s.deadline),
        ended_at: isoOrNull(s.endedAt),
        end_reason: s.endReason ?? null,
        end_message: s.endMessage ?? null,
        bytes_in: s.bytesIn,
        bytes_out: s.bytesOut,
        node: s.node,
    };
}
export function sessionFromRow(r) {
    return compact({
        id: str(r.id),
        user: str(r.user),
        resource: str(r.resource),
        protocol: str(r.protocol),
        state: str(r.state),
        client: str(r.client),
        startedAt: date(r.started_at),
        deadline: optDate(r.deadline),
        endedAt: optDate(r.ended_at),
        endReason: optStr(r.end_reason),
        endMessage: optStr(r.end_message),
        bytesIn: num(r.bytes_in),
        bytesOut: num(r.bytes_out),
        node: str(r.node),
    });
}
export function auditToRow(e) {
    return {
        seq: e.seq,
        at: iso(e.at),
        actor: e.actor,
        action: e.action,
        subject: e.subject,
        data: json(e.data),
        prev: e.prev,
        mac: e.mac,
    };
}
export function auditFromRow(r) {
    return {
        seq: num(r.seq),
        at: date(r.at),
        actor: str(r.actor),
        action: str(r.action),
        subject: str(r.subject),
        data: parse(r.data),
        prev: str(r.prev),
        mac: str(r.mac),
    };
}
//# sourceMappingURL=rows.js.map