/**
 * Ephemeral accounts and elevation on MySQL 8 and MariaDB targets (README.md, "Ephemeral
 * accounts and elevation"). Every step runs as the resource's vaulted login over a connection
 * made like a session's (admin.ts). The Gatehouse marker is the role `gatehouse_ephemeral`
 * granted WITHOUT admin option: MariaDB has no account comments or attributes, so a role is
 * the one mark both dialects can carry and read back. An account is removed only when it
 * carries the marker, checked right before; the vaulted login, which holds the marker role
 * WITH ADMIN OPTION to hand it out, is never one.
 */
import { randomBytes } from 'node:crypto';
import type { GatewayPort } from '../../src/broker/port.js';
import { JitError, type AccountOwner, type AccountSpec, type JitTarget, type Provisioner, type RemoveResult } from '../../src/broker/provisioner.js';
import { UpstreamError } from '../../src/broker/upstream-error.js';
import type { JitSettings, Resource, TargetCredentials } from '../../src/core/model.js';
import { AdminConnection, ServerError, sqlAccount, sqlIdent, sqlString, type AdminOptions } from './admin.js';

export const MARKER_ROLE = 'gatehouse_ephemeral';
/** MariaDB: where the owner note of each temporary account is kept (it has no COMMENT/ATTRIBUTE on accounts). */
export const NOTES_DATABASE = 'gatehouse_jit';
export const NOTES_TABLE = `${sqlIdent(NOTES_DATABASE)}.${sqlIdent('accounts')}`;
const NOTES_RIGHT = `CREATE, SELECT, INSERT and UPDATE on ${NOTES_DATABASE}.*`;

/** How the door reaches a resource's target: the TLS and identity settings of its sessions. */
export type TargetLeg = Pick<AdminOptions, 'ca' | 'tls' | 'plaintextAllowed' | 'timeoutMs' | 'tlsSessions'>;

export interface MysqlProvisionerDeps {
  port: GatewayPort;
  target(resource: Resource): TargetLeg;
}

/** Names the provisioner makes are `[a-z0-9_]`, as the manager promises; checked again before any SQL. */
const ACCOUNT_NAME = /^[a-z0-9_]{1,32}$/;
/** The settings' rule for SQL role names (src/workflow/jit-settings.ts), checked again before any SQL. */
const SQL_ROLE = /^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/;
/** Words a role list must not name: the dialects read them as keywords in SET DEFAULT ROLE, or they are the marker. */
const RESERVED_ROLES = new Set(['none', 'all', 'public', 'current_role', MARKER_ROLE]);

/** Target errors that mean "the vaulted login may not do this". */
const DENIED = new Set([
  1044, // ER_DBACCESS_DENIED_ERROR
  1142, // ER_TABLEACCESS_DENIED_ERROR
  1143, // ER_COLUMNACCESS_DENIED_ERROR
  1227, // ER_SPECIFIC_ACCESS_DENIED_ERROR: names the privilege
  1095, // ER_KILL_DENIED_ERROR: not the owner of the thread
  1698, // MariaDB: no ADMIN OPTION on the role
  3530, // MySQL: the role is not granted to the grantor with ADMIN OPTION
]);
const NO_SUCH_ROLE = new Set([1959 /* MariaDB ER_INVALID_ROLE */, 3523 /* MySQL ER_UNKNOWN_AUTHID */]);
const NO_SUCH_TABLE = new Set([1146, 1049]);
const USER_EXISTS = 1396; // ER_CANNOT_USER: CREATE USER of an existing account, DROP/ALTER of an absent one
const UNKNOWN_THREAD = 1094;
/** How often the processlist is read again while killed connections end. */
const KILL_POLL_MS = 5;

interface Dialect {
  kind: 'mariadb' | 'mysql';
  name: 'MariaDB' | 'MySQL';
}

