/**
 * What a MySQL user reads when Gatehouse says no: an ERR packet with a real error number and
 * SQLSTATE, so `mariadb` prints `ERROR 1045 (28000): Gatehouse: ...` and drivers raise
 * their usual error with `code`/`errno`/`sqlState`. The sentences come from the broker's
 * refusal catalogue; this file only says how each refusal code looks on the MySQL wire.
 */
import type { Refusal, RefusalCode } from '../../src/broker/port.js';
import { refusals } from '../../src/broker/refusals.js';
import type { TargetSaid } from '../../src/broker/upstream-error.js';
import type { TerminationReason } from '../../src/core/model.js';
import { encodeErr, type ErrFields, type MysqlDecodeError } from './codec.js';

/** Clients copy the message into a 512-byte buffer (MYSQL_ERRMSG_SIZE); longer text is cut. */
const MAX_MESSAGE = 500;

export interface MysqlErrorCode {
  errno: number;
  sqlstate: string;
}

/** ER_ACCESS_DENIED_ERROR: what clients show for a failed login, so every "no" of the workflow looks like one. */
const ACCESS_DENIED: MysqlErrorCode = { errno: 1045, sqlstate: '28000' };
/** ER_CONNECT_TO_FOREIGN_DATA_SOURCE: the target behind the gateway could not be used. */
const TARGET_FAILED: MysqlErrorCode = { errno: 1429, sqlstate: 'HY000' };

/**
 * Every refusal code as the MySQL wire shows it. A new code in src/broker/refusals.ts does
 * not compile until it has a row here.
 */
export const MYSQL_ERRORS: Record<RefusalCode, MysqlErrorCode> = {
  // The decision.
  resource_unknown: ACCESS_DENIED,
  wrong_protocol: ACCESS_DENIED,
  user_unknown: ACCESS_DENIED,
  user_disabled: ACCESS_DENIED,
  not_on_access_list: ACCESS_DENIED,
  outside_schedule: ACCESS_DENIED,
  approval_required: ACCESS_DENIED,
  approval_pending: ACCESS_DENIED,
  grant_expired: ACCESS_DENIED,
  checkout_required: ACCESS_DENIED,
  checked_out_by_other: ACCESS_DENIED,
  mfa_not_enrolled: ACCESS_DENIED,
  mfa_required: ACCESS_DENIED,
  mfa_invalid: ACCESS_DENIED,
  mfa_replayed: ACCESS_DENIED,
  gateway_unavailable: ACCESS_DENIED,
  // The login path.
  bad_login_name: ACCESS_DENIED,
  bad_password: ACCESS_DENIED,
  bad_key: ACCESS_DENIED,
  no_secret: ACCESS_DENIED,
  bad_ticket: ACCESS_DENIED,
  ticket_other_user: ACCESS_DENIED,
  ticket_other_resource: ACCESS_DENIED,
  locked: ACCESS_DENIED,
  throttled: ACCESS_DENIED,
  // The door's own.
  tls_required: { errno: 3159, sqlstate: 'HY000' }, // ER_SECURE_TRANSPORT_REQUIRED
  handshake_timeout: { errno: 1043, sqlstate: '08S01' }, // ER_HANDSHAKE_ERROR
  protocol_error: { errno: 1043, sqlstate: '08S01' }, // unless the codec names a closer one (1153 for a packet too large)
  unsupported_auth: { errno: 1251, sqlstate: '08004' }, // ER_NOT_SUPPORTED_AUTH_MODE
  not_allowed: { errno: 1227, sqlstate: '42000' }, // ER_SPECIFIC_ACCESS_DENIED_ERROR
  too_many_connections: { errno: 1040, sqlstate: '08004' }, // ER_CON_COUNT_ERROR
  internal_error: { errno: 1105, sqlstate: 'HY000' }, // ER_UNKNOWN_ERROR
  // The target.
  target_unreachable: TARGET_FAILED,
  target_login_failed: TARGET_FAILED,
  target_identity: TARGET_FAILED,
  target_protocol: TARGET_FAILED,
  target_no_credentials: TARGET_FAILED,
  target_provisioning: TARGET_FAILED,
};

