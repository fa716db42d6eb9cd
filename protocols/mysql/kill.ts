/**
 * KILL through the gateway. A client's thread id is the gateway's connection id (from the
 * handshake) or its target thread id (from CONNECTION_ID()); neither means anything to the
 * target on another client's behalf, so every KILL a client sends is read here and either
 * rewritten to the target thread of one of the caller's own sessions or answered by the
 * gateway. This file reads the statements; session.ts decides whose thread an id is.
 *
 * Only what can be read with certainty is rewritten: `KILL [HARD|SOFT] [CONNECTION|QUERY] n`
 * with a plain decimal id, any case, any whitespace and comments between the words, an
 * optional `;`. Anything else that starts with KILL (KILL USER, KILL QUERY ID, an expression,
 * an executable comment `/*! ... *\/` the server would read as code) is refused.
 */
import { Cmd } from './codec.js';

/** A KILL the gateway can map. */
export interface KillRequest {
  /** QUERY ends the running statement; CONNECTION (the default) the whole thread. */
  scope: 'query' | 'connection';
  /** MariaDB's HARD (the default) or SOFT. */
  modifier?: 'HARD' | 'SOFT';
  id: number;
  via: 'COM_QUERY' | 'COM_PROCESS_KILL';
}

/** A KILL the gateway will not pass on: `what` names it for the refusal. */
export interface KillUnreadable {
  what: string;
}

/** How far into a COM_QUERY the gateway looks for its first keyword before giving up on it. */
export const KILL_HEAD_LIMIT = 64 * 1024;
/** A KILL statement longer than this is not one the gateway will read. */
export const KILL_MAX_LENGTH = 4096;