/** The dialect from the greeting's version: MariaDB says so (after a `5.5.5-` prefix on old replication-safe builds). */
export function dialectOf(serverVersion: string): Dialect {
  const maria = /mariadb/i.test(serverVersion);
  const m = /^(?:5\.5\.5-)?(\d+)\.(\d+)\.(\d+)/.exec(serverVersion);
  const [major, minor, patch] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [0, 0, 0];
  const at = (a: number, b: number, c: number): boolean => major > a || (major === a && (minor > b || (minor === b && patch >= c)));
  if (maria) {
    if (!at(10, 4, 2)) throw new JitError('invalid', `MariaDB ${serverVersion} has no ACCOUNT LOCK: ephemeral accounts need MariaDB 10.4.2 or later`);
    return { kind: 'mariadb', name: 'MariaDB' };
  }
  if (!at(8, 0, 21)) throw new JitError('invalid', `MySQL ${serverVersion} has no account ATTRIBUTE: ephemeral accounts and elevation need MySQL 8.0.21 or later`);
  return { kind: 'mysql', name: 'MySQL' };
}

/** One admin connection and what a step's error message needs. */
interface Admin {
  db: AdminConnection;
  d: Dialect;
  t: JitTarget;
  leg: AdminOptions;
}

/** What a failed step needed: `right` for a refusal, `what` for any other error. */
interface StepInfo {
  right: string;
  what: string;
}

/** A statement that takes back one step of a failed create. */
interface Undo extends StepInfo {
  sql: string;
}

export class MysqlProvisioner implements Provisioner {
  readonly protocol = 'mysql' as const;
  readonly nameLimit = 32;

  constructor(private readonly deps: MysqlProvisionerDeps) {}

  check(jit: JitSettings): string[] {
    const problems: string[] = [];
    const e = jit.ephemeral;
    if (e?.sudo !== undefined) problems.push('ephemeral.sudo applies to Linux machines, not MySQL/MariaDB');
    if (e?.ou !== undefined) problems.push('ephemeral.ou applies to LDAP directories, not MySQL/MariaDB');
    if (e?.inheritor !== undefined) problems.push('ephemeral.inheritor applies to PostgreSQL, not MySQL/MariaDB');
    for (const [field, roles] of [['ephemeral.grants', jit.ephemeral?.grants ?? []], ['elevate.grants', jit.elevate?.grants ?? []]] as const) {
      for (const r of roles) {
        if (!SQL_ROLE.test(r)) problems.push(`${field}: '${r}' is not a role name`);
        else if (RESERVED_ROLES.has(r.toLowerCase())) problems.push(`${field}: '${r}' cannot be granted by Gatehouse (a keyword in SET DEFAULT ROLE, or the marker role)`);
      }
    }
    return problems;
  }

  async create(t: JitTarget, spec: AccountSpec): Promise<TargetCredentials> {
    const name = accountName(spec.name);
    const roles = roleNames(t.jit.ephemeral?.grants ?? []);
    const maxConnections = t.jit.ephemeral?.maxConnections ?? 10;
    if (!Number.isInteger(maxConnections) || maxConnections < 1) throw new JitError('invalid', 'ephemeral.maxConnections must be a positive integer');
    // 32 characters of base64url: 192 random bits, nothing that needs quoting.
    const password = randomBytes(24).toString('base64url');
    return this.run(t, async (a) => {
      const user = sqlAccount(name, '%');
      const undo: Undo[] = [];
      try {
        const attribute = a.d.kind === 'mysql' ? ` ATTRIBUTE ${sqlString(JSON.stringify({ gatehouse: ownerFacts(spec) }))}` : '';
        try {
          await a.db.query(`CREATE USER ${user} IDENTIFIED BY ${sqlString(password)} WITH MAX_USER_CONNECTIONS ${maxConnections}${attribute}`);
        } catch (err) {
          if (err instanceof ServerError && err.errno === USER_EXISTS) throw new JitError('refused', `an account named ${name} already exists on ${t.resource.name}: Gatehouse does not take over accounts it did not make`);
          throw this.failed(a, err, { right: 'the CREATE USER privilege', what: `create the account ${name}` });
        }
        undo.push({ sql: `DROP USER IF EXISTS ${user}`, right: 'the CREATE USER privilege', what: `drop the account ${name}` });
        // The marker goes on first, so that a crash from here on leaves an account the reconciler may remove.
        await this.grantMarker(a, user);
        if (a.d.kind === 'mariadb') {
          await this.writeNote(a, name, spec);
          undo.push({ sql: closeNoteSql(name), right: NOTES_RIGHT, what: `record the removal of ${name} in ${NOTES_DATABASE}.accounts` });
        }
        const defaultRole = await this.grantRoles(a, name, roles, undo);
        if (a.d.kind === 'mysql') {
          if (roles.length) await this.step(a, `SET DEFAULT ROLE ALL TO ${user}`, { right: 'the CREATE USER privilege', what: `set the default roles of ${name}` });
        } else if (defaultRole) {
          await this.setOwnDefaultRole(a, name, password, defaultRole);
        }
        return { login: name, password };
      } catch (err) {
        const left = await this.undo(a, undo);
        if (left && err instanceof JitError) throw new JitError(err.kind, `${err.message}; ${left}`);
        throw err;
      }
    });
  }

