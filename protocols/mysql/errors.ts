/**
 * What a MySQL user reads when Gatehouse says no: an ERR packet with a real error number and
 * SQLSTATE, so `mariadb` prints `ERROR 1045 (28000): Gatehouse: ...` and drivers raise
 * their usual error with `code`/`errno`/`sqlState`.
 */
import type { Denial } from '../../src/broker/broker.js';
import type { TerminationReason } from '../../src/core/model.js';
import { encodeErr, type ErrFields } from './codec.js';

/** Clients copy the message into a 512-byte buffer (MYSQL_ERRMSG_SIZE); longer text is cut. */
const MAX_MESSAGE = 500;

export class MysqlRefusal {
  constructor(
    /** Stable code: a decide() deny code or one of the adapter's own below. */
    readonly code: string,
    readonly errno: number,
    readonly sqlstate: string,
    readonly message: string,
    readonly hint?: string,
  ) {}

  text(): string {
    const t = `${this.message}${this.hint ? ` To fix: ${this.hint}` : ''}`;
    return Buffer.byteLength(t) <= MAX_MESSAGE ? t : `${Buffer.from(t).subarray(0, MAX_MESSAGE - 3).toString('utf8')}...`;
  }

  fields(): ErrFields {
    return { errno: this.errno, sqlstate: this.sqlstate, message: this.text() };
  }

  packet(): Buffer {
    return encodeErr(this.fields());
  }
}

/** ER_ACCESS_DENIED_ERROR: what clients show for a failed login. */
const ACCESS_DENIED = [1045, '28000'] as const;

export function fromDenial(d: Denial, resource: string): MysqlRefusal {
  return new MysqlRefusal(d.code, ...ACCESS_DENIED, `Gatehouse: access to ${resource} refused (${d.code}): ${d.message}`, d.hint);
}

export const refusals = {
  badLogin: (user: string) =>
    new MysqlRefusal('bad_login', ...ACCESS_DENIED, `Gatehouse: '${user.slice(0, 64)}' is not a Gatehouse login; log in as USER:RESOURCE.`, 'mariadb -h GATEWAY -P 13306 -u alice:prod-mysql -p'),
  badCredentials: (user: string, resource: string) =>
    new MysqlRefusal(
      'bad_credentials', ...ACCESS_DENIED,
      `Gatehouse: access denied for '${user}:${resource}': the password is neither ${user}'s gateway password nor a valid launch ticket for ${resource}.`,
      `gatehouse launch ${resource}`,
    ),
  badTicket: (resource: string) =>
    new MysqlRefusal('bad_ticket', ...ACCESS_DENIED, `Gatehouse: the launch ticket is not valid for ${resource} (unknown, already used or expired).`, `get a fresh one: gatehouse launch ${resource}`),
  ticketForOther: (user: string, resource: string) =>
    new MysqlRefusal('bad_credentials', ...ACCESS_DENIED, `Gatehouse: that launch ticket for ${resource} was not issued to ${user}.`, `gatehouse launch ${resource}`),
  noPassword: () =>
    new MysqlRefusal('bad_credentials', ...ACCESS_DENIED, 'Gatehouse: a password (your gateway password or a launch ticket) is required.', 'mariadb ... -p'),
  wrongProtocol: (resource: string, protocol: string) =>
    new MysqlRefusal('wrong_protocol', ...ACCESS_DENIED, `Gatehouse: ${resource} is a ${protocol} resource, not a MySQL one.`, 'gatehouse resources'),
  tlsRequired: () =>
    new MysqlRefusal('tls_required', 3159, 'HY000', 'Gatehouse: connections without TLS are refused.', 'drop --skip-ssl / set ssl in the driver (mariadb: --ssl-ca=ca.pem --ssl-verify-server-cert)'),
  unsupportedAuth: (plugin: string) =>
    new MysqlRefusal('unsupported_auth', 1251, '08004', `Gatehouse: the client cannot authenticate with ${plugin.slice(0, 64)}; it needs caching_sha2_password or mysql_clear_password.`),
  targetUnreachable: (resource: string, why: string) =>
    new MysqlRefusal('target_unreachable', 1429, 'HY000', `Gatehouse could not open ${resource}: ${why}`, `try again; if it persists, tell the owner of ${resource}`),
  targetIdentity: (resource: string, why: string) =>
    new MysqlRefusal('target_identity', 1429, 'HY000', `Gatehouse refused to log in to ${resource}: ${why}`, `an administrator must verify ${resource}'s TLS certificate`),
  changeUser: () =>
    new MysqlRefusal('change_user', 1227, '42000', 'Gatehouse: COM_CHANGE_USER is not allowed through the gateway; the connection is closed.', 'open a new connection as USER:RESOURCE'),
  handshakeTimeout: () => new MysqlRefusal('handshake_timeout', 1043, '08S01', 'Gatehouse: the handshake took too long.'),
  protocol: (errno: number, sqlstate: string, message: string) => new MysqlRefusal('protocol_error', errno, sqlstate, `Gatehouse: ${message}`),
} as const;

/** ER_CONNECTION_KILLED: the ERR packet a live session ends with. */
export function closingRefusal(reason: TerminationReason, message: string): MysqlRefusal {
  return new MysqlRefusal(reason, 1927, '70100', `${message} (${reason})`);
}
