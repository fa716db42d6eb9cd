import pg from 'pg';
import { GatehouseError, StoreError } from '../../core/errors.js';
import { createLogger, type Logger } from '../../core/log.js';
import type {
  AccessRequest,
  ApiToken,
  AuditEntry,
  Delegation,
  JitAccount,
  JitKind,
  LaunchTicket,
  Lease,
  Resource,
  Role,
  SessionRecord,
  Team,
  User,
} from '../../core/model.js';
import { postgresMigrations } from '../migrations/postgres.js';
import * as rows from '../sqlite/rows.js';
import type { Row } from '../sqlite/rows.js';
import type { AuditDraft, AuditQuery, AuditSealer, JitAccountQuery, RequestQuery, SessionQuery, Store } from '../store.js';
import { AUDIT_GENESIS } from '../store.js';
import { migrate } from './migrate.js';
import { getTypeParser, insert, insertMany, quote, redactUrl, toCells, transaction, upsert, where } from './sql.js';

/** Advisory lock key that serialises audit appends across every node (see MIGRATION_LOCK_KEY). */
const AUDIT_LOCK_KEY = 7_047_150_002;
// A TOTP step older than this can never verify again, so its replay record is dead weight.
const TOTP_RETENTION_MS = 24 * 60 * 60 * 1000;
const UNIQUE_VIOLATION = '23505';
const ONE_HELD_LEASE_INDEX = 'leases_one_held';
const ONE_LIVE_JIT_INDEX = 'jit_accounts_one_live';

type LeaseEnd = { state: Exclude<Lease['state'], 'held'>; endedAt: Date; endedBy?: string; endReason?: string };

export interface PostgresStoreOptions {
  /** Connections per node; default 10. */
  poolSize?: number;
  /** Where errors of idle pooled connections go; default: a stderr logger. */
  log?: Logger;
}

/**
 * The clustered Store: several gateway nodes share one PostgreSQL database. Every atomic
 * guarantee is settled by the database, never by this process, since another node may be
 * racing: a partial unique index for held leases, ON CONFLICT for TOTP steps,
 * UPDATE ... RETURNING for tickets and lease ends, a version check for requests and an
 * advisory transaction lock around each audit append.
 *
 * Rows are mapped by the same functions as SQLite's (sqlite/rows.ts): values read back are
 * first brought to SQLite's shapes (ISO text, 0/1, JSON text), and values written in those
 * shapes are cast by PostgreSQL to timestamptz, boolean and jsonb.
 */
export class PostgresStore implements Store {
  readonly kind = 'postgres' as const;
  private closed = false;

  private constructor(private readonly pool: pg.Pool) {}

  /** Connects, applies pending migrations and returns the store. Fails with STORE_FAILURE. */
  static async open(connectionString: string, options: PostgresStoreOptions = {}): Promise<PostgresStore> {
    // Bounded waits: a store that stalls without resetting the connection must turn into a
    // refusal (gateway_unavailable), never a decision that hangs.
    const pool = new pg.Pool({ connectionString, max: options.poolSize ?? 10, types: { getTypeParser }, connectionTimeoutMillis: 5_000, query_timeout: 10_000 });
    let log = options.log;
    // An idle connection that dies (server restart, network) must not crash the process;
    // the pool drops it and the next query opens a fresh one.
    pool.on('error', (err) => {
      log ??= createLogger().child({ component: 'postgres-store' });
      // Message and code only: pg hangs the whole client (connection parameters) on the error.
      const code = (err as { code?: unknown }).code;
      log.warn({ error: err.message, code }, 'idle PostgreSQL connection failed');
    });
    try {
      const client = await pool.connect();
      try {
        await migrate(client, postgresMigrations);
      } finally {
        client.release();
      }
      return new PostgresStore(pool);
    } catch (e) {
      await pool.end().catch(() => undefined);
      throw wrap(`open ${redactUrl(connectionString)}`, e);
    }
  }

  // users, teams, roles

  putUser(user: User): Promise<void> {
    return this.run('putUser', () => upsert(this.pool, 'users', 'name', rows.userToRow(user)));
  }
  getUser(name: string): Promise<User | undefined> {
    return this.run('getUser', () => this.one('SELECT * FROM users WHERE name = $1', [name], rows.userFromRow));
  }
  listUsers(): Promise<User[]> {
    return this.run('listUsers', () => this.many('SELECT * FROM users ORDER BY name', [], rows.userFromRow));
  }
  countUsers(): Promise<number> {
    return this.run('countUsers', async () => {
      const { rows: r } = await this.pool.query<{ n: string }>('SELECT count(*) AS n FROM users');
      return Number(r[0]?.n ?? 0);
    });
  }

