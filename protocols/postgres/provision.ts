/**
 * Ephemeral roles and elevation on a PostgreSQL target (the door's Provisioner, see
 * src/broker/provisioner.ts). Everything runs as the resource's vaulted login over a
 * connection made exactly as a session's (TLS, the target's identity, SCRAM). README.md
 * beside this file lists the rights the vaulted login needs.
 *
 * The marker is membership of the NOLOGIN group role `gatehouse_ephemeral` (granted without
 * ADMIN OPTION): a role without it is never altered, ended or dropped here.
 */
import { createHash, createHmac, pbkdf2, randomBytes } from 'node:crypto';
import type { Clock } from '../../src/core/clock.js';
import type { JitSettings, Resource, TargetCredentials } from '../../src/core/model.js';
import { JitError, type AccountOwner, type AccountSpec, type JitTarget, type Provisioner, type RemoveResult } from '../../src/broker/provisioner.js';
import { UpstreamError } from '../../src/broker/upstream-error.js';
import { AdminConnection, ident, literal, PgLinkError, PgServerError } from './admin-query.js';
import type { UpstreamTarget } from './upstream.js';

export const MARKER_ROLE = 'gatehouse_ephemeral';
export const DEFAULT_INHERITOR = 'gatehouse_inheritor';
/** The names the manager gives (`[a-z0-9_]`); anything else was not made by Gatehouse. */
const ACCOUNT_NAME = /^[a-z_][a-z0-9_]{0,62}$/;
/** How long `remove` and `unelevate` keep ending sessions before they report back and are retried. */
const END_SESSIONS_MS = 10_000;
const END_SESSIONS_POLL_MS = 5;
const SCRAM_ITERATIONS = 4096;
/**
 * How long an admin connection stays open after a step, for the next one on the same target
 * (one per target, database and login): a PostgreSQL login with TLS and SCRAM is most of what
 * making an account costs, and grants tend to come together. Never longer than this.
 */
const IDLE_ADMIN_MS = 30_000;

export interface PostgresProvisionerDeps {
  /** How the door reaches a resource's target (the adapter's upstreamFor: TLS and identity policy). */
  target(resource: Resource): UpstreamTarget;
  /** The gateway's clock: the grant's deadline is measured on it. */
  clock: Clock;
}

/** One statement of a query, with what the vaulted login needs for it (for the refusal's sentence). */
interface Step {
  sql: string;
  right: string;
  what: string;
  /** A RAISE in this step means the settings do not fit the target (its message says why). */
  invalid?: true;
}

export class PostgresProvisioner implements Provisioner {
  readonly protocol = 'postgres' as const;
  readonly nameLimit = 63;

  /** At most one parked admin connection per target, database and login (see IDLE_ADMIN_MS). */
  private readonly idle = new Map<string, { conn: AdminConnection; timer: NodeJS.Timeout }>();
  private readonly keyOf = new WeakMap<AdminConnection, string>();

  constructor(private readonly deps: PostgresProvisionerDeps) {}

  check(jit: JitSettings): string[] {
    const out: string[] = [];
    const e = jit.ephemeral;
    if (e?.sudo !== undefined) out.push('ephemeral.sudo applies to Linux machines, not PostgreSQL');
    if (e?.ou !== undefined) out.push('ephemeral.ou applies to LDAP directories, not PostgreSQL');
    if (e?.maxConnections !== undefined) out.push('ephemeral.maxConnections applies to MySQL/MariaDB, not PostgreSQL');
    const inheritor = e?.inheritor ?? DEFAULT_INHERITOR;
    if (e && inheritor === MARKER_ROLE) out.push(`ephemeral.inheritor cannot be ${MARKER_ROLE}, the role that marks temporary accounts`);
    // The inheritor owns what earlier temporary accounts made: granting it would hand that over.
    if (e?.grants.includes(inheritor)) out.push(`ephemeral.grants cannot include ${inheritor}: it owns what earlier temporary accounts created`);
    for (const [field, grants] of [['ephemeral.grants', e?.grants], ['elevate.grants', jit.elevate?.grants]] as const) {
      if (grants?.includes(MARKER_ROLE)) out.push(`${field} cannot include ${MARKER_ROLE}: a member of it is a temporary account to Gatehouse`);
    }
    return out;
  }

