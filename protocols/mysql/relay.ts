/**
 * Packet framing on the relay's hot path, without copying: the client→server side reads the
 * command byte of every command (to refuse COM_CHANGE_USER, bound packet sizes, hand
 * COM_QUERY / COM_STMT_PREPARE text to the audit hook, and hold back every KILL for
 * session.ts to map to the caller's own target thread); the server→client side follows
 * packet boundaries, sequence ids and the first bytes of each packet, so that a teardown
 * knows whether, and with which sequence id, an ERR packet can be slipped in, and whether
 * the target is still busy with a statement (response.ts). Apart from a KILL, neither
 * ever changes a byte.
 */
import { refusals } from '../../src/broker/refusals.js';
import { Cmd, encodePacket, MAX_PHYSICAL_PAYLOAD, packetTooLarge } from './codec.js';
import { MysqlRefusal, protocolRefusal } from './errors.js';
import { KILL_HEAD_LIMIT, KILL_MAX_LENGTH, parseKillStatement, parseProcessKill, startsWithKill, type KillRequest, type KillUnreadable } from './kill.js';
import { HEAD_BYTES, type ResponseTracker } from './response.js';

/** COM_CHANGE_USER would log in to the target as someone else, past the decision. */
export const CHANGE_USER_REFUSED = refusals.notAllowed('COM_CHANGE_USER', 'open a new connection as USER:RESOURCE');

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

/** What a KILL becomes: the command the target gets instead, or the gateway's own answer (an ERR payload). */
export type KillVerdict = { forward: Buffer } | { answer: Buffer };

export interface FramerHooks {
  onStatement: OnStatement | undefined;
  /** A command went to the target (for the reply tracker). */
  onCommand(cmd: number): void;
  /** A KILL arrived through the gateway. */
  onKill(kill: KillRequest | KillUnreadable): KillVerdict;
  /**
   * The target still owes (part of) a reply to what the client sent before: the gateway's own
   * answer, and every byte the client sent behind it, waits for `settle`. Absent: never.
   */
  replyOwed?(): boolean;
  /** An empty packet that ends no longer one: while a LOCAL INFILE upload is under way, its end. */
  onEmptyPacket?(): void;
}

/** Where the framer's output goes: bytes for the target, whole packets for the client. */
export interface FramerOutput {
  server(bytes: Buffer): void;
  client(packet: Buffer, seq: number): void;
}

/** A COM_QUERY or COM_STMT_PREPARE held back until its first word is known, or a KILL until it is whole. */
interface Held {
  header: Buffer;
  seq: number;
  cmd: number;
  /** `head`: is it a KILL? `kill`: yes, read it whole. `drop`: too long to read, refuse it. */
  mode: 'head' | 'kill' | 'drop';
  parts: Buffer[];
  have: number;
  /** Why a dropped one is refused. */
  unreadable?: string;
}

const HEAD_UNREADABLE = 'a statement whose first word is not within its first 64 KiB';
const KILL_TOO_LONG = `a KILL statement longer than ${KILL_MAX_LENGTH} bytes`;

/** A whole held command read as the KILL it is. */
function readKill(cmd: number, payload: Buffer): KillRequest | KillUnreadable {
  switch (cmd) {
    case Cmd.ProcessKill:
      return parseProcessKill(payload);
    case Cmd.Query:
      return parseKillStatement(payload.subarray(1));
    default:
      // Its id would come later in a COM_STMT_EXECUTE, as a parameter the gateway does not map.
      return { what: 'KILL as a prepared statement' };
  }
}

/**
 * ClientFramer's verdict on a held command in one look, for the native data path (which holds
 * a command until it is whole, or until KILL_HEAD_LIMIT of its payload has come): `pass` when
 * it is not a KILL, else the KILL (or why it cannot be read) for the session to map or refuse.
 */
export function judgeHeld(cmd: number, payload: Buffer, complete: boolean): 'pass' | KillRequest | KillUnreadable {
  if (cmd !== Cmd.ProcessKill) {
    const head = startsWithKill(payload.subarray(1), complete);
    if (head === 'other') return 'pass';
    if (head === 'more') return { what: HEAD_UNREADABLE };
  }
  if (!complete || payload.length > KILL_MAX_LENGTH) return { what: KILL_TOO_LONG };
  return readKill(cmd, payload);
}

export class ClientFramer {
  /** Payload bytes of the current physical packet not seen yet. */
  private remaining = 0;
  /** The current logical packet goes on in the next physical one. */
  private continued = false;
  private logicalSize = 0;
  /** A header (or a command's first byte) split across chunks, held back until it is whole. */
  private pending: Buffer | undefined;
  private held: Held | undefined;
  /** A refused command's ERR waiting for `settle`, and the client's bytes read behind it. */
  private answering: { packet: Buffer; seq: number; rest: Buffer[] } | undefined;
  private query: { kind: StatementEvent['kind']; parts: Buffer[]; have: number; want: number; skip: number; truncated: boolean } | undefined;
  lastSeq = 0;
  /** Set by the relay when the server (or the gateway in its place) sent anything since the client's last packet. */
  serverSpoke = true;
  commands = 0;
  /** The client sent COM_QUIT: the server closing next is the client's doing. */
  quit = false;