  async remove(t: JitTarget, name: string): Promise<RemoveResult> {
    const account = accountName(name);
    if (account === t.admin.login) return { done: true, detail: `${account} is the vaulted login of ${t.resource.name}: never removed` };
    try {
      return await this.run(t, async (a) => {
        const bundle = bundleRole(account);
        const marked = await this.marked(a, account, bundle);
        if (!marked.account) return { done: true, detail: `no account ${account} carrying the Gatehouse marker on ${t.resource.name}: nothing removed` };
        const user = sqlAccount(account, '%');
        await this.seesAllConnections(a);
        try {
          await a.db.query(`ALTER USER ${user} ACCOUNT LOCK`);
        } catch (err) {
          // 1396: gone since the check; the connections are still looked for.
          if (!(err instanceof ServerError && err.errno === USER_EXISTS)) throw this.failed(a, err, { right: 'the CREATE USER privilege', what: `lock the account ${account}` });
        }
        const ended = await this.endConnections(a, `USER = ${sqlString(account)}`);
        if (!ended.done) return ended;
        // The marker once more, right before what cannot be undone (DDL here is not transactional).
        if (!(await this.marked(a, account, bundle)).account) {
          return { done: true, detail: `the account ${account} on ${t.resource.name} lost the Gatehouse marker during removal; it is locked and left alone` };
        }
        // The bundle first: an account left behind by a crash still carries the marker that finds it.
        if (marked.bundle) await this.step(a, `DROP ROLE IF EXISTS ${sqlIdent(bundle)}`, { right: 'the CREATE USER privilege', what: `drop the role ${bundle}` });
        await this.step(a, `DROP USER IF EXISTS ${user}`, { right: 'the CREATE USER privilege', what: `drop the account ${account}` });
        if (a.d.kind === 'mariadb') {
          const note = await this.closeNote(a, account);
          if (note) return { done: true, detail: note };
        }
        return { done: true };
      });
    } catch (err) {
      if (err instanceof JitError) return { done: false, detail: err.message };
      throw err;
    }
  }

  async elevate(t: JitTarget, _owner: AccountOwner): Promise<void> {
    const roles = roleNames(t.jit.elevate?.grants ?? []);
    if (!roles.length) return;
    await this.run(t, async (a) => {
      if (a.d.kind === 'mariadb') {
        // MariaDB lets only a holder of the role WITH ADMIN OPTION grant it, so the vaulted
        // login already holds it; elevation makes it the login's active role for new sessions.
        if (roles.length > 1) throw new JitError('invalid', `MariaDB activates one default role per account: elevate ${t.resource.name} with one role (a role can hold the others)`);
        const role = roles[0]!;
        const info = { right: `the role ${role} (granted to it WITH ADMIN OPTION)`, what: `make ${role} its default role` };
        try {
          await a.db.query(`SET DEFAULT ROLE ${sqlIdent(role)}`);
        } catch (err) {
          // 1959 here: the role is not granted to the login (or does not exist), which to the login is the same.
          if (err instanceof ServerError && NO_SUCH_ROLE.has(err.errno)) throw this.failed(a, new ServerError(1227, err.sqlstate, err.message), info);
          throw this.failed(a, err, info);
        }
        return;
      }
      const me = await this.whoami(a);
      for (const r of roles) await this.step(a, `GRANT ${sqlIdent(r)} TO ${sqlAccount(me.user, me.host)}`, { right: `ROLE_ADMIN (or the role ${r} WITH ADMIN OPTION)`, what: `grant ${r} to itself` });
      await this.step(a, `SET DEFAULT ROLE ALL TO ${sqlAccount(me.user, me.host)}`, { right: 'the CREATE USER privilege', what: 'make its roles default' });
    });
  }