  async create(t: JitTarget, spec: AccountSpec): Promise<TargetCredentials> {
    const problems = this.check(t.jit);
    if (problems.length > 0) throw new JitError('invalid', `${t.resource.name}: ${problems.join('; ')}`);
    if (!ACCOUNT_NAME.test(spec.name) || Buffer.byteLength(spec.name) > this.nameLimit) throw new JitError('invalid', `'${spec.name}' is not a name Gatehouse gives temporary PostgreSQL roles`);
    const password = randomBytes(24).toString('base64url');
    const [conn, verifier] = await Promise.all([this.open(t), scramVerifier(password)]);
    try {
      const name = ident(spec.name);
      const inheritor = t.jit.ephemeral?.inheritor ?? DEFAULT_INHERITOR;
      const v16 = conn.major >= 16;
      const grantRight = (role: string): string => (v16 ? `the ADMIN OPTION on role ${role}` : `the right to grant role ${role} (CREATEROLE; superuser for a superuser role)`);
      // VALID UNTIL on the target's own clock: the grant's remaining time added to its now(),
      // so a gateway whose clock differs from the target's still gives exactly that time.
      let validUntil = '';
      if (spec.deadline) {
        const remaining = spec.deadline.getTime() - this.deps.clock.now().getTime();
        const now = await this.run(t, conn, [{ sql: 'SELECT extract(epoch FROM statement_timestamp())::text', right: 'a login', what: "reading the target's clock" }]);
        validUntil = ` VALID UNTIL ${literal(new Date(Number(now.rows[0]?.[0]) * 1000 + remaining).toISOString())}`;
      }
      const steps: Step[] = [
        { sql: ensureRole(MARKER_ROLE), right: 'CREATEROLE', what: `creating the marker role ${MARKER_ROLE}` },
        { sql: ensureRole(inheritor), right: 'CREATEROLE', what: `creating the inheritor role ${inheritor}` },
        { sql: doBlock(lowPrivilege(inheritor)), right: 'a login', what: `checking the inheritor ${inheritor}`, invalid: true },
        { sql: `CREATE ROLE ${name} LOGIN PASSWORD ${literal(verifier)}${validUntil}`, right: 'CREATEROLE', what: `creating the role ${spec.name}` },
        { sql: `GRANT ${ident(MARKER_ROLE)} TO ${name}`, right: grantRight(MARKER_ROLE), what: `marking ${spec.name} as temporary` },
        ...(t.jit.ephemeral?.grants ?? []).map((g) => ({ sql: `GRANT ${ident(g)} TO ${name}`, right: grantRight(g), what: `granting ${g} to ${spec.name}` })),
        { sql: `COMMENT ON ROLE ${name} IS ${literal(spec.note)}`, right: v16 ? `the ADMIN OPTION on role ${spec.name}` : 'CREATEROLE', what: `recording the owner on ${spec.name}` },
      ];
      if (!conn.superuser) {
        // REASSIGN OWNED and DROP OWNED at removal need the privileges of both roles; holding
        // them from the start means an account that could not be removed is never made.
        steps.push(
          { sql: `GRANT ${name} TO CURRENT_USER`, right: v16 ? `the ADMIN OPTION on role ${spec.name}` : 'CREATEROLE', what: `making ${t.admin.login} a member of ${spec.name}` },
          { sql: `GRANT ${ident(inheritor)} TO CURRENT_USER`, right: grantRight(inheritor), what: `making ${t.admin.login} a member of ${inheritor}` },
        );
      }
      // One Query message: one implicit transaction, so a refusal at any step leaves nothing.
      await this.run(t, conn, steps);
      return { login: spec.name, password };
    } finally {
      this.release(conn);
    }
  }

