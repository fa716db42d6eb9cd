import Database from 'better-sqlite3';
import { GatehouseError, StoreError } from '../../core/errors.js';
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
import { sqliteMigrations } from '../migrations/sqlite.js';
import type { AuditDraft, AuditQuery, AuditSealer, JitAccountQuery, RequestQuery, SessionQuery, Store } from '../store.js';
import { AUDIT_GENESIS } from '../store.js';
import * as rows from './rows.js';
import type { Row } from './rows.js';
import { migrate } from './migrate.js';

/** The `prev` of the first audit entry: the chain has to start from something fixed. */
export { AUDIT_GENESIS };

const BUSY_TIMEOUT_MS = 5000;
// A TOTP step older than this can never verify again, so its replay record is dead weight.
const TOTP_RETENTION_MS = 24 * 60 * 60 * 1000;

type LeaseEnd = { state: Exclude<Lease['state'], 'held'>; endedAt: Date; endedBy?: string; endReason?: string };
type Filters = Record<string, string | number | undefined>;

/**
 * The embedded default Store: one better-sqlite3 connection to one file (or ':memory:').
 * The work is synchronous; methods return promises only to share the Store interface with
 * the PostgreSQL implementation. Several processes may open the same file: WAL lets readers
 * proceed while one writer commits, and busy_timeout makes writers queue instead of failing.
 */
