/**
 * The reply tracker that decides, when the gateway ends a session, between COM_QUIT (the
 * target is idle) and ending the target thread from a second login (a statement may still
 * run). It must never call a session idle while the target still owes a reply; calling a
 * finished one busy only costs a needless KILL.
 */
import { describe, expect, it } from 'vitest';
import { Cmd, encodeErr, encodeOk, encodePacket, lenencInt, SERVER_MORE_RESULTS_EXISTS, SERVER_STATUS_AUTOCOMMIT, SERVER_STATUS_CURSOR_EXISTS } from '../../protocols/mysql/codec.js';
import { ResponseTracker } from '../../protocols/mysql/response.js';
import { ServerFramer } from '../../protocols/mysql/relay.js';

const ok = (status = SERVER_STATUS_AUTOCOMMIT) => encodeOk({ status, affectedRows: 300, lastInsertId: 70_000 });
/** The OK that ends a result set under CLIENT_DEPRECATE_EOF: an OK with 0xfe in front. */
const okEof = (status = SERVER_STATUS_AUTOCOMMIT) => Buffer.concat([Buffer.from([0xfe]), ok(status).subarray(1)]);
const eof = (status = SERVER_STATUS_AUTOCOMMIT) => Buffer.from([0xfe, 0, 0, status & 0xff, status >> 8]);
const err = (errno = 1146) => encodeErr({ errno, sqlstate: '42S02', message: 'no such table' });
const count = (n: number, metadataFollows?: number) => Buffer.concat([lenencInt(n), metadataFollows === undefined ? Buffer.alloc(0) : Buffer.from([metadataFollows])]);
const columnDef = () => Buffer.concat([lenencInt(3), Buffer.from('def'), lenencInt(0), lenencInt(1), Buffer.from('t'), Buffer.alloc(20, 1)]);
/** A text row whose first column is '' (0x00), like an OK's first byte; a binary row always starts 0x00. */
const emptyFirstRow = () => Buffer.from([0x00, 0x01, 0x41]);
const textRow = () => Buffer.concat([lenencInt(2), Buffer.from('42')]);
const prepareOk = (columns: number, params: number) => {
  const b = Buffer.alloc(12);
  b[0] = 0;
  b.writeUInt32LE(1, 1);
  b.writeUInt16LE(columns, 5);
  b.writeUInt16LE(params, 7);
  return b;
};

/** Feeds packets through the server framer (as the relay does) and records `idle` after each. */
function replay(tracker: ResponseTracker, cmd: number, packets: Buffer[]): boolean[] {
  const f = new ServerFramer(tracker);
  tracker.command(cmd);
  const seen: boolean[] = [];
  packets.forEach((p, i) => {
    f.observe(encodePacket(i + 1, p));
    seen.push(tracker.idle);
  });
  return seen;
}