  constructor(
    private readonly maxPacket: number,
    private readonly sqlLimit: number,
    private readonly hooks: FramerHooks,
  ) {}

  /** Everything sent to the target ends where a packet ends (a held packet has not been sent at all). */
  get forwardedWhole(): boolean {
    return this.held !== undefined || (this.remaining === 0 && !this.continued);
  }

  /**
   * Takes one chunk from the client and passes on what may go now (a split header waits for
   * the next chunk, a KILL until it is whole); returns the refusal that ends the connection
   * instead, if any (what came before the refused packet has been passed on).
   */
  feed(chunk: Buffer, out: FramerOutput): MysqlRefusal | undefined {
    if (this.answering) {
      this.answering.rest.push(chunk);
      return undefined;
    }
    const data = this.pending ? Buffer.concat([this.pending, chunk]) : chunk;
    this.pending = undefined;
    const n = data.length;
    let i = 0;
    /** Start of the bytes that pass through and have not been handed on yet. */
    let run = 0;
    const flush = (to: number): void => {
      if (to > run) out.server(data.subarray(run, to));
      run = to;
    };
    while (i < n) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - i);
        if (this.query) this.capture(data, i, take);
        this.remaining -= take;
        if (this.held) {
          flush(i);
          this.hold(data.subarray(i, i + take));
          i += take;
          run = i;
          this.decide(out);
          if (this.answering) return this.stopAt(data, i);
        } else {
          i += take;
        }
        continue;
      }
      if (n - i < 4) return this.wait(data, i, flush);
      const len = data.readUIntLE(i, 3);
      const seq = data[i + 3]!;
      // LOAD DATA LOCAL INFILE streams packets whose sequence id wraps to 0 with no server
      // reply in between; a 0 right after 255 from the client is that, not a new command.
      const isCommand = !this.continued && seq === 0 && !(this.lastSeq === 255 && !this.serverSpoke);
      if (isCommand && len > 0 && n - i < 5) return this.wait(data, i, flush);
      const afterWhole = !this.continued;
      this.logicalSize = this.continued ? this.logicalSize + len : len;
      if (this.logicalSize > this.maxPacket) {
        flush(i);
        return protocolRefusal(packetTooLarge(this.maxPacket));
      }
      this.continued = len === MAX_PHYSICAL_PAYLOAD;
      this.lastSeq = seq;
      this.serverSpoke = false;
      const headerAt = i;
      i += 4;
      this.remaining = len;
      if (this.held) {
        // The continuation of a held packet: its header is not passed on either.
        flush(headerAt);
        run = i;
        this.decide(out);
        if (this.answering) return this.stopAt(data, i);
        continue;
      }
      if (len === 0 && afterWhole) this.hooks.onEmptyPacket?.();
      if (!isCommand || len === 0) continue;
      const cmd = data[i]!;
      this.commands++;
      if (cmd === Cmd.ChangeUser) {
        flush(headerAt);
        // Not a byte of it reached the target.
        this.remaining = 0;
        this.continued = false;
        return new MysqlRefusal(CHANGE_USER_REFUSED);
      }
      if (cmd === Cmd.Quit) this.quit = true;
      if ((cmd === Cmd.Query || cmd === Cmd.StmtPrepare) && this.hooks.onStatement) {
        const body = len - 1;
        const kind = cmd === Cmd.Query ? 'query' : 'prepare';
        this.query = { kind, parts: [], have: 0, want: Math.min(body, this.sqlLimit), skip: 1, truncated: body > this.sqlLimit || this.continued };
        if (this.query.want === 0) this.emitQuery();
      }
      if (cmd === Cmd.Query || cmd === Cmd.StmtPrepare || cmd === Cmd.ProcessKill) {
        flush(headerAt);
        this.held = { header: Buffer.from(data.subarray(headerAt, i)), seq, cmd, mode: cmd === Cmd.ProcessKill ? 'kill' : 'head', parts: [], have: 0 };
        run = i;
      } else {
        this.hooks.onCommand(cmd);
      }
    }
    flush(n);
    return undefined;
  }

  /** Whether a refused command's ERR waits for the target (see FramerHooks.replyOwed). */
  get waiting(): boolean {
    return this.answering !== undefined;
  }

  /** The target has finished what it owed: the waiting ERR goes out, then the client's bytes behind it. */
  settle(out: FramerOutput): MysqlRefusal | undefined {
    const a = this.answering;
    if (!a) return undefined;
    this.answering = undefined;
    this.serverSpoke = true;
    out.client(a.packet, a.seq);
    return a.rest.length ? this.feed(a.rest.length === 1 ? a.rest[0]! : Buffer.concat(a.rest), out) : undefined;
  }

  /** Input stops behind a refused command whose ERR waits: the rest of this chunk waits with it. */
  private stopAt(data: Buffer, from: number): undefined {
    if (from < data.length) this.answering!.rest.push(data.subarray(from));
    return undefined;
  }

  private wait(data: Buffer, from: number, flush: (to: number) => void): undefined {
    flush(from);
    this.pending = Buffer.from(data.subarray(from));
    return undefined;
  }

  private hold(bytes: Buffer): void {
    const h = this.held!;
    if (h.mode === 'drop') return;
    h.parts.push(bytes);
    h.have += bytes.length;
  }

  /** After more of a held packet came in: pass it on, keep holding, or (once whole) hand it to onKill. */
  private decide(out: FramerOutput): void {
    const h = this.held!;
    const complete = this.remaining === 0 && !this.continued;
    if (h.mode === 'head') {
      const payload = Buffer.concat(h.parts, h.have);
      const verdict = startsWithKill(payload.subarray(1), complete);
      if (verdict === 'other') {
        this.held = undefined;
        this.hooks.onCommand(payload[0]!);
        out.server(h.header);
        out.server(payload);
        return;
      }
      if (verdict === 'kill') h.mode = 'kill';
      else if (h.have > KILL_HEAD_LIMIT) this.drop(h, HEAD_UNREADABLE);
    }
    if (h.mode === 'kill' && h.have > KILL_MAX_LENGTH) this.drop(h, KILL_TOO_LONG);
    if (!complete) return;
    this.held = undefined;
    const payload = Buffer.concat(h.parts, h.have);
    const kill = h.mode === 'drop' ? { what: h.unreadable! } : readKill(h.cmd, payload);
    const verdict = this.hooks.onKill(kill);
    if ('forward' in verdict) {
      this.hooks.onCommand(verdict.forward[0]!);
      out.server(encodePacket(0, verdict.forward));
    } else {
      const packet = encodePacket(h.seq + 1, verdict.answer);
      const seq = (h.seq + 1) & 0xff;
      if (this.hooks.replyOwed?.()) {
        this.answering = { packet, seq, rest: [] };
        return;
      }
      this.serverSpoke = true;
      out.client(packet, seq);
    }
  }

  private drop(h: Held, why: string): void {
    h.mode = 'drop';
    h.parts = [];
    h.have = 0;
    h.unreadable = why;
  }

  private capture(data: Buffer, at: number, take: number): void {
    const q = this.query!;
    if (q.skip > 0) {
      const skipped = Math.min(q.skip, take);
      q.skip -= skipped;
      at += skipped;
      take -= skipped;
      if (take === 0) return;
    }
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
    this.hooks.onStatement?.(q.kind, text, q.truncated);
  }
}

