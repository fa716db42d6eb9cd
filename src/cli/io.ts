import { SystemClock, type Clock } from '../core/clock.js';
import { CliError, usageError } from './cli-error.js';

/** A terminal-ish input: process.stdin in production, a stream in tests. */
export interface CliInput extends NodeJS.ReadableStream {
  isTTY?: boolean;
  setRawMode?(mode: boolean): unknown;
}

/**
 * Everything the CLI touches outside itself, so tests can run `main` in-process and read
 * what it printed. `zone` is the IANA zone local times are shown in (default: the system's).
 */
export interface CliIo {
  stdout(text: string): void;
  stderr(text: string): void;
  stdin: CliInput;
  env: Record<string, string | undefined>;
  clock: Clock;
  zone?: string;
}

export function processIo(): CliIo {
  return {
    stdout: (t) => process.stdout.write(t),
    stderr: (t) => process.stderr.write(t),
    stdin: process.stdin,
    env: process.env,
    clock: new SystemClock(),
  };
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