  async remove(t: JitTarget, name: string): Promise<RemoveResult> {
    if (!ACCOUNT_NAME.test(name)) return { done: true, detail: `'${name}' is not a name Gatehouse gives; nothing on ${t.resource.name} was touched` };
    const conn = await this.open(t);
    try {
      const found = await this.run(t, conn, [{ sql: inspect(name), right: 'a login', what: `looking up ${name}` }]);
      const row = found.rows[0];
      if (!row) return { done: true, detail: `no role ${name} on ${t.resource.name}` };
      const [oid, marked] = row;
      if (marked !== 't') return { done: true, detail: `the role ${name} on ${t.resource.name} is not a member of ${MARKER_ROLE}: Gatehouse did not make it and left it alone` };
      const role = ident(name);
      const inheritor = t.jit.ephemeral?.inheritor ?? DEFAULT_INHERITOR;
      const v16 = conn.major >= 16;
      // Every change below runs in one transaction behind this check: the role of that name is
      // still the one looked up (same oid) and still marked, else nothing of it is touched.
      const guard: Step = { sql: doBlock(guardBody(name, Number(oid))), right: 'a login', what: `checking the marker of ${name}` };
      const lost = (e: unknown): RemoveResult | undefined => {
        const pe = e instanceof JitError && e.cause instanceof PgServerError ? e.cause : undefined;
        if (pe?.sqlstate !== 'P0001' || pe.statement !== 0) return undefined;
        if (pe.message === GUARD_GONE) return { done: true, detail: `no role ${name} on ${t.resource.name}` };
        return { done: true, detail: `the role ${name} on ${t.resource.name} lost its ${MARKER_ROLE} membership (or was replaced) during removal; left alone` };
      };
      try {
        await this.run(t, conn, [
          guard,
          { sql: `ALTER ROLE ${role} NOLOGIN`, right: v16 ? `the ADMIN OPTION on role ${name}` : 'CREATEROLE', what: `locking ${name}` },
          { sql: ensureRole(inheritor), right: 'CREATEROLE', what: `creating the inheritor role ${inheritor}` },
          ...(conn.superuser ? [] : [
            { sql: `GRANT ${role} TO CURRENT_USER`, right: v16 ? `the ADMIN OPTION on role ${name}` : 'CREATEROLE', what: `making ${t.admin.login} a member of ${name}` },
            { sql: `GRANT ${ident(inheritor)} TO CURRENT_USER`, right: v16 ? `the ADMIN OPTION on role ${inheritor}` : 'CREATEROLE', what: `making ${t.admin.login} a member of ${inheritor}` },
          ]),
        ]);
        const left = await this.endSessions(t, conn, `usesysid = ${Number(oid)} AND ${markedSql(String(Number(oid)))}`, `membership in ${name} or pg_signal_backend`);
        if (left > 0) return { done: false, detail: `${left} session(s) of ${name} on ${t.resource.name} did not end within ${END_SESSIONS_MS} ms; it is locked (NOLOGIN) and will be removed on the next attempt` };
        const notes = await this.dropOwned(t, conn, name, Number(oid), inheritor, guard);
        try {
          // The marker once more, in the same transaction as the drop.
          await this.run(t, conn, [guard, { sql: `DROP ROLE ${role}`, right: v16 ? `CREATEROLE and the ADMIN OPTION on role ${name}` : 'CREATEROLE', what: `dropping ${name}` }]);
        } catch (e) {
          if (e instanceof JitError && e.cause instanceof PgServerError && e.cause.sqlstate === '2BP01') {
            const pe = e.cause;
            return { done: false, detail: [`${name} on ${t.resource.name} is locked (NOLOGIN) but not dropped: ${pe.message}`, pe.detail, ...notes].filter(Boolean).join('; ') };
          }
          throw e;
        }
        return notes.length > 0 ? { done: true, detail: notes.join('; ') } : { done: true };
      } catch (e) {
        const r = lost(e);
        if (r) return r;
        throw e;
      }
    } finally {
      this.release(conn);
    }
  }

  async elevate(t: JitTarget, _owner: AccountOwner): Promise<void> {
    const grants = t.jit.elevate?.grants ?? [];
    if (grants.length === 0) return;
    const problems = this.check(t.jit);
    if (problems.length > 0) throw new JitError('invalid', `${t.resource.name}: ${problems.join('; ')}`);
    const conn = await this.open(t);
    try {
      const v16 = conn.major >= 16;
      await this.run(t, conn, grants.map((g) => ({
        sql: `GRANT ${ident(g)} TO CURRENT_USER`,
        right: v16 ? `the ADMIN OPTION on role ${g}` : `the right to grant role ${g} (CREATEROLE; superuser for a superuser role)`,
        what: `granting ${g} to ${t.admin.login}`,
      })));
    } finally {
      this.release(conn);
    }
  }

