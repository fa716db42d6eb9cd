import type { Socket } from 'node:net';

/** When a hand-made target says its last words after the end of its login: with it, or a moment later. */
export const TIMINGS = ['same write', 'nextTick', 'setImmediate', '0 ms', '1 ms', '3 ms', '10 ms'] as const;
export type Timing = (typeof TIMINGS)[number];

/**
 * Sends `login` (the end of a target's login) on `sock`, then calls `bye` at `timing`; at
 * 'same write' with `words` given, the login, the words and the FIN go in one write instead.
 */
export function sayLastWords(sock: Socket, timing: Timing, login: Buffer, bye: () => void, words?: Buffer): void {
  if (timing === 'same write' && words) return void sock.end(Buffer.concat([login, words]));
  sock.write(login);
  switch (timing) {
    case 'same write': return bye();
    case 'nextTick': return process.nextTick(bye);
    case 'setImmediate': return void setImmediate(bye);
    default: return void setTimeout(bye, Number.parseInt(timing, 10));
  }
}