/** Caps a message at what clients keep, without splitting a UTF-8 character. */
function capped(t: string): string {
  if (Buffer.byteLength(t) <= MAX_MESSAGE) return t;
  return `${Buffer.from(t).subarray(0, MAX_MESSAGE - 3).toString('utf8')}...`;
}

/**
 * A catalogue refusal rendered for the MySQL wire: errno and SQLSTATE from the table, and
 * `Gatehouse: MESSAGE (CODE) To fix: HINT` as the text. Many codes share errno 1045, so the
 * code is in the text, before the hint, where a cut at 500 bytes does not reach it.
 */
export class MysqlRefusal {
  readonly code: RefusalCode;
  readonly errno: number;
  readonly sqlstate: string;

  constructor(
    readonly refusal: Refusal,
    /** Only for the two exceptions below: the codec's own errno, the target's own ERR. */
    wire: MysqlErrorCode = MYSQL_ERRORS[refusal.code],
    /** Said before the message, naming the code itself (a decision: `access to R refused (CODE):`). */
    private readonly lead?: string,
  ) {
    this.code = refusal.code;
    this.errno = wire.errno;
    this.sqlstate = wire.sqlstate;
  }

  /** `Gatehouse: MESSAGE (CODE) To fix: HINT`, capped at 500 bytes. */
  text(): string {
    const r = this.refusal;
    const said = this.lead ? `${this.lead} ${r.message}` : `${r.message} (${r.code})`;
    return capped(`Gatehouse: ${said}${r.hint ? ` To fix: ${r.hint}` : ''}`);
  }

  fields(): ErrFields {
    return { errno: this.errno, sqlstate: this.sqlstate, message: this.text() };
  }

  packet(): Buffer {
    return encodeErr(this.fields());
  }
}

/** A decision refusal, with the resource and the code up front as MySQL users have always read it. */
export function accessRefused(resource: string, refusal: Refusal): MysqlRefusal {
  return new MysqlRefusal(refusal, MYSQL_ERRORS[refusal.code], `access to ${resource} refused (${refusal.code}):`);
}

/** A malformed or oversized packet keeps the error number the codec chose (1153 for a packet too large). */
export function protocolRefusal(err: MysqlDecodeError): MysqlRefusal {
  return new MysqlRefusal(refusals.protocolError(err.message), { errno: err.errno, sqlstate: err.sqlstate });
}

/**
 * The target's own ERR, relayed with its own number and SQLSTATE where those say more than
 * 1429 would (an unknown database, a database the vaulted login may not use).
 */
export function relayedTargetError(refusal: Refusal, said: TargetSaid): MysqlRefusal {
  const errno = Number(said.fields?.errno);
  const sqlstate = String(said.fields?.sqlstate ?? 'HY000');
  return new MysqlRefusal(refusal, Number.isInteger(errno) ? { errno, sqlstate } : MYSQL_ERRORS[refusal.code]);
}

/** ER_NO_SUCH_THREAD: what a KILL of a thread that is not the caller's gets, as for an unknown one. */
const NO_SUCH_THREAD: MysqlErrorCode = { errno: 1094, sqlstate: 'HY000' };

/**
 * A refused KILL (the session goes on). An id that is not one of the caller's own sessions
 * is ER_NO_SUCH_THREAD, as the target says for a thread that does not exist, so drivers that
 * treat it as "already gone" keep working; a KILL the gateway cannot read keeps not_allowed's 1227.
 */
export function killRefused(refusal: Refusal, notYours: boolean): MysqlRefusal {
  return new MysqlRefusal(refusal, notYours ? NO_SUCH_THREAD : MYSQL_ERRORS[refusal.code]);
}

/** ER_CONNECTION_KILLED: the ERR packet a live session ends with (`MESSAGE (REASON)`). */
export function closingPacket(reason: TerminationReason, message: string): Buffer {
  return encodeErr({ errno: 1927, sqlstate: '70100', message: capped(`${message} (${reason})`) });
}
