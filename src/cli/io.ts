import { SystemClock, type Clock } from '../core/clock.js';
import { CliError, usageError } from './cli-error.js';
import { escapeControls } from './format.js';

/** A terminal-ish input: process.stdin in production, a stream in tests. */
export interface CliInput extends NodeJS.ReadableStream {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
}

/**
 * Everything the CLI touches outside itself, so tests can run `main` in-process and read
 * what it printed. `zone` is the IANA zone local times are shown in (default: the system's).
 * `stdout` and `stderr` are the output boundary: build them with `terminalSafe`.
 */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  stdin: CliInput;
  env: Record<string, string | undefined>;
  clock: Clock;
  zone?: string;
}

/**
 * The io with control characters escaped on the way out (`escapeControls`). Much of what
 * the CLI prints comes from the gateway (user names, request reasons, error messages, and
 * any field a future command shows), so the escaping sits here, where every line passes,
 * rather than in each command. `--json` stays JSON: JSON.stringify already escapes C0, and
 * what it leaves raw (DEL, C1, bidi) is written as the equivalent `\uXXXX` escape.
 * Idempotent: wrapping twice escapes nothing more.
 */
export function terminalSafe(io: CliIo): CliIo {
  const out = io.stdout.bind(io);
  const err = io.stderr.bind(io);
  return { ...io, stdout: (t) => out(escapeControls(t)), stderr: (t) => err(escapeControls(t)) };
}

export function processIo(): CliIo {
  return terminalSafe({
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    stdin: process.stdin,
    env: process.env,
    clock: new SystemClock(),
  });
}

/** All of stdin, minus the one trailing newline `echo` or a here-string adds. */
export async function readStdinSecret(io: CliIo, what: string): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of io.stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  const text = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
  if (text === '') throw usageError(`no ${what} on stdin`);
  return text;
}

/**
 * Asks on the terminal without echoing what is typed. Refuses when stdin is not a TTY,
 * since a pipe would silently feed the secret from wherever it comes from.
 */
export async function promptHidden(io: CliIo, question: string, flagHint: string): Promise<string> {
  const input = io.stdin;
  if (!input.isTTY || typeof input.setRawMode !== 'function') {
    throw usageError(`cannot prompt for it: stdin is not a terminal; use ${flagHint}`);
  }
  io.stderr(question);
  input.setRawMode(true);
  input.resume();
  try {
    return await new Promise<string>((resolve, reject) => {
      let typed = '';
      const onData = (chunk: Buffer | string): void => {
        for (const ch of chunk.toString('utf8')) {
          if (ch === '\r' || ch === '\n') {
            finish();
            resolve(typed);
            return;
          }
          if (ch === '\u0003' || ch === '\u0004') {
            finish();
            reject(new CliError('CANCELLED', 'cancelled', { exitCode: 1 }));
            return;
          }
          if (ch === '\u007f' || ch === '\b') typed = typed.slice(0, -1);
          else typed += ch;
        }
      };
      const finish = (): void => {
        input.removeListener('data', onData);
        io.stderr('\n');
      };
      input.on('data', onData);
    });
  } finally {
    input.setRawMode(false);
    input.pause();
  }
}