  async unelevate(t: JitTarget): Promise<RemoveResult> {
    const roles = roleNames(t.jit.elevate?.grants ?? []);
    try {
      return await this.run(t, async (a) => {
        const me = await this.seesAllConnections(a);
        if (a.d.kind === 'mariadb') {
          await this.step(a, 'SET DEFAULT ROLE NONE', { right: 'its own account', what: 'clear its default role' });
        } else if (roles.length) {
          const held = await a.db.rows(
            `SELECT FROM_USER FROM mysql.role_edges WHERE TO_USER = ${sqlString(me.user)} AND TO_HOST = ${sqlString(me.host)} AND FROM_HOST = '%' AND FROM_USER IN (${roles.map(sqlString).join(', ')})`,
          ).catch((err: unknown) => Promise.reject(this.failed(a, err, { right: 'SELECT on mysql.role_edges', what: 'read its roles' })));
          for (const [r] of held) await this.step(a, `REVOKE ${sqlIdent(r!)} FROM ${sqlAccount(me.user, me.host)}`, { right: `ROLE_ADMIN (or the role ${r} WITH ADMIN OPTION)`, what: `revoke ${r} from itself` });
        }
        // Its sessions opened during the grant have the role active (or may have SET ROLE): they end.
        const others = (await this.processlist(a, `USER = ${sqlString(me.user)} AND ID <> CONNECTION_ID()`)).join(', ');
        return others ? this.endConnections(a, `ID IN (${others})`) : { done: true };
      });
    } catch (err) {
      if (err instanceof JitError) return { done: false, detail: err.message };
      throw err;
    }
  }

  async listMarked(t: JitTarget): Promise<string[]> {
    return this.run(t, async (a) => {
      const sql = a.d.kind === 'mariadb'
        ? `SELECT User FROM mysql.roles_mapping WHERE Role = ${sqlString(MARKER_ROLE)} AND Host = '%' AND Admin_option = 'N'`
        : `SELECT TO_USER FROM mysql.role_edges WHERE FROM_USER = ${sqlString(MARKER_ROLE)} AND FROM_HOST = '%' AND TO_HOST = '%' AND WITH_ADMIN_OPTION = 'N'`;
      const rows = await a.db.rows(sql).catch((err: unknown) => Promise.reject(this.failed(a, err, { right: `SELECT on ${markerTable(a.d)}`, what: 'list the marked accounts' })));
      return rows.map(([u]) => u!).filter((u) => u !== t.admin.login);
    });
  }

  /** One admin connection for `fn`, closed afterwards; a failure to reach or trust the target is a JitError. */
  private async run<T>(t: JitTarget, fn: (a: Admin) => Promise<T>): Promise<T> {
    const r = t.resource;
    if (t.admin.password === undefined) throw new JitError('invalid', `${r.name} has no vaulted password to administer its accounts with`);
    const leg: AdminOptions = { host: r.host, port: r.port, login: t.admin.login, password: t.admin.password, resource: r.name, gateway: this.deps.port, ...this.deps.target(r) };
    let db: AdminConnection;
    try {
      db = await AdminConnection.open(leg);
    } catch (err) {
      throw upstreamFailure(t, err);
    }
    try {
      return await fn({ db, d: dialectOf(db.serverVersion), t, leg });
    } catch (err) {
      if (err instanceof UpstreamError) throw upstreamFailure(t, err);
      throw err;
    } finally {
      db.close();
    }
  }

  private async step(a: Admin, sql: string, info: StepInfo): Promise<void> {
    try {
      await a.db.query(sql);
    } catch (err) {
      throw this.failed(a, err, info);
    }
  }

