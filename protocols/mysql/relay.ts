/**
 * Packet framing on the relay's hot path, without copying: the client→server side reads the
 * command byte of every command (to refuse COM_CHANGE_USER, bound packet sizes and hand
 * COM_QUERY / COM_STMT_PREPARE text to the audit hook); the server→client side only follows packet boundaries
 * and sequence ids, so that a teardown knows whether, and with which sequence id, an ERR
 * packet can be slipped in. Neither ever changes a byte.
 */
import { refusals } from '../../src/broker/refusals.js';
import { Cmd, MAX_PHYSICAL_PAYLOAD, packetTooLarge } from './codec.js';
import { MysqlRefusal, protocolRefusal } from './errors.js';

/** COM_CHANGE_USER would log in to the target as someone else, past the decision. */
const CHANGE_USER_REFUSED = refusals.notAllowed('COM_CHANGE_USER', 'open a new connection as USER:RESOURCE');

export interface StatementEvent {
  sessionId: string;
  user: string;
  resource: string;
  kind: 'query' | 'prepare';
  /** Capped at the adapter's `auditSqlLimit` bytes. */
  sql: string;
  /** The statement was longer than the capture limit. */
  truncated: boolean;
}

type OnStatement = (kind: StatementEvent['kind'], sql: string, truncated: boolean) => void;

export class ClientFramer {
  /** Payload bytes of the current physical packet not seen yet. */
  private remaining = 0;
  /** The current logical packet goes on in the next physical one. */
  private continued = false;
  private logicalSize = 0;
  /** A header (or a command's first byte) split across chunks, held back until it is whole. */
  private pending: Buffer | undefined;
  private query: { kind: StatementEvent['kind']; parts: Buffer[]; have: number; want: number; truncated: boolean } | undefined;
  lastSeq = 0;
  /** Set by the relay when the server sent anything since the client's last packet. */
  serverSpoke = true;
  commands = 0;
  /** The client sent COM_QUIT: the server closing next is the client's doing. */
  quit = false;

  constructor(
    private readonly maxPacket: number,
    private readonly sqlLimit: number,
    private readonly onStatement: OnStatement | undefined,
  ) {}

  get atBoundary(): boolean {
    return this.remaining === 0 && this.pending === undefined;
  }

  /**
   * Takes one chunk from the client; returns the bytes that may go to the server now (a
   * split header is held back and returned with the next chunk), or the refusal that ends
   * the connection instead.
   */
  feed(chunk: Buffer): Buffer | MysqlRefusal {
    const data = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    const n = data.length;
    let i = 0;
    while (i < n) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - i);
        if (this.query) this.capture(data, i, take);
        this.remaining -= take;
        i += take;
        continue;
      }
      if (n - i < 4) return this.hold(data, i);
      const len = data.readUIntLE(i, 3);
      const seq = data[i + 3]!;
      // LOAD DATA LOCAL INFILE streams packets whose sequence id wraps to 0 with no server
      // reply in between; a 0 right after 255 from the client is that, not a new command.
      const isCommand = !this.continued && seq === 0 && !(this.lastSeq === 255 && !this.serverSpoke);
      if (isCommand && len > 0 && n - i < 5) return this.hold(data, i);
      this.logicalSize = this.continued ? this.logicalSize + len : len;
      if (this.logicalSize > this.maxPacket) return protocolRefusal(packetTooLarge(this.maxPacket));
      this.continued = len === MAX_PHYSICAL_PAYLOAD;
      this.lastSeq = seq;
      this.serverSpoke = false;
      i += 4;
      this.remaining = len;
      if (!isCommand || len === 0) continue;
      const cmd = data[i]!;
      this.commands++;
      if (cmd === Cmd.ChangeUser) return new MysqlRefusal(CHANGE_USER_REFUSED);
      if (cmd === Cmd.Quit) this.quit = true;
      if ((cmd === Cmd.Query || cmd === Cmd.StmtPrepare) && this.onStatement) {
        const body = len - 1;
        const kind = cmd === Cmd.Query ? 'query' : 'prepare';
        this.query = { kind, parts: [], have: 0, want: Math.min(body, this.sqlLimit), truncated: body > this.sqlLimit || this.continued };
        i += 1;
        this.remaining -= 1;
        if (this.query.want === 0) this.emitQuery();
      }
    }
    return data;
  }

  private hold(data: Buffer, from: number): Buffer {
    this.pending = Buffer.from(data.subarray(from));
    return data.subarray(0, from);
  }

  private capture(data: Buffer, at: number, take: number): void {
    const q = this.query!;
    const n = Math.min(take, q.want - q.have);
    if (n > 0) {
      q.parts.push(data.subarray(at, at + n));
      q.have += n;
    }
    if (q.have >= q.want) this.emitQuery();
  }

  private emitQuery(): void {
    const q = this.query!;
    this.query = undefined;
    const text = (q.parts.length === 1 ? q.parts[0]! : Buffer.concat(q.parts)).toString('utf8');
    this.onStatement?.(q.kind, text, q.truncated);
  }
}

export class ServerFramer {
  private remaining = 0;
  private headerHave = 0;
  private readonly header = Buffer.alloc(4);
  lastSeq = 0;

  get atBoundary(): boolean {
    return this.remaining === 0 && this.headerHave === 0;
  }

  observe(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - i);
        this.remaining -= take;
        i += take;
      } else if (this.headerHave === 0 && n - i >= 4) {
        this.remaining = chunk.readUIntLE(i, 3);
        this.lastSeq = chunk[i + 3]!;
        i += 4;
      } else {
        while (this.headerHave < 4 && i < n) this.header[this.headerHave++] = chunk[i++]!;
        if (this.headerHave === 4) {
          this.remaining = this.header.readUIntLE(0, 3);
          this.lastSeq = this.header[3]!;
          this.headerHave = 0;
        }
      }
    }
  }
}