const isSpace = (c: number): boolean => c === 0x20 || (c >= 0x09 && c <= 0x0d);
/** Letters, digits, `_`, `$` and every non-ASCII byte continue an unquoted identifier or keyword. */
const isWordByte = (c: number): boolean =>
  (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || c === 0x5f || c === 0x24 || c >= 0x80;
const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

type Token = { kind: 'word'; text: string } | { kind: 'other'; byte: number };

/**
 * The statement's tokens as the server's lexer starts them: whitespace and comments are
 * skipped. The body of an executable comment (`/*!`, `/*M!`) is code when the server's
 * version reaches the comment's (or it names none) and a comment otherwise; the gateway
 * reads it both ways (`executableAsCode`). `more` means the input ended where a longer input
 * could still change the answer.
 */
class Lexer {
  private i = 0;
  /** An executable comment was seen: its version decides what the server reads, the gateway cannot. */
  executable = false;
  private inExecutable = false;

  constructor(
    private readonly b: Buffer,
    private readonly complete: boolean,
    private readonly executableAsCode = true,
  ) {}

  next(): Token | 'end' | 'more' {
    const b = this.b;
    for (;;) {
      if (this.i >= b.length) return this.complete ? 'end' : 'more';
      const c = b[this.i]!;
      if (isSpace(c)) {
        this.i++;
        continue;
      }
      if (c === 0x23 /* # */) {
        if (!this.skipLine()) return this.complete ? 'end' : 'more';
        continue;
      }
      if (c === 0x2d /* - */) {
        if (this.i + 2 >= b.length && !this.complete) return 'more';
        // `-- ` needs a space or control character after it (or the end of the statement).
        const after = b[this.i + 2];
        if (b[this.i + 1] === 0x2d && (after === undefined || after <= 0x20)) {
          if (!this.skipLine()) return this.complete ? 'end' : 'more';
          continue;
        }
        this.i++;
        return { kind: 'other', byte: c };
      }
      if (c === 0x2f /* / */) {
        if (this.i + 3 >= b.length && !this.complete) return 'more';
        if (b[this.i + 1] === 0x2a /* * */) {
          const exec = b[this.i + 2] === 0x21 ? 3 : b[this.i + 2] === 0x4d && b[this.i + 3] === 0x21 ? 4 : 0;
          if (exec) {
            this.executable = true;
            if (!this.executableAsCode) {
              const end = b.indexOf('*/', this.i + exec, 'latin1');
              if (end < 0) return this.complete ? 'end' : 'more';
              this.i = end + 2;
              continue;
            }
            this.inExecutable = true;
            this.i += exec;
            while (this.i < b.length && isDigit(b[this.i]!)) this.i++;
            continue;
          }
          const end = b.indexOf('*/', this.i + 2, 'latin1');
          if (end < 0) return this.complete ? 'end' : 'more';
          this.i = end + 2;
          continue;
        }
        this.i++;
        return { kind: 'other', byte: c };
      }
      if (c === 0x2a /* * */ && this.inExecutable && b[this.i + 1] === 0x2f) {
        // The end of an executable comment is just a separator.
        this.inExecutable = false;
        this.i += 2;
        continue;
      }
      if (isWordByte(c)) {
        const start = this.i;
        while (this.i < b.length && isWordByte(b[this.i]!)) this.i++;
        if (this.i >= b.length && !this.complete) return 'more';
        return { kind: 'word', text: b.toString('latin1', start, this.i) };
      }
      this.i++;
      return { kind: 'other', byte: c };
    }
  }

  private skipLine(): boolean {
    const nl = this.b.indexOf(0x0a, this.i);
    if (nl < 0) {
      this.i = this.b.length;
      return this.complete;
    }
    this.i = nl + 1;
    return true;
  }
}

/**
 * Whether a COM_QUERY's text (without the command byte) is a KILL: `more` until its first
 * keyword is in. The server reads executable comments as code, so `/*!KILL*\/ 5` is a KILL.
 */
export function startsWithKill(sql: Buffer, complete: boolean): 'kill' | 'other' | 'more' {
  const asCode = firstWordIsKill(new Lexer(sql, complete, true));
  if (asCode === 'kill') return 'kill';
  const asComment = firstWordIsKill(new Lexer(sql, complete, false));
  if (asComment === 'kill') return 'kill';
  return asCode === 'more' || asComment === 'more' ? 'more' : 'other';
}

function firstWordIsKill(lx: Lexer): 'kill' | 'other' | 'more' {
  const t = lx.next();
  if (t === 'more') return 'more';
  if (t === 'end' || t.kind !== 'word') return 'other';
  return t.text.toUpperCase() === 'KILL' ? 'kill' : 'other';
}

/** Reads a whole KILL statement (COM_QUERY text without the command byte). */
export function parseKillStatement(sql: Buffer): KillRequest | KillUnreadable {
  const unreadable = { what: 'this KILL statement' };
  if (startsWithKill(sql, true) !== 'kill') return unreadable;
  const lx = new Lexer(sql, true);
  const tokens: Token[] = [];
  for (let t = lx.next(); t !== 'end' && t !== 'more'; t = lx.next()) tokens.push(t);
  if (lx.executable) return { what: 'a KILL inside an executable comment' };
  // One trailing `;` is the statement's end; anything after it is a second statement.
  const last = tokens.at(-1);
  if (last?.kind === 'other' && last.byte === 0x3b) tokens.pop();
  const words: string[] = [];
  for (const t of tokens) {
    if (t.kind !== 'word') return unreadable;
    words.push(t.text.toUpperCase());
  }
  let k = 1;
  let modifier: KillRequest['modifier'];
  if (words[k] === 'HARD' || words[k] === 'SOFT') modifier = words[k++] as 'HARD' | 'SOFT';
  let scope: KillRequest['scope'] = 'connection';
  if (words[k] === 'CONNECTION') k++;
  else if (words[k] === 'QUERY') {
    scope = 'query';
    k++;
    if (words[k] === 'ID') return { what: 'KILL QUERY ID' };
  }
  if (words[k] === 'USER') return { what: 'KILL USER' };
  // Exactly one more word, a plain decimal id (no sign, no hex, no expression).
  const id = words[k];
  if (k !== words.length - 1 || !id || !/^[0-9]{1,15}$/.test(id)) return unreadable;
  return { scope, ...(modifier ? { modifier } : {}), id: Number(id), via: 'COM_QUERY' };
}

/** COM_PROCESS_KILL: the command byte and a 4-byte thread id. */
export function parseProcessKill(payload: Buffer): KillRequest | KillUnreadable {
  if (payload.length !== 5 || payload[0] !== Cmd.ProcessKill) return { what: 'a malformed COM_PROCESS_KILL' };
  return { scope: 'connection', id: payload.readUInt32LE(1), via: 'COM_PROCESS_KILL' };
}

/** The command the target gets instead: the same KILL, naming the target thread. */
export function rewriteKill(k: KillRequest, threadId: number): Buffer {
  if (k.via === 'COM_PROCESS_KILL' && threadId <= 0xffffffff) {
    const p = Buffer.alloc(5);
    p[0] = Cmd.ProcessKill;
    p.writeUInt32LE(threadId, 1);
    return p;
  }
  const sql = `KILL ${k.modifier ? `${k.modifier} ` : ''}${k.scope === 'query' ? 'QUERY' : 'CONNECTION'} ${threadId}`;
  return Buffer.concat([Buffer.from([Cmd.Query]), Buffer.from(sql, 'latin1')]);
}

/** How a refused KILL names itself: `KILL QUERY 42`. */
export function describeKill(k: KillRequest): string {
  return `KILL ${k.scope === 'query' ? 'QUERY ' : ''}${k.id}`;
}
