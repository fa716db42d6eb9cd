/**
 * Whether the target is busy with a client command. When the gateway ends a session it must
 * stop a statement still running on the target (the server would only notice the vanished
 * client at its next write), but an idle session should just say COM_QUIT: a KILL costs a
 * second login and leaves an "Aborted connection" behind.
 *
 * The tracker follows each reply from the heads of the server's packets (first bytes and
 * length) far enough to know when it is complete: OK / ERR, result sets with or without
 * EOF packets, multi-results, LOCAL INFILE, prepared statements and MariaDB's cached
 * metadata. Commands a client pipelines behind one still being answered queue up, their
 * replies followed in turn. Whatever it does not follow with certainty leaves it `busy`: a
 * needless KILL is cheap, a statement left running is not.
 */
import {
  Cmd,
  LOCAL_INFILE_REQUEST,
  MAX_PHYSICAL_PAYLOAD,
  PayloadReader,
  PROGRESS_REPORT_ERRNO,
  Reply,
  SERVER_MORE_RESULTS_EXISTS,
  SERVER_STATUS_CURSOR_EXISTS,
} from './codec.js';

/** Bytes of each server packet the tracker needs: an OK's two length-encoded integers and its status. */
export const HEAD_BYTES = 24;

/** Commands answered by a result set (or an OK, an ERR, a LOCAL INFILE request). */
const RESULT_COMMANDS = new Set<number>([Cmd.Query, Cmd.StmtExecute, Cmd.ProcessInfo, Cmd.StmtBulkExecute]);
/** Commands answered by exactly one packet. */
const ONE_PACKET_COMMANDS = new Set<number>([
  Cmd.Ping, Cmd.InitDb, Cmd.ResetConnection, Cmd.StmtReset, Cmd.SetOption, Cmd.Refresh, Cmd.ProcessKill, Cmd.Debug,
  Cmd.Shutdown, Cmd.Statistics, Cmd.CreateDb, Cmd.DropDb,
]);
/** Commands the server does not answer. */
const UNANSWERED_COMMANDS = new Set<number>([Cmd.Quit, Cmd.StmtClose, Cmd.StmtSendLongData]);

type State =
  | { at: 'idle' }
  /** Not followed: busy until the client's next command says otherwise. */
  | { at: 'unknown' }
  | { at: 'one' }
  | { at: 'first' }
  | { at: 'infile' }
  | { at: 'columns'; left: number }
  | { at: 'eof' }
  | { at: 'rows' }
  | { at: 'field_list' }
  | { at: 'prepare' }
  /** A prepare reply's parameter and column definitions (and their EOFs) still to come. */
  | { at: 'definitions'; left: number };

/** Commands pipelined behind the one whose reply is under way, at most: past it the tracker gives up (`unknown`). */
const QUEUE_MAX = 4096;

export class ResponseTracker {
  private state: State = { at: 'idle' };
  /** Commands a pipelining client sent behind the one whose reply is under way: their replies follow in order. */
  private queue: number[] = [];

  constructor(
    /** CLIENT_DEPRECATE_EOF: result sets end with an OK-shaped 0xfe packet and have no EOF after their columns. */
    private readonly deprecateEof: boolean,
    /** MARIADB_CLIENT_CACHE_METADATA: a column count may say the columns are not sent again. */
    private readonly cacheMetadata: boolean,
  ) {}

  /** The target owes nothing: the last command's reply is complete. */
  get idle(): boolean {
    return this.state.at === 'idle';
  }

  /**
   * Nothing the gateway's own answer could cut into: the reply is complete, or not followed
   * (a packet boundary is then the best there is), or the target waits for the client (LOCAL
   * INFILE: waiting for the reply's end would wait forever).
   */
  get settled(): boolean {
    const at = this.state.at;
    return at === 'idle' || at === 'unknown' || at === 'infile';
  }

  /**
   * A client command (sequence id 0) went to the target: its reply comes after those it was
   * sent behind. Not followed (`unknown`), a new command is taken to mean the reply before it ended.
   */
  command(cmd: number): void {
    if (this.state.at === 'unknown' || (this.state.at === 'idle' && this.queue.length === 0)) {
      this.queue = [];
      this.start(cmd);
    } else if (this.queue.length >= QUEUE_MAX) {
      this.queue = [];
      this.state = { at: 'unknown' };
    } else {
      this.queue.push(cmd);
    }
  }

  /** LOCAL INFILE: the client's empty packet ended the file; the target's OK or ERR comes next. */
  fileSent(): void {
    if (this.state.at === 'infile') this.state = { at: 'first' };
  }

  private start(cmd: number): void {
    if (UNANSWERED_COMMANDS.has(cmd)) this.state = { at: 'idle' };
    else if (RESULT_COMMANDS.has(cmd)) this.state = { at: 'first' };
    else if (ONE_PACKET_COMMANDS.has(cmd)) this.state = { at: 'one' };
    else if (cmd === Cmd.StmtFetch) this.state = { at: 'rows' };
    else if (cmd === Cmd.FieldList) this.state = { at: 'field_list' };
    else if (cmd === Cmd.StmtPrepare) this.state = { at: 'prepare' };
    else this.state = { at: 'unknown' };
  }