  putTeam(team: Team): Promise<void> {
    return this.run('putTeam', () => upsert(this.pool, 'teams', 'name', rows.teamToRow(team)));
  }
  getTeam(name: string): Promise<Team | undefined> {
    return this.run('getTeam', () => this.one('SELECT * FROM teams WHERE name = $1', [name], rows.teamFromRow));
  }
  listTeams(): Promise<Team[]> {
    return this.run('listTeams', () => this.many('SELECT * FROM teams ORDER BY name', [], rows.teamFromRow));
  }

  putRole(role: Role): Promise<void> {
    return this.run('putRole', () => upsert(this.pool, 'roles', 'name', rows.roleToRow(role)));
  }
  getRole(name: string): Promise<Role | undefined> {
    return this.run('getRole', () => this.one('SELECT * FROM roles WHERE name = $1', [name], rows.roleFromRow));
  }
  listRoles(): Promise<Role[]> {
    return this.run('listRoles', () => this.many('SELECT * FROM roles ORDER BY name', [], rows.roleFromRow));
  }

  // resources

  putResource(resource: Resource): Promise<void> {
    return this.run('putResource', () => upsert(this.pool, 'resources', 'name', rows.resourceToRow(resource)));
  }
  getResource(name: string): Promise<Resource | undefined> {
    const sql = 'SELECT * FROM resources WHERE name = $1';
    return this.run('getResource', () => this.one(sql, [name], rows.resourceFromRow));
  }
  listResources(): Promise<Resource[]> {
    const sql = 'SELECT * FROM resources ORDER BY name';
    return this.run('listResources', () => this.many(sql, [], rows.resourceFromRow));
  }
  deleteResource(name: string): Promise<boolean> {
    return this.run('deleteResource', () => this.change('DELETE FROM resources WHERE name = $1', [name]));
  }

  // access requests

  insertRequest(request: AccessRequest): Promise<void> {
    return this.run('insertRequest', () => insert(this.pool, 'requests', rows.requestToRow(request)));
  }
  getRequest(id: string): Promise<AccessRequest | undefined> {
    const sql = 'SELECT * FROM requests WHERE id = $1';
    return this.run('getRequest', () => this.one(sql, [id], rows.requestFromRow));
  }
  listRequests(query: RequestQuery = {}): Promise<AccessRequest[]> {
    return this.run('listRequests', () => {
      const { clause, params } = where({ requester: query.requester, resource: query.resource });
      let states = '';
      if (query.states) {
        // An explicit empty state list matches nothing, which ANY of an empty array gives.
        params.push(query.states);
        states = ` ${clause ? 'AND' : 'WHERE'} state = ANY($${params.length}::text[])`;
      }
      return this.many(`SELECT * FROM requests${clause}${states} ORDER BY created_at, id`, params, rows.requestFromRow);
    });
  }
  updateRequest(next: AccessRequest): Promise<boolean> {
    return this.run('updateRequest', () => {
      const row = rows.requestToRow(next);
      const cols = Object.keys(row).filter((c) => c !== 'id');
      const params: unknown[] = cols.map((c) => row[c]);
      const sets = cols.map((c, i) => `${quote(c)} = $${i + 1}`);
      params.push(next.id, next.version - 1);
      const n = params.length;
      // Under READ COMMITTED a racing update waits for the row, then re-checks the version.
      return this.change(`UPDATE requests SET ${sets.join(', ')} WHERE id = $${n - 1} AND version = $${n}`, params);
    });
  }

  // single-user leases