  /** A target's ERR as a JitError naming what was missing; anything else as it is. */
  private failed(a: Admin, err: unknown, info: StepInfo): unknown {
    if (!(err instanceof ServerError)) return err;
    const said = `${a.d.name} said: ${err.message}`;
    if (DENIED.has(err.errno)) return new JitError('missing_right', `the vaulted login ${a.t.admin.login} lacks ${info.right} on ${a.t.resource.name}, needed to ${info.what} (${said})`);
    if (NO_SUCH_ROLE.has(err.errno)) return new JitError('invalid', `${a.t.resource.name} could not ${info.what}: the role does not exist there (${said})`);
    return new JitError('refused', `${a.t.resource.name} refused to ${info.what} (${said})`);
  }

  private async grantMarker(a: Admin, grantee: string): Promise<void> {
    const grant = `GRANT ${sqlIdent(MARKER_ROLE)} TO ${grantee}`;
    const info = { right: `the role ${MARKER_ROLE} WITH ADMIN OPTION${a.d.kind === 'mysql' ? ' (or ROLE_ADMIN)' : ''}`, what: `grant the marker role ${MARKER_ROLE}` };
    try {
      await a.db.query(grant);
    } catch (err) {
      if (!(err instanceof ServerError && NO_SUCH_ROLE.has(err.errno))) throw this.failed(a, err, info);
      // The first account on this target: the role is made here, with no privileges (its creator holds it WITH ADMIN OPTION on MariaDB).
      await this.step(a, `CREATE ROLE IF NOT EXISTS ${sqlIdent(MARKER_ROLE)}`, { right: 'the CREATE USER privilege (or CREATE ROLE)', what: `create the marker role ${MARKER_ROLE}` });
      await this.step(a, grant, info);
    }
  }

  /**
   * Grants the configured roles and returns the one to make default. MariaDB activates a
   * single default role, so two or more are bundled in a per-account role, itself marked.
   */
  private async grantRoles(a: Admin, name: string, roles: string[], undo: Undo[]): Promise<string | undefined> {
    const grant = async (r: string, to: string): Promise<void> =>
      this.step(a, `GRANT ${sqlIdent(r)} TO ${to}`, { right: `the role ${r} WITH ADMIN OPTION${a.d.kind === 'mysql' ? ' (or ROLE_ADMIN)' : ''}`, what: `grant ${r} to ${name}` });
    const user = sqlAccount(name, '%');
    if (a.d.kind === 'mysql' || roles.length <= 1) {
      for (const r of roles) await grant(r, user);
      return roles[0];
    }
    const bundle = bundleRole(name);
    await this.step(a, `CREATE ROLE ${sqlIdent(bundle)}`, { right: 'the CREATE USER privilege', what: `create the role ${bundle} that holds the roles of ${name}` });
    undo.unshift({ sql: `DROP ROLE IF EXISTS ${sqlIdent(bundle)}`, right: 'the CREATE USER privilege', what: `drop the role ${bundle}` });
    await this.grantMarker(a, sqlIdent(bundle));
    for (const r of roles) await grant(r, sqlIdent(bundle));
    await grant(bundle, user);
    return bundle;
  }

  /**
   * MariaDB: SET DEFAULT ROLE for another account needs UPDATE on the whole mysql database,
   * which would let the vaulted login rewrite any grant; the new account sets its own instead,
   * in one login made like a session's (which also proves the account works).
   */
  private async setOwnDefaultRole(a: Admin, name: string, password: string, role: string): Promise<void> {
    let own: AdminConnection;
    try {
      own = await AdminConnection.open({ ...a.leg, login: name, password });
    } catch (err) {
      const said = err instanceof UpstreamError ? err.message : String(err);
      throw new JitError('refused', `the new account ${name} could not log in to ${a.t.resource.name} to set its default role (${said})`);
    }
    try {
      await own.query(`SET DEFAULT ROLE ${sqlIdent(role)}`);
    } catch (err) {
      throw this.failed(a, err, { right: `the role ${role}`, what: `make ${role} the default role of ${name}` });
    } finally {
      own.close();
    }
  }