  async unelevate(t: JitTarget): Promise<RemoveResult> {
    const grants = t.jit.elevate?.grants ?? [];
    if (grants.length === 0) return { done: true };
    const conn = await this.open(t);
    try {
      const held = async (): Promise<string[]> => (await this.run(t, conn, [{ sql: directGrants(grants), right: 'a login', what: `reading the memberships of ${t.admin.login}` }])).rows.map((r) => r[0]!);
      const before = await held();
      if (before.length > 0) {
        await this.run(t, conn, [{
          sql: `REVOKE ${before.map(ident).join(', ')} FROM CURRENT_USER`,
          right: conn.major >= 16 ? `the ADMIN OPTION on ${before.join(', ')}` : 'CREATEROLE',
          what: `revoking ${before.join(', ')} from ${t.admin.login}`,
        }]);
      }
      // A session that ran SET ROLE keeps the role after REVOKE: every other session of the
      // login ends (this connection excepted), whatever resource it was opened for.
      const left = await this.endSessions(t, conn, `usesysid = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) AND pid <> pg_backend_pid() AND backend_type = 'client backend'`, 'a login');
      const still = await held();
      if (still.length > 0) return { done: false, detail: `${t.admin.login} on ${t.resource.name} still holds ${still.join(', ')} after REVOKE` };
      if (left > 0) return { done: false, detail: `${left} session(s) of ${t.admin.login} on ${t.resource.name} did not end within ${END_SESSIONS_MS} ms` };
      return { done: true };
    } finally {
      // Not parked: when the elevation ends, no session of the vaulted login stays open.
      conn.close();
    }
  }

  async listMarked(t: JitTarget): Promise<string[]> {
    const conn = await this.open(t);
    try {
      const r = await this.run(t, conn, [{
        sql: `SELECT r.rolname FROM pg_catalog.pg_roles r WHERE ${markedSql('r.oid')} ORDER BY 1`,
        right: 'a login', what: `listing the members of ${MARKER_ROLE}`,
      }]);
      return r.rows.map((row) => row[0]!);
    } finally {
      this.release(conn);
    }
  }

  private async open(t: JitTarget, database?: string): Promise<AdminConnection> {
    const db = database ?? t.resource.database ?? t.admin.login;
    const secret = createHash('sha256').update(t.admin.password ?? '').digest('base64');
    const key = JSON.stringify([t.resource.name, t.resource.host, t.resource.port, db, t.admin.login, secret]);
    const parked = this.idle.get(key);
    if (parked) {
      this.idle.delete(key);
      clearTimeout(parked.timer);
      parked.conn.park(false);
      // An empty query is one round trip: a link the target dropped meanwhile is not used.
      const ok = parked.conn.alive && (await parked.conn.query('').then(() => true, () => false));
      if (ok) {
        this.keyOf.set(parked.conn, key);
        return parked.conn;
      }
      parked.conn.close();
    }
    try {
      const conn = await AdminConnection.open(this.deps.target(t.resource), {
        user: t.admin.login,
        password: t.admin.password,
        database: db,
        params: new Map([['application_name', 'gatehouse-jit']]),
      });
      this.keyOf.set(conn, key);
      return conn;
    } catch (e) {
      throw linkRefusal(t, e);
    }
  }

  /** Parks the connection for the next step on the same target, or closes it. */
  private release(conn: AdminConnection): void {
    const key = this.keyOf.get(conn);
    this.keyOf.delete(conn);
    if (!key || !conn.alive || this.idle.has(key)) return conn.close();
    conn.park(true);
    const timer = setTimeout(() => {
      if (this.idle.get(key)?.conn === conn) this.idle.delete(key);
      conn.close();
    }, IDLE_ADMIN_MS);
    timer.unref();
    this.idle.set(key, { conn, timer });
  }