  insertLease(lease: Lease): Promise<void> {
    return this.run('insertLease', async () => {
      try {
        await insert(this.pool, 'leases', rows.leaseToRow(lease));
      } catch (e) {
        // Only the partial index counts; a reused id violates leases_pkey and stays a StoreError.
        if (!(e instanceof pg.DatabaseError) || e.code !== UNIQUE_VIOLATION || e.constraint !== ONE_HELD_LEASE_INDEX) {
          throw e;
        }
        throw await this.checkedOut(lease.resource);
      }
    });
  }
  getHeldLease(resource: string): Promise<Lease | undefined> {
    return this.run('getHeldLease', () => this.heldLease(resource));
  }
  getLease(id: string): Promise<Lease | undefined> {
    return this.run('getLease', () => this.one('SELECT * FROM leases WHERE id = $1', [id], rows.leaseFromRow));
  }
  listLeases(query: { state?: Lease['state']; holder?: string; resource?: string } = {}): Promise<Lease[]> {
    return this.run('listLeases', () => {
      const { clause, params } = where({ state: query.state, holder: query.holder, resource: query.resource });
      return this.many(`SELECT * FROM leases${clause} ORDER BY started_at, id`, params, rows.leaseFromRow);
    });
  }
  endLease(id: string, end: LeaseEnd): Promise<Lease | undefined> {
    return this.run('endLease', () => {
      const sql =
        'UPDATE leases SET state = $1, ended_at = $2, ended_by = $3, end_reason = $4 ' +
        "WHERE id = $5 AND state = 'held' RETURNING *";
      const params = [end.state, end.endedAt.toISOString(), end.endedBy ?? null, end.endReason ?? null, id];
      return this.one(sql, params, rows.leaseFromRow);
    });
  }

  // delegations

  putDelegation(d: Delegation): Promise<void> {
    return this.run('putDelegation', () => upsert(this.pool, 'delegations', 'id', rows.delegationToRow(d)));
  }
  listDelegations(query: { to?: string; from?: string } = {}): Promise<Delegation[]> {
    return this.run('listDelegations', () => {
      const { clause, params } = where({ to_user: query.to, from_user: query.from });
      return this.many(`SELECT * FROM delegations${clause} ORDER BY start_at, id`, params, rows.delegationFromRow);
    });
  }
  deleteDelegation(id: string): Promise<boolean> {
    return this.run('deleteDelegation', () => this.change('DELETE FROM delegations WHERE id = $1', [id]));
  }

  // MFA and tickets

  useTotpStep(user: string, step: number, at: Date): Promise<boolean> {
    return this.run('useTotpStep', async () => {
      const cutoff = new Date(at.getTime() - TOTP_RETENTION_MS).toISOString();
      await this.pool.query('DELETE FROM totp_steps WHERE used_at < $1', [cutoff]);
      const sql = 'INSERT INTO totp_steps ("user", step, used_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING';
      return this.change(sql, [user, step, at.toISOString()]);
    });
  }
  insertTicket(ticket: LaunchTicket): Promise<void> {
    return this.run('insertTicket', () => insert(this.pool, 'tickets', rows.ticketToRow(ticket)));
  }
  consumeTicket(hash: string, at: Date, bound?: { user: string; resource: string }): Promise<LaunchTicket | undefined> {
    return this.run('consumeTicket', () => {
      const where = bound ? ' AND "user" = $3 AND resource = $4' : '';
      const sql = `UPDATE tickets SET used_at = $2 WHERE hash = $1 AND used_at IS NULL AND expires_at > $2${where} RETURNING *`;
      return this.one(sql, [hash, at.toISOString(), ...(bound ? [bound.user, bound.resource] : [])], rows.ticketFromRow);
    });
  }
  getTicket(hash: string): Promise<LaunchTicket | undefined> {
    return this.run('getTicket', () => this.one('SELECT * FROM tickets WHERE hash = $1', [hash], rows.ticketFromRow));
  }

  // API and session tokens

  insertToken(token: ApiToken): Promise<void> {
    return this.run('insertToken', () => insert(this.pool, 'tokens', rows.tokenToRow(token)));
  }
  getTokenByHash(hash: string): Promise<ApiToken | undefined> {
    const sql = 'SELECT * FROM tokens WHERE hash = $1';
    return this.run('getTokenByHash', () => this.one(sql, [hash], rows.tokenFromRow));
  }
  deleteToken(id: string): Promise<boolean> {
    return this.run('deleteToken', () => this.change('DELETE FROM tokens WHERE id = $1', [id]));
  }
  listTokens(user: string): Promise<ApiToken[]> {
    const sql = 'SELECT * FROM tokens WHERE "user" = $1 ORDER BY created_at, id';
    return this.run('listTokens', () => this.many(sql, [user], rows.tokenFromRow));
  }

  // gateway sessions