  /** MariaDB: the owner note in gatehouse_jit.accounts, the database and table made on first use. */
  private async writeNote(a: Admin, name: string, spec: AccountSpec): Promise<void> {
    const o = spec.owner;
    const sql =
      `INSERT INTO ${NOTES_TABLE} (name, gatehouse_user, account_id, note) VALUES (${[name, o.user.slice(0, 255), o.accountId.slice(0, 64), spec.note.slice(0, 1024)].map(sqlString).join(', ')}) ` +
      'ON DUPLICATE KEY UPDATE gatehouse_user = VALUES(gatehouse_user), account_id = VALUES(account_id), note = VALUES(note), created_at = CURRENT_TIMESTAMP(3), removed_at = NULL';
    const info = { right: NOTES_RIGHT, what: `record the owner of ${name} in ${NOTES_DATABASE}.accounts` };
    try {
      await a.db.query(sql);
    } catch (err) {
      if (!(err instanceof ServerError && NO_SUCH_TABLE.has(err.errno))) throw this.failed(a, err, info);
      await this.step(a, `CREATE DATABASE IF NOT EXISTS ${sqlIdent(NOTES_DATABASE)}`, info);
      await this.step(
        a,
        `CREATE TABLE IF NOT EXISTS ${NOTES_TABLE} (name VARCHAR(128) NOT NULL PRIMARY KEY, gatehouse_user VARCHAR(255) NOT NULL, account_id VARCHAR(64) NOT NULL, ` +
          'note VARCHAR(1024) NOT NULL, created_at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3), removed_at TIMESTAMP(3) NULL DEFAULT NULL)',
        info,
      );
      await this.step(a, sql, info);
    }
  }

  /** MariaDB: the note says when the account went; kept for attribution afterwards. A failure here is reported, not retried. */
  private async closeNote(a: Admin, name: string): Promise<string | undefined> {
    try {
      await a.db.query(closeNoteSql(name));
      return undefined;
    } catch (err) {
      const e = this.failed(a, err, { right: NOTES_RIGHT, what: `record the removal of ${name}` });
      return `removed; the note was not updated: ${e instanceof Error ? e.message : String(e)}`;
    }
  }

  /** Undoes a half-made account, last step first where order matters; returns what could not be undone, in words. */
  private async undo(a: Admin, steps: Undo[]): Promise<string | undefined> {
    for (const s of steps) {
      try {
        await a.db.query(s.sql);
      } catch (err) {
        const e = this.failed(a, err, s);
        return `undoing it failed as well: ${e instanceof Error ? e.message : String(e)}`;
      }
    }
    return undefined;
  }

  /** Whether the account (`'name'@'%'`) and its MariaDB role bundle carry the marker, without admin option. */
  private async marked(a: Admin, name: string, bundle: string): Promise<{ account: boolean; bundle: boolean }> {
    const sql = a.d.kind === 'mariadb'
      ? `SELECT Host FROM mysql.roles_mapping WHERE Role = ${sqlString(MARKER_ROLE)} AND Admin_option = 'N' AND ((User = ${sqlString(name)} AND Host = '%') OR (User = ${sqlString(bundle)} AND Host = ''))`
      : `SELECT TO_HOST FROM mysql.role_edges WHERE FROM_USER = ${sqlString(MARKER_ROLE)} AND FROM_HOST = '%' AND WITH_ADMIN_OPTION = 'N' AND TO_USER = ${sqlString(name)} AND TO_HOST = '%'`;
    const rows = await a.db.rows(sql).catch((err: unknown) => Promise.reject(this.failed(a, err, { right: `SELECT on ${markerTable(a.d)}`, what: `check the marker of ${name}` })));
    return { account: rows.some(([h]) => h === '%'), bundle: rows.some(([h]) => h === '') };
  }

  /** The vaulted login as the target matched it, and whether it sees every connection (PROCESS or SUPER). */
  private async whoami(a: Admin): Promise<{ user: string; host: string; seesAll: boolean }> {
    const [row] = await a.db.rows(
      'SELECT CURRENT_USER(), (SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE GRANTEE = ' +
        "CONCAT('''', SUBSTRING_INDEX(CURRENT_USER(), '@', 1), '''@''', SUBSTRING_INDEX(CURRENT_USER(), '@', -1), '''') AND PRIVILEGE_TYPE IN ('PROCESS', 'SUPER'))",
    );
    const current = row?.[0] ?? '';
    const at = current.lastIndexOf('@');
    return { user: current.slice(0, at), host: current.slice(at + 1), seesAll: Number(row?.[1]) > 0 };
  }