export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  private readonly statements = new Map<string, Database.Statement>();
  private readonly appendAuditTx: (draft: AuditDraft, seal: AuditSealer) => AuditEntry;
  private readonly appendAuditBatchTx: (drafts: readonly AuditDraft[], seal: AuditSealer) => AuditEntry[];
  private readonly putSessionsTx: (sessions: readonly SessionRecord[]) => void;
  private readonly useTotpStepTx: (user: string, step: number, at: Date) => boolean;

  private constructor(private readonly db: Database.Database) {
    const append = db.transaction((draft: AuditDraft, seal: AuditSealer) => this.appendAuditSync(draft, seal));
    // IMMEDIATE takes the write lock before reading the chain head, so two processes
    // appending at once serialize instead of both extending the same entry.
    this.appendAuditTx = (draft, seal) => append.immediate(draft, seal);
    const appendMany = db.transaction((drafts: readonly AuditDraft[], seal: AuditSealer) => drafts.map((d) => this.appendAuditSync(d, seal)));
    this.appendAuditBatchTx = (drafts, seal) => appendMany.immediate(drafts, seal);
    this.putSessionsTx = db.transaction((sessions: readonly SessionRecord[]) => {
      for (const session of sessions) this.upsert('sessions', 'id', rows.sessionToRow(session));
    });
    this.useTotpStepTx = db.transaction((user: string, step: number, at: Date) => {
      const cutoff = new Date(at.getTime() - TOTP_RETENTION_MS).toISOString();
      this.stmt('DELETE FROM totp_steps WHERE used_at < ?').run(cutoff);
      const sql = 'INSERT INTO totp_steps (user, step, used_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING';
      return this.stmt(sql).run(user, step, at.toISOString()).changes === 1;
    });
  }

  /** Opens (creating if needed) the database at `path` and applies pending migrations. */
  static open(path: string): SqliteStore {
    let db: Database.Database | undefined;
    try {
      db = new Database(path);
      // busy_timeout first: switching to WAL itself needs a lock another process may hold.
      db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
      db.pragma('journal_mode = WAL');
      db.pragma('foreign_keys = ON');
      migrate(db, sqliteMigrations);
      return new SqliteStore(db);
    } catch (e) {
      if (db?.open) db.close();
      throw wrap(`open ${path}`, e);
    }
  }

  // users, teams, roles

  putUser(user: User): Promise<void> {
    return this.run('putUser', () => this.upsert('users', 'name', rows.userToRow(user)));
  }
  getUser(name: string): Promise<User | undefined> {
    return this.run('getUser', () => this.one('SELECT * FROM users WHERE name = ?', [name], rows.userFromRow));
  }
  listUsers(): Promise<User[]> {
    return this.run('listUsers', () => this.many('SELECT * FROM users ORDER BY name', [], rows.userFromRow));
  }
  countUsers(): Promise<number> {
    return this.run('countUsers', () => Number(this.stmt('SELECT count(*) FROM users').pluck().get()));
  }

  putTeam(team: Team): Promise<void> {
    return this.run('putTeam', () => this.upsert('teams', 'name', rows.teamToRow(team)));
  }
  getTeam(name: string): Promise<Team | undefined> {
    return this.run('getTeam', () => this.one('SELECT * FROM teams WHERE name = ?', [name], rows.teamFromRow));
  }
  listTeams(): Promise<Team[]> {
    return this.run('listTeams', () => this.many('SELECT * FROM teams ORDER BY name', [], rows.teamFromRow));
  }

  putRole(role: Role): Promise<void> {
    return this.run('putRole', () => this.upsert('roles', 'name', rows.roleToRow(role)));
  }
  getRole(name: string): Promise<Role | undefined> {
    return this.run('getRole', () => this.one('SELECT * FROM roles WHERE name = ?', [name], rows.roleFromRow));
  }
  listRoles(): Promise<Role[]> {
    return this.run('listRoles', () => this.many('SELECT * FROM roles ORDER BY name', [], rows.roleFromRow));
  }

  // resources

  putResource(resource: Resource): Promise<void> {
    return this.run('putResource', () => this.upsert('resources', 'name', rows.resourceToRow(resource)));
  }
  getResource(name: string): Promise<Resource | undefined> {
    const sql = 'SELECT * FROM resources WHERE name = ?';
    return this.run('getResource', () => this.one(sql, [name], rows.resourceFromRow));
  }
  listResources(): Promise<Resource[]> {
    const sql = 'SELECT * FROM resources ORDER BY name';
    return this.run('listResources', () => this.many(sql, [], rows.resourceFromRow));
  }
  deleteResource(name: string): Promise<boolean> {
    return this.run('deleteResource', () => this.stmt('DELETE FROM resources WHERE name = ?').run(name).changes > 0);
  }

  // access requests

  insertRequest(request: AccessRequest): Promise<void> {
    return this.run('insertRequest', () => this.insert('requests', rows.requestToRow(request)));
  }
  getRequest(id: string): Promise<AccessRequest | undefined> {
    return this.run('getRequest', () => this.one('SELECT * FROM requests WHERE id = ?', [id], rows.requestFromRow));
  }
  listRequests(query: RequestQuery = {}): Promise<AccessRequest[]> {
    return this.run('listRequests', () => {
      const { clause, params } = where({ requester: query.requester, resource: query.resource });
      // An explicit empty state list matches nothing; json_each keeps the statement cacheable.
      const states = query.states ? ` ${clause ? 'AND' : 'WHERE'} state IN (SELECT value FROM json_each(@states))` : '';
      if (query.states) params.states = JSON.stringify(query.states);
      const sql = `SELECT * FROM requests${clause}${states} ORDER BY created_at, id`;
      return this.many(sql, [params], rows.requestFromRow);
    });
  }
  updateRequest(next: AccessRequest): Promise<boolean> {
    return this.run('updateRequest', () => {
      const row = rows.requestToRow(next);
      const sets = Object.keys(row).filter((c) => c !== 'id').map((c) => `${c} = @${c}`);
      const sql = `UPDATE requests SET ${sets.join(', ')} WHERE id = @id AND version = @expected`;
      return this.stmt(sql).run({ ...row, expected: next.version - 1 }).changes === 1;
    });
  }

  // single-user leases

  insertLease(lease: Lease): Promise<void> {
    return this.run('insertLease', () => {
      try {
        this.insert('leases', rows.leaseToRow(lease));
      } catch (e) {
        // Only the partial index leases_one_held is a plain UNIQUE on this table; a reused
        // id reports SQLITE_CONSTRAINT_PRIMARYKEY and stays a StoreError.
        if (sqliteCode(e) !== 'SQLITE_CONSTRAINT_UNIQUE') throw e;
        throw this.checkedOut(lease.resource);
      }
    });
  }
  getHeldLease(resource: string): Promise<Lease | undefined> {
    return this.run('getHeldLease', () => this.heldLease(resource));
  }
  getLease(id: string): Promise<Lease | undefined> {
    return this.run('getLease', () => this.one('SELECT * FROM leases WHERE id = ?', [id], rows.leaseFromRow));
  }
  listLeases(query: { state?: Lease['state']; holder?: string; resource?: string } = {}): Promise<Lease[]> {
    return this.run('listLeases', () => {
      const { clause, params } = where({ state: query.state, holder: query.holder, resource: query.resource });
      return this.many(`SELECT * FROM leases${clause} ORDER BY started_at, id`, [params], rows.leaseFromRow);
    });
  }
  endLease(id: string, end: LeaseEnd): Promise<Lease | undefined> {
    return this.run('endLease', () => {
      const sql =
        'UPDATE leases SET state = ?, ended_at = ?, ended_by = ?, end_reason = ? ' +
        "WHERE id = ? AND state = 'held' RETURNING *";
      const params = [end.state, end.endedAt.toISOString(), end.endedBy ?? null, end.endReason ?? null, id];
      return this.one(sql, params, rows.leaseFromRow);
    });
  }

  // delegations

  putDelegation(d: Delegation): Promise<void> {
    return this.run('putDelegation', () => this.upsert('delegations', 'id', rows.delegationToRow(d)));
  }
  listDelegations(query: { to?: string; from?: string } = {}): Promise<Delegation[]> {
    return this.run('listDelegations', () => {
      const { clause, params } = where({ to_user: query.to, from_user: query.from });
      return this.many(`SELECT * FROM delegations${clause} ORDER BY start_at, id`, [params], rows.delegationFromRow);
    });
  }
  deleteDelegation(id: string): Promise<boolean> {
    return this.run('deleteDelegation', () => this.stmt('DELETE FROM delegations WHERE id = ?').run(id).changes > 0);
  }

  // MFA and tickets

  useTotpStep(user: string, step: number, at: Date): Promise<boolean> {
    return this.run('useTotpStep', () => this.useTotpStepTx(user, step, at));
  }
  insertTicket(ticket: LaunchTicket): Promise<void> {
    return this.run('insertTicket', () => this.insert('tickets', rows.ticketToRow(ticket)));
  }
  consumeTicket(hash: string, at: Date, bound?: { user: string; resource: string }): Promise<LaunchTicket | undefined> {
    return this.run('consumeTicket', () => {
      const where = bound ? ' AND user = @user AND resource = @resource' : '';
      const sql = `UPDATE tickets SET used_at = @at WHERE hash = @hash AND used_at IS NULL AND expires_at > @at${where} RETURNING *`;
      return this.one(sql, [{ hash, at: at.toISOString(), ...(bound ?? {}) }], rows.ticketFromRow);
    });
  }
  getTicket(hash: string): Promise<LaunchTicket | undefined> {
    return this.run('getTicket', () => this.one('SELECT * FROM tickets WHERE hash = ?', [hash], rows.ticketFromRow));
  }

  // API and session tokens

  insertToken(token: ApiToken): Promise<void> {
    return this.run('insertToken', () => this.insert('tokens', rows.tokenToRow(token)));
  }
  getTokenByHash(hash: string): Promise<ApiToken | undefined> {
    return this.run('getTokenByHash', () => this.one('SELECT * FROM tokens WHERE hash = ?', [hash], rows.tokenFromRow));
  }
  deleteToken(id: string): Promise<boolean> {
    return this.run('deleteToken', () => this.stmt('DELETE FROM tokens WHERE id = ?').run(id).changes > 0);
  }
  listTokens(user: string): Promise<ApiToken[]> {
    const sql = 'SELECT * FROM tokens WHERE user = ? ORDER BY created_at, id';
    return this.run('listTokens', () => this.many(sql, [user], rows.tokenFromRow));
  }

  // ephemeral accounts and elevations

  insertJitAccount(account: JitAccount): Promise<boolean> {
    return this.run('insertJitAccount', () => {
      try {
        this.insert('jit_accounts', rows.jitAccountToRow(account));
        return true;
      } catch (e) {
        // Only jit_accounts_one_live is a plain UNIQUE here; a reused id stays a StoreError.
        if (sqliteCode(e) !== 'SQLITE_CONSTRAINT_UNIQUE') throw e;
        return false;
      }
    });
  }
  getJitAccount(id: string): Promise<JitAccount | undefined> {
    return this.run('getJitAccount', () => this.one('SELECT * FROM jit_accounts WHERE id = ?', [id], rows.jitAccountFromRow));
  }
  findLiveJitAccount(grant: string, kind: JitKind): Promise<JitAccount | undefined> {
    const sql = "SELECT * FROM jit_accounts WHERE grant_key = ? AND kind = ? AND state IN ('planned', 'provisioning', 'active', 'revoking')";
    return this.run('findLiveJitAccount', () => this.one(sql, [grant, kind], rows.jitAccountFromRow));
  }
  listJitAccounts(query: JitAccountQuery = {}): Promise<JitAccount[]> {
    return this.run('listJitAccounts', () => {
      const { clause, params } = where({ resource: query.resource, kind: query.kind, request_id: query.requestId, lease_id: query.leaseId, session_id: query.sessionId });
      const states = query.states ? ` ${clause ? 'AND' : 'WHERE'} state IN (SELECT value FROM json_each(@states))` : '';
      if (query.states) params.states = JSON.stringify(query.states);
      const order = query.limit !== undefined ? 'created_at DESC, id DESC' : 'created_at, id';
      params.limit = query.limit ?? -1;
      return this.many(`SELECT * FROM jit_accounts${clause}${states} ORDER BY ${order} LIMIT @limit`, [params], rows.jitAccountFromRow);
    });
  }
  updateJitAccount(next: JitAccount): Promise<boolean> {
    return this.run('updateJitAccount', () => {
      const row = rows.jitAccountToRow(next);
      const sets = Object.keys(row).filter((c) => c !== 'id').map((c) => `${c} = @${c}`);
      const sql = `UPDATE jit_accounts SET ${sets.join(', ')} WHERE id = @id AND version = @expected`;
      return this.stmt(sql).run({ ...row, expected: next.version - 1 }).changes === 1;
    });
  }

  // gateway sessions

  putSession(session: SessionRecord): Promise<void> {
    return this.run('putSession', () => this.upsert('sessions', 'id', rows.sessionToRow(session)));
  }
  putSessions(sessions: readonly SessionRecord[]): Promise<void> {
    return this.run('putSessions', () => {
      if (sessions.length > 0) this.putSessionsTx(sessions);
    });
  }
  getSession(id: string): Promise<SessionRecord | undefined> {
    return this.run('getSession', () => this.one('SELECT * FROM sessions WHERE id = ?', [id], rows.sessionFromRow));
  }
  /** Newest first, so `limit` keeps the most recent sessions. */
  listSessions(query: SessionQuery = {}): Promise<SessionRecord[]> {
    return this.run('listSessions', () => {
      const { clause, params } = where({ state: query.state, user: query.user, resource: query.resource });
      params.limit = query.limit ?? -1;
      const sql = `SELECT * FROM sessions${clause} ORDER BY started_at DESC, id DESC LIMIT @limit`;
      return this.many(sql, [params], rows.sessionFromRow);
    });
  }
  deleteSession(id: string): Promise<void> {
    return this.run('deleteSession', () => void this.stmt('DELETE FROM sessions WHERE id = ?').run(id));
  }

  // audit

  appendAudit(draft: AuditDraft, seal: AuditSealer): Promise<AuditEntry> {
    return this.run('appendAudit', () => this.appendAuditTx(draft, seal));
  }
  appendAuditBatch(drafts: readonly AuditDraft[], seal: AuditSealer): Promise<AuditEntry[]> {
    return this.run('appendAuditBatch', () => (drafts.length > 0 ? this.appendAuditBatchTx(drafts, seal) : []));
  }
  /** Oldest first (ascending seq); `afterSeq` and `limit` page forward through the chain. */
  listAudit(query: AuditQuery = {}): Promise<AuditEntry[]> {
    return this.run('listAudit', () => {
      const { clause, params } = where({ actor: query.actor, action: query.action, subject: query.subject });
      params.afterSeq = query.afterSeq ?? 0;
      params.limit = query.limit ?? -1;
      const seq = `${clause ? ' AND' : ' WHERE'} seq > @afterSeq`;
      if (query.newest) {
        const latest = this.many(`SELECT * FROM audit${clause}${seq} ORDER BY seq DESC LIMIT @limit`, [params], rows.auditFromRow);
        return latest.reverse();
      }
      return this.many(`SELECT * FROM audit${clause}${seq} ORDER BY seq LIMIT @limit`, [params], rows.auditFromRow);
    });
  }

  // meta

  getMeta(key: string): Promise<string | undefined> {
    return this.run('getMeta', () => {
      const value = this.stmt('SELECT value FROM meta WHERE key = ?').pluck().get(key);
      return typeof value === 'string' ? value : undefined;
    });
  }
  setMeta(key: string, value: string): Promise<void> {
    return this.run('setMeta', () => this.upsert('meta', 'key', { key, value }));
  }

  close(): Promise<void> {
    return this.run('close', () => {
      if (this.db.open) this.db.close();
      this.statements.clear();
    });
  }

  // internals

  private appendAuditSync(draft: AuditDraft, seal: AuditSealer): AuditEntry {
    const last = this.stmt('SELECT seq, mac FROM audit ORDER BY seq DESC LIMIT 1').get() as
      | { seq: number; mac: string }
      | undefined;
    // The entry is sealed with the same key order and JSON-normalised data that listAudit
    // returns, so a verifier recomputing the MAC from stored entries sees identical input.
    const unsealed: Omit<AuditEntry, 'mac'> = {
      seq: (last?.seq ?? 0) + 1,
      at: draft.at,
      actor: draft.actor,
      action: draft.action,
      subject: draft.subject,
      data: JSON.parse(JSON.stringify(draft.data ?? {})) as Record<string, unknown>,
      prev: last?.mac ?? AUDIT_GENESIS,
    };
    const entry: AuditEntry = { ...unsealed, mac: seal(unsealed) };
    this.insert('audit', rows.auditToRow(entry));
    return entry;
  }

  private checkedOut(resource: string): GatehouseError {
    const held = this.heldLease(resource);
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

  private heldLease(resource: string): Lease | undefined {
    return this.one("SELECT * FROM leases WHERE resource = ? AND state = 'held'", [resource], rows.leaseFromRow);
  }

  private run<T>(op: string, fn: () => T): Promise<T> {
    try {
      return Promise.resolve(fn());
    } catch (e) {
      return Promise.reject(wrap(op, e));
    }
  }

  private stmt(sql: string): Database.Statement {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }

  private one<T>(sql: string, params: unknown[], map: (r: Row) => T): T | undefined {
    const row = this.stmt(sql).get(...params) as Row | undefined;
    return row ? map(row) : undefined;
  }

  private many<T>(sql: string, params: unknown[], map: (r: Row) => T): T[] {
    return (this.stmt(sql).all(...params) as Row[]).map(map);
  }

  // Column names come from the row mappers in rows.ts, never from input.
  private insert(table: string, row: Row): void {
    const cols = Object.keys(row);
    this.stmt(`INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')})`).run(row);
  }

  private upsert(table: string, key: string, row: Row): void {
    const cols = Object.keys(row);
    const updates = cols.filter((c) => c !== key).map((c) => `${c} = excluded.${c}`);
    const sql =
      `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((c) => `@${c}`).join(', ')}) ` +
      `ON CONFLICT (${key}) DO UPDATE SET ${updates.join(', ')}`;
    this.stmt(sql).run(row);
  }
}

function where(filters: Filters): { clause: string; params: Record<string, string | number> } {
  const params: Record<string, string | number> = {};
  const terms: string[] = [];
  for (const [column, value] of Object.entries(filters)) {
    if (value === undefined) continue;
    terms.push(`${column} = @${column}`);
    params[column] = value;
  }
  return { clause: terms.length ? ` WHERE ${terms.join(' AND ')}` : '', params };
}

function sqliteCode(e: unknown): string | undefined {
  return e instanceof Database.SqliteError ? e.code : undefined;
}

function wrap(op: string, e: unknown): GatehouseError {
  if (e instanceof GatehouseError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new StoreError(`sqlite store: ${op} failed: ${message}`, e);
}