  /** One whole server packet: its first bytes and its first physical length (0xffffff: it went on). */
  packet(head: Buffer, length: number): void {
    this.step(head, length);
    // A reply ended: the next pipelined command's starts.
    while (this.state.at === 'idle' && this.queue.length > 0) this.start(this.queue.shift()!);
  }

  private step(head: Buffer, length: number): void {
    const s = this.state;
    const first = head[0];
    const isErr = first === Reply.Err && length >= 3 && head.length >= 3 && head.readUInt16LE(1) !== PROGRESS_REPORT_ERRNO;
    const isProgress = first === Reply.Err && !isErr;
    try {
      switch (s.at) {
        case 'idle':
        case 'unknown':
          // Nothing was asked, or we cannot tell: anything now is beyond us.
          this.state = { at: 'unknown' };
          return;
        case 'one':
          this.state = { at: 'idle' };
          return;
        case 'first':
        case 'infile':
          if (isProgress) return;
          if (isErr) return void (this.state = { at: 'idle' });
          if (first === Reply.Ok) return this.afterStatus(okStatus(head));
          if (s.at === 'first' && first === LOCAL_INFILE_REQUEST) return void (this.state = { at: 'infile' });
          if (s.at === 'infile') return void (this.state = { at: 'unknown' });
          return this.columnCount(head);
        case 'columns':
          if (isErr) return void (this.state = { at: 'idle' });
          if (s.left > 1) return void (this.state = { at: 'columns', left: s.left - 1 });
          this.state = this.deprecateEof ? { at: 'rows' } : { at: 'eof' };
          return;
        case 'eof':
          if (isErr) return void (this.state = { at: 'idle' });
          if (!this.isEof(first, length)) return void (this.state = { at: 'unknown' });
          // A cursor: rows come on COM_STMT_FETCH.
          this.state = eofStatus(head) & SERVER_STATUS_CURSOR_EXISTS ? { at: 'idle' } : { at: 'rows' };
          return;
        case 'rows':
          if (isProgress) return;
          if (isErr) return void (this.state = { at: 'idle' });
          if (this.isEof(first, length)) return this.afterStatus(this.deprecateEof ? okStatus(head) : eofStatus(head));
          return; // a row
        case 'field_list':
          if (isErr || this.isEof(first, length)) this.state = { at: 'idle' };
          return;
        case 'prepare': {
          if (isErr) return void (this.state = { at: 'idle' });
          if (first !== Reply.Ok || head.length < 9) return void (this.state = { at: 'unknown' });
          const columns = head.readUInt16LE(5);
          const params = head.readUInt16LE(7);
          // Parameter definitions, then column definitions, each list followed by an EOF unless DEPRECATE_EOF.
          const eof = this.deprecateEof ? 0 : 1;
          const left = (params ? params + eof : 0) + (columns ? columns + eof : 0);
          this.state = left ? { at: 'definitions', left } : { at: 'idle' };
          return;
        }
        case 'definitions':
          this.state = s.left > 1 ? { at: 'definitions', left: s.left - 1 } : { at: 'idle' };
          return;
        default: {
          const never: never = s;
          throw new Error(`unknown reply state ${String(never)}`);
        }
      }
    } catch {
      // A head too short for what it should hold: not a reply we understand.
      this.state = { at: 'unknown' };
    }
  }

  private columnCount(head: Buffer): void {
    const r = new PayloadReader(head, 'column count');
    const columns = r.lenenc();
    // With cached metadata the count is followed by "metadata follows" (0: the client has it).
    const follows = this.cacheMetadata && r.remaining > 0 ? r.u8() : 1;
    if (columns === 0) return void (this.state = { at: 'unknown' });
    if (follows) this.state = { at: 'columns', left: columns };
    // Skipped columns with EOF packets: whether the next EOF closes the columns or the rows is not certain.
    else this.state = this.deprecateEof ? { at: 'rows' } : { at: 'unknown' };
  }

  private afterStatus(status: number): void {
    this.state = status & SERVER_MORE_RESULTS_EXISTS ? { at: 'first' } : { at: 'idle' };
  }

  /** An EOF (or, with DEPRECATE_EOF, the OK that replaces it): 0xfe and short; a row starting 0xfe is at least 16 MiB. */
  private isEof(first: number | undefined, length: number): boolean {
    return first === Reply.Eof && (this.deprecateEof ? length < MAX_PHYSICAL_PAYLOAD : length < 9);
  }
}

/** The status flags of an OK (or an OK-shaped 0xfe) packet. */
function okStatus(head: Buffer): number {
  const r = new PayloadReader(head, 'OK packet');
  r.u8();
  r.lenenc();
  r.lenenc();
  return r.u16();
}

/** The status flags of an EOF packet: 0xfe, warnings, status. */
function eofStatus(head: Buffer): number {
  return head.length >= 5 ? head.readUInt16LE(3) : 0;
}