describe('ResponseTracker', () => {
  it('is idle before any command, busy until an OK or ERR, and stays busy across progress reports and further results', () => {
    const t = new ResponseTracker(true, false);
    expect(t.idle).toBe(true);
    expect(replay(t, Cmd.Query, [ok()])).toEqual([true]);
    expect(replay(t, Cmd.Query, [err()])).toEqual([true]);
    const progress = Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 1, 1, 1, 0, 0]), Buffer.from('stage')]);
    expect(replay(t, Cmd.Query, [progress, progress, ok()])).toEqual([false, false, true]);
    expect(replay(t, Cmd.Query, [ok(SERVER_MORE_RESULTS_EXISTS), ok()])).toEqual([false, true]);
  });

  it('follows a text result set with EOF packets: the EOF after the columns is not the end', () => {
    const t = new ResponseTracker(false, false);
    expect(replay(t, Cmd.Query, [count(2), columnDef(), columnDef(), eof(), textRow(), emptyFirstRow(), eof()])).toEqual([false, false, false, false, false, false, true]);
    // Rows still to come after a statement that computes silently: busy.
    expect(replay(t, Cmd.Query, [count(1), columnDef(), eof()])).toEqual([false, false, false]);
    expect(replay(new ResponseTracker(false, false), Cmd.Query, [count(1), columnDef(), eof(SERVER_MORE_RESULTS_EXISTS), eof(SERVER_MORE_RESULTS_EXISTS), ok()])).toEqual([false, false, false, false, true]);
  });

  it('follows the replies of pipelined commands in order: idle only after the last one, settled only then', () => {
    const t = new ResponseTracker(true, false);
    const f = new ServerFramer(t);
    // A multi-row INSERT (its OK's info text would read as a prepare reply's counts), a prepare
    // with one parameter and one column, and a query, sent before any reply.
    t.command(Cmd.Query);
    t.command(Cmd.StmtPrepare);
    t.command(Cmd.Query);
    const info = Buffer.concat([ok(), Buffer.from('Records: 2  Duplicates: 0  Warnings: 0')]);
    const replies = [info, prepareOk(1, 1), columnDef(), columnDef(), count(1), columnDef(), textRow(), okEof()];
    const seen = replies.map((p, i) => {
      f.observe(encodePacket(i + 1, p));
      return [t.idle, t.settled];
    });
    expect(seen).toEqual([...replies.slice(1).map(() => [false, false]), [true, true]]);
    // COM_BINLOG_DUMP's reply is not followed; a new command is taken to end it (nothing queues behind it).
    t.command(0x12);
    expect([t.idle, t.settled]).toEqual([false, true]);
    t.command(Cmd.Ping);
    expect([t.idle, t.settled]).toEqual([false, false]);
    f.observe(encodePacket(1, ok()));
    expect([t.idle, t.settled]).toEqual([true, true]);
  });

  it('LOCAL INFILE: settled while the target waits for the file, busy from the file\'s empty last packet until the OK', () => {
    const t = new ResponseTracker(true, false);
    const f = new ServerFramer(t);
    t.command(Cmd.Query);
    f.observe(encodePacket(1, Buffer.from("\xfbdata.csv", 'latin1')));
    expect([t.idle, t.settled]).toEqual([false, true]);
    t.fileSent();
    expect([t.idle, t.settled]).toEqual([false, false]);
    f.observe(encodePacket(4, ok()));
    expect([t.idle, t.settled]).toEqual([true, true]);
  });

  it('follows result sets ended by an OK under DEPRECATE_EOF; a row that starts like an OK or an EOF is still a row', () => {
    const t = new ResponseTracker(true, false);
    expect(replay(t, Cmd.StmtExecute, [count(1), columnDef(), emptyFirstRow(), emptyFirstRow(), okEof()])).toEqual([false, false, false, false, true]);
    // A row of 16 MiB or more whose first column is that long starts with 0xfe too.
    const t2 = new ResponseTracker(true, false);
    t2.command(Cmd.Query);
    const f = new ServerFramer(t2);
    f.observe(encodePacket(1, count(1)));
    f.observe(encodePacket(2, columnDef()));
    const huge = Buffer.alloc(0xffffff + 10, 0x61);
    huge[0] = 0xfe;
    f.observe(encodePacket(3, huge));
    expect(t2.idle).toBe(false);
    f.observe(encodePacket(5, okEof()));
    expect(t2.idle).toBe(true);
  });

  it('a cursor, LOCAL INFILE, COM_STMT_FETCH and cached metadata', () => {
    const t = new ResponseTracker(false, true);
    expect(replay(t, Cmd.StmtExecute, [count(1, 1), columnDef(), eof(SERVER_STATUS_CURSOR_EXISTS)])).toEqual([false, false, true]);
    expect(replay(t, Cmd.StmtFetch, [emptyFirstRow(), eof()])).toEqual([false, true]);
    expect(replay(t, Cmd.Query, [Buffer.from([0xfb, 0x66]), ok()])).toEqual([false, true]);
    // Columns not sent again: with EOF packets the next EOF could close the columns or the rows; not guessed.
    expect(replay(t, Cmd.StmtExecute, [count(1, 0), eof(), emptyFirstRow(), eof()])).toEqual([false, false, false, false]);
    const d = new ResponseTracker(true, true);
    expect(replay(d, Cmd.StmtExecute, [count(1, 0), emptyFirstRow(), okEof()])).toEqual([false, false, true]);
  });

  it('a prepare reply: parameter and column definitions, each list with its EOF unless DEPRECATE_EOF', () => {
    expect(replay(new ResponseTracker(false, false), Cmd.StmtPrepare, [prepareOk(1, 2), columnDef(), columnDef(), eof(), columnDef(), eof()])).toEqual([false, false, false, false, false, true]);
    expect(replay(new ResponseTracker(true, false), Cmd.StmtPrepare, [prepareOk(1, 2), columnDef(), columnDef(), columnDef()])).toEqual([false, false, false, true]);
    expect(replay(new ResponseTracker(false, false), Cmd.StmtPrepare, [prepareOk(0, 0)])).toEqual([true]);
    expect(replay(new ResponseTracker(false, false), Cmd.StmtPrepare, [err()])).toEqual([true]);
  });

  it('unanswered commands leave it idle; one-packet commands take one; anything it does not follow is busy until the next command', () => {
    const t = new ResponseTracker(true, false);
    t.command(Cmd.StmtClose);
    expect(t.idle).toBe(true);
    expect(replay(t, Cmd.Ping, [ok()])).toEqual([true]);
    expect(replay(t, Cmd.Statistics, [Buffer.from('Uptime: 5')])).toEqual([true]);
    expect(replay(t, 0x12 /* COM_BINLOG_DUMP */, [Buffer.from([0x00, 1, 2])])).toEqual([false]);
    // A packet nobody asked for.
    expect(replay(t, Cmd.Ping, [ok(), ok()])).toEqual([true, false]);
    expect(replay(t, Cmd.Query, [ok()])).toEqual([true]);
  });
});