  insertJitAccount(account: JitAccount): Promise<boolean> {
    return this.run('insertJitAccount', async () => {
      try {
        await insert(this.pool, 'jit_accounts', rows.jitAccountToRow(account));
        return true;
      } catch (e) {
        if (e instanceof pg.DatabaseError && e.code === UNIQUE_VIOLATION && e.constraint === ONE_LIVE_JIT_INDEX) return false;
        throw e;
      }
    });
  }
  getJitAccount(id: string): Promise<JitAccount | undefined> {
    return this.run('getJitAccount', () => this.one('SELECT * FROM jit_accounts WHERE id = $1', [id], rows.jitAccountFromRow));
  }
  findLiveJitAccount(grant: string, kind: JitKind): Promise<JitAccount | undefined> {
    const sql = "SELECT * FROM jit_accounts WHERE grant_key = $1 AND kind = $2 AND state IN ('planned', 'provisioning', 'active', 'revoking')";
    return this.run('findLiveJitAccount', () => this.one(sql, [grant, kind], rows.jitAccountFromRow));
  }
  listJitAccounts(query: JitAccountQuery = {}): Promise<JitAccount[]> {
    return this.run('listJitAccounts', () => {
      const { clause, params } = where({ resource: query.resource, kind: query.kind, request_id: query.requestId, lease_id: query.leaseId, session_id: query.sessionId });
      let states = '';
      if (query.states) {
        params.push(query.states);
        states = ` ${clause ? 'AND' : 'WHERE'} state = ANY($${params.length}::text[])`;
      }
      let tail = ' ORDER BY created_at, id';
      if (query.limit !== undefined) {
        params.push(query.limit);
        tail = ` ORDER BY created_at DESC, id DESC LIMIT $${params.length}`;
      }
      return this.many(`SELECT * FROM jit_accounts${clause}${states}${tail}`, params, rows.jitAccountFromRow);
    });
  }
  updateJitAccount(next: JitAccount): Promise<boolean> {
    return this.run('updateJitAccount', () => {
      const row = rows.jitAccountToRow(next);
      const cols = Object.keys(row).filter((c) => c !== 'id');
      const params: unknown[] = cols.map((c) => row[c]);
      const sets = cols.map((c, i) => `${quote(c)} = $${i + 1}`);
      params.push(next.id, next.version - 1);
      const n = params.length;
      return this.change(`UPDATE jit_accounts SET ${sets.join(', ')} WHERE id = $${n - 1} AND version = $${n}`, params);
    });
  }

  putSession(session: SessionRecord): Promise<void> {
    return this.run('putSession', () => upsert(this.pool, 'sessions', 'id', rows.sessionToRow(session)));
  }
  putSessions(sessions: readonly SessionRecord[]): Promise<void> {
    // A record put twice in one batch keeps its last version, as two putSession calls would.
    const last = [...new Map(sessions.map((s) => [s.id, rows.sessionToRow(s)])).values()];
    return this.run('putSessions', () => insertMany(this.pool, 'sessions', last, 'id'));
  }
  getSession(id: string): Promise<SessionRecord | undefined> {
    const sql = 'SELECT * FROM sessions WHERE id = $1';
    return this.run('getSession', () => this.one(sql, [id], rows.sessionFromRow));
  }
  /** Newest first, so `limit` keeps the most recent sessions. */
  listSessions(query: SessionQuery = {}): Promise<SessionRecord[]> {
    return this.run('listSessions', () => {
      const { clause, params } = where({ state: query.state, user: query.user, resource: query.resource });
      params.push(query.limit ?? null);
      const sql = `SELECT * FROM sessions${clause} ORDER BY started_at DESC, id DESC LIMIT $${params.length}`;
      return this.many(sql, params, rows.sessionFromRow);
    });
  }
  deleteSession(id: string): Promise<void> {
    return this.run('deleteSession', async () => {
      await this.pool.query('DELETE FROM sessions WHERE id = $1', [id]);
    });
  }

  // audit