export class ServerFramer {
  private remaining = 0;
  private headerHave = 0;
  private readonly header = Buffer.alloc(4);
  /** The current logical packet goes on in the next physical one. */
  private continued = false;
  /** The first bytes of the current logical packet, for the reply tracker. */
  private readonly head = Buffer.alloc(HEAD_BYTES);
  private headHave = 0;
  private headWant = 0;
  private firstLength = 0;
  lastSeq = 0;

  constructor(private readonly tracker?: ResponseTracker) {}

  /** Between two logical packets: an ERR can be slipped in here. */
  get atBoundary(): boolean {
    return this.remaining === 0 && this.headerHave === 0 && !this.continued;
  }

  /** The gateway answered the client in the server's place with this sequence id. */
  said(seq: number): void {
    this.lastSeq = seq;
  }

  observe(chunk: Buffer): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      if (this.remaining > 0) {
        const take = Math.min(this.remaining, n - i);
        if (this.headHave < this.headWant) {
          const copy = Math.min(take, this.headWant - this.headHave);
          chunk.copy(this.head, this.headHave, i, i + copy);
          this.headHave += copy;
        }
        this.remaining -= take;
        i += take;
        if (this.remaining === 0) this.packetDone();
      } else if (this.headerHave === 0 && n - i >= 4) {
        this.startPacket(chunk.readUIntLE(i, 3), chunk[i + 3]!);
        i += 4;
      } else {
        while (this.headerHave < 4 && i < n) this.header[this.headerHave++] = chunk[i++]!;
        if (this.headerHave === 4) {
          this.headerHave = 0;
          this.startPacket(this.header.readUIntLE(0, 3), this.header[3]!);
        }
      }
    }
  }

  private startPacket(len: number, seq: number): void {
    if (!this.continued) {
      this.headHave = 0;
      this.headWant = Math.min(len, HEAD_BYTES);
      this.firstLength = len;
    }
    this.continued = len === MAX_PHYSICAL_PAYLOAD;
    this.lastSeq = seq;
    this.remaining = len;
    if (len === 0) this.packetDone();
  }

  private packetDone(): void {
    if (!this.continued) this.tracker?.packet(this.head.subarray(0, this.headHave), this.firstLength);
  }
}
