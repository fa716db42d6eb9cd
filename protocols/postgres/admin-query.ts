/**
 * The gateway's own SQL on a target, as the vaulted login: the provisioner (provision.ts)
 * creates and removes temporary roles with it. The connection is made exactly as a
 * session's (connectUpstream: TLS, the target's identity, SCRAM), then speaks the simple
 * Query protocol only — no parameters, so every value in the SQL is quoted by `ident` and
 * `literal` below.
 */
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { decodeFields, decodeMessage, message, Msg, readCString, terminate, type Message } from './codec.js';
import { StreamReader } from './reader.js';
import { connectUpstream, type UpstreamLogin, type UpstreamTarget } from './upstream.js';

/** Backend messages of a simple query that the handshake constants (codec.ts `Msg`) do not name. */
const Reply = {
  RowDescription: 0x54, // T
  DataRow: 0x44, // D
  CommandComplete: 0x43, // C
  EmptyQueryResponse: 0x49, // I
  NotificationResponse: 0x41, // A
} as const;

/** One answer to a simple Query: the rows of its last row-returning statement, as text. */
export interface QueryResult {
  columns: string[];
  rows: (string | null)[][];
  /** CommandComplete tags, one per statement that ran (`CREATE ROLE`, `SELECT 1`...). */
  commands: string[];
  /** WARNING/NOTICE messages the target sent. */
  notices: string[];
}

/** The target refused a statement: its ErrorResponse, and which statement of the query it was. */
export class PgServerError extends Error {
  readonly code = 'PG_SERVER_ERROR';
  constructor(
    /** The SQLSTATE (`42501`, `2BP01`...). */
    readonly sqlstate: string,
    message: string,
    readonly detail: string | undefined,
    /** 0-based: how many statements of the query string completed before this one failed. */
    readonly statement: number,
  ) {
    super(message);
    this.name = 'PgServerError';
  }
}

/** The target went quiet or away in the middle of a query. */
export class PgLinkError extends Error {
  readonly code = 'PG_LINK';
  constructor(message: string) {
    super(message);
    this.name = 'PgLinkError';
  }
}

/** `"name"`, doubled quotes inside: an identifier PostgreSQL takes exactly as written. */
export function ident(name: string): string {
  if (name.includes('\0')) throw new Error('an identifier cannot contain NUL');
  return `"${name.replace(/"/g, '""')}"`;
}

