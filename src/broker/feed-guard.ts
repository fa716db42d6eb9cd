import { addMs, type Cancel, type Clock } from '../core/clock.js';
import type { Logger } from '../core/log.js';

export interface FeedGuardOptions {
  /** While the feed is down: how often every live session is re-checked; default 500 ms. */
  pollMs?: number;
  /**
   * While the feed is up: how often anyway, as a net under events that were never sent (a node
   * killed between its store write and its NOTIFY); default 30 s, 0 turns it off.
   */
  safetyNetMs?: number;
}

/**
 * Keeps a node fail-closed when it may be missing revocations. Revoke events from other nodes
 * arrive on the cluster's event feed; while that feed is down, the guard re-checks every live
 * session against the store at once and then every `pollMs`, and once more when the feed is
 * back (events sent in the gap were never heard). Re-checks never overlap: a poll that comes
 * while one runs is skipped, a feed change during one asks for one more.
 */
export class FeedGuard {
  private readonly pollMs: number;
  private readonly safetyNetMs: number;
  private down = false;
  private running: Promise<void> | undefined;
  private again: string | undefined;
  private cancel: Cancel | undefined;
  private stopped = false;

  constructor(
    private readonly recheckAll: (reason: string) => Promise<unknown>,
    private readonly clock: Clock,
    private readonly log: Logger,
    opts: FeedGuardOptions = {},
  ) {
    this.pollMs = opts.pollMs ?? 500;
    this.safetyNetMs = opts.safetyNetMs ?? 30_000;
  }

  /** Starts the safety-net timer (the feed is assumed up). */
  start(): void {
    this.arm();
  }

  /** The feed changed: down starts polling (with a re-check now), up ends it (with one last re-check). */
  feed(state: 'up' | 'down', why: string): void {
    if (this.stopped) return;
    const wasDown = this.down;
    this.down = state === 'down';
    if (this.down && !wasDown) void this.run(`event feed lost (${why})`);
    else if (!this.down && wasDown) void this.run('event feed back');
  }

  /** Resolves when the re-check in progress (if any) is done; for tests and shutdown. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  stop(): void {
    this.stopped = true;
    this.cancel?.();
  }

  private run(reason: string): Promise<void> {
    if (this.running) {
      this.again = reason;
      return this.running;
    }
    this.cancel?.();
    this.running = (async () => {
      let next: string | undefined = reason;
      while (next !== undefined && !this.stopped) {
        this.again = undefined;
        try {
          await this.recheckAll(next);
        } catch (err) {
          this.log.error({ err }, 're-checking live sessions failed');
        }
        next = this.again;
      }
    })().finally(() => {
      this.running = undefined;
      this.arm();
    });
    return this.running;
  }

  private arm(): void {
    if (this.stopped) return;
    this.cancel?.();
    const every = this.down ? this.pollMs : this.safetyNetMs;
    if (every <= 0) return;
    const why = this.down ? 'event feed still down' : 'periodic re-check';
    this.cancel = this.clock.setTimer(addMs(this.clock.now(), every), () => void this.run(why));
  }
}