  private async processlist(a: Admin, where: string): Promise<string[]> {
    const rows = await a.db.rows(`SELECT ID FROM information_schema.PROCESSLIST WHERE ${where}`);
    // Only decimal ids ever go back into SQL.
    return rows.map(([id]) => id ?? '').filter((id) => /^\d+$/.test(id));
  }

  /** The vaulted login as the target matched it; throws unless it sees every connection (without PROCESS, "none left" would be a lie). */
  private async seesAllConnections(a: Admin): Promise<{ user: string; host: string }> {
    const me = await this.whoami(a);
    if (!me.seesAll) throw new JitError('missing_right', `the vaulted login ${a.t.admin.login} lacks the PROCESS privilege on ${a.t.resource.name}, needed to see the connections it must end`);
    return me;
  }

  /** Kills the connections `where` selects until the processlist shows none, or the target's timeout passes. */
  private async endConnections(a: Admin, where: string): Promise<RemoveResult> {
    const start = performance.now();
    for (let round = 0; ; round++) {
      const ids = await this.processlist(a, where);
      if (!ids.length) return { done: true };
      if (performance.now() - start > a.leg.timeoutMs) return { done: false, detail: `${ids.length} connection(s) on ${a.t.resource.name} had not ended after ${a.leg.timeoutMs} ms` };
      for (const id of ids) {
        try {
          await a.db.query(`KILL CONNECTION ${id}`);
        } catch (err) {
          if (!(err instanceof ServerError && err.errno === UNKNOWN_THREAD)) throw this.failed(a, err, { right: `CONNECTION ADMIN (or SUPER)`, what: `end connection ${id}` });
        }
      }
      // A killed thread leaves the processlist when it notices, which takes a moment.
      await new Promise((r) => setTimeout(r, round ? KILL_POLL_MS * 4 : KILL_POLL_MS));
    }
  }
}

function accountName(name: string): string {
  if (!ACCOUNT_NAME.test(name)) throw new JitError('invalid', `'${name.slice(0, 64)}' is not a temporary account name (1 to 32 of a-z, 0-9, _)`);
  return name;
}

function roleNames(roles: readonly string[]): string[] {
  for (const r of roles) {
    if (!SQL_ROLE.test(r) || RESERVED_ROLES.has(r.toLowerCase())) throw new JitError('invalid', `'${r.slice(0, 64)}' is not a role Gatehouse grants`);
  }
  return [...roles];
}

const closeNoteSql = (name: string): string => `UPDATE ${NOTES_TABLE} SET removed_at = CURRENT_TIMESTAMP(3) WHERE name = ${sqlString(name)} AND removed_at IS NULL`;

/** MariaDB: the per-account role that holds two or more configured roles. */
const bundleRole = (name: string): string => `${name}_grants`;

const markerTable = (d: Dialect): string => (d.kind === 'mariadb' ? 'mysql.roles_mapping' : 'mysql.role_edges');

/** What MySQL 8 keeps in the account's ATTRIBUTE. */
function ownerFacts(spec: AccountSpec): Record<string, string> {
  const o = spec.owner;
  return {
    note: spec.note,
    user: o.user,
    accountId: o.accountId,
    ...(o.requestId ? { requestId: o.requestId } : {}),
    ...(o.leaseId ? { leaseId: o.leaseId } : {}),
    ...(o.sessionId ? { sessionId: o.sessionId } : {}),
  };
}

function upstreamFailure(t: JitTarget, err: unknown): unknown {
  if (!(err instanceof UpstreamError)) return err;
  if (err.kind === 'login') return new JitError('refused', `${t.resource.name} refused the vaulted login ${t.admin.login}: ${err.message}`);
  return new JitError('unreachable', `${t.resource.name} (${t.resource.host}:${t.resource.port}): ${err.message}`);
}
