/**
 * The provisioner's own connection to a target: a login reached exactly as the door reaches
 * the target for a session (connectUpstream: TLS, the identity policy, the target's auth
 * plugins), then plain COM_QUERY answered by OK, ERR or a text result set. One statement per
 * query (no multi-statements are negotiated); callers build SQL only from values passed
 * through `sqlString` / `sqlIdent`.
 */
import { UpstreamError } from '../../src/broker/upstream-error.js';
import { CHARSET_UTF8MB4_GENERAL_CI, Cap, Cmd, decodeErr, LOCAL_INFILE_REQUEST, PayloadReader, Reply } from './codec.js';
import type { PacketReader } from './reader.js';
import { connectUpstream, type UpstreamOptions } from './upstream.js';

/** The target answered a statement with ERR. */
export class ServerError extends Error {
  constructor(
    readonly errno: number,
    readonly sqlstate: string,
    message: string,
  ) {
    super(message);
    this.name = 'ServerError';
  }
}

export interface QueryResult {
  /** Text values, NULL as null; empty for a statement answered by OK. */
  rows: Array<Array<string | null>>;
  affectedRows: number;
  warnings: number;
}

export type AdminOptions = Omit<UpstreamOptions, 'clientCapabilities' | 'clientMariadbCapabilities' | 'charset' | 'maxPacket' | 'onReader' | 'onGreeting' | 'database'>;

/** Result sets the provisioner reads are a few short rows: anything bigger is not one of them. */
const MAX_ADMIN_PACKET = 64 * 1024;

export class AdminConnection {
  private closed = false;

  private constructor(
    private readonly reader: PacketReader,
    readonly serverVersion: string,
    /** The target's thread id of this connection (its CONNECTION_ID()). */
    readonly threadId: number,
    private readonly timeoutMs: number,
  ) {}

  /** Logs in; throws UpstreamError as the door would for a session. */
  static async open(o: AdminOptions): Promise<AdminConnection> {
    let stream: { destroy(): void } | undefined;
    try {
      const up = await connectUpstream({
        ...o,
        // Classic result sets (EOF packets, no session tracking): nothing that changes their shape.
        clientCapabilities: Cap.TRANSACTIONS,
        clientMariadbCapabilities: 0,
        charset: CHARSET_UTF8MB4_GENERAL_CI,
        maxPacket: MAX_ADMIN_PACKET,
        onReader: (r) => (stream = r.stream),
      });
      return new AdminConnection(up.reader, up.serverVersion, up.connectionId, o.timeoutMs);
    } catch (err) {
      stream?.destroy();
      throw err;
    }
  }

  /** Runs one statement; an ERR from the target throws ServerError, a lost or stuck connection UpstreamError. */
  async query(sql: string): Promise<QueryResult> {
    if (this.closed) throw new UpstreamError('unreachable', 'the connection to the target is closed');
    const r = this.reader;
    const timer = setTimeout(() => {
      const err = new UpstreamError('timeout', `the target did not answer within ${this.timeoutMs} ms`);
      r.abort(err);
      this.close();
    }, this.timeoutMs);
    try {
      r.resetSeq();
      r.write(Buffer.concat([Buffer.from([Cmd.Query]), Buffer.from(sql, 'utf8')]));
      return await this.readResult();
    } catch (err) {
      if (!(err instanceof ServerError)) this.close();
      if (err instanceof ServerError || err instanceof UpstreamError) throw err;
      throw new UpstreamError('unreachable', `the connection to the target failed: ${err instanceof Error ? err.message : String(err)}`);
    } finally {
      clearTimeout(timer);
    }
  }

  /** The rows of a query, for the common case. */
  async rows(sql: string): Promise<Array<Array<string | null>>> {
    return (await this.query(sql)).rows;
  }

  /** Says COM_QUIT and closes; safe to call twice. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.reader.resetSeq();
      this.reader.write(Buffer.from([Cmd.Quit]));
    } catch {
      // Already gone.
    }
    this.reader.stream.end();
    this.reader.stream.destroy();
  }

  private async next(): Promise<Buffer> {
    return (await this.reader.read()).payload;
  }

  private async readResult(): Promise<QueryResult> {
    const first = await this.next();
    if (first[0] === Reply.Ok) {
      const p = new PayloadReader(first, 'OK packet');
      p.u8();
      const affectedRows = p.lenenc();
      p.lenenc();
      p.u16();
      return { rows: [], affectedRows, warnings: p.u16() };
    }
    if (first[0] === Reply.Err) throw serverError(first);
    if (first[0] === LOCAL_INFILE_REQUEST) throw new UpstreamError('protocol', 'the target asked for a local file');
    const columns = new PayloadReader(first, 'column count').lenenc();
    for (let i = 0; i < columns; i++) await this.next();
    const eof = await this.next();
    if (!isEof(eof)) throw new UpstreamError('protocol', 'no EOF after the column definitions');
    const rows: QueryResult['rows'] = [];
    for (;;) {
      const p = await this.next();
      if (p[0] === Reply.Err) throw serverError(p);
      if (isEof(p)) return { rows, affectedRows: 0, warnings: p.readUInt16LE(1) };
      const row = new PayloadReader(p, 'row');
      const values: Array<string | null> = [];
      for (let i = 0; i < columns; i++) {
        if (p[row.pos] === 0xfb) {
          row.u8();
          values.push(null);
        } else {
          values.push(row.lenencBytes().toString('utf8'));
        }
      }
      rows.push(values);
    }
  }
}

/** An EOF packet (a row can start with 0xfe too, but is then at least nine bytes long). */
const isEof = (p: Buffer): boolean => p[0] === Reply.Eof && p.length < 9;

function serverError(payload: Buffer): ServerError {
  const e = decodeErr(payload);
  return new ServerError(e.errno, e.sqlstate, e.message);
}

/**
 * A string literal that reads the same with and without NO_BACKSLASH_ESCAPES: quotes are
 * doubled (both modes), a backslash is escaped (it then reads as two under that mode, never
 * as the end of the literal). Control characters never reach here (the settings and the
 * names are validated), but NUL is refused outright.
 */
export function sqlString(s: string): string {
  if (s.includes('\0')) throw new Error('a NUL byte in an SQL string');
  return `'${s.replace(/\\/g, '\\\\').replace(/'/g, "''")}'`;
}

/** A quoted identifier (role, database, table): backticks doubled. */
export function sqlIdent(s: string): string {
  if (s.includes('\0')) throw new Error('a NUL byte in an SQL identifier');
  return `\`${s.replace(/`/g, '``')}\``;
}

/** `'user'@'host'` for an account. */
export function sqlAccount(user: string, host: string): string {
  return `${sqlString(user)}@${sqlString(host)}`;
}