/** A string literal that means the same whatever `standard_conforming_strings` is (as libpq's PQescapeLiteral). */
export function literal(value: string): string {
  if (value.includes('\0')) throw new Error('a literal cannot contain NUL');
  const quoted = value.replace(/'/g, "''");
  return value.includes('\\') ? `E'${quoted.replace(/\\/g, '\\\\')}'` : `'${quoted}'`;
}

/** Big enough for a few thousand role names in one answer. */
const MAX_BUFFERED = 16 * 1024 * 1024;
const MAX_REPLY_MESSAGE = 1024 * 1024;
const reply = (b: Buffer): { value: Message; size: number } | undefined => decodeMessage(b, MAX_REPLY_MESSAGE);

export class AdminConnection {
  private constructor(
    private readonly socket: Socket | TLSSocket,
    private readonly reader: StreamReader,
    private readonly timeoutMs: number,
    /** The backend's own pid, so that ending a login's sessions can spare this one. */
    readonly pid: number,
    /** The ParameterStatus values of the greeting (`server_version`, `is_superuser`...). */
    readonly parameters: ReadonlyMap<string, string>,
  ) {}

  /** The server's major version (15, 16...). */
  get major(): number {
    return Number.parseInt(this.parameters.get('server_version') ?? '0', 10);
  }

  /** Whether the vaulted login is a superuser (PostgreSQL reports it at login). */
  get superuser(): boolean {
    return this.parameters.get('is_superuser') === 'on';
  }

  /** Connects and logs in as session connections do; throws UpstreamError like them. */
  static async open(target: UpstreamTarget, login: UpstreamLogin): Promise<AdminConnection> {
    const up = await connectUpstream(target, login);
    if (up.rest.length > 0) up.socket.unshift(up.rest);
    const reader = new StreamReader(up.socket, 'the target', MAX_BUFFERED);
    up.socket.resume();
    const parameters = new Map<string, string>();
    for (const raw of up.greeting) {
      const m = decodeMessage(raw)?.value;
      if (m?.type !== Msg.ParameterStatus) continue;
      const k = readCString(m.body, 0);
      parameters.set(k.value, readCString(m.body, k.next).value);
    }
    return new AdminConnection(up.socket, reader, target.timeoutMs, up.key.readInt32BE(0), parameters);
  }

  /**
   * Runs one Query message. Several statements separated by `;` run as one implicit
   * transaction: if one fails, none of them took effect (PgServerError says which failed).
   */
  async query(sql: string): Promise<QueryResult> {
    if (sql.includes('\0')) throw new Error('SQL cannot contain NUL');
    this.socket.write(message(Msg.Query, Buffer.from(`${sql}\0`, 'utf8')));
    const timer = setTimeout(() => this.reader.abort(new PgLinkError(`the target did not answer within ${this.timeoutMs} ms`)), this.timeoutMs);
    try {
      return await this.readReply();
    } finally {
      clearTimeout(timer);
    }
  }

  private async readReply(): Promise<QueryResult> {
    const out: QueryResult = { columns: [], rows: [], commands: [], notices: [] };
    let failure: PgServerError | undefined;
    for (;;) {
      let m: Message;
      try {
        m = await this.reader.read(reply);
      } catch (e) {
        this.socket.destroy();
        throw e instanceof PgLinkError ? e : new PgLinkError(e instanceof Error ? e.message : String(e));
      }
      switch (m.type) {
        case Reply.RowDescription:
          out.columns = rowDescription(m.body);
          out.rows = [];
          break;
        case Reply.DataRow:
          out.rows.push(dataRow(m.body));
          break;
        case Reply.CommandComplete:
          out.commands.push(readCString(m.body, 0).value);
          break;
        case Msg.ErrorResponse: {
          const f = decodeFields(m.body);
          failure ??= new PgServerError(f.C ?? 'XX000', f.M ?? 'the target refused the statement', f.D, out.commands.length);
          break;
        }
        case Msg.NoticeResponse: {
          const f = decodeFields(m.body);
          if (f.M) out.notices.push(f.M);
          break;
        }
        case Reply.EmptyQueryResponse:
        case Reply.NotificationResponse:
        case Msg.ParameterStatus:
          break;
        case Msg.ReadyForQuery:
          if (failure) throw failure;
          return out;
        default:
          this.socket.destroy();
          throw new PgLinkError(`unexpected message '${String.fromCharCode(m.type)}' from the target`);
      }
    }
  }

  /** Whether the link is still open (a parked connection the target closed is not reused). */
  get alive(): boolean {
    return !this.socket.destroyed && this.socket.readyState === 'open';
  }

  /** While parked, an idle admin connection does not keep the process alive. */
  park(parked: boolean): void {
    if (parked) this.socket.unref();
    else this.socket.ref();
  }

  /** Terminate, then close. */
  close(): void {
    this.reader.detach();
    this.socket.on('error', () => {});
    if (this.socket.destroyed) return;
    // The target closes on Terminate; reading on lets the socket see that end and close.
    this.socket.end(terminate());
    this.socket.resume();
    setTimeout(() => this.socket.destroy(), this.timeoutMs).unref();
  }
}

function rowDescription(body: Buffer): string[] {
  const n = body.readInt16BE(0);
  const names: string[] = [];
  let i = 2;
  for (let c = 0; c < n; c++) {
    const s = readCString(body, i);
    names.push(s.value);
    i = s.next + 18; // table oid, column number, type oid, size, modifier, format
  }
  return names;
}

function dataRow(body: Buffer): (string | null)[] {
  const n = body.readInt16BE(0);
  const values: (string | null)[] = [];
  let i = 2;
  for (let c = 0; c < n; c++) {
    const len = body.readInt32BE(i);
    i += 4;
    if (len < 0) {
      values.push(null);
    } else {
      values.push(body.toString('utf8', i, i + len));
      i += len;
    }
  }
  return values;
}
