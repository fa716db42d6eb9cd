import type { Writable } from 'node:stream';

/**
 * Gives a stock client its standard input and closes it. A client that exits before reading
 * it (a refusal, a failed login) makes the write fail with EPIPE; that is no error of the test,
 * which asserts the client's exit and output, so it is not left unhandled.
 */
export function feed(stdin: Writable | null | undefined, input: string | Buffer): void {
  if (!stdin) return;
  stdin.on('error', (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE' && e.code !== 'ECONNRESET') throw e;
  });
  stdin.end(input);
}