  appendAudit(draft: AuditDraft, seal: AuditSealer): Promise<AuditEntry> {
    return this.run('appendAudit', async () => (await this.appendChained([draft], seal))[0]!);
  }
  appendAuditBatch(drafts: readonly AuditDraft[], seal: AuditSealer): Promise<AuditEntry[]> {
    return this.run('appendAuditBatch', () => (drafts.length > 0 ? this.appendChained(drafts, seal) : Promise.resolve([])));
  }
  /** Oldest first (ascending seq); `afterSeq` and `limit` page forward through the chain. */
  listAudit(query: AuditQuery = {}): Promise<AuditEntry[]> {
    return this.run('listAudit', async () => {
      const { clause, params } = where({ actor: query.actor, action: query.action, subject: query.subject });
      params.push(query.afterSeq ?? 0);
      const seq = `${clause ? ' AND' : ' WHERE'} seq > $${params.length}`;
      params.push(query.limit ?? null);
      const limit = ` LIMIT $${params.length}`;
      if (query.newest) {
        const sql = `SELECT * FROM audit${clause}${seq} ORDER BY seq DESC${limit}`;
        return (await this.many(sql, params, rows.auditFromRow)).reverse();
      }
      return this.many(`SELECT * FROM audit${clause}${seq} ORDER BY seq${limit}`, params, rows.auditFromRow);
    });
  }

  // meta

  getMeta(key: string): Promise<string | undefined> {
    return this.run('getMeta', async () => {
      const { rows: r } = await this.pool.query<{ value: string }>('SELECT value FROM meta WHERE key = $1', [key]);
      return r[0]?.value;
    });
  }
  setMeta(key: string, value: string): Promise<void> {
    return this.run('setMeta', () => upsert(this.pool, 'meta', 'key', { key, value }));
  }

  /** Ends the pool; a second call is harmless. */
  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return this.run('close', () => this.pool.end());
  }

  // internals

  /** Extends the chain by the drafts, in order, in one transaction. */
  private appendChained(drafts: readonly AuditDraft[], seal: AuditSealer): Promise<AuditEntry[]> {
    return transaction(this.pool, async (client) => {
      // Every node appends under this lock, so each reads the head only after the previous append committed.
      await client.query('SELECT pg_advisory_xact_lock($1)', [AUDIT_LOCK_KEY]);
      const head = await client.query<{ seq: string; mac: string }>('SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1');
      let seq = Number(head.rows[0]?.seq ?? 0);
      let prev = head.rows[0]?.mac ?? AUDIT_GENESIS;
      const entries = drafts.map((draft) => {
        // Sealed with the same key order and JSON-normalised data that listAudit returns
        // (audit.data is json, not jsonb, so the text is kept as written).
        const unsealed: Omit<AuditEntry, 'mac'> = {
          seq: ++seq,
          at: draft.at,
          actor: draft.actor,
          action: draft.action,
          subject: draft.subject,
          data: JSON.parse(JSON.stringify(draft.data ?? {})) as Record<string, unknown>,
          prev,
        };
        const entry: AuditEntry = { ...unsealed, mac: seal(unsealed) };
        prev = entry.mac;
        return entry;
      });
      if (entries.length === 1) await insert(client, 'audit', rows.auditToRow(entries[0]!));
      else await insertMany(client, 'audit', entries.map(rows.auditToRow));
      return entries;
    });
  }

  private async checkedOut(resource: string): Promise<GatehouseError> {
    const held = await this.heldLease(resource);
    // The holder may check in between the failed insert and this read; then only the resource is known.
    if (!held) return new GatehouseError('CHECKED_OUT', `resource '${resource}' is checked out`, { resource });
    const until = held.expiresAt.toISOString();
    return new GatehouseError('CHECKED_OUT', `resource '${resource}' is checked out by ${held.holder} until ${until}`, {
      resource,
      holder: held.holder,
      leaseId: held.id,
      expiresAt: until,
    });
  }

  private heldLease(resource: string): Promise<Lease | undefined> {
    return this.one("SELECT * FROM leases WHERE resource = $1 AND state = 'held'", [resource], rows.leaseFromRow);
  }

  private async run<T>(op: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw wrap(op, e);
    }
  }

  private async one<T>(sql: string, params: unknown[], map: (r: Row) => T): Promise<T | undefined> {
    const { rows: r } = await this.pool.query<Record<string, unknown>>(sql, params);
    return r[0] ? map(toCells(r[0])) : undefined;
  }

  private async many<T>(sql: string, params: unknown[], map: (r: Row) => T): Promise<T[]> {
    const { rows: r } = await this.pool.query<Record<string, unknown>>(sql, params);
    return r.map((row) => map(toCells(row)));
  }

  private async change(sql: string, params: unknown[]): Promise<boolean> {
    return ((await this.pool.query(sql, params)).rowCount ?? 0) > 0;
  }

}

function wrap(op: string, e: unknown): GatehouseError {
  if (e instanceof GatehouseError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new StoreError(`postgres store: ${op} failed: ${message}`, e);
}