  /** Runs the steps as one Query (one transaction); a refusal becomes a JitError naming the step's right. */
  private async run(t: JitTarget, conn: AdminConnection, steps: Step[]): Promise<Awaited<ReturnType<AdminConnection['query']>>> {
    try {
      return await conn.query(steps.map((s) => s.sql).join(';\n'));
    } catch (e) {
      if (!(e instanceof PgServerError)) throw linkRefusal(t, e);
      const step = steps[Math.min(e.statement, steps.length - 1)]!;
      const said = `PostgreSQL said: ${e.message}${e.detail ? ` (${e.detail})` : ''}`;
      let err: JitError;
      if (e.sqlstate === 'P0001' && step.invalid) err = new JitError('invalid', `${e.message} on ${t.resource.name}`);
      else if (e.sqlstate === '42501') err = new JitError('missing_right', `the vaulted login ${t.admin.login} lacks ${step.right} on ${t.resource.name} (${said})`);
      else if (e.sqlstate === '42704') err = new JitError('invalid', `${step.what} on ${t.resource.name} failed: a role in its JIT settings does not exist there (${said})`);
      else err = new JitError('refused', `${step.what} on ${t.resource.name} failed (${e.sqlstate}; ${said})`);
      err.cause = e;
      throw err;
    }
  }

  /**
   * Ends the backends `where` selects, again and again until none is left (a new one may have
   * started while the last were ending) or END_SESSIONS_MS passed; returns how many remain.
   * pg_terminate_backend only signals: the loop polls until the backends are gone (its
   * two-argument form would wait for each in steps of 100 ms).
   */
  private async endSessions(t: JitTarget, conn: AdminConnection, where: string, right: string): Promise<number> {
    // A deadline on the link, not on the grant: the real monotonic clock.
    const until = performance.now() + END_SESSIONS_MS;
    for (;;) {
      const r = await this.run(t, conn, [{ sql: `SELECT count(pg_terminate_backend(pid)) FROM pg_catalog.pg_stat_activity WHERE ${where}`, right, what: 'ending sessions' }]);
      const seen = Number(r.rows[0]?.[0] ?? 0);
      if (seen === 0) return 0;
      if (performance.now() > until) return seen;
      await new Promise((resolve) => setTimeout(resolve, END_SESSIONS_POLL_MS));
    }
  }

  /**
   * REASSIGN OWNED to the inheritor and DROP OWNED in the current database and in every
   * database where the role owns or was granted something (pg_shdepend, the catalogue DROP
   * ROLE itself checks). Returns notes on databases it could not clean.
   */
  private async dropOwned(t: JitTarget, conn: AdminConnection, name: string, oid: number, inheritor: string, guard: Step): Promise<string[]> {
    const dbs = await this.run(t, conn, [{
      sql: `SELECT d.datname, d.datallowconn FROM pg_catalog.pg_database d WHERE d.datname <> current_database() AND d.oid IN (SELECT dbid FROM pg_catalog.pg_shdepend WHERE refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND refobjid = ${oid}) ORDER BY 1`,
      right: 'a login', what: `finding the databases where ${name} owns objects`,
    }]);
    const clean: Step[] = [guard, {
      sql: `REASSIGN OWNED BY ${ident(name)} TO ${ident(inheritor)};\nDROP OWNED BY ${ident(name)}`,
      right: `the privileges of ${name} and of ${inheritor} (membership with INHERIT)`,
      what: `handing what ${name} owns to ${inheritor}`,
    }];
    await this.run(t, conn, clean);
    const notes: string[] = [];
    for (const [db, allowConn] of dbs.rows) {
      if (allowConn !== 't') {
        notes.push(`database ${db} does not allow connections, so what ${name} owns there was not handed over`);
        continue;
      }
      let other: AdminConnection;
      try {
        other = await this.open(t, db!);
      } catch (e) {
        notes.push(`could not connect to database ${db}: ${e instanceof Error ? e.message : String(e)}`);
        continue;
      }
      try {
        await this.run(t, other, clean);
      } finally {
        other.close();
      }
    }
    return notes;
  }
}

/**
 * Marked: a direct member of the marker role without ADMIN OPTION (PostgreSQL 16 gives the
 * creator of a role ADMIN OPTION on it; that is not the marker), never the vaulted login itself
 * and never a superuser.
 */
function markedSql(oid: string): string {
  return `(EXISTS (SELECT FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid WHERE g.rolname = ${literal(MARKER_ROLE)} AND m.member = ${oid} AND NOT m.admin_option)`
    + ` AND NOT (SELECT rolsuper FROM pg_catalog.pg_roles WHERE oid = ${oid}) AND ${oid} <> (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user))`;
}

const GUARD_GONE = 'gatehouse: role gone';

/** Raises (statement 0 of its query) unless the role `name` still has `oid` and is marked; GUARD_GONE when no role has that name. */
function guardBody(name: string, oid: number): string {
  return `IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${literal(name)}) THEN RAISE EXCEPTION ${literal(GUARD_GONE)}; END IF;`
    + ` IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = ${literal(name)} AND r.oid = ${oid} AND ${markedSql(String(oid))}) THEN RAISE EXCEPTION 'not a temporary account'; END IF;`;
}

function inspect(name: string): string {
  return `SELECT r.oid::text, ${markedSql('r.oid')} FROM pg_catalog.pg_roles r WHERE r.rolname = ${literal(name)}`;
}

/** Which of `roles` the vaulted login holds directly (what REVOKE can take back). */
function directGrants(roles: readonly string[]): string {
  return `SELECT g.rolname FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid`
    + ` WHERE m.member = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = current_user) AND g.rolname IN (${roles.map(literal).join(', ')}) ORDER BY 1`;
}

/** A DO block under a dollar-quote tag that the body cannot contain (names may hold `$`). */
function doBlock(body: string): string {
  let tag: string;
  do tag = `$gh${randomBytes(6).toString('hex')}$`;
  while (body.includes(tag));
  return `DO ${tag}BEGIN ${body} END${tag}`;
}

/**
 * Raises unless the inheritor is a role with no rights of its own: what a temporary role
 * made (a SECURITY DEFINER function, a view) runs with its owner's rights once handed over,
 * so an inheritor that can log in, has role attributes or is a member of any role would give
 * every grant those rights after it ends.
 */
function lowPrivilege(inheritor: string): string {
  return `IF EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = ${literal(inheritor)} AND (r.rolsuper OR r.rolcanlogin OR r.rolcreaterole OR r.rolcreatedb`
    + ' OR r.rolreplication OR r.rolbypassrls OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m WHERE m.member = r.oid)))'
    + ` THEN RAISE EXCEPTION ${literal(`the inheritor ${inheritor} is not a low-privilege role (it can log in, has role attributes or is a member of another role); name a NOLOGIN role with no memberships, or leave the default ${DEFAULT_INHERITOR}`)}; END IF;`;
}

/** A NOLOGIN role made if missing; a concurrent creation by another provisioner is fine. */
function ensureRole(role: string): string {
  return doBlock(`IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = ${literal(role)}) THEN CREATE ROLE ${ident(role)} NOLOGIN; END IF;`
    + ' EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;');
}

/**
 * The SCRAM-SHA-256 verifier PostgreSQL stores, made here so that the password itself never
 * reaches the target's statement log or pg_stat_activity (as psql's \password does).
 */
async function scramVerifier(password: string): Promise<string> {
  const salt = randomBytes(16);
  const salted = await new Promise<Buffer>((resolve, reject) => pbkdf2(password, salt, SCRAM_ITERATIONS, 32, 'sha256', (err, key) => (err ? reject(err) : resolve(key))));
  const hmac = (data: string): Buffer => createHmac('sha256', salted).update(data).digest();
  const storedKey = createHash('sha256').update(hmac('Client Key')).digest();
  return `SCRAM-SHA-256$${SCRAM_ITERATIONS}:${salt.toString('base64')}$${storedKey.toString('base64')}:${hmac('Server Key').toString('base64')}`;
}

function linkRefusal(t: JitTarget, e: unknown): JitError {
  if (e instanceof JitError) return e;
  if (e instanceof UpstreamError) {
    if (e.kind === 'login' || e.kind === 'no_credentials') {
      const said = e.targetSaid ? ` (PostgreSQL said: ${[e.targetSaid.code, e.targetSaid.message].filter(Boolean).join(' ')})` : `: ${e.message}`;
      return new JitError('refused', `${t.resource.name} refused the vaulted login ${t.admin.login}${said}`);
    }
    return new JitError('unreachable', `cannot reach ${t.resource.name} to manage temporary accounts: ${e.message}`);
  }
  if (e instanceof PgLinkError) return new JitError('unreachable', `${t.resource.name} stopped answering: ${e.message}`);
  return e instanceof Error ? new JitError('unreachable', `${t.resource.name}: ${e.message}`) : new JitError('unreachable', String(e));
}
